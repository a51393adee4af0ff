"""Redirect loops on a real cluster (issue 5): the slot states of MIGRATION.md A.3 that make
nodes bounce a request forever, what the client gets, what /v1/loops and /metrics show, the hop
bound, and --loop-policy=hold.

Run: cd tests/integration && SLOTPILOT_BIN=... /usr/bin/python3 -m unittest -v test_loops
"""

from __future__ import annotations

import datetime
import http.client
import json
import re
import socket
import sys
import threading
import time
import unittest
from typing import Any, Callable, Optional

import redis

import harness
from harness import Node, Proxy, RedisCluster

LOOP_ERROR_BUDGET_S = 0.050  # issue 5: the loop error reaches the client within 50 ms
HOLD_TIMEOUT_S = 3.0


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def http_get(proxy: Proxy, path: str) -> tuple[int, str, str]:
    """GET on the proxy's admin port: (status, content type, body)."""
    conn = http.client.HTTPConnection(harness.HOST, proxy.admin_port, timeout=5)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type", ""), resp.read().decode()
    finally:
        conn.close()


def loops(proxy: Proxy, query: str = "") -> list[dict]:
    status, _, body = http_get(proxy, "/v1/loops" + query)
    if status != 200:
        raise AssertionError(f"/v1/loops{query} answered {status}: {body}")
    return json.loads(body)["loops"]


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def metrics(proxy: Proxy) -> dict[tuple[str, frozenset], float]:
    """/metrics as {(name, frozenset of (label, value)): value}."""
    status, _, body = http_get(proxy, "/metrics")
    if status != 200:
        raise AssertionError(f"/metrics answered {status}")
    samples = {}
    for line in body.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if m is None:
            raise AssertionError(f"unparsable metrics line {line!r}")
        labels = frozenset(_LABEL.findall(m.group(2) or ""))
        samples[(m.group(1), labels)] = float(m.group(3))
    return samples


