#!/usr/bin/python3
"""Generative differential tester of the whole proxy: the same random client streams go through
slotpilot (to a 3-master cluster) and to one standalone redis-server; replies are compared byte
for byte after normalising what is legitimately nondeterministic. See README.md in this folder.

    SLOTPILOT_BIN=/path/to/slotpilot /usr/bin/python3 difftest.py --duration 180
    /usr/bin/python3 difftest.py --replay SEED --client N      # one stream alone, then shrink
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Callable, Optional, Sequence

from execute import Failure, Pair
from families import ALL_FAMILIES, SOLO_FAMILY, take
from gen import Space
from integration_harness import harness
from killcheck import kill_check, stop_runaways
from ops import MAIN, Op, cli_line, cmd, program_lines
from resp import NoReply, Reply
from runner import SANITIZER_MARKERS, Run, Settings, proxy_alive, start_proxy, uses_asan
from shrink import Budget, Shrinker

DEFAULT_DURATION_S = 60.0
DEFAULT_CLIENTS = 16
REQUEST_TIMEOUT_S = 5.0   # passed to the proxy as --request-timeout
GRACE_S = 5.0             # a reply later than request timeout + grace is a hang
SHRINK_REQUEST_TIMEOUT_S = 1.0  # the shrinking proxy's: a hang costs 2.5 s per trial, not 10
SHRINK_GRACE_S = 1.5
SETTLE_S = 0.5  # after a trial, how long the proxy must survive its closed connections
# RSS bounds (README "Memory bound"). Measured peaks with 16 clients: about 125 MiB (release)
# and 410 MiB (ASan: a 256 MiB quarantine of freed memory, shadow memory, redzones).
RSS_BOUND_RELEASE_MIB = 512
RSS_BOUND_ASAN_MIB = 1024
# The cluster's nodes take SCRIPT KILL / FUNCTION KILL only once a script has run past
# busy-reply-threshold (until then they run nothing else). Its default, 5000 ms, equals the
# proxy's request timeout, so the end-of-run kill check would race the proxy's timeout of its
# own SCRIPT KILL; 200 ms keeps the kill well inside it. No script of the streams runs that
# long. The reference keeps the default: it is never asked to kill.
CLUSTER_ARGS = ("--busy-reply-threshold", "200")
SHRINK_TRIALS = 400
FLUSH_SCRIPTS = cmd("SCRIPT", "FLUSH")  # before every shrinking trial
SHOWN_BYTES = 300
SHOWN_LINES = 40  # of a reproduction; the file has all
UNATTRIBUTED = ("rss", "exit", "stuck", "tester", "killcheck")  # not caused by one op of one stream


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, help="seed of every stream (default: random, printed first)")
    p.add_argument("--duration", type=float, default=DEFAULT_DURATION_S, help="seconds of traffic")
    p.add_argument("--clients", type=int, default=DEFAULT_CLIENTS, help="concurrent client streams")
    p.add_argument("--bin", type=Path, help="slotpilot binary (default: $SLOTPILOT_BIN)")
    p.add_argument("--max-rss-mib", type=int, help=f"proxy RSS bound (default: {RSS_BOUND_ASAN_MIB} "
                   f"for an ASan build, else {RSS_BOUND_RELEASE_MIB})")
    p.add_argument("--families", default=",".join(ALL_FAMILIES),
                   help=f"comma-separated subset of: {', '.join(ALL_FAMILIES)}")
    p.add_argument("--verbose", action="store_true", help="log every op")
    p.add_argument("--replay", type=int, metavar="SEED", help="run one stream of this seed alone")
    p.add_argument("--client", type=int, help="the stream to replay (with --replay)")
    p.add_argument("--proxy-threads", type=int, default=2, help="slotpilot --threads")
    p.add_argument("--shrink-seconds", type=float, default=300.0,
                   help="time for shrinking failures to minimal reproductions (0: do not shrink)")
    p.add_argument("--no-kill-check", dest="kill_check", action="store_false",
                   help="skip the end-of-run SCRIPT KILL / FUNCTION KILL check (killcheck.py)")
    args = p.parse_args(argv)
    args.families = tuple(f.strip() for f in args.families.split(",") if f.strip())
    unknown = set(args.families) - set(ALL_FAMILIES)
    if unknown:
        p.error(f"unknown families: {sorted(unknown)}")
    if (args.replay is None) != (args.client is None):
        p.error("--replay SEED and --client N go together")
    return args


_LOG_LOCK = threading.Lock()


def log(message: str) -> None:
    """One line, whole, from any thread."""
    with _LOG_LOCK:
        sys.stdout.write(f"[{time.strftime('%H:%M:%S')}] {message}\n")
        sys.stdout.flush()


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    seed = args.replay if args.replay is not None else (
        args.seed if args.seed is not None else random.SystemRandom().randrange(10**9))
    print(f"difftest: seed {seed}", flush=True)
    settings = Settings(seed=seed, duration=args.duration, clients=args.clients,
                        binary=args.bin or harness.slotpilot_binary(), families=args.families,
                        request_timeout=REQUEST_TIMEOUT_S, grace=GRACE_S,
                        proxy_threads=args.proxy_threads, max_rss_mib=args.max_rss_mib,
                        verbose=args.verbose)
    started = time.monotonic()
    with harness.RedisCluster(masters=3, extra_args=CLUSTER_ARGS) as cluster, \
            harness.StandaloneRedis() as ref:
        proxy = start_proxy(cluster, settings.binary, settings.request_timeout, settings.proxy_threads)
        bound_mib = settings.max_rss_mib or (
            RSS_BOUND_ASAN_MIB if uses_asan(proxy.pid) else RSS_BOUND_RELEASE_MIB)
        log(f"slotpilot {settings.binary} (pid {proxy.pid}, {settings.proxy_threads} threads, "
            f"--request-timeout={settings.request_timeout:g}s, RSS bound {bound_mib} MiB); "
            f"cluster {cluster.seeds()}; reference {ref.address}")
        run = Run(settings, proxy, ref, bound_mib * 1024, log)
        clients = [args.client] if args.replay is not None else list(range(settings.clients))
        run.run_clients(clients)
        if args.replay is None and SOLO_FAMILY in settings.families and not run.failures:
            log("solo phase: whole-keyspace comparison")
            run.solo_phase()
        if args.kill_check and args.replay is None and not run.fatal():
            log("kill check: SCRIPT KILL and FUNCTION KILL of runaway calls through the proxy")
            kill_started = time.monotonic()
            problem = kill_check(proxy.port, seed, settings.bound)
            log(f"kill check: {'held' if problem is None else 'FAILED'} "
                f"({time.monotonic() - kill_started:.1f} s)")
            if problem is not None:
                stop_runaways([node.port for node in cluster.nodes], settings.bound)
                run.fail(Failure("killcheck", None, problem, "<not asked: a proxy-only check>",
                                 "the end-of-run kill check (killcheck.py) failed",
                                 family="killcheck"))
        if run.fatal():
            proxy.stop()
            print(f"slotpilot log:\n{log_excerpt(proxy.log())}", flush=True)
        else:
            run.stop_proxy_checked()
        elapsed = time.monotonic() - started
        report(run, settings, elapsed, bound_mib, replay_families(args))
        if run.failures and args.shrink_seconds > 0:
            shrink_failures(run.failures, settings, cluster, ref, args.shrink_seconds,
                            replay_families(args))
    print(f"difftest: seed {seed}: {'FAILED' if run.failures else 'passed'}", flush=True)
    return 1 if run.failures else 0


def replay_families(args: argparse.Namespace) -> str:
    """The --families argument a replay needs (streams depend on the family set)."""
    return "" if set(args.families) >= set(ALL_FAMILIES) else f" --families {','.join(args.families)}"


def log_excerpt(text: str, lines: int = 80) -> str:
    """The sanitizer report from its first line if there is one (the top of its stack is
    what matters), else the last lines."""
    all_lines = text.splitlines()
    start = next((i for i, line in enumerate(all_lines) if any(m in line for m in SANITIZER_MARKERS)),
                 max(0, len(all_lines) - lines))
    return "\n".join(all_lines[start:start + lines])


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def shown(reply: Reply | str) -> str:
    if isinstance(reply, NoReply):
        return str(reply)
    if isinstance(reply, str):
        return reply[:SHOWN_BYTES * 3]
    more = f" ... ({len(reply) - SHOWN_BYTES} more bytes)" if len(reply) > SHOWN_BYTES else ""
    return repr(reply[:SHOWN_BYTES]) + more


def shown_line(line: str) -> str:
    return line if len(line) <= SHOWN_BYTES else f"{line[:SHOWN_BYTES]} ... ({len(line)} chars)"


def describe(failure: Failure, settings: Settings, families_arg: str) -> str:
    lines = [f"{failure.kind} in family {failure.family or '-'}: seed {settings.seed}, "
             f"client {failure.client}, op {failure.op_index}, step {failure.step_index}"]
    if failure.command is not None:
        lines.append(f"  command:   {shown_line(cli_line(failure.command))}")
    lines += [f"  proxy:     {shown(failure.proxy)}", f"  reference: {shown(failure.reference)}"]
    if failure.detail:
        lines.append(f"  detail:    {failure.detail}")
    if failure.client >= 0 and failure.op_index >= 0:
        lines.append(f"  replay:    /usr/bin/python3 tests/difftest/difftest.py "
                     f"--replay {settings.seed} --client {failure.client}{families_arg}")
    return "\n".join(lines)


def report(run: Run, settings: Settings, elapsed: float, bound_mib: int, families_arg: str) -> None:
    print("\n==== summary ====", flush=True)
    print(f"seed {settings.seed}, {elapsed:.0f} s, {len(settings.families)} families, "
          f"peak proxy RSS {run.peak_rss_kib // 1024} MiB (bound {bound_mib} MiB)")
    for family in sorted(set(run.stats.ops) | set(settings.families)):
        ops, commands = run.stats.ops[family], run.stats.commands[family]
        print(f"  {family:<10} {ops:>8} ops {commands:>10} commands")
    print(f"  {'total':<10} {sum(run.stats.ops.values()):>8} ops "
          f"{sum(run.stats.commands.values()):>10} commands")
    if not run.failures:
        print("no mismatch, every invariant held", flush=True)
        return
    groups = group_by_signature(run.failures)
    print(f"\n==== {len(run.failures)} failures, {len(groups)} distinct ====")
    for signature, failures in groups.items():
        print(f"\n{describe(failures[0], settings, families_arg)}")
        others = [f"client {f.client} op {f.op_index}" for f in failures[1:]]
        if others:
            print(f"  same failure also in: {', '.join(others)}")
    sys.stdout.flush()


def group_by_signature(failures: Sequence[Failure]) -> dict[tuple, list[Failure]]:
    """Failures that are likely one bug: a crash is one whatever each client was doing; other
    failures are told apart by kind, command and family."""
    groups: dict[tuple, list[Failure]] = defaultdict(list)
    # First the failures a client saw (they name a command), then the watchdog's.
    for f in sorted(failures, key=lambda f: (f.client < 0, f.when)):
        key = (f.kind,) if f.kind == "crash" else (f.kind, f.family) + f.signature()[1:]
        groups[key].append(f)
    return dict(groups)


# --------------------------------------------------------------------------------------------
# Shrinking
# --------------------------------------------------------------------------------------------


class ShrinkTarget:
    """A fresh proxy (on the same cluster and reference) that runs trial programs, each under
    a new epoch (fresh keys); restarted whenever a trial kills it."""

    def __init__(self, cluster: harness.RedisCluster, ref: harness.StandaloneRedis,
                 settings: Settings) -> None:
        self._cluster = cluster
        self._ref = ref
        self._settings = settings
        self._proxy = None
        self._epoch = 0
        self._fresh_next = True
        self.crash_log = ""

    def runner(self, client: int, deadline: float) -> Callable[[list[Op]], Optional[Failure]]:
        """Runs a program of `client`'s ops; gives up (no failure) at `deadline`."""
        original = Space(self._settings.seed, client).token.encode()

        def run(program: list[Op]) -> Optional[Failure]:
            self._epoch += 1
            fresh = Space(self._settings.seed, client, self._epoch).token.encode()
            proxy = self._live_proxy()
            pair = Pair(proxy.port, self._ref.port, SHRINK_REQUEST_TIMEOUT_S + SHRINK_GRACE_S,
                        lambda: proxy_alive(proxy))
            failure = None
            try:
                # Script bodies name the client, not the epoch (stable SHAs), so the script
                # caches (the reference's, the masters' and the proxy's memory of bodies) would
                # carry one trial's EVALs into the next: each trial starts with none.
                for side in (pair.proxy, pair.ref):
                    side.call(MAIN, [FLUSH_SCRIPTS])
                for op in program:
                    if time.monotonic() >= deadline:
                        break
                    failure = pair.run_op(op.renamed(original, fresh))
                    if failure is not None:
                        break
            finally:
                pair.close()
            failure = self._settled(proxy, failure)
            self._fresh_next = failure is not None
            return failure
        return run

    def _settled(self, proxy, failure: Optional[Failure]) -> Optional[Failure]:
        """A proxy that dies while the trial's connections close (requests abandoned) died of
        this trial: that is its outcome, whatever came first."""
        deadline = time.monotonic() + SETTLE_S
        while proxy_alive(proxy) and time.monotonic() < deadline:
            time.sleep(0.05)
        if proxy_alive(proxy):
            return failure
        self.crash_log = log_excerpt(proxy.log())
        if failure is not None and failure.kind == "crash":
            return failure
        return Failure("crash", failure.command if failure else None, "<the proxy died>", "",
                       f"after {failure.kind if failure else 'the trial'}: the proxy died")

    def _live_proxy(self):
        """The proxy for the next trial: a new one after any failure, so that requests a
        failed trial left behind cannot crash a later trial."""
        if self._proxy is None or self._fresh_next or not proxy_alive(self._proxy):
            if self._proxy is not None:
                self._proxy.stop()
            self._proxy = start_proxy(self._cluster, self._settings.binary,
                                      SHRINK_REQUEST_TIMEOUT_S, self._settings.proxy_threads)
        return self._proxy

    def stop(self) -> None:
        if self._proxy is not None:
            self._proxy.stop()


