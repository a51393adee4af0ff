#!/usr/bin/python3
"""Watcher repair bench: slotpilot's finisher versus `redis-cli --cluster fix`, side by side.

For each workload, the same stuck state is built twice on a fresh 3-master cluster (redis-server
7.0, harness.py's ports and locks) and repaired once by a slotpilot in finish mode and once by
`redis-cli --cluster fix --cluster-yes`:

  * small: one slot with N small keys (default 200k, 16-byte values), A MIGRATING -> B and
    B IMPORTING <- A, no key moved yet. This is redis-cli's "Case 1" (forward move), so both
    tools do the same work: move every key A -> B, then SETSLOT NODE.
  * big:   the same with one 100 MB string.

Reported per run: the repair time (slotpilot: from its finisher's first to last audit line, so
detection time -- the stall timeout -- is excluded and reported apart; redis-cli: the command's
wall time), keys on the target afterwards, `--cluster check` verdict, and the source node's
latency while the repair ran (a PING every 10 ms from a probe thread: p50 / p99 / max, and the
number of PINGs that took > 100 ms).

Not under CTest. Bounded: every wait and subprocess has a timeout. Usage:

    cmake -S . -B build/h-watch-rel -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSLOTPILOT_TESTS=OFF
    cmake --build build/h-watch-rel --target slotpilot
    /usr/bin/python3 bench/watcher_bench.py --binary build/h-watch-rel/proxy/slotpilot \
        [--keys 200000] [--big-mb 100] [--rounds 1] [--pipeline 10]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))

import harness  # noqa: E402
from harness import Proxy, RedisCluster  # noqa: E402

NODE_TIMEOUT_MS = 15000  # redis' default; the finisher refuses keys blocking > 1/4 of it
RUN_TIMEOUT_S = 600


class LatencyProbe:
    """PINGs one node every 10 ms from a thread; keeps each round trip (bounded count)."""

    def __init__(self, node: harness.Node, max_samples: int = 200_000) -> None:
        self.node = node
        self.samples: list[tuple[float, float]] = []  # (epoch s, rtt ms)
        self.max_samples = max_samples
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> LatencyProbe:
        self._thread.start()
        return self

    def _run(self) -> None:
        import redis
        c = redis.Redis(host=self.node.host, port=self.node.port, socket_timeout=120)
        try:
            while not self._stop.is_set() and len(self.samples) < self.max_samples:
                t0 = time.perf_counter()
                c.ping()
                self.samples.append((time.time(), (time.perf_counter() - t0) * 1000))
                time.sleep(0.01)
        finally:
            c.close()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=150)

    def summary(self, start: float = 0.0, end: float = float("inf")) -> str:
        """Round trips of PINGs sent within [start, end] (epoch seconds)."""
        s = sorted(rtt for t, rtt in self.samples if start - 0.05 <= t <= end + 0.05)
        if not s:
            return "no samples"
        p = lambda q: s[min(len(s) - 1, int(q * len(s)))]  # noqa: E731
        slow = sum(1 for x in s if x > 100)
        return (f"PING n={len(s)} p50={p(0.5):.2f} ms p99={p(0.99):.2f} ms max={s[-1]:.1f} ms "
                f">100ms={slow}")


def build_state(cluster: RedisCluster, kind: str, keys: int, big_mb: int) -> tuple:
    """Opens a slot of A towards B with every key still on A. Returns (slot, A, B, key count)."""
    a, b = cluster.masters()[0], cluster.masters()[1]
    slot = cluster.slots_of(a)[0][0] + 77
    c = cluster.client(a)
    try:
        if kind == "small":
            names = harness.keys_for_slot(slot, keys, "k")
            for i in range(0, keys, 5000):
                with c.pipeline(transaction=False) as pipe:
                    for k in names[i:i + 5000]:
                        pipe.set(k, "v" * 16)
                    pipe.execute()
            count = keys
        else:
            c.set(harness.keys_for_slot(slot, 1, "big")[0], b"B" * (big_mb << 20))
            count = 1
    finally:
        c.close()
    cluster.open_slot(slot, a, b)
    return slot, a, b, count


def audit_times(log: str, slot: int) -> tuple[float, float]:
    """First and last finisher audit timestamps for slot (seconds since the epoch)."""
    stamps = re.findall(rf"^(\S+) I \[\d+\] audit component=finisher event=\S+ slot={slot} ",
                        log, flags=re.M)
    if not stamps:
        raise RuntimeError("no finisher audit lines: the watcher never acted")
    parse = lambda t: datetime.fromisoformat(t).timestamp()  # noqa: E731
    return parse(stamps[0]), parse(stamps[-1])


def run_watcher(binary: str, kind: str, keys: int, big_mb: int) -> dict:
    with RedisCluster(masters=3, node_timeout_ms=NODE_TIMEOUT_MS) as cluster:
        slot, a, b, count = build_state(cluster, kind, keys, big_mb)
        t0 = time.monotonic()
        with LatencyProbe(a) as probe:
            proxy = Proxy(cluster, binary=binary, extra_args=[
                "--watcher=finish", "--stall-timeout=1s", "--sidecar-id=bench"]).start()
            try:
                harness.wait_for(lambda: "event=end slot=%d " % slot in proxy.log(),
                                 RUN_TIMEOUT_S, "the finisher to end", interval=0.05)
                wall = time.monotonic() - t0
                log = proxy.log()
            finally:
                proxy.stop()
        first, last = audit_times(log, slot)
        end = re.search(rf"event=end slot={slot} .*", log).group(0)
        code, _ = cluster.check()
        return {"tool": "slotpilot", "repair_s": last - first, "wall_s": wall,
                "target_keys": cluster.count_keys_in_slot(slot, b), "expected": count,
                "check": code, "latency": probe.summary(first, last), "end": end[:160]}


def run_fix(kind: str, keys: int, big_mb: int, pipeline: int) -> dict:
    with RedisCluster(masters=3, node_timeout_ms=NODE_TIMEOUT_MS) as cluster:
        slot, a, b, count = build_state(cluster, kind, keys, big_mb)
        argv = ["redis-cli", "--cluster", "fix", a.address, "--cluster-yes",
                "--cluster-pipeline", str(pipeline)]
        with LatencyProbe(a) as probe:
            t0 = time.monotonic()
            done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                  timeout=RUN_TIMEOUT_S)
            wall = time.monotonic() - t0
        code, _ = cluster.check()
        owner = cluster.node_for_slot(slot)
        return {"tool": f"redis-cli fix (pipeline {pipeline})", "repair_s": wall, "wall_s": wall,
                "target_keys": cluster.count_keys_in_slot(slot, b), "expected": count,
                "check": code, "latency": probe.summary(), "exit": done.returncode,
                "owner_is_target": owner == b}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=str(REPO / "build" / "h-watch-rel" / "proxy" / "slotpilot"))
    ap.add_argument("--keys", type=int, default=200_000)
    ap.add_argument("--big-mb", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--pipeline", type=int, default=10, help="redis-cli --cluster-pipeline")
    ap.add_argument("--only", choices=["small", "big"], default=None)
    args = ap.parse_args()
    args.binary = os.path.abspath(args.binary)
    if not os.access(args.binary, os.X_OK):
        sys.exit(f"no slotpilot binary at {args.binary}")
    with open("/proc/loadavg") as f:
        print(f"load average at start: {f.read().split()[:3]}")
    results: dict[tuple, list] = {}
    for rnd in range(args.rounds):
        for kind in ([args.only] if args.only else ["small", "big"]):
            # Alternate which tool goes first so slow drifts in machine load hit both.
            order = ["watcher", "fix"] if rnd % 2 == 0 else ["fix", "watcher"]
            for tool in order:
                r = (run_watcher(args.binary, kind, args.keys, args.big_mb) if tool == "watcher"
                     else run_fix(kind, args.keys, args.big_mb, args.pipeline))
                results.setdefault((kind, r["tool"]), []).append(r)
                print(f"round {rnd} {kind:5} {r['tool']:26} repair {r['repair_s']:7.2f} s "
                      f"(wall {r['wall_s']:.2f} s) target keys {r['target_keys']}/{r['expected']} "
                      f"check={'clean' if r['check'] == 0 else 'NOT CLEAN'} "
                      f"{'exit=%s ' % r['exit'] if 'exit' in r else ''}source {r['latency']}",
                      flush=True)
    print("\nmedian repair seconds:")
    for (kind, tool), rs in results.items():
        print(f"  {kind:5} {tool:26} {statistics.median(r['repair_s'] for r in rs):7.2f} s")
    with open("/proc/loadavg") as f:
        print(f"load average at end: {f.read().split()[:3]}")


if __name__ == "__main__":
    main()
