"""Failovers and a stalled node under a live client (issue 3), without ever restarting the proxy:

  * CLUSTER FAILOVER on a replica: errors (if any) only inside the failover window, then full
    service, no acknowledged write lost;
  * kill -9 of a master: its slots come back through the promoted replica within a bound, found
    by the topology refresh (no MOVED involved); the other masters' keys never fail;
  * a SIGSTOPped master: its requests fail at their deadline with a timeout error, other
    masters' traffic keeps its latency, and after SIGCONT the node is served again (replies still
    matched to the right requests).

Run: cd tests/integration && SLOTPILOT_BIN=... /usr/bin/python3 -m unittest -v test_failover
"""

from __future__ import annotations

import statistics
import threading
import time
import unittest
from typing import Optional

import redis

import harness
from harness import Node, Proxy, RedisCluster
from test_data_path import (ClusterTestCase, SlotMap, binary_missing_reason, proxy_metrics,
                            stop_proxy_checked)

RECOVERY_BOUND_S = 15.0      # kill -9 of a master -> its keys are served again
QUIET_AFTER_S = 3.0          # error-free service required after recovery / failover
LOOP_CAP_S = 60.0            # every client loop ends by itself after this


class ClientLoop:
    """A thread that SETs then GETs keys round-robin through the proxy, one command at a time,
    and records every outcome as (t, key, error text or None, latency). Writes acknowledged are
    remembered per key (value = a per-key sequence number)."""

    def __init__(self, proxy: Proxy, keys: list[str], name: str = "client") -> None:
        self.proxy, self.keys, self.name = proxy, keys, name
        self.events: list[tuple[float, str, Optional[str], float]] = []
        self.acked: dict[str, int] = {}
        self.bad_reads: list[tuple[str, Optional[str], int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> ClientLoop:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        assert not self._thread.is_alive(), f"{self.name} hung"

    def _run(self) -> None:
        started, i = time.monotonic(), 0
        client = self.proxy.client(socket_timeout=15)
        try:
            while not self._stop.is_set() and time.monotonic() - started < LOOP_CAP_S:
                key = self.keys[i % len(self.keys)]
                self._one(client, key, i // len(self.keys) + 1)
                i += 1
        finally:
            client.close()

    def _one(self, client: redis.Redis, key: str, value: int) -> None:
        t = time.monotonic()
        try:
            client.set(key, value)
            self.acked[key] = value
            got = client.get(key)
            if got != str(value):
                self.bad_reads.append((key, got, value))
            error = None
        except redis.RedisError as e:
            error = f"{type(e).__name__}: {e}"
            if isinstance(e, (redis.ConnectionError, redis.TimeoutError)):
                client.close()
        self.events.append((t, key, error, time.monotonic() - t))

    def errors(self, keys: Optional[set[str]] = None) -> list[tuple[float, str, str, float]]:
        return [e for e in self.events if e[2] is not None and (keys is None or e[1] in keys)]

    def successes_after(self, t: float, keys: Optional[set[str]] = None) -> int:
        return sum(1 for e in self.events
                   if e[0] >= t and e[2] is None and (keys is None or e[1] in keys))


class PipelineLoop:
    """A thread that pipelines SET k v + GET k pairs over keys of every master, 60 commands per
    round trip, and records per reply whether it was an error and whether a GET answered with a
    value other than the one its own pipeline had just set (a reply given to the wrong request)."""

    def __init__(self, proxy: Proxy, keys: list[str]) -> None:
        self.proxy, self.keys = proxy, keys
        self.errors: list[tuple[float, str, str, float]] = []
        self.misplaced: list[tuple[str, object, str]] = []
        self.replies = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pipeline", daemon=True)

    def start(self) -> PipelineLoop:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        assert not self._thread.is_alive(), "pipeline client hung"

    def _run(self) -> None:
        started, round_no = time.monotonic(), 0
        client = self.proxy.client(socket_timeout=15)
        try:
            while not self._stop.is_set() and time.monotonic() - started < LOOP_CAP_S:
                round_no += 1
                chunk = [self.keys[(round_no * 30 + j) % len(self.keys)] for j in range(30)]
                self._round(client, chunk, f"r{round_no}")
        finally:
            client.close()

    def _round(self, client: redis.Redis, chunk: list[str], tag: str) -> None:
        t = time.monotonic()
        try:
            with client.pipeline(transaction=False) as pipe:
                for key in chunk:
                    pipe.set(key, f"{tag}:{key}")
                    pipe.get(key)
                replies = pipe.execute(raise_on_error=False)
        except (redis.ConnectionError, redis.TimeoutError) as e:
            self.errors.append((t, chunk[0], f"{type(e).__name__}: {e}", time.monotonic() - t))
            client.close()
            return
        took = time.monotonic() - t
        for i, key in enumerate(chunk):
            set_reply, get_reply = replies[2 * i], replies[2 * i + 1]
            for reply in (set_reply, get_reply):
                if isinstance(reply, Exception):
                    self.errors.append((t, key, f"{type(reply).__name__}: {reply}", took))
            if set_reply is True and get_reply != f"{tag}:{key}":
                self.misplaced.append((key, get_reply, f"{tag}:{key}"))
        self.replies += len(replies)


def keys_on(slots: SlotMap, node: Node, count: int, prefix: str) -> list[str]:
    """count plain key names whose slots `node` owns."""
    out = []
    for n in range(200_000):
        key = f"{prefix}:{n}"
        if slots.owner(key) == node:
            out.append(key)
            if len(out) == count:
                return out
    raise AssertionError(f"not enough keys for {node}")


def describe(errors: list, t0: float, limit: int = 8) -> str:
    return "\n".join(f"  t={t - t0:+.2f}s key={k}: {text}" for t, k, text, _ in errors[:limit])


@unittest.skipIf(binary_missing_reason() is not None, binary_missing_reason() or "")
class FailoverTest(ClusterTestCase):
    """A fresh 3 masters + 3 replicas and proxy per test."""

    def setUp(self) -> None:
        self.cluster = RedisCluster(masters=3, replicas=1).start()
        self.addCleanup(self.cluster.stop)
        self.proxy = Proxy(self.cluster, log_level="info").start()
        self.addCleanup(stop_proxy_checked, self.proxy)
        self.slots = SlotMap(self.cluster)

    def _keys_everywhere(self, per_master: int = 20, prefix: str = "fo"
                         ) -> tuple[list[str], dict[Node, list[str]]]:
        by_master = {m: keys_on(self.slots, m, per_master, f"{prefix}{m.index}")
                     for m in self.cluster.masters()}
        keys = [k for group in zip(*by_master.values()) for k in group]  # interleaved
        return keys, by_master

    def test_manual_failover_errors_only_inside_the_window(self) -> None:
        c = self.cluster
        keys, by_master = self._keys_everywhere()
        master = c.node_for_slot(harness.key_slot(keys[0]))
        replica = c.replicas_of(master)[0]
        pid = self.proxy.pid
        loop = ClientLoop(self.proxy, keys).start()
        piped_keys, piped_by_master = self._keys_everywhere(prefix="pp")
        piped = PipelineLoop(self.proxy, piped_keys).start()
        try:
            time.sleep(1.0)
            t_start = time.monotonic()
            c.failover(replica)
            t_end = time.monotonic()
            time.sleep(QUIET_AFTER_S)
        finally:
            loop.stop()
            piped.stop()
        errors = sorted(loop.errors() + piped.errors)
        print(f"\nmanual failover took {t_end - t_start:.2f} s; {len(loop.events)} ops, "
              f"{len(errors)} errors\n{describe(errors, t_start)}", flush=True)
        self.assertEqual(c.role(replica), "master")
        # An error belongs to the window if the failed request was in flight during it.
        outside = [e for e in errors if e[0] + e[3] < t_start or e[0] > t_end + 1.0]
        self.assertEqual(outside, [], "errors outside the failover window:\n"
                         + describe(outside, t_start))
        quiet_from = t_end + 1.0
        self.assertGreater(loop.successes_after(quiet_from, set(by_master[master])), 20,
                           "the failed-over master's keys are not served again")
        self.assertEqual(loop.bad_reads, [])
        self.assertEqual(piped.misplaced[:5], [], "a reply went to the wrong request")
        self.assertGreater(piped.replies, 1000)
        self.assertEqual((self.proxy.pid, self.proxy.running()), (pid, True))
        self._assert_acked_values(loop)

    def test_kill9_master_promoted_replica_serves_without_moved(self) -> None:
        c = self.cluster
        keys, by_master = self._keys_everywhere()
        victim = c.node_for_slot(harness.key_slot(keys[0]))
        replica = c.replicas_of(victim)[0]
        victim_keys = set(by_master[victim])
        pid = self.proxy.pid
        moved_before = proxy_metrics(self.proxy)['slotpilot_redirects_total{kind="moved"}']
        loop = ClientLoop(self.proxy, keys).start()
        piped_keys, piped_by_master = self._keys_everywhere(prefix="pp")
        piped = PipelineLoop(self.proxy, piped_keys).start()
        try:
            time.sleep(1.0)
            t_kill = time.monotonic()
            c.kill(victim)
            c.wait_for(lambda: c.role(replica) == "master", 20, f"{replica} to be promoted")
            t_promoted = time.monotonic()
            recovered = self._wait_recovered(loop, victim_keys, t_kill)
        finally:
            loop.stop()
            piped.stop()
        errors = loop.errors()
        last_error = max((e[0] for e in errors), default=t_kill)
        print(f"\nkill -9: replica promoted after {t_promoted - t_kill:.2f} s, proxy serving "
              f"the victim's keys again after {recovered - t_kill:.2f} s, last error at "
              f"{last_error - t_kill:+.2f} s; {len(errors)} errors of {len(loop.events)} ops\n"
              f"{describe(errors, t_kill)}", flush=True)
        self.assertEqual(loop.errors(set(keys) - victim_keys), [],
                         "keys of the surviving masters failed")
        print(f"pipelined client: {piped.replies} replies, {len(piped.errors)} errors",
              flush=True)
        self.assertEqual([e for e in piped.errors if e[1] not in piped_by_master[victim]], [],
                         "pipelined requests to the surviving masters failed")
        self.assertEqual([e for e in piped.errors if e[0] > recovered], [])
        self.assertEqual(piped.misplaced[:5], [], "a reply went to the wrong request")
        self.assertLess(recovered - t_kill, RECOVERY_BOUND_S)
        self.assertLess(last_error - t_kill, RECOVERY_BOUND_S)
        self.assertEqual([e for e in errors if e[0] >= recovered], [], "errors after recovery")
        self.assertGreater(loop.successes_after(recovered, victim_keys), 10)
        self.assertEqual(proxy_metrics(self.proxy)['slotpilot_redirects_total{kind="moved"}'],
                         moved_before,
                         "the proxy needed a MOVED to find the promoted replica")
        self.assertEqual(loop.bad_reads, [])
        self.assertEqual((self.proxy.pid, self.proxy.running()), (pid, True))

    def _wait_recovered(self, loop: ClientLoop, victim_keys: set[str], t_kill: float) -> float:
        """Waits until the victim's keys have been served without any error for QUIET_AFTER_S;
        returns when that error-free stretch began (time of recovery)."""

        def quiet_since() -> Optional[float]:
            events = [e for e in loop.events if e[0] > t_kill]
            last_error = max((e[0] + e[3] for e in events if e[2] is not None), default=t_kill)
            served = [e[0] for e in events if e[0] > last_error and e[1] in victim_keys]
            if served and time.monotonic() - last_error >= QUIET_AFTER_S:
                return served[0]
            return None

        return harness.wait_for(quiet_since, RECOVERY_BOUND_S + QUIET_AFTER_S + 10,
                                "the proxy to serve the killed master's keys again",
                                interval=0.1)

    def _assert_acked_values(self, loop: ClientLoop) -> None:
        with self.proxy.client() as client, client.pipeline(transaction=False) as pipe:
            for key in loop.acked:
                pipe.get(key)
            got = dict(zip(loop.acked, pipe.execute()))
        lost = [(k, got[k], v) for k, v in loop.acked.items() if got[k] != str(v)]
        self.assertEqual(lost[:10], [], f"{len(lost)} acknowledged writes lost")


@unittest.skipIf(binary_missing_reason() is not None, binary_missing_reason() or "")
class StalledMasterTest(ClusterTestCase):
    """3 masters, no replicas, a node timeout far longer than the stall: the cluster never
    declares the paused node failed, so the proxy alone decides what its clients see."""

    TIMEOUT_S = 1.0
    MARGIN_S = 0.6  # deadline tick, loop turn, a loaded 2-core machine, an ASan build

    def setUp(self) -> None:
        self.cluster = RedisCluster(masters=3, node_timeout_ms=30000).start()
        self.addCleanup(self.cluster.stop)
        self.proxy = Proxy(self.cluster, log_level="info",
                           extra_args=[f"--request-timeout={int(self.TIMEOUT_S * 1000)}ms"]).start()
        self.addCleanup(stop_proxy_checked, self.proxy)

    def test_paused_master_times_out_at_deadline_others_unaffected(self) -> None:
        c = self.cluster
        slots = SlotMap(c)
        victim = c.masters()[1]
        victim_keys = keys_on(slots, victim, 30, "st")
        others = [k for m in c.masters() if m != victim for k in keys_on(slots, m, 30, "so")]
        with self.proxy.client() as client:
            for key in victim_keys + others:
                client.set(key, f"val-{key}")
        bystander = ClientLoop(self.proxy, others, "bystander")
        c.pause(victim)
        try:
            bystander.start()
            self._assert_times_out(victim, victim_keys)
            bystander.stop()
        finally:
            c.resume(victim)
        errors = bystander.errors()
        latencies = sorted(e[3] for e in bystander.events)
        p99 = latencies[int(len(latencies) * 0.99)] if latencies else float("nan")
        print(f"\nbystander during the stall: {len(bystander.events)} ops, {len(errors)} errors, "
              f"median {statistics.median(latencies) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
              f"max {latencies[-1] * 1000:.1f} ms", flush=True)
        self.assertEqual(errors, [], describe(errors, 0))
        self.assertGreater(len(bystander.events), 50)
        self.assertLess(latencies[-1], self.TIMEOUT_S / 2,
                        "another master's request waited behind the stalled one")
        self._assert_served_again(victim_keys)

    def _assert_times_out(self, victim: Node, victim_keys: list[str]) -> None:
        with self.proxy.client(socket_timeout=10) as client:
            for key in victim_keys[:3]:
                start = time.monotonic()
                with self.assertRaises(redis.ResponseError) as caught:
                    client.get(key)
                self._assert_deadline(victim, time.monotonic() - start, str(caught.exception))
            start = time.monotonic()  # a pipeline: every request has its own deadline
            with client.pipeline(transaction=False) as pipe:
                for key in victim_keys[3:23]:
                    pipe.get(key)
                replies = pipe.execute(raise_on_error=False)
            elapsed = time.monotonic() - start
            self.assertEqual(len(replies), 20)
            for reply in replies:
                self.assertIsInstance(reply, redis.ResponseError)
                self._assert_deadline(victim, elapsed, str(reply))

    def _assert_deadline(self, victim: Node, elapsed: float, error: str) -> None:
        self.assertIn(f"timed out after 1000 ms waiting for {victim.address}", error)
        self.assertGreaterEqual(elapsed, self.TIMEOUT_S - 0.02, error)
        self.assertLessEqual(elapsed, self.TIMEOUT_S + self.MARGIN_S, error)

    def _assert_served_again(self, victim_keys: list[str]) -> None:
        with self.proxy.client() as client:
            harness.wait_for(lambda: client.get(victim_keys[0]) == f"val-{victim_keys[0]}", 10,
                             "the resumed master to be served again")
            # Late replies to the timed-out requests must not be handed to new requests.
            for _ in range(3):
                got = [client.get(k) for k in victim_keys]
                self.assertEqual(got, [f"val-{k}" for k in victim_keys])
            with client.pipeline(transaction=False) as pipe:
                for key in victim_keys:
                    pipe.set(key, f"new-{key}")
                    pipe.get(key)
                replies = pipe.execute()
            self.assertEqual(replies, [x for k in victim_keys for x in (True, f"new-{k}")])


if __name__ == "__main__":
    unittest.main()