def shrink_failures(failures: Sequence[Failure], settings: Settings, cluster: harness.RedisCluster,
                    ref: harness.StandaloneRedis, seconds: float, families_arg: str) -> None:
    """One minimal reproduction per distinct failure, within `seconds` overall."""
    groups = {sig: [f for f in fs if f.client >= 0 and f.op_index >= 0]
              for sig, fs in group_by_signature(failures).items() if sig[0] not in UNATTRIBUTED}
    groups = {sig: fs for sig, fs in groups.items() if fs}
    deadline = time.monotonic() + seconds
    target = ShrinkTarget(cluster, ref, settings)
    try:
        for i, (signature, candidates) in enumerate(groups.items()):
            share = (deadline - time.monotonic()) / (len(groups) - i)
            if share <= 0:
                break
            budget = Budget(SHRINK_TRIALS, share)
            log(f"shrinking {' '.join(signature)} with up to {share:.0f} s")
            shrink_one(candidates, settings, target, budget, families_arg)
    finally:
        target.stop()


def shrink_one(candidates: Sequence[Failure], settings: Settings, target: ShrinkTarget,
               budget: Budget, families_arg: str) -> None:
    """Finds a stream that fails alone and shrinks it. The failing op alone often suffices, so
    every candidate's last op is tried first, then longer and longer tails of each stream."""
    streams = [(f, take(settings.seed, f.client, settings.families, f.op_index + 1))
               for f in candidates]
    tried: set[tuple[int, int]] = set()
    for length in suffix_lengths(max(len(ops) for _, ops in streams)):
        for failure, ops in streams:
            tail_ops = ops[-length:]
            if (failure.client, len(tail_ops)) in tried:
                continue
            tried.add((failure.client, len(tail_ops)))
            shrinker = Shrinker(target.runner(failure.client, budget.deadline),
                                failure.signature(), budget)
            shrunk = shrinker.shrink(tail_ops)
            if shrunk is not None:
                print_reproduction(failure, shrunk, settings, target, families_arg)
                return
    print("  not reproduced by a stream alone on a fresh proxy (depends on the concurrency, or "
          "the shrink budget ran out); replay it with the command above", flush=True)


