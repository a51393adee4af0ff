#!/usr/bin/python3
"""End-to-end benchmark: redis-benchmark direct to one master vs. through slotpilot.

Starts its own 3-master Redis Cluster and a slotpilot in a temp dir, then runs redis-benchmark
against both targets side by side, alternating which goes first every round so slow drifts in
machine load hit both equally. Reports req/s, p50/p99, the proxy/direct ratio, the proxy's CPU
microseconds and read/write syscalls per request, the masters' CPU per request, the CPU other
processes used meanwhile (noise), and the proxy's RSS idle and with many idle clients.

Direct runs use keys with a hash tag the chosen master owns ("key:{t003}:<n>"), so every request
is served by that master; proxied runs use untagged keys of the same length ("key:abcdef:<n>"),
spread over all three masters. Both use redis-benchmark's custom-command form, so the client
does identical work for both targets.

Standard library only; run with Debian's /usr/bin/python3. Every child process is stopped by
PID on exit, Ctrl-C and exceptions included. Usage: bench/README.md.
"""

import argparse
import csv
import hashlib
import io
import os
import resource
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_PROXY = os.path.join(REPO, "build", "release", "proxy", "slotpilot")
CLK_TCK = os.sysconf("SC_CLK_TCK")
PORT_CEILING = 22700  # cluster bus = port + 10000 must stay below 32768
RUN_TIMEOUT_S = 120   # hard bound on one redis-benchmark run
CLIENTS = 50
KEYSPACE = 100000     # redis-benchmark -r


# ---- small helpers -------------------------------------------------------------------------

def log(msg):
    print(msg, file=sys.stderr, flush=True)


def crc16(data):
    """CRC16-XMODEM, as Redis's keyHashSlot."""
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


