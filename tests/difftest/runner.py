"""The servers and the concurrent run: a 3-master cluster with slotpilot in front, one standalone
redis-server, client threads each driving its own stream at both, a watchdog on the proxy
process, and the solo phase that compares whole keyspaces at the end.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
import threading
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Callable, Optional, Sequence

from execute import Failure, Pair
from families import SCRIPTS, SOLO_FAMILY, script_body, stream
from gen import tag_for_slot
from integration_harness import harness
from ops import MAIN, Call, Command, ScanAll, Step, cmd
from resp import parse

MAX_OPS_PER_CLIENT = 5_000_000  # a count bound on top of the time bound
WATCH_INTERVAL_S = 0.2
PROGRESS_INTERVAL_S = 15.0
DRAIN_GRACE_S = 90.0  # after the deadline, an op in flight may still take this long
SANITIZER_MARKERS = ("AddressSanitizer", "LeakSanitizer", "UndefinedBehaviorSanitizer",
                     "runtime error:")
SOLO_CHUNK = 1000
SOLO_SCRIPT_SLOTS = (0, 6000, 12000)  # one slot of each master of the 3-master cluster
FATAL_KINDS = ("crash", "rss", "exit")  # the proxy itself is gone or over its bounds

# What the solo phase reads back from each key, per TYPE.
CONTENT = {
    b"string": lambda k: [cmd("GET", k)],
    b"hash": lambda k: [cmd("HGETALL", k, norm="pairs")],
    b"list": lambda k: [cmd("LRANGE", k, 0, -1)],
    b"set": lambda k: [cmd("SMEMBERS", k, norm="sorted")],
    b"zset": lambda k: [cmd("ZRANGE", k, 0, -1, "WITHSCORES")],
    b"stream": lambda k: [cmd("XRANGE", k, "-", "+", norm="clock-ids"),
                          cmd("XINFO", "STREAM", k, "FULL", norm="clock-ids")],
}


@dataclasses.dataclass
class Settings:
    seed: int
    duration: float
    clients: int
    binary: Path
    families: tuple[str, ...]
    request_timeout: float  # the proxy's --request-timeout, seconds
    grace: float            # on top of it before a missing reply is a hang
    proxy_threads: int
    max_rss_mib: Optional[int]
    verbose: bool

    @property
    def bound(self) -> float:
        return self.request_timeout + self.grace


START_ATTEMPTS = 3  # a reserved port taken by another process before the proxy bound it


def start_proxy(cluster: harness.RedisCluster, binary: Path, request_timeout: float,
                threads: int) -> harness.Proxy:
    for attempt in range(START_ATTEMPTS):
        try:
            return harness.Proxy(cluster, binary=binary, threads=threads,
                                 extra_args=[f"--request-timeout={int(request_timeout * 1000)}ms"]
                                 ).start()
        except harness.ProxyExited as e:
            if "cannot listen" not in e.output or attempt + 1 == START_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


def uses_asan(pid: int) -> bool:
    """True if the process has the ASan runtime mapped (the debug build)."""
    try:
        return "libasan" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def sanitizer_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if any(m in line for m in SANITIZER_MARKERS)]


def proxy_alive(proxy: harness.Proxy) -> bool:
    """Running, and no sanitizer has reported (ASan then takes seconds to print its stack)."""
    return proxy.running() and not sanitizer_lines(proxy.log())


class Stats:
    """Ops and commands per family, thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.ops: Counter[str] = Counter()
        self.commands: Counter[str] = Counter()

    def count(self, family: str, commands: int) -> None:
        with self._lock:
            self.ops[family] += 1
            self.commands[family] += commands

    def total_ops(self) -> int:
        with self._lock:
            return sum(self.ops.values())