def suffix_lengths(n: int) -> list[int]:
    lengths, k = [], 1
    while k < n:
        lengths.append(k)
        k *= 10
    return lengths + [n]


def print_reproduction(failure: Failure, shrunk, settings: Settings, target: ShrinkTarget,
                       families_arg: str) -> None:
    lines = program_lines(shrunk.program)
    path = Path(tempfile.gettempdir()) / f"difftest-repro-s{settings.seed}-c{failure.client}.txt"
    header = (f"# difftest seed {settings.seed} client {failure.client} op {failure.op_index}: "
              f"{' '.join(failure.signature())}\n# replay: difftest.py --replay {settings.seed} "
              f"--client {failure.client}{families_arg}\n")
    path.write_text(header + "\n".join(lines) + "\n")
    print(f"\n==== minimal reproduction: {' '.join(failure.signature())}, seed {settings.seed}, client "
          f"{failure.client} ({sum(op.command_count() for op in shrunk.program)} commands, "
          f"{shrunk.trials} trials; full lines in {path}) ====")
    shown_lines = lines if len(lines) <= SHOWN_LINES else (
        lines[:SHOWN_LINES - 10] + [f"... ({len(lines) - SHOWN_LINES + 1} more lines in the file)"]
        + lines[-9:])
    for line in shown_lines:
        print(f"  {shown_line(line)}")
    if shrunk.failure is None:
        print("  (the budget ran out, and this last program no longer fails by itself: the "
              "failure needs more of the stream, or is intermittent)")
    else:
        if shrunk.failure.command is not None:
            print(f"  -> failing command: {shrunk.failure.command.name} "
                  f"({len(shrunk.failure.command.args) - 1} arguments)")
        print(f"  -> proxy:     {shown(shrunk.failure.proxy)}")
        print(f"  -> reference: {shown(shrunk.failure.reference)}")
        if shrunk.failure.kind == "crash" and target.crash_log:
            print(f"  slotpilot log after the crash:\n{target.crash_log}")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
