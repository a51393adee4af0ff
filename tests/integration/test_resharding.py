"""Resharding under load, nothing lost (issue 3): writers and readers keep going through the proxy
while `redis-cli --cluster reshard` moves 2000 slots, every one of them holding keys, between two
masters of a 3-master + 3-replica cluster.

Required: zero client-visible errors, no read older than a write already acknowledged, and every
acknowledged write reads back with its last value afterwards (through the proxy and straight from
the owning node); counters bumped with INCR end exactly at the number of acknowledged INCRs.

Run: cd tests/integration && SLOTPILOT_BIN=... /usr/bin/python3 -m unittest -v test_resharding
"""

from __future__ import annotations

import collections
import dataclasses
import random
import subprocess
import threading
import time
import unittest
from typing import Optional

import redis

import harness
from harness import Node, Proxy, RedisCluster
from test_data_path import (ClusterTestCase, SlotMap, binary_missing_reason, proxy_metrics,
                            stop_proxy_checked)

SLOTS_TO_MOVE = 2000
KEYS_PER_SLOT = 8           # at least this many keys in every slot that moves
OTHER_KEYS = 1000           # keys in slots that stay, written by the same clients
COUNTERS = 400              # INCR targets, half of them in moving slots
GROUPS = 300                # {hashtag} triples for same-slot MSET/MGET, 2/3 in moving slots
HOT_SLOTS = 20              # moving slots with many keys (and groups): MIGRATE in many batches,
HOT_KEYS_PER_SLOT = 250     # so the ASK/TRYAGAIN windows are long enough to be hit
HOT_GROUPS_PER_SLOT = 5
RESHARD_TIMEOUT_S = 240.0
LOAD_CAP_S = RESHARD_TIMEOUT_S + 30  # the load threads stop by themselves after this
CLIENT_SOCKET_TIMEOUT_S = 15.0       # > the proxy's request timeout: its own errors show up


def keys_in_slots(slots: set[int], per_slot: int, prefix: str, limit: int = 3_000_000
                  ) -> dict[int, list[str]]:
    """per_slot plain key names (no hashtag) in each of `slots`."""
    found: dict[int, list[str]] = {s: [] for s in slots}
    missing = len(slots)
    for n in range(limit):
        key = f"{prefix}:{n}"
        bucket = found.get(harness.key_slot(key))
        if bucket is not None and len(bucket) < per_slot:
            bucket.append(key)
            if len(bucket) == per_slot:
                missing -= 1
                if missing == 0:
                    return found
    raise AssertionError(f"{missing} slots still lack keys after {limit} names")


@dataclasses.dataclass
class Ledger:
    """What the clients know: per key, the last acknowledged value and the values sent since
    whose outcome is unknown (their request failed). Each key is written by one thread only."""

    acked: dict[str, int]
    uncertain: dict[str, set[int]] = dataclasses.field(
        default_factory=lambda: collections.defaultdict(set))
    incr_acked: dict[str, int] = dataclasses.field(
        default_factory=lambda: collections.defaultdict(int))
    incr_uncertain: dict[str, int] = dataclasses.field(
        default_factory=lambda: collections.defaultdict(int))
    groups: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)


