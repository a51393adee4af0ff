"""Shared helpers for the watcher's end-to-end tests (test_watcher*.py): proxies with the watcher
on, the admin JSON and metrics, bounded client traffic through the proxy, and the end checks a
repair must pass (redis-cli --cluster check clean, one owner in every view, keys only on the
owner with their latest values, nothing evicted).

Only the standard library, redis-py and harness.py. Every wait is bounded.
"""

from __future__ import annotations

import atexit
import http.client
import json
import re
import shutil
import tempfile
import threading
import time
import unittest
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import redis

import harness
from harness import HOST, Proxy, RedisCluster

TOKEN = "watcher-e2e-token"
STALL_TIMEOUT = "2s"
CONTROL_SLOT = harness.key_slot("{mwatch}")  # the lease's hash tag: never a test slot


def token_file() -> str:
    """A file holding TOKEN (mode 0600), for --admin-token-file; removed when the process exits."""
    folder = tempfile.mkdtemp(prefix="slotpilot-watcher-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    path = Path(folder) / "token"
    path.write_text(TOKEN + "\n")
    path.chmod(0o600)
    return str(path)


_TOKEN_FILE: Optional[str] = None


def watcher_proxy(cluster: RedisCluster, mode: str, sidecar: str, *extra: str,
                  start: bool = True) -> Proxy:
    """A slotpilot with the watcher in `mode`, a short stall timeout, loop-policy hold (held
    requests wait long enough for a repair) and the admin token."""
    global _TOKEN_FILE
    if _TOKEN_FILE is None:
        _TOKEN_FILE = token_file()
    args = [f"--watcher={mode}", f"--stall-timeout={STALL_TIMEOUT}", f"--sidecar-id={sidecar}",
            "--loop-policy=hold", "--loop-hold-timeout=60s", "--request-timeout=60s", f"--admin-token-file={_TOKEN_FILE}",
            *extra]
    proxy = Proxy(cluster, extra_args=args)
    return proxy.start() if start else proxy


# ---- admin ---------------------------------------------------------------------------------


def admin(proxy: Proxy, method: str, path: str, token: bool = False,
          timeout: float = 10.0) -> tuple[int, Any]:
    """(status, parsed JSON or text) of one admin request."""
    conn = http.client.HTTPConnection(HOST, proxy.admin_port, timeout=timeout)
    try:
        headers = {"Authorization": f"Bearer {TOKEN}"} if token else {}
        conn.request(method, path, headers=headers)
        resp = conn.getresponse()
        body = resp.read().decode()
    finally:
        conn.close()
    try:
        return resp.status, json.loads(body)
    except ValueError:
        return resp.status, body


def migrations(proxy: Proxy) -> dict[int, dict]:
    """GET /v1/migrations as {slot: entry}."""
    status, body = admin(proxy, "GET", "/v1/migrations")
    if status != 200:
        raise AssertionError(f"GET /v1/migrations: {status} {body}")
    return {m["slot"]: m for m in body["migrations"]}


def wait_entry(proxy: Proxy, slot: int, pred: Callable[[dict], bool], timeout: float,
               what: str) -> dict:
    """Polls /v1/migrations until slot's entry satisfies pred; returns it."""
    last: list[Optional[dict]] = [None]

    def check() -> Optional[dict]:
        entry = migrations(proxy).get(slot)
        last[0] = entry
        return entry if entry is not None and pred(entry) else None

    try:
        return harness.wait_for(check, timeout, what, interval=0.2)
    except harness.HarnessTimeout as e:
        raise AssertionError(f"{e}; last entry: {json.dumps(last[0], indent=1)}\n"
                             f"proxy log tail:\n{proxy.log()[-4000:]}") from None


def wait_stuck(proxy: Proxy, slot: int, signature: str, plan_kind: str,
               timeout: float = 20.0) -> dict:
    return wait_entry(proxy, slot, lambda e: e["verdict"] == "stuck"
                      and e["signature"] == signature and e["plan_kind"] == plan_kind,
                      timeout, f"slot {slot} stuck as {signature} with plan {plan_kind}")


def wait_repaired(proxy: Proxy, slot: int, timeout: float = 30.0) -> dict:
    """Until the slot's entry says a finish ran to 'done' and the slot is stable again."""
    return wait_entry(proxy, slot, lambda e: e["repair_generation"] >= 1
                      and e["signature"] == "stable" and " done" in e["action"],
                      timeout, f"slot {slot} repaired")


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$')


def metric(proxy: Proxy, name: str, **labels: str) -> float:
    """One sample of /metrics (0 when absent)."""
    status, body = admin(proxy, "GET", "/metrics")
    if status != 200:
        raise AssertionError(f"GET /metrics: {status}")
    want = {f'{k}="{v}"' for k, v in labels.items()}
    for line in body.splitlines():
        m = _SAMPLE.match(line)
        if m and m.group(1) == name and want <= set((m.group(2) or "").split(",")):
            return float(m.group(3))
    return 0.0


def finisher_steps(proxy: Proxy, slot: int) -> list[str]:
    """The finisher's mutating steps for slot in the proxy's audit log (the checks --
    preflight, commit-verify, verify -- carry no action= field)."""
    pat = re.compile(rf"component=finisher event=step slot={slot} step=(\S+) action=")
    return [m.group(1) for m in pat.finditer(proxy.log())]


def repair_ends(proxy: Proxy, slot: int) -> list[str]:
    """The watcher's repair_end audit lines for slot ("result=... mutated=..." parts)."""
    pat = re.compile(rf"component=watcher event=repair_end slot={slot} (.*)")
    return [m.group(1) for m in pat.finditer(proxy.log())]


# ---- cluster state -------------------------------------------------------------------------


def other_masters(cluster: RedisCluster, node: harness.Node) -> list[harness.Node]:
    return [m for m in cluster.masters() if m != node]


def slot_of(cluster: RedisCluster, owner: harness.Node, index: int) -> int:
    """The index-th slot owned by `owner` after its first 100, skipping the control slot."""
    first = cluster.slots_of(owner)[0][0]
    slot = first + 100 + index
    return slot + 1 if slot == CONTROL_SLOT else slot


def write_keys(cluster: RedisCluster, node: harness.Node, keys: Sequence[str], value: str,
               asking: bool = False) -> dict[str, str]:
    """SET each key on `node` (after ASKING when the node imports the slot); returns values."""
    c = cluster.client(node)
    try:
        for k in keys:
            if asking:
                c.execute_command("ASKING")
            c.set(k, f"{value}:{k}")
    finally:
        c.close()
    return {k: f"{value}:{k}" for k in keys}


def evicted(cluster: RedisCluster) -> int:
    return sum(int(cluster.execute(m, "INFO", "stats")["evicted_keys"]) for m in cluster.masters())


def assert_clean(test: Any, cluster: RedisCluster, slot: int, owner: harness.Node,
                 expected: dict[str, str], proxy: Optional[Proxy] = None) -> None:
    """After a repair: check is clean, every master says `owner`, the slot's keys are exactly
    `expected` and only on `owner`, values match (on the node and through the proxy)."""
    harness.wait_for(lambda: all(o == owner for o in cluster.slot_owner_views(slot).values()),
                     10.0, f"every master to say {owner} owns slot {slot}")
    result = [(1, "")]

    def check_passes() -> bool:  # gossip may still be spreading the new owner's epoch
        result[0] = cluster.check()
        return result[0][0] == 0

    try:
        harness.wait_for(check_passes, 10.0, "redis-cli --cluster check to pass", interval=0.5)
    except harness.HarnessTimeout:
        pass
    code, out = result[0]
    test.assertEqual(code, 0, out)
    test.assertIn("[OK] All 16384 slots covered", out)
    test.assertIn("[OK] All nodes agree about slots configuration", out)
    for m in cluster.masters():
        n = cluster.count_keys_in_slot(slot, m)
        if m == owner:
            test.assertEqual(n, len(expected), f"keys of slot {slot} on owner {m}")
            names = set(cluster.keys_in_slot(slot, m, count=len(expected) + 10))
            test.assertEqual(names, set(expected), f"key names of slot {slot} on {m}")
        else:
            test.assertEqual(n, 0, f"slot {slot}: {n} keys left on non-owner {m}")
    c = cluster.client(owner)
    try:
        got = dict(zip(expected, c.mget(list(expected)))) if expected else {}
    finally:
        c.close()
    test.assertEqual(got, expected, f"values of slot {slot} on the owner")
    if proxy is not None and expected:
        some = list(expected)[:50]
        want = [expected[k] for k in some]
        with proxy.client() as pc:  # the proxy's map may trail a repair by one refresh
            got = harness.wait_for(lambda: (lambda v: v if v == want else None)(
                [pc.get(k) for k in some]), 5.0, "the proxy to serve the repaired slot")
        test.assertEqual(got, want)


class Traffic:
    """A bounded GET/SET loop through a proxy on some keys, in a thread. Records the last value
    acknowledged for each key and every error a client saw."""

    def __init__(self, proxy: Proxy, keys: Sequence[str], max_ops: int = 20000,
                 max_seconds: float = 90.0, pause: float = 0.002) -> None:
        self.proxy = proxy
        self.keys = list(keys)
        self.max_ops = max_ops
        self.max_seconds = max_seconds
        self.pause = pause
        self.written: dict[str, str] = {}
        self.errors: list[str] = []
        self.ops = 0
        self.stale_reads: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Traffic:
        self._thread.start()
        return self

    def _run(self) -> None:
        client = self.proxy.client(socket_timeout=70.0)  # > loop-hold-timeout
        deadline = time.monotonic() + self.max_seconds
        try:
            while (not self._stop.is_set() and self.ops < self.max_ops
                   and time.monotonic() < deadline):
                key = self.keys[self.ops % len(self.keys)]
                try:
                    if self.ops % 2 == 0:
                        value = f"live:{self.ops}:{key}"
                        client.set(key, value)
                        self.written[key] = value
                    else:
                        got = client.get(key)
                        if key in self.written and got != self.written[key]:
                            self.stale_reads.append(f"{key}: {got!r} != {self.written[key]!r}")
                except redis.exceptions.RedisError as e:  # noqa: PERF203
                    self.errors.append(f"op {self.ops} on {key}: {e!r}")
                    if len(self.errors) > 100:
                        break
                self.ops += 1
                time.sleep(self.pause)
        finally:
            client.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=80.0)
        if self._thread.is_alive():
            raise AssertionError("traffic thread did not stop")