def port_free(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def pick_ports(base):
    """Three master ports (+ their bus ports), a proxy port and an admin port, all free."""
    for start in range(base, PORT_CEILING - 20, 20):
        masters = [start + 1, start + 2, start + 3]
        wanted = masters + [p + 10000 for p in masters] + [start + 10, start + 11]
        if all(port_free(p) for p in wanted):
            return masters, start + 10, start + 11
    raise RuntimeError("no free port block below %d" % PORT_CEILING)


def resp_command(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def roundtrip(port, *args, timeout=2.0):
    """One request over a fresh connection; returns the raw reply bytes (first read)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(resp_command(*args))
        return s.recv(65536)


def redis_cli(port, *args):
    out = subprocess.run(["redis-cli", "-p", str(port)] + list(args), capture_output=True,
                         text=True, timeout=30)
    return out.stdout


def proc_cpu_ticks(pid):
    """utime + stime of the whole process (all threads), in clock ticks."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)


def proc_cpu_ns(pid):
    """Time on CPU of every thread of pid, in ns (/proc/<pid>/task/*/schedstat), or None."""
    total = 0
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                total += int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return total


def proc_syscalls(pid):
    """(read-like, write-like) syscalls of the whole process so far, from /proc/<pid>/io."""
    counts = {}
    with open("/proc/%d/io" % pid) as f:
        for line in f:
            name, _, value = line.partition(":")
            counts[name] = int(value)
    return counts["syscr"], counts["syscw"]


def system_busy_ticks():
    """Non-idle CPU time of the whole machine, in clock ticks (/proc/stat)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return sum(fields) - fields[3] - fields[4]  # minus idle and iowait


def children_cpu_s():
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def proc_rss_kib(pid):
    """VmRSS in KiB, with its anonymous / file-backed split (/proc/<pid>/status)."""
    fields = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "RssAnon", "RssFile"):
                fields[name] = int(value.split()[0])
    return "%d (anon %d, file %d)" % (fields["VmRSS"], fields["RssAnon"], fields["RssFile"])


# ---- process management ----------------------------------------------------------------------

class Children:
    """Every process we start, stopped by PID (TERM, then KILL) in reverse start order."""

    def __init__(self):
        self.procs = []

    def start(self, argv, log_path):
        logf = open(log_path, "wb")
        p = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             start_new_session=True)  # Ctrl-C reaches us only; we stop them
        logf.close()
        self.procs.append(p)
        return p

    def stop_all(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.time() + 5
        for p in reversed(self.procs):
            try:
                p.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs = []


def wait_until(predicate, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if predicate():
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError("timed out waiting for " + what)


def start_cluster(children, workdir, masters):
    for port in masters:
        children.start(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                        "--cluster-enabled", "yes", "--cluster-config-file", "nodes-%d.conf" % port,
                        "--dir", workdir, "--save", "", "--appendonly", "no",
                        "--daemonize", "no", "--logfile", ""],
                       os.path.join(workdir, "redis-%d.log" % port))
    for port in masters:
        wait_until(lambda p=port: roundtrip(p, "PING").startswith(b"+PONG"), 10, "redis %d" % port)
    create = ["redis-cli", "--cluster", "create"] + ["127.0.0.1:%d" % p for p in masters] + \
             ["--cluster-replicas", "0", "--cluster-yes"]
    subprocess.run(create, capture_output=True, check=True, timeout=60)
    for port in masters:
        wait_until(lambda p=port: "cluster_state:ok" in redis_cli(p, "cluster", "info"), 30,
                   "cluster_state:ok on %d" % port)


def owned_slot_ranges(port):
    """Slot ranges of the master at port, from CLUSTER NODES ('myself')."""
    for line in redis_cli(port, "cluster", "nodes").splitlines():
        parts = line.split()
        if len(parts) > 8 and "myself" in parts[2]:
            ranges = []
            for r in parts[8:]:
                if r.startswith("["):
                    continue  # migrating/importing marker
                lo, _, hi = r.partition("-")
                ranges.append((int(lo), int(hi or lo)))
            return ranges
    raise RuntimeError("no 'myself' line in CLUSTER NODES of %d" % port)


def tag_for(port):
    """A 4-character hash tag whose slot the master at port owns."""
    ranges = owned_slot_ranges(port)
    for i in range(100000):
        tag = "t%03d" % i
        slot = crc16(tag.encode()) & 16383
        if any(lo <= slot <= hi for lo, hi in ranges):
            return tag, slot
    raise RuntimeError("no tag found")


def binary_id(path):
    """sha256 prefix and mtime of the binary: the checkout changes under us, so say which one ran."""
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:12]
    mtime = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(os.path.getmtime(path)))
    return "sha256 %s, built %s" % (digest, mtime)


def ensure_proxy_built(path):
    if os.path.exists(path):
        return
    log("building slotpilot (release preset)...")
    subprocess.run(["cmake", "--preset", "release"], cwd=REPO, check=True)
    subprocess.run(["cmake", "--build", "--preset", "release", "--target", "slotpilot", "-j2"],
                   cwd=REPO, check=True)


def start_proxy(children, workdir, binary, seed, listen, admin, max_clients):
    p = children.start([binary, "--seeds=127.0.0.1:%d" % seed, "--listen=127.0.0.1:%d" % listen,
                        "--admin-listen=127.0.0.1:%d" % admin, "--log-level=warn",
                        "--shutdown-grace=1s", "--max-clients=%d" % max_clients],
                       os.path.join(workdir, "slotpilot.log"))
    wait_until(lambda: roundtrip(listen, "SET", "e2e:probe", "1").startswith(b"+OK"), 20,
               "slotpilot to serve SET")
    if p.poll() is not None:
        raise RuntimeError("slotpilot exited with %s" % p.returncode)
    return p


# ---- redis-benchmark runs --------------------------------------------------------------------

def run_benchmark(port, command, key, value, pipeline, requests):
    argv = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-c", str(CLIENTS),
            "-n", str(requests), "-P", str(pipeline), "-r", str(KEYSPACE), "--csv", command, key]
    if command == "SET":
        argv.append(value)
    out = subprocess.run(argv, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    if out.returncode != 0 or len(rows) != 1:
        raise RuntimeError("redis-benchmark failed: %s %s" % (out.stdout[-300:], out.stderr[-300:]))
    row = rows[0]
    return {"rps": float(row["rps"]), "p50": float(row["p50_latency_ms"]),
            "p99": float(row["p99_latency_ms"])}


def measured_run(target, command, value, pipeline, requests, proxy_pid, redis_pids):
    """One redis-benchmark run plus the CPU the proxy and the masters spent during it."""
    t0, n0 = proc_cpu_ticks(proxy_pid), proc_cpu_ns(proxy_pid)
    r0 = sum(proc_cpu_ticks(p) for p in redis_pids)
    io0 = proc_syscalls(proxy_pid)
    busy0, bench0 = system_busy_ticks(), children_cpu_s()
    wall0 = time.time()
    res = run_benchmark(target["port"], command, target["key"], value, pipeline, requests)
    res["wall_s"] = time.time() - wall0
    busy = (system_busy_ticks() - busy0) / CLK_TCK
    ours = children_cpu_s() - bench0  # redis-benchmark, reaped
    t1, n1 = proc_cpu_ticks(proxy_pid), proc_cpu_ns(proxy_pid)
    r1 = sum(proc_cpu_ticks(p) for p in redis_pids)
    io1 = proc_syscalls(proxy_pid)
    res["proxy_reads"] = (io1[0] - io0[0]) / requests
    res["proxy_writes"] = (io1[1] - io0[1]) / requests
    res["proxy_us_ticks"] = (t1 - t0) * 1e6 / CLK_TCK / requests
    res["proxy_us_ns"] = (n1 - n0) / 1e3 / requests if n0 is not None and n1 is not None else None
    res["redis_us"] = (r1 - r0) * 1e6 / CLK_TCK / requests
    ours += ((t1 - t0) + (r1 - r0)) / CLK_TCK
    res["other_cores"] = max(0.0, busy - ours) / res["wall_s"]  # CPU used by anything else
    return res


def configs(quick):
    values = [3, 1024]
    pipelines = [1, 16]
    for size in values:
        for pipeline in pipelines:
            for command in ("SET", "GET"):  # SET first: GET then finds the keys
                if quick and (size, pipeline) not in ((3, 1), (3, 16)):
                    continue
                yield command, pipeline, size


def requests_for(pipeline, size, quick, scale):
    base = 100000 if pipeline == 1 else 600000
    if size >= 1024:
        base //= 2
    if quick:
        base //= 10
    return max(1000, int(base * scale))


def run_rounds(args, targets, proxy_pid, redis_pids):
    """Returns {(command, pipeline, size): {"direct": [res...], "proxy": [res...]}}."""
    results = {}
    for rnd in range(args.rounds):
        order = ["direct", "proxy"] if rnd % 2 == 0 else ["proxy", "direct"]
        for command, pipeline, size in configs(args.quick):
            n = requests_for(pipeline, size, args.quick, args.scale)
            value = "x" * size
            for name in order:
                res = measured_run(targets[name], command, value, pipeline, n, proxy_pid,
                                   redis_pids)
                results.setdefault((command, pipeline, size), {}).setdefault(name, []).append(res)
                log("round %d %-6s %s -P %-2d -d %-4d n=%d: %.0f req/s p50 %.3f p99 %.3f ms, "
                    "proxy %.2f CPU-us/req, other load %.2f cores" % (
                        rnd + 1, name, command, pipeline, size, n, res["rps"], res["p50"],
                        res["p99"], res["proxy_us_ticks"], res["other_cores"]))
    return results


# ---- idle clients / RSS ----------------------------------------------------------------------

def raise_fd_limit(wanted):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def open_idle_clients(port, count):
    """Connects `count` sockets in batches. The last socket of each batch sends one PING: its
    +PONG proves the proxy accepted the whole batch (accepts are FIFO) before the next one."""
    socks = []
    batch = 500
    while len(socks) < count:
        for _ in range(min(batch, count - len(socks))):
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=15))
        socks[-1].sendall(b"*1\r\n$4\r\nPING\r\n")
        reply = socks[-1].recv(64)
        if not reply.startswith(b"+PONG"):
            raise RuntimeError("client %d got %r instead of +PONG" % (len(socks), reply[:80]))
    return socks


def ping_all(socks):
    """Sends PING on every socket and waits for every +PONG; returns how many answered."""
    sel = selectors.DefaultSelector()
    for s in socks:
        s.sendall(b"*1\r\n$4\r\nPING\r\n")
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    answered, deadline = 0, time.time() + 30
    while answered < len(socks) and time.time() < deadline:
        for key, _ in sel.select(timeout=1):
            data = key.fileobj.recv(64)
            sel.unregister(key.fileobj)
            answered += data.startswith(b"+PONG")
    sel.close()
    return answered


def start_perf(path, pid, call_graph):
    """perf record of the proxy (cpu-clock: hardware counters may be unavailable in VMs)."""
    argv = ["perf", "record", "-e", "cpu-clock", "-F", "999", "-p", str(pid), "-o", path]
    if call_graph:
        argv += ["--call-graph", "dwarf,8192"]
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    time.sleep(0.5)
    return p


def stop_perf(p):
    if p is None or p.poll() is not None:
        return
    p.send_signal(signal.SIGINT)
    try:
        p.wait(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def measure_idle_clients(args, proxy_port, proxy_pid):
    out = {}
    limit = raise_fd_limit(args.idle_clients + 256)
    count = min(args.idle_clients, limit - 256)
    if count < args.idle_clients:
        out["note"] = "fd soft limit %d: opened %d clients, not %d" % (limit, count,
                                                                       args.idle_clients)
    out["clients"] = count
    socks = open_idle_clients(proxy_port, count)
    try:
        time.sleep(1)
        out["rss_connected_kib"] = proc_rss_kib(proxy_pid)
        out["pinged"] = ping_all(socks)
        time.sleep(1)
        out["rss_after_ping_kib"] = proc_rss_kib(proxy_pid)
    finally:
        for s in socks:
            s.close()
    time.sleep(2)
    out["rss_after_close_kib"] = proc_rss_kib(proxy_pid)
    return out


# ---- report ----------------------------------------------------------------------------------

def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


def idle_client_rss(args, proxy_port, proxy_pid):
    idle = measure_idle_clients(args, proxy_port, proxy_pid)
    n = idle["clients"]
    out = {"%d idle clients connected" % n: idle["rss_connected_kib"],
           "%d idle clients after one PING each (%d answered)" % (n, idle["pinged"]):
               idle["rss_after_ping_kib"],
           "after closing them": idle["rss_after_close_kib"]}
    if "note" in idle:
        out["note"] = idle["note"]
    return out


def print_results(results, meta):
    print("\n## slotpilot e2e (%s)\n" % meta)
    print("| cmd | -P | -d | direct req/s | proxy req/s | proxy/direct | direct p50/p99 ms | "
          "proxy p50/p99 ms | proxy CPU-us/req (stat) | (schedstat) | redis CPU-us/req direct / proxy | "
          "proxy read+write syscalls/req | other load, cores (direct / proxy) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for (command, pipeline, size), runs in results.items():
        d, p = runs["direct"], runs["proxy"]
        ratios = [pp["rps"] / dd["rps"] for dd, pp in zip(d, p)]
        print("| %s | %d | %d | %.0f | %.0f | %.2f (%s) | %.3f / %.3f | %.3f / %.3f | %.2f | %.2f | "
              "%.2f / %.2f | %.2f + %.2f | %.2f / %.2f |" % (
                  command, pipeline, size, med(r["rps"] for r in d), med(r["rps"] for r in p),
                  med(ratios), " ".join("%.2f" % x for x in ratios),
                  med(r["p50"] for r in d), med(r["p99"] for r in d),
                  med(r["p50"] for r in p), med(r["p99"] for r in p),
                  med(r["proxy_us_ticks"] for r in p), med(r["proxy_us_ns"] for r in p),
                  med(r["redis_us"] for r in d), med(r["redis_us"] for r in p),
                  med(r["proxy_reads"] for r in p), med(r["proxy_writes"] for r in p),
                  med(r["other_cores"] for r in d), med(r["other_cores"] for r in p)))
    print("\nMedians over rounds; proxy/direct is the median of per-round ratios (each round's "
          "value in parentheses). 'Other load' is CPU used during the run by processes other than "
          "the proxy, the masters and redis-benchmark (out of %d cores).\n" % os.cpu_count())
    sys.stdout.flush()


def print_rss(rss):
    print("| proxy VmRSS | KiB |")
    print("|---|---|")
    for k, v in rss.items():
        print("| %s | %s |" % (k, v))


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 1 round, 3-byte values, -n / 10, 1000 idle clients")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every run's -n")
    ap.add_argument("--idle-clients", type=int, default=10000)
    ap.add_argument("--base-port", type=int, default=22400)
    ap.add_argument("--slotpilot", default=DEFAULT_PROXY)
    ap.add_argument("--perf", metavar="FILE",
                    help="perf record the proxy during the benchmark rounds into FILE")
    ap.add_argument("--perf-call-graph", action="store_true", help="with --perf: DWARF stacks")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.idle_clients = 1, min(args.idle_clients, 1000)
    return args


def run(args, children, workdir, meta):
    masters, proxy_port, admin_port = pick_ports(args.base_port)
    log("cluster on %s, proxy on %d, dir %s" % (masters, proxy_port, workdir))
    start_cluster(children, workdir, masters)
    proxy = start_proxy(children, workdir, args.slotpilot, masters[0], proxy_port, admin_port,
                        args.idle_clients + 100)
    redis_pids = [c.pid for c in children.procs[:3]]
    tag, slot = tag_for(masters[0])
    log("direct target: 127.0.0.1:%d, hash tag {%s} (slot %d)" % (masters[0], tag, slot))
    targets = {"direct": {"port": masters[0], "key": "key:{%s}:__rand_int__" % tag},
               "proxy": {"port": proxy_port, "key": "key:abcdef:__rand_int__"}}
    time.sleep(1)
    rss = {"idle after start": proc_rss_kib(proxy.pid)}
    perf = start_perf(args.perf, proxy.pid, args.perf_call_graph) if args.perf else None
    try:
        results = run_rounds(args, targets, proxy.pid, redis_pids)
    finally:
        stop_perf(perf)
    print_results(results, meta)
    time.sleep(1)
    rss["idle after benchmark"] = proc_rss_kib(proxy.pid)
    try:
        rss.update(idle_client_rss(args, proxy_port, proxy.pid))
    except (OSError, RuntimeError) as e:  # report what we have
        rss["idle clients: FAILED"] = str(e)
    if proxy.poll() is not None:
        rss["slotpilot"] = "EXITED during the run (%s)" % proxy.returncode
    print_rss(rss)


def main():
    args = parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally block
    ensure_proxy_built(args.slotpilot)
    raise_fd_limit(args.idle_clients + 256)  # children inherit it
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    meta = "%d round(s), %d clients, -r %d, %s (%s), load average before: %s" % (
        args.rounds, CLIENTS, KEYSPACE, args.slotpilot, binary_id(args.slotpilot), load)
    workdir = tempfile.mkdtemp(prefix="slotpilot-e2e-")
    children = Children()
    try:
        run(args, children, workdir, meta)
    finally:
        children.stop_all()
        if args.keep:
            log("logs kept in " + workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