def metric(samples: dict, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    if key not in samples:
        raise AssertionError(f"no sample {name}{labels} in /metrics")
    return samples[key]


def rfc3339(text: str) -> float:
    """The admin API's timestamps ("2024-05-01T10:00:00.123Z") as a Unix time."""
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def commands_per_master(cluster: RedisCluster, command: str) -> dict[Node, int]:
    """How often `command` reached each master: served plus rejected (a redirect is a rejected
    call in Redis 7's commandstats)."""
    seen = {}
    for master in cluster.masters():
        stat = cluster.execute(master, "INFO", "commandstats").get(f"cmdstat_{command}", {})
        seen[master] = int(stat.get("calls", 0)) + int(stat.get("rejected_calls", 0))
    return seen


def commands_seen(cluster: RedisCluster, command: str) -> int:
    return sum(commands_per_master(cluster, command).values())


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """(fn()'s value or the exception it raised, seconds it took)."""
    start = time.perf_counter()
    try:
        value = fn()
    except redis.RedisError as e:  # noqa: BLE001 - the caller inspects it
        value = e
    return value, time.perf_counter() - start


def absent_key(slot: int, name: str) -> str:
    return harness.keys_for_slot(slot, 1, f"absent-{name}-{time.monotonic_ns()}")[0]


class ClusterTestCase(unittest.TestCase):
    """One 3-master cluster per class. Prints node and proxy logs when a test fails."""

    cluster: RedisCluster
    proxies: list[Proxy]

    @classmethod
    def setUpClass(cls) -> None:
        cls.cluster = RedisCluster().start()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.cluster.stop()

    def setUp(self) -> None:
        self.proxies = []

    def _failed(self) -> bool:
        result = getattr(getattr(self, "_outcome", None), "result", None)
        problems = getattr(result, "errors", []) + getattr(result, "failures", [])
        return any(test is self for test, _ in problems)

    def stop_and_check(self, proxy: Proxy) -> None:
        """Stops the proxy (SIGTERM) and checks that it exited cleanly, sanitizers quiet."""
        code = proxy.stop()
        if code is None:  # never started
            return
        log = proxy.log()
        for alarm in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
            self.assertNotIn(alarm, log, log[-6000:])
        self.assertEqual(code, 0, log[-3000:])

    def tearDown(self) -> None:
        if self._failed():
            for p in self.proxies:
                print(f"\n==== slotpilot {p.argv} ====\n{p.log()[-6000:]}", file=sys.stderr)
            print(f"\n{self.cluster!r} node logs:\n{self.cluster.logs_tail()}", file=sys.stderr)

    def start_proxy(self, *args: str, threads: Optional[int] = None) -> Proxy:
        proxy = Proxy(self.cluster, extra_args=list(args), threads=threads, log_level="info")
        self.proxies.append(proxy)
        self.addCleanup(self.stop_and_check, proxy)
        proxy.start()
        # PING is answered before the first topology arrives; requests are not.
        harness.wait_for(lambda: http_get(proxy, "/readyz")[0] == 200, 10, "/readyz 200")
        return proxy

    def source_and_target(self, slot: int) -> tuple[Node, Node]:
        src = self.cluster.node_for_slot(slot)
        dst = next(m for m in self.cluster.masters() if m != src)
        return src, dst

    def half_open(self, slot: int) -> tuple[Node, Node]:
        """S1: MIGRATING on the source only; undone (SETSLOT STABLE) at cleanup."""
        src, dst = self.source_and_target(slot)
        self.cluster.set_migrating(slot, src, dst)
        self.addCleanup(self.cluster.set_stable, slot, src)
        return src, dst

    def assert_loop_error(self, error: Any, slot: int, chain: str) -> None:
        self.assertIsInstance(error, redis.ResponseError, f"expected the loop error, got {error!r}")
        text = str(error)
        self.assertIn(f"slot {slot} ", text)
        self.assertIn("redirect loop", text)
        self.assertIn(chain, text)

    def assert_other_slots_work(self, proxy: Proxy, busy: set[int]) -> None:
        """GET/SET in a slot of every master, none of them `busy`."""
        with proxy.client() as c:
            for master in self.cluster.masters():
                lo, hi = self.cluster.slots_of(master)[0]
                slot = next(s for s in range(lo + 100, hi) if s not in busy)
                key = harness.keys_for_slot(slot, 1, "elsewhere")[0]
                self.assertTrue(c.set(key, "ok"), key)
                self.assertEqual(c.get(key), "ok", key)
                self.assertEqual(c.delete(key), 1, key)


# --------------------------------------------------------------------------------------------
# Half-open migration: ASK -> MOVED
# --------------------------------------------------------------------------------------------


class HalfOpenSlotTest(ClusterTestCase):
    SLOT = 1234
    SECOND_SLOT = 15000

    def test_absent_keys_get_the_loop_error_fast_and_the_slot_is_reported(self) -> None:
        c = self.cluster
        src, dst = self.source_and_target(self.SLOT)
        present = harness.keys_for_slot(self.SLOT, 1, "present")[0]
        c.execute(src, "SET", present, "here")
        self.addCleanup(c.execute, src, "DEL", present)
        proxy = self.start_proxy()
        started = time.time()
        self.half_open(self.SLOT)
        chain = f"ASK {dst.address} -> MOVED {src.address}"

        looping = 0
        with proxy.client() as client:
            for i in range(3):
                for name, call in (("GET", lambda k: client.get(k)),
                                   ("SET", lambda k: client.set(k, "new"))):
                    error, took = timed(lambda: call(absent_key(self.SLOT, f"{name}{i}")))
                    looping += 1
                    self.assert_loop_error(error, self.SLOT, chain)
                    self.assertLess(took, LOOP_ERROR_BUDGET_S, f"{name} took {took * 1000:.1f} ms")
            self.assertEqual(client.get(present), "here", "a present key is served by the source")
        self.assertEqual(c.count_keys_in_slot(self.SLOT, dst), 0, "no key may be written on B")
        self.assert_other_slots_work(proxy, {self.SLOT})

        [record] = loops(proxy)
        self.assertEqual(record["slot"], self.SLOT)
        self.assertEqual(record["pattern"], "ask-moved")
        self.assertEqual(record["count"], looping)
        self.assertEqual(sorted(record["nodes"]), sorted([src.address, dst.address]))
        self.assertEqual(sorted(record["node_ids"]), sorted([c.node_id(src), c.node_id(dst)]))
        self.assertEqual(record["last_chain"], chain)
        first, last = rfc3339(record["first_seen"]), rfc3339(record["last_seen"])
        self.assertLessEqual(started - 1, first)
        self.assertLessEqual(first, last)
        self.assertLessEqual(last, time.time() + 1)

        samples = metrics(proxy)
        self.assertEqual(metric(samples, "slotpilot_redirect_loops_total", pattern="ask-moved"),
                         looping)
        self.assertEqual(metric(samples, "slotpilot_redirect_loops_total", pattern="moved-moved"), 0)
        self.assertEqual(metric(samples, "slotpilot_redirect_loop_slot_requests_total",
                                slot=str(self.SLOT), pattern="ask-moved"), looping)
        self.assertGreaterEqual(metric(samples, "slotpilot_redirects_total", kind="ask"), looping)

    def test_loops_endpoint_filters_by_slot_and_lists_newest_first(self) -> None:
        proxy = self.start_proxy()
        self.half_open(self.SLOT)
        self.half_open(self.SECOND_SLOT)
        with proxy.client() as client:
            self.assert_loop_error(timed(lambda: client.get(absent_key(self.SLOT, "a")))[0],
                                   self.SLOT, "ASK ")
            time.sleep(0.05)  # the admin API's timestamps have millisecond resolution
            self.assert_loop_error(timed(lambda: client.get(absent_key(self.SECOND_SLOT, "b")))[0],
                                   self.SECOND_SLOT, "ASK ")
        self.assertEqual([r["slot"] for r in loops(proxy)], [self.SECOND_SLOT, self.SLOT])
        self.assertEqual([r["slot"] for r in loops(proxy, f"?slot={self.SLOT}")], [self.SLOT])
        self.assertEqual(loops(proxy, "?slot=9999"), [])
        for bad in ("abc", "16384", "-1", ""):
            status, _, body = http_get(proxy, f"/v1/loops?slot={bad}")
            self.assertEqual(status, 400, f"?slot={bad}: {body}")

    def test_a_looping_request_costs_two_sends_even_with_a_high_hop_limit(self) -> None:
        c = self.cluster
        proxy = self.start_proxy("--max-redirects=16")
        src, dst = self.half_open(self.SLOT)
        with proxy.client() as client:  # connections to both nodes are up before counting
            self.assertIsInstance(timed(lambda: client.get(absent_key(self.SLOT, "warm")))[0],
                                  redis.ResponseError)
            before = commands_per_master(c, "get")
            asking_before = commands_per_master(c, "asking")
            self.assert_loop_error(timed(lambda: client.get(absent_key(self.SLOT, "one")))[0],
                                   self.SLOT, "ASK ")
            time.sleep(0.3)  # nothing may follow the answer
            after = commands_per_master(c, "get")
            asking_after = commands_per_master(c, "asking")
            self.assertEqual({m: after[m] - before[m] for m in after},
                             {m: int(m in (src, dst)) for m in after},
                             "one GET at A (ASK), one at B (MOVED), none anywhere else")
            self.assertEqual({m: asking_after[m] - asking_before[m] for m in after},
                             {m: int(m == dst) for m in after}, "one ASKING, at B")

        # 20 clients at once: still two sends each, no storm afterwards.
        before = commands_seen(c, "get")
        errors = run_concurrently(proxy, 20, lambda cl, i: cl.get(absent_key(self.SLOT, f"c{i}")))
        for error, _ in errors:
            self.assert_loop_error(error, self.SLOT, "ASK ")
        sent = commands_seen(c, "get") - before
        self.assertLessEqual(sent, 20 * 2)
        time.sleep(0.5)
        self.assertEqual(commands_seen(c, "get") - before, sent, "requests kept bouncing")


def run_concurrently(proxy: Proxy, n: int, fn: Callable[[redis.Redis, int], Any],
                     before_go: Optional[Callable[[], None]] = None,
                     timeout: float = 20.0) -> list[tuple[Any, float]]:
    """Runs fn(client, i) on n connected clients released at the same moment; returns each
    one's (value or exception, seconds) in order. before_go runs once all are connected."""
    clients = [proxy.client(socket_timeout=timeout) for _ in range(n)]
    for cl in clients:
        cl.ping()  # connected before the start line
    results: list[Any] = [None] * n
    go = threading.Event()

    def run(i: int) -> None:
        go.wait(timeout)
        results[i] = timed(lambda: fn(clients[i], i))

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
    try:
        for t in threads:
            t.start()
        go.set()
        if before_go is not None:
            before_go()
        for t in threads:
            t.join(timeout)
            if t.is_alive():
                raise AssertionError("a client thread did not finish in time")
    finally:
        for cl in clients:
            cl.connection_pool.disconnect()  # redis-py 4.3's close() keeps the socket
    return results


# --------------------------------------------------------------------------------------------
# Masters disagreeing on the owner: MOVED ping-pong
# --------------------------------------------------------------------------------------------


class MovedPingPongTest(ClusterTestCase):
    SLOT = 2345

    def conflicting_owners(self, slot: int) -> tuple[Node, Node]:
        """S4a on an empty slot of A: B IMPORTING <- A (so it keeps believing A owns the slot),
        then A SETSLOT NODE B (allowed: A has no keys there). A says MOVED B, B says MOVED A.
        Undone at cleanup: B STABLE, A SETSLOT NODE A, BUMPEPOCH."""
        c = self.cluster
        a, b = self.source_and_target(slot)
        self.assertEqual(c.count_keys_in_slot(slot, a), 0)
        c.set_importing(slot, b, a)
        self.addCleanup(self.restore, slot, a, b)
        c.execute(a, "CLUSTER", "SETSLOT", slot, "NODE", c.node_id(b))
        self.assertEqual(c.node_for_slot(slot, view=a), b)
        self.assertEqual(c.node_for_slot(slot, view=b), a)
        return a, b

    def restore(self, slot: int, a: Node, b: Node) -> None:
        c = self.cluster
        c.set_stable(slot, b)
        c.execute(a, "CLUSTER", "SETSLOT", slot, "NODE", c.node_id(a))
        c.execute(a, "CLUSTER", "BUMPEPOCH")  # A's claim must beat any view that says B
        c.wait_stable(20)
        self.assertEqual(c.node_for_slot(slot), a)

    def test_ping_pong_gets_the_loop_error_and_is_reported(self) -> None:
        c = self.cluster
        proxy = self.start_proxy("--max-redirects=16")
        a, b = self.conflicting_owners(self.SLOT)
        looping = 0
        with proxy.client() as client:
            for i in range(3):
                for name, call in (("GET", lambda k: client.get(k)),
                                   ("SET", lambda k: client.set(k, "v"))):
                    error, took = timed(lambda: call(absent_key(self.SLOT, f"{name}{i}")))
                    looping += 1
                    self.assert_loop_error(error, self.SLOT, "MOVED ")
                    text = str(error)
                    self.assertRegex(text, r"\(MOVED \S+ -> MOVED \S+\)")
                    self.assertNotIn("ASK", text)
                    self.assertIn(a.address, text)
                    self.assertIn(b.address, text)
                    self.assertIn("disagree", text)
                    self.assertLess(took, LOOP_ERROR_BUDGET_S, f"{name} took {took * 1000:.1f} ms")
        self.assert_other_slots_work(proxy, {self.SLOT})
        [record] = loops(proxy, f"?slot={self.SLOT}")
        self.assertEqual(record["pattern"], "moved-moved")
        self.assertEqual(record["count"], looping)
        self.assertEqual(sorted(record["nodes"]), sorted([a.address, b.address]))
        self.assertEqual(sorted(record["node_ids"]), sorted([c.node_id(a), c.node_id(b)]))
        samples = metrics(proxy)
        self.assertEqual(metric(samples, "slotpilot_redirect_loops_total", pattern="moved-moved"),
                         looping)
        self.assertEqual(metric(samples, "slotpilot_redirect_loop_slot_requests_total",
                                slot=str(self.SLOT), pattern="moved-moved"), looping)

    def test_ping_pong_costs_a_bounded_number_of_sends(self) -> None:
        c = self.cluster
        max_redirects = 5
        proxy = self.start_proxy(f"--max-redirects={max_redirects}")
        self.conflicting_owners(self.SLOT)
        with proxy.client() as client:
            for i in range(3):
                before = commands_seen(c, "get")
                self.assert_loop_error(timed(lambda: client.get(absent_key(self.SLOT, f"{i}")))[0],
                                       self.SLOT, "MOVED ")
                time.sleep(0.3)
                sent = commands_seen(c, "get") - before
                self.assertLessEqual(sent, max_redirects + 1)
                self.assertLessEqual(sent, 2, "caught at the first revisit")


# --------------------------------------------------------------------------------------------
# Not loops
# --------------------------------------------------------------------------------------------


class NotALoopTest(ClusterTestCase):
    SLOT = 3456

    def test_healthy_migration_is_served_and_not_reported(self) -> None:
        c = self.cluster
        src, dst = self.source_and_target(self.SLOT)
        keys = c.fill_slot(self.SLOT, 4, prefix="healthy")
        proxy = self.start_proxy()
        c.open_slot(self.SLOT, src, dst)
        self.addCleanup(self.close_back, self.SLOT, src)
        c.migrate_keys(src, dst, self.SLOT, 2)
        with proxy.client() as client:
            for key in keys:
                self.assertEqual(client.get(key), "v", key)
            fresh = absent_key(self.SLOT, "fresh")
            self.assertTrue(client.set(fresh, "w"))  # ASK -> written on the target
            self.assertEqual(client.get(fresh), "w")
        self.assertEqual(loops(proxy), [])

    def test_one_extra_moved_after_an_owner_change_is_not_a_loop(self) -> None:
        c = self.cluster
        src, dst = self.source_and_target(self.SLOT)
        proxy = self.start_proxy("--topology-refresh-interval=1h")
        key = absent_key(self.SLOT, "moved")
        c.finish_slot(self.SLOT, dst)  # empty slot: the owner changes, the proxy's map is stale
        self.addCleanup(self.close_back, self.SLOT, src)
        with proxy.client() as client:
            self.assertTrue(client.set(key, "x"))
            self.assertEqual(client.get(key), "x")
        self.assertEqual(c.execute(dst, "GET", key), "x")
        self.assertEqual(loops(proxy), [])
        self.assertGreaterEqual(metric(metrics(proxy), "slotpilot_redirects_total", kind="moved"), 1)

    def test_migration_back_behind_a_stale_map_is_not_a_loop(self) -> None:
        """The slot moved A -> B and is being migrated back (B MIGRATING -> A, A IMPORTING <- B)
        while the proxy's map still says A: A answers MOVED B, B answers ASK A, and A serves the
        request after ASKING. A revisit with ASKING is a new request, not a loop."""
        c = self.cluster
        a, b = self.source_and_target(self.SLOT)
        proxy = self.start_proxy("--topology-refresh-interval=1h")
        c.finish_slot(self.SLOT, b)
        self.addCleanup(self.close_back, self.SLOT, a)
        c.set_importing(self.SLOT, a, b)
        c.set_migrating(self.SLOT, b, a)
        self.assertEqual(slot_owner_in_proxy(proxy, self.SLOT), a.address, "the map must be stale")
        key = absent_key(self.SLOT, "back")
        with proxy.client() as client:
            value, _ = timed(lambda: client.get(key))
            self.assertIsNone(value, f"GET of an absent key: {value!r}")
        self.assertEqual(loops(proxy), [])

    def close_back(self, slot: int, home: Node) -> None:
        c = self.cluster
        for master in c.masters():
            c.set_stable(slot, master)
        owner = c.node_for_slot(slot)
        if owner != home:
            c.open_slot(slot, owner, home)
            c.migrate_keys(owner, home, slot, 1000)
            c.finish_slot(slot, home)
        for key in c.keys_in_slot(slot, home):
            c.execute(home, "DEL", key)
        c.wait_stable(20)


def slot_owner_in_proxy(proxy: Proxy, slot: int) -> Optional[str]:
    status, _, body = http_get(proxy, "/v1/slots")
    assert status == 200, body
    for r in json.loads(body)["ranges"]:
        if r["start"] <= slot <= r["end"]:
            return r["address"]
    return None


# --------------------------------------------------------------------------------------------
# --loop-policy=hold
# --------------------------------------------------------------------------------------------


class HoldPolicyTest(ClusterTestCase):
    SLOT = 4567

    def hold_proxy(self, *extra: str) -> Proxy:
        return self.start_proxy("--loop-policy=hold", f"--loop-hold-timeout={HOLD_TIMEOUT_S:g}s",
                                *extra, threads=1)

    def repair_later(self, slot: int, src: Node, after: float) -> threading.Timer:
        """SETSLOT STABLE on the source `after` seconds from now, from another thread (its own
        connection: the harness's clients are not thread-safe)."""
        def repair() -> None:
            with self.cluster.client(src) as c:
                c.execute_command("CLUSTER", "SETSLOT", slot, "STABLE")

        timer = threading.Timer(after, repair)
        timer.start()
        self.addCleanup(timer.join, 10)
        return timer

    def test_held_request_succeeds_once_the_slot_is_repaired(self) -> None:
        proxy = self.hold_proxy()
        src, _ = self.half_open(self.SLOT)
        with proxy.client() as client:
            client.ping()
            self.repair_later(self.SLOT, src, 1.0)
            value, took = timed(lambda: client.get(absent_key(self.SLOT, "held")))
        self.assertIsNone(value, f"expected nil after the repair, got {value!r}")
        self.assertGreaterEqual(took, 1.0)
        self.assertLess(took, HOLD_TIMEOUT_S)
        self.assert_hold_outcomes(proxy, held=1, released=1, expired=0)

    def test_held_write_succeeds_once_the_slot_is_repaired(self) -> None:
        c = self.cluster
        proxy = self.hold_proxy()
        src, dst = self.half_open(self.SLOT)
        key = absent_key(self.SLOT, "held-set")
        self.addCleanup(c.execute, src, "DEL", key)
        with proxy.client() as client:
            client.ping()
            self.repair_later(self.SLOT, src, 1.0)
            value, took = timed(lambda: client.set(key, "after-repair"))
        self.assertIs(value, True, repr(value))
        self.assertGreaterEqual(took, 1.0)
        self.assertLess(took, HOLD_TIMEOUT_S)
        self.assertEqual(c.execute(src, "GET", key), "after-repair")
        self.assertEqual(c.count_keys_in_slot(self.SLOT, dst), 0)

    def test_without_repair_the_held_request_gets_the_loop_error_at_the_hold_timeout(self) -> None:
        proxy = self.hold_proxy()
        src, dst = self.half_open(self.SLOT)
        with proxy.client() as client:
            error, took = timed(lambda: client.get(absent_key(self.SLOT, "expires")))
        self.assert_loop_error(error, self.SLOT, f"ASK {dst.address} -> MOVED {src.address}")
        self.assertGreaterEqual(took, HOLD_TIMEOUT_S - 0.05)
        self.assertLess(took, HOLD_TIMEOUT_S + 0.75)
        self.assert_hold_outcomes(proxy, held=1, released=0, expired=1)

    def test_many_held_clients_are_all_released_and_cost_few_sends(self) -> None:
        c = self.cluster
        clients = 50
        proxy = self.hold_proxy()
        src, _ = self.half_open(self.SLOT)
        before = commands_seen(c, "get")
        results = run_concurrently(
            proxy, clients, lambda cl, i: cl.get(absent_key(self.SLOT, f"many{i}")),
            before_go=lambda: self.repair_later(self.SLOT, src, 1.0))
        for i, (value, took) in enumerate(results):
            self.assertIsNone(value, f"client {i}: {value!r}")
            self.assertGreaterEqual(took, 0.9, f"client {i}")
            self.assertLess(took, HOLD_TIMEOUT_S, f"client {i}")
        sent = commands_seen(c, "get") - before
        # Each request loops once (2 sends) and is retried once after the release (1 send); the
        # probes while held cost 2 sends each, at most one per 50 ms (backing off to 250 ms).
        self.assertLessEqual(sent, clients * 3 + 2 * (1.5 / 0.05 + 1))
        self.assert_hold_outcomes(proxy, held=clients, released=clients, expired=0)

    def test_a_held_client_that_leaves_does_not_stall_the_others(self) -> None:
        """The first request held on a slot is the first one probed. If its client has gone
        meanwhile, the others must still be released when the slot is repaired, now and the
        next time the slot loops."""
        c = self.cluster
        proxy = self.hold_proxy()
        src, dst = self.half_open(self.SLOT)
        for round_ in range(2):
            key = absent_key(self.SLOT, f"leaver{round_}").encode()
            with socket.create_connection((harness.HOST, proxy.port), timeout=5) as leaver:
                leaver.sendall(b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(key), key))
                time.sleep(0.01)  # held, then gone before the first probe (50 ms)
            results = run_concurrently(
                proxy, 3, lambda cl, i: cl.get(absent_key(self.SLOT, f"stays{round_}{i}")),
                before_go=lambda: self.repair_later(self.SLOT, src, 0.5))
            for value, took in results:
                self.assertIsNone(value, f"round {round_}: {value!r} after {took:.2f} s")
                self.assertLess(took, HOLD_TIMEOUT_S - 1, f"round {round_}: released late")
            c.set_migrating(self.SLOT, src, dst)  # broken again for the next round
        harness.wait_for(lambda: metric(metrics(proxy), "slotpilot_loop_held_requests") == 0,
                         HOLD_TIMEOUT_S + 2, "no request held any more")
        self.assertTrue(proxy.running())

    def test_hold_limit_answers_the_excess_at_once(self) -> None:
        limit, clients = 5, 10
        proxy = self.hold_proxy(f"--loop-hold-max-requests={limit}")
        src, dst = self.half_open(self.SLOT)
        results = run_concurrently(
            proxy, clients, lambda cl, i: cl.get(absent_key(self.SLOT, f"limit{i}")),
            before_go=lambda: self.repair_later(self.SLOT, src, 1.0))
        fast = [(v, t) for v, t in results if isinstance(v, redis.ResponseError)]
        held = [(v, t) for v, t in results if not isinstance(v, redis.ResponseError)]
        self.assertEqual(len(fast), clients - limit, results)
        for error, took in fast:
            self.assert_loop_error(error, self.SLOT, f"ASK {dst.address} -> MOVED {src.address}")
            self.assertLess(took, 0.5, "the excess is answered at once, not held")
        for value, took in held:
            self.assertIsNone(value)
            self.assertGreaterEqual(took, 0.9)
            self.assertLess(took, HOLD_TIMEOUT_S)
        self.assert_hold_outcomes(proxy, held=limit, released=limit, expired=0)

    def assert_hold_outcomes(self, proxy: Proxy, held: int, released: int, expired: int) -> None:
        """Every held request counted once as held, and once as released or expired (the probes
        that test the slot while it is held included)."""
        samples = metrics(proxy)
        self.assertEqual({o: metric(samples, "slotpilot_loop_hold_total", outcome=o)
                          for o in ("held", "released", "expired")},
                         {"held": held, "released": released, "expired": expired})
        self.assertEqual(metric(samples, "slotpilot_loop_held_requests"), 0)


if __name__ == "__main__":
    unittest.main()