class ScenarioCase(unittest.TestCase):
    """One cluster per class; each test builds a stuck state on its own slot of A, then runs
    observe() and finish(). Subclass it through the module (`watcher_support.ScenarioCase`), so
    that unittest does not collect this base as a test class of its own."""
    cluster: RedisCluster

    @classmethod
    def setUpClass(cls) -> None:
        cls.cluster = RedisCluster(masters=3).start()
        cls.a, cls.b, cls.c = cls.cluster.masters()
        cls.next_index = 0

    @classmethod
    def tearDownClass(cls) -> None:
        cls.cluster.stop()

    def setUp(self) -> None:
        type(self).next_index += 1
        self.slot = slot_of(self.cluster, self.a, self.next_index)
        self.evicted_before = evicted(self.cluster)

    # ---- helpers ---------------------------------------------------------------------------

    def keys(self, count: int, prefix: str = "k") -> list[str]:
        return harness.keys_for_slot(self.slot, count, prefix)

    def state(self) -> list[tuple]:
        """Every master's own markers and key count for the slot, and its view of the owner."""
        out = []
        for m in self.cluster.masters():
            me = self.cluster.myself(m)
            owner = self.cluster.node_for_slot(self.slot, view=m)
            out.append((m.port, me.migrating.get(self.slot), me.importing.get(self.slot),
                        self.cluster.count_keys_in_slot(self.slot, m),
                        owner.port if owner else None))
        return out

    def observe(self, signature: str, plan_kind: str) -> dict:
        """Observe mode: the stuck verdict with the plan, and no change to the cluster."""
        before = self.state()
        proxy = watcher_proxy(self.cluster, "observe", f"obs-{self.slot}")
        try:
            entry = wait_stuck(proxy, self.slot, signature, plan_kind)
            self.assertTrue(entry["repairable"], entry)
            self.assertTrue(entry["plan"], entry)
            self.assertTrue(entry["action"].startswith("would run: 1) "), entry["action"])
            self.assertEqual(entry["lease_holder"], "")
            self.assertEqual(finisher_steps(proxy, self.slot), [])
            self.assertEqual(metric(proxy, "slotpilot_watcher_actions_total", outcome="started"), 0)
            self.assertGreaterEqual(metric(proxy, "slotpilot_watcher_stuck_slots"), 1)
            status, cluster_json = admin(proxy, "GET", "/v1/cluster")
            self.assertEqual(status, 200)
            self.assertIn(self.slot, [s["slot"] for s in cluster_json["stuck"]])
        finally:
            proxy.stop()
        self.assertEqual(self.state(), before, "observe mode changed the cluster")
        return entry

    def finish(self, owner: harness.Node, expected: dict[str, str],
               live_keys: Optional[list[str]] = None, traffic: bool = True) -> dict:
        """Finish mode with traffic on the slot; then every end check."""
        proxy = watcher_proxy(self.cluster, "finish", f"fin-{self.slot}")
        load = Traffic(proxy, (live_keys or []) + list(expected)[:20]).start() if traffic else None
        try:
            entry = wait_repaired(proxy, self.slot)
            if load is not None:
                load.stop()
                self.assertEqual(load.errors, [], "a client saw an error during the repair")
                self.assertEqual(load.stale_reads, [])
                self.assertGreater(load.ops, 0)
                expected = {**expected, **load.written}
            self.assertGreaterEqual(
                metric(proxy, "slotpilot_watcher_actions_total", outcome="succeeded"), 1)
            self.assertTrue(finisher_steps(proxy, self.slot), "no audit trail")
            assert_clean(self, self.cluster, self.slot, owner, expected, proxy)
            self.assertEqual(evicted(self.cluster), self.evicted_before, "keys were evicted")
        finally:
            if load is not None:
                load.stop()
            proxy.stop()
        return entry

    def fill(self, count: int, value: str = "v") -> dict[str, str]:
        return write_keys(self.cluster, self.a, self.keys(count), value)
