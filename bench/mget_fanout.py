#!/usr/bin/python3
"""MGET of many keys spread over 3 masters: through slotpilot (one MGET, split and merged by the
proxy) vs. a cluster-aware client that sends one MGET per master itself and merges the replies.

Two client kinds, each measured against both targets side by side, alternating which goes first
every round so drifts in machine load hit both equally:

  * raw: a minimal RESP client on plain sockets (so client overhead is small and the same on both
    sides). "proxy" sends `MGET k1..kN` on one connection; "direct" groups the keys by master
    (slot map from CLUSTER SLOTS), sends one MGET per master on its own connection, all at once,
    then reads the replies and puts the values back in key order. `--depth D` keeps D MGETs in
    flight per connection (D=1: latency; D>1: pipelined throughput).
  * lib: python3-redis, `Redis.mget` at the proxy vs. `RedisCluster.mget_nonatomic`.

Prints ops/s and latency percentiles per target and the proxy/direct ratios (medians over the
rounds). Starts its own 3-master cluster and proxy with tests/integration/harness.py (free
loopback ports, processes stopped by PID). Run with Debian's /usr/bin/python3:

  bench/mget_fanout.py --binary build/h-cmds-rel/proxy/slotpilot [--rounds 5] [--ops 2000]
"""

import argparse
import socket
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))

import harness  # noqa: E402
import redis  # noqa: E402
from redis.cluster import ClusterNode, RedisCluster  # noqa: E402


