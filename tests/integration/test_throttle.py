"""Migration-aware throttling on a real 3-master cluster.

A slot is kept in flight from S to D (IMPORTING/MIGRATING set by the test, a few keys moved now
and then) while redis-benchmark drives load through the proxy at keys on all three masters. The
proxy runs --throttle=node --throttle-rate=BUDGET:

  * once the watcher has seen the open slot, the client request rate reaching S (INFO
    commandstats deltas of SET + RPUSH on S itself) stays within +-10% of the budget;
  * the other masters' benchmarks keep their throughput and p99 (compared with a run side by side
    before the migration);
  * an ordered stream of RPUSHes to S during the throttle arrives complete and in order, and the
    proxy rejected nothing;
  * /v1/migrations and /metrics show S's budget and rate;
  * once the slot is finished, the throttle lifts within about one watcher poll interval (fast
    interval 1 s, jittered) and S's rate recovers.
Every load is bounded in requests and time.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import threading
import time
import unittest
import urllib.request

from harness import HOST, Proxy, RedisCluster, hashtag_for_slot, wait_for

BUDGET = 800          # ops/s for S across the proxy
CLIENTS = 16          # per benchmark
MEASURE_S = 4.0


def bench(port: int, tag: str, requests: int, cmd: str = "SET") -> subprocess.Popen:
    """redis-benchmark through the proxy at keys {tag}:N; bounded by -n and the caller's timeout."""
    argv = ["redis-benchmark", "-h", HOST, "-p", str(port), "-c", str(CLIENTS), "-n", str(requests),
            "-r", "10000", "--csv"]
    argv += [cmd, f"{{{tag}}}:__rand_int__"] + (["v"] if cmd == "SET" else [])
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def bench_result(proc: subprocess.Popen, timeout: float = 90.0) -> dict:
    out, _ = proc.communicate(timeout=timeout)
    rows = list(csv.reader(io.StringIO(out)))
    header, values = rows[0], rows[-1]
    return {k: float(v) if k != "test" else v for k, v in zip(header, values)}


class ThrottleTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.cluster = RedisCluster(masters=3).start()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.cluster.stop()

    def client_calls(self, node) -> int:
        """Commands S ran for clients of the proxy: the benchmark's SETs and the ordered RPUSHes
        (the watcher's and the test's own commands are other commands)."""
        stats = self.cluster.client(node).info("commandstats")
        return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("set", "rpush"))

    def rate_on(self, node, seconds: float) -> float:
        before = self.client_calls(node)
        start = time.monotonic()
        time.sleep(seconds)
        return (self.client_calls(node) - before) / (time.monotonic() - start)

    def admin(self, proxy: Proxy, path: str) -> str:
        with urllib.request.urlopen(f"http://{proxy.admin_address}{path}", timeout=5) as r:
            return r.read().decode()

    def throttled_nodes(self, proxy: Proxy) -> list:
        return json.loads(self.admin(proxy, "/v1/migrations")).get("throttled_nodes", [])

    def test_throttle_holds_the_budget_and_lifts_when_the_migration_ends(self) -> None:
        c = self.cluster
        masters = c.masters()
        src, dst, third = masters[0], masters[1], masters[2]
        first_src_slot = c.slots_of(src)[0][0]
        slot = first_src_slot + 10             # migrates S -> D
        src_tag = hashtag_for_slot(first_src_slot + 20)  # load on S, outside the migrating slot
        dst_tag = hashtag_for_slot(c.slots_of(dst)[0][0] + 20)
        third_tag = hashtag_for_slot(c.slots_of(third)[0][0] + 20)
        c.fill_slot(slot, 300, prefix="mig")
        args = ["--throttle=node", f"--throttle-rate={BUDGET}", "--throttle-burst=50ms",
                "--throttle-max-delay=2s"]
        with Proxy(c, extra_args=args, threads=1) as proxy:
            # Baseline, side by side: all three loads, nothing migrating.
            loads = [bench(proxy.port, t, 20000) for t in (src_tag, dst_tag, third_tag)]
            base = [bench_result(p) for p in loads]
            self.assertGreater(base[0]["rps"], 2 * BUDGET, "S load must exceed the budget")

            # Keep a migration in flight: open, then move a few keys every half second.
            c.open_slot(slot, src, dst)
            stop = threading.Event()

            def migrate_slowly() -> None:
                for _ in range(400):  # bounded: 200 s at most
                    if stop.wait(0.5):
                        return
                    c.migrate_keys(src, dst, slot, 2, batch=2)

            mover = threading.Thread(target=migrate_slowly, daemon=True)
            mover.start()
            try:
                nodes = wait_for(lambda: self.throttled_nodes(proxy), 20, "the throttle on S")
                self.assertEqual(nodes[0]["node"], src.address)
                self.assertAlmostEqual(nodes[0]["budget_ops"], BUDGET, delta=1)
                self.assertIn(slot, nodes[0]["slots"])

                s_load = bench(proxy.port, src_tag, 40000)
                others = [bench(proxy.port, t, 20000) for t in (dst_tag, third_tag)]
                ordered = self.ordered_pushes(proxy, src_tag)
                time.sleep(1.0)  # the burst is spent, the benchmark is steady
                rate = self.rate_on(src, MEASURE_S)
                self.assertGreater(rate, BUDGET * 0.9, f"S got {rate:.0f} ops/s")
                self.assertLess(rate, BUDGET * 1.1, f"S got {rate:.0f} ops/s")
                after = [bench_result(p) for p in others]
                print(f"\nS rate {rate:.0f}/s (budget {BUDGET}); baseline S {base[0]['rps']:.0f}/s; "
                      f"others before {[(b['rps'], b['p99_latency_ms']) for b in base[1:]]} "
                      f"during {[(a['rps'], a['p99_latency_ms']) for a in after]}", file=sys.stderr)
                ordered.join(timeout=60)
                self.assertFalse(ordered.is_alive())
                self.assertEqual(ordered.result, [str(i) for i in range(300)])
                for b, a in zip(base[1:], after):
                    self.assertGreater(a["rps"], 0.7 * b["rps"], f"other master slowed: {b} -> {a}")
                    self.assertLess(a["p99_latency_ms"], 2 * b["p99_latency_ms"] + 5,
                                    f"other master's p99 grew: {b} -> {a}")
                metrics = self.admin(proxy, "/metrics")
                self.assertIn(f'slotpilot_throttle_budget_ops{{node="{src.address}"}} {BUDGET}', metrics)
                self.assertIn("slotpilot_throttled_nodes 1", metrics)
            finally:
                stop.set()
                mover.join(timeout=30)

            # End the migration; the throttle lifts within about one poll interval.
            c.migrate_keys(src, dst, slot, 1000)
            c.finish_slot(slot, dst)
            ended = time.monotonic()
            wait_for(lambda: not self.throttled_nodes(proxy), 10, "the throttle to lift")
            lifted_after = time.monotonic() - ended
            self.assertLess(lifted_after, 2.5, "throttle lifted later than one poll interval")
            recovered = self.rate_on(src, 0.5)
            print(f"lifted {lifted_after:.2f} s after the end; S rate then {recovered:.0f}/s",
                  file=sys.stderr)
            self.assertGreater(recovered, 1.5 * BUDGET, f"S rate after the end: {recovered:.0f}")
            bench_result(s_load)
            self.assertIn("slotpilot_throttle_rejections_total 0", self.admin(proxy, "/metrics"))

    def ordered_pushes(self, proxy: Proxy, tag: str) -> threading.Thread:
        """300 RPUSHes to S in pipelines of 30 on one connection; the list must read back in order."""
        def run() -> None:
            with proxy.client(socket_timeout=30) as r:
                key = f"{{{tag}}}:ordered"
                r.delete(key)
                for start in range(0, 300, 30):
                    p = r.pipeline(transaction=False)
                    for i in range(start, start + 30):
                        p.rpush(key, str(i))
                    p.execute()
                thread.result = r.lrange(key, 0, -1)
        thread = threading.Thread(target=run, daemon=True)
        thread.result = None
        thread.start()
        return thread


if __name__ == "__main__":
    unittest.main()
