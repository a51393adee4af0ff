#!/usr/bin/python3
"""Migration under load, throttle off vs on: how long `redis-cli --cluster reshard` takes to move
one full slot off the source node S while redis-benchmark saturates S through slotpilot, and how
S itself answers meanwhile.

Each round starts a fresh 3-master cluster (tests/integration/harness.py), fills S's first slot
with --keys keys of --value-bytes, starts slotpilot (--throttle=off, or the throttle options given
by --on-args), then runs side by side:
  * load: redis-benchmark through the proxy, SET at keys of another slot of S (-c --clients),
    plus a light GET load at the migrating slot (its ASK replies are the data path's evidence);
  * probe: a direct connection to S sending PING every 10 ms: S's own latency (p50/p99/max);
  * the reshard of that one slot from S to another master (redis-cli, --cluster-pipeline
    --pipeline, default 10 keys per MIGRATE as redis-cli itself).
Reports per round: reshard seconds, SETs/s reaching S (INFO commandstats), probe latency.
Rounds alternate off/on so drifting machine load hits both. Bounded: every child has a timeout
and is stopped by PID. Not run in CI. Usage:

    bench/throttle_bench.py --proxy build/release/proxy/slotpilot --keys 100000 --rounds 2
"""

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))

from harness import HOST, Proxy, RedisCluster, hashtag_for_slot  # noqa: E402

RESHARD_TIMEOUT_S = 600


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def fill(cluster, node, slot, keys, value_bytes):
    tag = hashtag_for_slot(slot)
    value = "x" * value_bytes
    r = cluster.client(node)
    for start in range(0, keys, 1000):
        p = r.pipeline(transaction=False)
        for i in range(start, min(keys, start + 1000)):
            p.set(f"{{{tag}}}:k:{i}", value)
        p.execute()
    return tag


def benchmark(port, clients, argv, requests=50_000_000):
    cmd = ["redis-benchmark", "-h", HOST, "-p", str(port), "-c", str(clients), "-n", str(requests),
           "-r", "100000", "-q"] + argv
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def probe(cluster, node, stop, out):
    r = cluster.client(node, socket_timeout=10)
    while not stop.is_set():
        t = time.monotonic()
        r.ping()
        out.append((time.monotonic() - t) * 1000)
        stop.wait(0.01)


def set_calls(cluster, node):
    return int(cluster.client(node).info("commandstats").get("cmdstat_set", {}).get("calls", 0))


def one_round(args, throttle_args, label):
    with RedisCluster(masters=3) as cluster:
        src, dst = cluster.masters()[0], cluster.masters()[1]
        first, last = cluster.slots_of(src)[0]
        mig_tag = fill(cluster, src, first, args.keys, args.value_bytes)
        load_tag = hashtag_for_slot(first + 50)
        with Proxy(cluster, extra_args=throttle_args, threads=1, binary=args.proxy) as proxy:
            loads = [benchmark(proxy.port, args.clients, ["SET", f"{{{load_tag}}}:__rand_int__", "v"]),
                     benchmark(proxy.port, 2, ["GET", f"{{{mig_tag}}}:k:__rand_int__"])]
            stop, lat = threading.Event(), []
            prober = threading.Thread(target=probe, args=(cluster, src, stop, lat), daemon=True)
            try:
                time.sleep(args.warmup)
                before, t0 = set_calls(cluster, src), time.monotonic()
                pre_rate = 0.0
                time.sleep(2)
                pre_rate = (set_calls(cluster, src) - before) / (time.monotonic() - t0)
                prober.start()
                before, t0 = set_calls(cluster, src), time.monotonic()
                reshard = subprocess.run(
                    ["redis-cli", "--cluster", "reshard", src.address, "--cluster-from", cluster.node_id(src),
                     "--cluster-to", cluster.node_id(dst), "--cluster-slots", "1", "--cluster-yes",
                     "--cluster-pipeline", str(args.pipeline)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=RESHARD_TIMEOUT_S)
                took = time.monotonic() - t0
                during_rate = (set_calls(cluster, src) - before) / took
                if reshard.returncode != 0:
                    log(f"{label}: reshard failed: {reshard.stderr[-500:]}")
            finally:
                stop.set()
                for p in loads:
                    p.terminate()
                for p in loads:
                    try:
                        p.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        p.kill()
                prober.join(timeout=15)
            moved = cluster.count_keys_in_slot(first, dst)
    lat.sort()
    q = lambda f: lat[min(len(lat) - 1, int(f * len(lat)))] if lat else float("nan")  # noqa: E731
    return {"label": label, "reshard_s": took, "moved": moved, "s_set_rate_before": pre_rate,
            "s_set_rate_during": during_rate, "probe_p50_ms": q(0.5), "probe_p99_ms": q(0.99),
            "probe_max_ms": lat[-1] if lat else float("nan"), "probes": len(lat)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--proxy", default=os.path.join(REPO, "build", "release", "proxy", "slotpilot"))
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--value-bytes", type=int, default=256)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--pipeline", type=int, default=10, help="redis-cli --cluster-pipeline (keys per MIGRATE)")
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--on-args", default="--throttle=node --throttle-fraction=0.5",
                    help="slotpilot flags of the 'on' runs")
    args = ap.parse_args()
    results = []
    for i in range(args.rounds):
        order = [("off", ["--throttle=off"]), ("on", args.on_args.split())]
        if i % 2:
            order.reverse()
        for label, flags in order:
            log(f"round {i + 1}: throttle {label} ...")
            r = one_round(args, flags, label)
            log(f"  {r}")
            results.append(r)
    print("| throttle | reshard s | keys moved | S SET/s before | S SET/s during | S PING p50 ms | p99 ms | max ms |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['label']} | {r['reshard_s']:.1f} | {r['moved']} | {r['s_set_rate_before']:.0f} | "
              f"{r['s_set_rate_during']:.0f} | {r['probe_p50_ms']:.2f} | {r['probe_p99_ms']:.2f} | "
              f"{r['probe_max_ms']:.1f} |")
    for label in ("off", "on"):
        times = [r["reshard_s"] for r in results if r["label"] == label]
        print(f"median reshard time, throttle {label}: {statistics.median(times):.1f} s")


if __name__ == "__main__":
    main()