def encode(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


class Conn:
    """Reads whole MGET replies (arrays of bulks / nils) from a socket."""

    def __init__(self, port):
        self.sock = socket.create_connection((harness.HOST, port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.pos = 0

    def _line(self):
        while True:
            nl = self.buf.find(b"\r\n", self.pos)
            if nl >= 0:
                line = self.buf[self.pos:nl]
                self.pos = nl + 2
                return line
            self._fill()

    def _fill(self):
        self.buf = self.buf[self.pos:] + self.sock.recv(1 << 20)
        self.pos = 0

    def read_array(self):
        head = self._line()
        if head[:1] != b"*":
            raise RuntimeError(f"not an array: {head!r}")
        items = []
        for _ in range(int(head[1:])):
            h = self._line()
            n = int(h[1:])
            if n < 0:
                items.append(None)
                continue
            while len(self.buf) - self.pos < n + 2:
                self._fill()
            items.append(self.buf[self.pos:self.pos + n])
            self.pos += n + 2
        return items


def percentile(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(p / 100.0 * len(s)))]


def run_raw_proxy(port, keys, ops, depth):
    conn = Conn(port)
    cmd = encode(["MGET", *keys])
    lat, want = [], len(keys)
    start = time.perf_counter()
    for _ in range(ops // depth):
        t0 = time.perf_counter()
        conn.sock.sendall(cmd * depth)
        for _ in range(depth):
            if len(conn.read_array()) != want:
                raise RuntimeError("short MGET reply")
        lat.append((time.perf_counter() - t0) / depth)
    elapsed = time.perf_counter() - start
    conn.sock.close()
    return (ops // depth) * depth / elapsed, lat


def run_raw_direct(groups, keys, ops, depth):
    """groups: [(port, [[key positions of one slot], ...])]. A node answers MGET only for keys of
    one slot (else CROSSSLOT), so a cluster-aware client sends one MGET per slot, pipelined on
    each master's connection, all masters at once, and merges the values in key order."""
    conns = []
    for port, slots in groups:
        cmd = b"".join(encode(["MGET", *(keys[i] for i in pos)]) for pos in slots)
        conns.append((Conn(port), cmd, slots))
    lat = []
    start = time.perf_counter()
    for _ in range(ops // depth):
        t0 = time.perf_counter()
        for conn, cmd, _ in conns:
            conn.sock.sendall(cmd * depth)
        for _ in range(depth):
            merged = [None] * len(keys)
            for conn, _, slots in conns:
                for pos in slots:
                    for i, v in zip(pos, conn.read_array()):
                        merged[i] = v
        lat.append((time.perf_counter() - t0) / depth)
    elapsed = time.perf_counter() - start
    for conn, _, _ in conns:
        conn.sock.close()
    return (ops // depth) * depth / elapsed, lat


def run_lib(call, ops):
    lat = []
    start = time.perf_counter()
    for _ in range(ops):
        t0 = time.perf_counter()
        call()
        lat.append(time.perf_counter() - t0)
    return ops / (time.perf_counter() - start), lat


def groups_by_master(cluster, keys):
    """[(master port, [[positions of the keys of one slot], ...])]."""
    by_port = {}
    for i, k in enumerate(keys):
        slot = harness.key_slot(k)
        port = cluster.node_for_slot(slot).port
        by_port.setdefault(port, {}).setdefault(slot, []).append(i)
    return sorted((port, list(slots.values())) for port, slots in by_port.items())


def summarise(name, results):
    """results: {target: [(ops/s, latencies)] per round}."""
    print(f"\n{name}")
    med = {}
    for target, rounds in results.items():
        rates = [r for r, _ in rounds]
        lat = [x for _, l in rounds for x in l]
        med[target] = statistics.median(rates)
        print(f"  {target:7s} {med[target]:9.0f} MGET/s (rounds: {', '.join(f'{r:.0f}' for r in rates)})"
              f"  p50 {percentile(lat, 50) * 1e6:7.0f} us  p99 {percentile(lat, 99) * 1e6:7.0f} us")
    ratios = [p / d for (p, _), (d, _) in zip(results["proxy"], results["direct"])]
    print(f"  proxy/direct throughput: median {statistics.median(ratios):.2f} "
          f"(rounds: {', '.join(f'{x:.2f}' for x in ratios)})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--binary", default=str(REPO / "build" / "release" / "proxy" / "slotpilot"))
    ap.add_argument("--keys", type=int, default=100)
    ap.add_argument("--ops", type=int, default=2000, help="MGETs per target per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--depth", default="1,16", help="MGETs in flight per connection (raw client)")
    args = ap.parse_args()
    depths = [int(d) for d in args.depth.split(",")]
    keys = [f"mget:bench:{i}" for i in range(args.keys)]
    with harness.RedisCluster(masters=3) as cluster, \
            harness.Proxy(cluster, binary=Path(args.binary).resolve()) as proxy:
        with proxy.client() as c:
            c.mset({k: f"value-{i:010d}" for i, k in enumerate(keys)})
        groups = groups_by_master(cluster, keys)
        print(f"{args.keys} keys over {len(groups)} masters: "
              f"{', '.join(str(sum(map(len, s))) for _, s in groups)} keys in "
              f"{', '.join(str(len(s)) for _, s in groups)} slots; binary {args.binary}")
        for depth in depths:
            res = {"proxy": [], "direct": []}
            for rnd in range(args.rounds):
                order = ["proxy", "direct"] if rnd % 2 == 0 else ["direct", "proxy"]
                for target in order:
                    if target == "proxy":
                        res[target].append(run_raw_proxy(proxy.port, keys, args.ops, depth))
                    else:
                        res[target].append(run_raw_direct(groups, keys, args.ops, depth))
            summarise(f"raw RESP client, depth {depth}", res)
        lib_ops = max(args.ops // 4, 50)
        plain = redis.Redis(host=harness.HOST, port=proxy.port)
        aware = RedisCluster(startup_nodes=[ClusterNode(harness.HOST, m.port) for m in cluster.masters()])
        res = {"proxy": [], "direct": []}
        for rnd in range(args.rounds):
            order = ["proxy", "direct"] if rnd % 2 == 0 else ["direct", "proxy"]
            for target in order:
                call = (lambda: plain.mget(keys)) if target == "proxy" else (lambda: aware.mget_nonatomic(keys))
                res[target].append(run_lib(call, lib_ops))
        summarise("python3-redis: Redis.mget via proxy vs RedisCluster.mget_nonatomic", res)
        plain.close()
        aware.close()


if __name__ == "__main__":
    main()