class Run:
    """One concurrent run against one proxy; collects failures and the proxy's peak RSS."""

    def __init__(self, settings: Settings, proxy: harness.Proxy, ref: harness.StandaloneRedis,
                 max_rss_kib: int, log: Callable[[str], None]) -> None:
        self.settings = settings
        self.proxy = proxy
        self.ref = ref
        self.max_rss_kib = max_rss_kib
        self.log = log
        self.stats = Stats()
        self.failures: list[Failure] = []
        self.peak_rss_kib = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._deadline = 0.0

    def new_pair(self) -> Pair:
        return Pair(self.proxy.port, self.ref.port, self.settings.bound,
                    lambda: proxy_alive(self.proxy))

    def fail(self, failure: Failure) -> None:
        with self._lock:
            self.failures.append(failure)
        if self.settings.verbose or not self._stop.is_set():  # not the echoes of a crash
            self.log(f"failure: {failure.kind} in {failure.family or 'the proxy process'} "
                     f"(client {failure.client}, op {failure.op_index})")
        if failure.kind in FATAL_KINDS:
            self._stop.set()

    def fatal(self) -> bool:
        return any(f.kind in FATAL_KINDS for f in self.failures)

    # ---- the concurrent phase ----------------------------------------------------------------

    def run_clients(self, clients: Sequence[int]) -> None:
        """Runs the given clients' streams until the duration is over, then waits (bounded)
        for the ops in flight."""
        self._deadline = time.monotonic() + self.settings.duration
        threads = [threading.Thread(target=self._client, args=(n,), name=f"client-{n}", daemon=True)
                   for n in clients]
        watchdog = threading.Thread(target=self._watch, name="watchdog", daemon=True)
        watchdog.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=max(0.0, self._deadline + DRAIN_GRACE_S - time.monotonic()))
        stuck = [t.name for t in threads if t.is_alive()]
        self._stop.set()
        watchdog.join(timeout=5)
        if stuck:
            self.fail(Failure("stuck", None, "", "", f"{stuck} still running {DRAIN_GRACE_S:g} s "
                                                        "after the deadline"))

    def _client(self, index: int) -> None:
        pair = self.new_pair()
        ops = stream(self.settings.seed, index, self.settings.families)
        try:
            for op_index in range(MAX_OPS_PER_CLIENT):
                if self._stop.is_set() or time.monotonic() >= self._deadline:
                    return
                op = next(ops)
                if self.settings.verbose:
                    self.log(f"client {index} op {op_index}: {op.family}, "
                             f"{op.command_count()} commands")
                failure = pair.run_op(op)
                self.stats.count(op.family, op.command_count())
                if failure is not None:
                    failure.client, failure.op_index = index, op_index
                    self.fail(failure)
                    return
        except Exception:  # a bug of the tester itself must fail the run, loudly
            self.fail(Failure("tester", None, "", "", traceback.format_exc(), client=index))
        finally:
            pair.close()

    def _watch(self) -> None:
        """Polls the proxy: alive, and RSS under the bound. Bounded by the run's stop."""
        last_progress = time.monotonic()
        while not self._stop.wait(WATCH_INTERVAL_S):
            if not self.proxy.running():
                self.fail(Failure("crash", None, "", "", "the proxy process exited"))
                return
            try:
                rss = self.proxy.rss_kib()
            except (OSError, harness.HarnessError):
                continue  # exiting right now: the next poll sees it
            self.peak_rss_kib = max(self.peak_rss_kib, rss)
            if rss > self.max_rss_kib:
                self.fail(Failure("rss", None, f"{rss // 1024} MiB", "",
                                  f"proxy RSS {rss} KiB is over the bound of {self.max_rss_kib} KiB"))
                return
            if time.monotonic() - last_progress >= PROGRESS_INTERVAL_S:
                last_progress = time.monotonic()
                self.log(f"progress: {self.stats.total_ops()} ops, RSS {rss // 1024} MiB, "
                         f"{len(self.failures)} failures")

    # ---- the solo phase ----------------------------------------------------------------------

    def solo_phase(self) -> None:
        """With no client running: the whole keyspace must be the same on both sides (DBSIZE,
        KEYS *, a full SCAN, and every key's type, content and TTL), RANDOMKEY must name an
        existing key, and FLUSHALL must empty both."""
        pair = self.new_pair()
        try:
            failure = self._solo_checks(pair)
        finally:
            pair.close()
        if failure is not None:
            failure.family = SOLO_FAMILY
            self.fail(failure)

    def _solo_checks(self, pair: Pair) -> Optional[Failure]:
        for step in (Call(MAIN, (cmd("DBSIZE"),)), Call(MAIN, (cmd("KEYS", "*", norm="sorted"),)),
                     ScanAll(MAIN, (b"SCAN", b"0", b"COUNT", b"1000"), 1)):
            failure = pair.run_step(step)
            self.stats.count(SOLO_FAMILY, 1)
            if failure is not None:
                return failure
        [[keys_reply]] = pair.ref.call(MAIN, [cmd("KEYS", "*")])
        keys = parse(keys_reply)
        for start in range(0, len(keys), SOLO_CHUNK):
            failure = self._compare_keys(pair, keys[start:start + SOLO_CHUNK])
            if failure is not None:
                return failure
        failure = self._check_randomkey(pair, bool(keys))
        if failure is not None:
            return failure
        for step in self._script_flush_steps():
            failure = pair.run_step(step)
            self.stats.count(SOLO_FAMILY, len(step.commands))
            if failure is not None:
                return failure
        for command in (cmd("FLUSHALL"), cmd("DBSIZE")):
            failure = pair.run_step(Call(MAIN, (command,)))
            if failure is not None:
                return failure
        return None

    def _script_flush_steps(self) -> list[Step]:
        """SCRIPT FLUSH, which only the solo phase may send (it empties every client's scripts):
        a script by EVAL on one master and EVALSHA on the others, then SCRIPT FLUSH (plain, SYNC
        or ASYNC); after it EVALSHA must be NOSCRIPT on every master, inside MULTI too (the
        proxy must forget the bodies it remembered), for the streams' scripts as well, until
        an EVAL sends the body again."""
        rng = random.Random(f"difftest:{self.settings.seed}:solo-scripts")
        body = f"-- difftest solo s{self.settings.seed}\nreturn redis.call('exists', KEYS[1])"
        sha = hashlib.sha1(body.encode()).hexdigest()
        keys = [f"dt:solo:{{{tag_for_slot(slot)}}}:k" for slot in SOLO_SCRIPT_SLOTS]
        rng.shuffle(keys)
        index = rng.randrange(len(SCRIPTS))  # a stream script some client may have sent
        streams_sha = hashlib.sha1(script_body(self.settings.seed, 0, index).encode()).hexdigest()
        by_sha = lambda name, key: cmd(name, sha, 1, key)  # noqa: E731
        return [
            Call(MAIN, (cmd("EVAL", body, 1, keys[0]), by_sha("EVALSHA", keys[1]),
                        by_sha("EVALSHA_RO", keys[2]))),
            Call(MAIN, (cmd("SCRIPT", "EXISTS", sha),)),  # now on every master
            Call(MAIN, (cmd("SCRIPT", "FLUSH", *rng.choice([[], ["SYNC"], ["ASYNC"]])),)),
            Call(MAIN, (by_sha("EVALSHA", keys[0]), by_sha("EVALSHA", keys[1]),
                        by_sha("EVALSHA_RO", keys[2]),
                        cmd("EVALSHA", streams_sha, SCRIPTS[index][1], *keys[:1] * SCRIPTS[index][1]))),
            Call(MAIN, (cmd("MULTI"), by_sha(rng.choice(["EVALSHA", "EVALSHA_RO"]), keys[1]),
                        cmd("EXEC"))),
            Call(MAIN, (cmd("SCRIPT", "EXISTS", sha, streams_sha),)),
            Call(MAIN, (cmd("EVAL_RO", body, 1, keys[2]), by_sha("EVALSHA", keys[0]),
                        by_sha("EVALSHA_RO", keys[1]))),
            Call(MAIN, (cmd("SCRIPT", "EXISTS", sha),)),
        ]

    def _compare_keys(self, pair: Pair, keys: list[bytes]) -> Optional[Failure]:
        types = [cmd("TYPE", k) for k in keys]
        replies = pair.ref.call(MAIN, types)
        content: list[Command] = []
        for key, [reply] in zip(keys, replies):
            kind = parse(reply)[1] if isinstance(reply, bytes) else b""
            content += CONTENT.get(kind, lambda k: [])(key) + [cmd("PTTL", key, norm="ttl")]
        self.stats.count(SOLO_FAMILY, len(types) + len(content))
        return pair.run_step(Call(MAIN, tuple(types))) or pair.run_step(Call(MAIN, tuple(content)))

    def _check_randomkey(self, pair: Pair, any_keys: bool) -> Optional[Failure]:
        """RANDOMKEY differs by design; the key it names must exist (nil only when empty)."""
        command = cmd("RANDOMKEY")
        [[got]] = pair.proxy.call(MAIN, [command])
        key = parse(got) if isinstance(got, bytes) else None
        if key is None:
            return None if not any_keys else Failure("mismatch", command, got, "<any key>",
                                                     "RANDOMKEY gave nil with keys present")
        [[exists]] = pair.ref.call(MAIN, [cmd("EXISTS", key)])
        if exists != b":1\r\n":
            return Failure("mismatch", command, got, exists,
                           "RANDOMKEY named a key that does not exist")
        return None

    # ---- the end -----------------------------------------------------------------------------

    def stop_proxy_checked(self) -> None:
        """SIGTERM: the proxy must exit 0 with no sanitizer report (the debug build checks
        memory errors, undefined behaviour and leaks)."""
        code = self.proxy.stop()
        reports = sanitizer_lines(self.proxy.log())
        if code != 0 or reports:
            self.fail(Failure("exit", None, f"exit code {code}", "",
                              f"sanitizer lines: {reports[:5]}"))