class LoadRecorder:
    """Errors and stale reads seen by the load threads, with when (relative to t0) and where."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.errors: list[tuple[float, str, str, str]] = []  # (t, thread, key, error)
        self.stale: list[tuple[str, int, int]] = []           # (key, read, acked before)
        self.ops = collections.Counter()
        self.t0 = time.monotonic()
        self.reshard_started = self.reshard_ended = 0.0  # seconds after t0

    def error(self, who: str, key: str, exc: BaseException) -> None:
        with self.lock:
            self.errors.append((time.monotonic() - self.t0, who, key, f"{type(exc).__name__}: {exc}"))

    def summary(self) -> str:
        by_text = collections.Counter(_error_class(e[3]) for e in self.errors)
        lines = [f"reshard ran from t={self.reshard_started:.2f}s to t={self.reshard_ended:.2f}s"]
        lines += [f"{n} x {text}" for text, n in by_text.most_common(10)]
        lines += [f"  t={t:.2f}s {who} key={key} slot={harness.key_slot(key)}: {text}"
                  for t, who, key, text in self.errors[:15]]
        return "\n".join(lines)


def _error_class(text: str) -> str:
    """An error text with its numbers and addresses blanked, for counting by kind."""
    out, digits = [], False
    for ch in text:
        if ch.isdigit():
            if not digits:
                out.append("N")
            digits = True
        else:
            out.append(ch)
            digits = False
    return "".join(out)[:160]


@unittest.skipIf(binary_missing_reason() is not None, binary_missing_reason() or "")
class ReshardUnderLoadTest(ClusterTestCase):
    def setUp(self) -> None:
        self.cluster = RedisCluster(masters=3, replicas=1).start()
        self.addCleanup(self.cluster.stop)
        self.proxy = Proxy(self.cluster, log_level="info", threads=2).start()
        self.addCleanup(stop_proxy_checked, self.proxy)

    def test_reshard_2000_slots_under_load_loses_nothing(self) -> None:
        c = self.cluster
        src = c.node_for_slot(0)
        dst = next(m for m in c.masters() if m != src)
        src_slots = [s for lo, hi in c.slots_of(src) for s in range(lo, hi + 1)]
        moving = set(src_slots[:SLOTS_TO_MOVE])  # redis-cli takes a source's lowest slots first
        staying = set(range(harness.SLOT_COUNT)) - moving
        ledger = self._fill(moving, staying)
        before = SlotMap(c)
        recorder = LoadRecorder()

        stop = threading.Event()
        threads = self._start_load(ledger, recorder, stop)
        try:
            time.sleep(1.0)  # load running before the first slot moves
            recorder.reshard_started = time.monotonic() - recorder.t0
            done = self._reshard(src, dst)
            recorder.reshard_ended = time.monotonic() - recorder.t0
            time.sleep(1.0)  # and a little after the last one
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=30)
        self.assertFalse(any(t.is_alive() for t in threads), "a load thread hung")
        self.assertEqual(done.returncode, 0, done.stdout[-3000:] + done.stderr[-3000:])

        after = SlotMap(c)
        moved = [s for s in range(harness.SLOT_COUNT)
                 if before.slot_owner(s) == src and after.slot_owner(s) == dst]
        self.assertGreaterEqual(len(moved), SLOTS_TO_MOVE)
        self.assertTrue(set(moved) <= moving, "redis-cli moved slots we did not fill")
        m = proxy_metrics(self.proxy)
        followed = {k.split('"')[1]: int(v) for k, v in m.items()
                    if k.startswith(("slotpilot_redirects_total", "slotpilot_retries_total"))}
        print(f"\nreshard: {len(moved)} slots in "
              f"{recorder.reshard_ended - recorder.reshard_started:.1f} s; ops {dict(recorder.ops)}; "
              f"proxy followed {followed}; client errors {len(recorder.errors)}", flush=True)

        self.assertEqual(recorder.errors, [], "client-visible errors during resharding:\n"
                         + recorder.summary())
        self.assertEqual(recorder.stale[:10], [], f"{len(recorder.stale)} stale reads")
        self._check_final_values(ledger, after)
        code, output = c.check()
        self.assertEqual(code, 0, output)

    # ---- setup -------------------------------------------------------------------------------

    def _fill(self, moving: set[int], staying: set[int]) -> Ledger:
        rng = random.Random(3)

        def names(slots: set[int], per_slot: int, prefix: str) -> list[str]:
            return [k for ks in keys_in_slots(slots, per_slot, prefix).values() for k in ks]

        def some(slots: set[int], count: int) -> set[int]:
            return set(rng.sample(sorted(slots), count))

        hot_tags = names(some(moving, HOT_SLOTS), 1, "hot")  # {tag}s of the hot slots
        keys = names(moving, KEYS_PER_SLOT, "rs") + names(some(staying, OTHER_KEYS), 1, "rs")
        keys += [f"{{{tag}}}:k{i}" for tag in hot_tags for i in range(HOT_KEYS_PER_SLOT)]
        counters = names(some(moving, COUNTERS // 2), 1, "ctr")
        counters += names(some(staying, COUNTERS // 2), 1, "ctr")
        tags = names(some(moving, GROUPS * 2 // 3), 1, "tag")
        tags += names(some(staying, GROUPS // 3), 1, "tag")
        groups = [tuple(f"{{{tag}}}:{part}" for part in "abc") for tag in tags]
        groups += [tuple(f"{{{tag}}}:g{j}:{part}" for part in "abc")
                   for tag in hot_tags for j in range(HOT_GROUPS_PER_SLOT)]
        keys += [k for group in groups for k in group]
        rng.shuffle(keys)
        ledger = Ledger(acked={k: 0 for k in keys})
        ledger.incr_acked.update({k: 0 for k in counters})
        ledger.groups = groups
        slots = SlotMap(self.cluster)
        for node, group in slots.group(keys).items():
            with self.cluster.client(node) as direct:
                for start in range(0, len(group), 2000):
                    with direct.pipeline(transaction=False) as pipe:
                        for key in group[start:start + 2000]:
                            pipe.set(key, 0)
                        pipe.execute()
        return ledger

    # ---- load --------------------------------------------------------------------------------

    def _start_load(self, ledger: Ledger, recorder: LoadRecorder, stop: threading.Event
                    ) -> list[threading.Thread]:
        grouped = {k for group in ledger.groups for k in group}
        keys = [k for k in ledger.acked if k not in grouped]
        counters = list(ledger.incr_acked)
        parts = [keys[i::3] for i in range(3)]
        jobs = [
            ("writer-single", lambda: self._write_single(parts[0], ledger, recorder, stop)),
            ("writer-pipe", lambda: self._write_pipelined(parts[1], ledger, recorder, stop)),
            ("writer-pipe2", lambda: self._write_pipelined(parts[2], ledger, recorder, stop)),
            ("incr", lambda: self._incr(counters, ledger, recorder, stop)),
            ("multikey", lambda: self._multikey(ledger, recorder, stop)),
            ("reader", lambda: self._read(keys, ledger, recorder, stop)),
        ]
        threads = [threading.Thread(target=job, name=name, daemon=True) for name, job in jobs]
        for t in threads:
            t.start()
        return threads

    def _client(self) -> redis.Redis:
        return self.proxy.client(socket_timeout=CLIENT_SOCKET_TIMEOUT_S)

    @staticmethod
    def _running(stop: threading.Event, started: float) -> bool:
        return not stop.is_set() and time.monotonic() - started < LOAD_CAP_S

    def _write_single(self, keys: list[str], ledger: Ledger, rec: LoadRecorder,
                      stop: threading.Event) -> None:
        started, i = time.monotonic(), 0
        with self._client() as client:
            while self._running(stop, started):
                key = keys[i % len(keys)]
                value = ledger.acked[key] + 1 + len(ledger.uncertain[key])
                i += 1
                try:
                    client.set(key, value)
                    ledger.acked[key] = value
                    ledger.uncertain[key].clear()
                    rec.ops["set"] += 1
                except redis.RedisError as e:
                    ledger.uncertain[key].add(value)
                    rec.error("writer-single", key, e)
                    client = self._reconnect_if_needed(client, e)

    def _write_pipelined(self, keys: list[str], ledger: Ledger, rec: LoadRecorder,
                         stop: threading.Event, batch: int = 50) -> None:
        started, i = time.monotonic(), 0
        with self._client() as client:
            while self._running(stop, started):
                chunk = [keys[(i + j) % len(keys)] for j in range(batch)]
                i += batch
                values = {k: ledger.acked[k] + 1 + len(ledger.uncertain[k]) for k in chunk}
                try:
                    with client.pipeline(transaction=False) as pipe:
                        for key in chunk:
                            pipe.set(key, values[key])
                        replies = pipe.execute(raise_on_error=False)
                except redis.RedisError as e:  # the connection failed: nothing is known
                    for key in chunk:
                        ledger.uncertain[key].add(values[key])
                    rec.error("writer-pipe", chunk[0], e)
                    client = self._reconnect_if_needed(client, e)
                    continue
                for key, reply in zip(chunk, replies):
                    if isinstance(reply, Exception):
                        ledger.uncertain[key].add(values[key])
                        rec.error("writer-pipe", key, reply)
                    else:
                        ledger.acked[key] = values[key]
                        ledger.uncertain[key].clear()
                rec.ops["pipelined set"] += len(chunk)

    def _incr(self, counters: list[str], ledger: Ledger, rec: LoadRecorder,
              stop: threading.Event) -> None:
        started, i = time.monotonic(), 0
        with self._client() as client:
            while self._running(stop, started):
                key = counters[i % len(counters)]
                i += 1
                try:
                    got = client.incr(key)
                except redis.RedisError as e:
                    ledger.incr_uncertain[key] += 1
                    rec.error("incr", key, e)
                    client = self._reconnect_if_needed(client, e)
                    continue
                ledger.incr_acked[key] += 1
                want = ledger.incr_acked[key]
                if not want <= got <= want + ledger.incr_uncertain[key]:
                    with rec.lock:
                        rec.stale.append((key, got, want))
                rec.ops["incr"] += 1

    def _multikey(self, ledger: Ledger, rec: LoadRecorder, stop: threading.Event) -> None:
        """MSET then MGET of three keys sharing a slot: during a migration a node answers
        TRYAGAIN while the keys are split between source and target; the proxy must retry."""
        started, i = time.monotonic(), 0
        with self._client() as client:
            while self._running(stop, started):
                group = ledger.groups[i % len(ledger.groups)]
                i += 1
                value = max(ledger.acked[k] + 1 + len(ledger.uncertain[k]) for k in group)
                try:
                    client.mset({k: value for k in group})
                except redis.RedisError as e:
                    for key in group:
                        ledger.uncertain[key].add(value)
                    rec.error("multikey", group[0], e)
                    client = self._reconnect_if_needed(client, e)
                    continue
                for key in group:
                    ledger.acked[key] = value
                    ledger.uncertain[key].clear()
                try:
                    got = client.mget(group)
                except redis.RedisError as e:
                    rec.error("multikey", group[0], e)
                    client = self._reconnect_if_needed(client, e)
                    continue
                if got != [str(value)] * 3:
                    with rec.lock:
                        rec.stale.append((group[0], got, value))
                rec.ops["mset+mget"] += 1

    def _read(self, keys: list[str], ledger: Ledger, rec: LoadRecorder,
              stop: threading.Event) -> None:
        started = time.monotonic()
        rng = random.Random(7)
        with self._client() as client:
            while self._running(stop, started):
                chunk = rng.sample(keys, 20)
                floor = {k: ledger.acked[k] for k in chunk}  # acknowledged before the read
                try:
                    with client.pipeline(transaction=False) as pipe:
                        for key in chunk:
                            pipe.get(key)
                        replies = pipe.execute(raise_on_error=False)
                except redis.RedisError as e:
                    rec.error("reader", chunk[0], e)
                    client = self._reconnect_if_needed(client, e)
                    continue
                for key, reply in zip(chunk, replies):
                    if isinstance(reply, Exception):
                        rec.error("reader", key, reply)
                    elif reply is None or int(reply) < floor[key]:
                        with rec.lock:
                            rec.stale.append((key, reply, floor[key]))
                rec.ops["get"] += len(chunk)

    def _reconnect_if_needed(self, client: redis.Redis, e: BaseException) -> redis.Redis:
        if isinstance(e, (redis.ConnectionError, redis.TimeoutError)):
            client.close()  # the pool reconnects on the next command
        return client

    # ---- the reshard and the final check -----------------------------------------------------

    def _reshard(self, src: Node, dst: Node) -> subprocess.CompletedProcess:
        c = self.cluster
        argv = ["redis-cli", "--cluster", "reshard", src.address,
                "--cluster-from", c.node_id(src), "--cluster-to", c.node_id(dst),
                "--cluster-slots", str(SLOTS_TO_MOVE), "--cluster-yes",
                "--cluster-pipeline", "20"]
        return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=RESHARD_TIMEOUT_S)

    def _check_final_values(self, ledger: Ledger, slots: SlotMap) -> None:
        keys = list(ledger.acked) + list(ledger.incr_acked)
        with self._client() as client:
            via_proxy: dict[str, Optional[str]] = {}
            for start in range(0, len(keys), 1000):
                with client.pipeline(transaction=False) as pipe:
                    for key in keys[start:start + 1000]:
                        pipe.get(key)
                    via_proxy.update(zip(keys[start:start + 1000], pipe.execute()))
        direct: dict[str, Optional[str]] = {}
        for node, group in slots.group(keys).items():
            with self.cluster.client(node) as at_node:
                with at_node.pipeline(transaction=False) as pipe:
                    for key in group:
                        pipe.get(key)
                    direct.update(zip(group, pipe.execute()))
        lost, ambiguous = [], 0
        for key, acked in ledger.acked.items():
            got = int(via_proxy[key]) if via_proxy[key] is not None else None
            if got != acked:
                if got in ledger.uncertain[key]:
                    ambiguous += 1  # a write whose request failed was applied after all
                else:
                    lost.append((key, got, acked))
        for key, acked in ledger.incr_acked.items():
            got = int(via_proxy[key] or 0)
            if not acked <= got <= acked + ledger.incr_uncertain[key]:
                lost.append((key, got, acked))
        self.assertEqual(lost[:10], [], f"{len(lost)} acknowledged writes lost or duplicated "
                                        f"({ambiguous} unacknowledged writes applied)")
        differ = [k for k in keys if via_proxy[k] != direct[k]]
        self.assertEqual(differ[:10], [], "proxy and owning node disagree")


if __name__ == "__main__":
    unittest.main()
