#!/usr/bin/python3
"""Client-conformance driver: real client libraries against slotpilot and a standalone Redis.

Starts (with ../integration/harness.py) a 3-master Redis Cluster with slotpilot ($SLOTPILOT_BIN)
in front of it, and one standalone redis-server; runs every suite (ioredis 5, node-redis 4,
node-redis 5, python3-redis) against each target; fails if any test fails, or if a test's outcome
or its summary of what it read back differs between the targets. Every suite run is bounded in
time; the servers are stopped by PID.

Run: SLOTPILOT_BIN=build/debug/proxy/slotpilot /usr/bin/python3 tests/clients/run_clients.py
     [--targets standalone,slotpilot] [--suites ioredis,redis4,redis5,redis-py] [--serve SECONDS]
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import dataclasses
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator, Optional

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "integration"))

import harness  # noqa: E402
from harness import HarnessError, Proxy, RedisCluster, StandaloneRedis  # noqa: E402
from test_data_path import SANITIZER_MARKERS, stop_proxy_checked  # noqa: E402

PYTHON = "/usr/bin/python3"  # Debian's, with python3-redis
NODE_REPORTER = ["--test-reporter=./node/reporter.mjs"]
# Both targets' servers: a script running longer than this gets other clients BUSY replies and
# can be killed (SCRIPT KILL / FUNCTION KILL); 1 s keeps those scenarios well inside slotpilot's
# default 5 s request timeout.
SERVER_ARGS = ["--busy-reply-threshold", "1000"]
SUITE_TIMEOUT_S = 420.0
# The whole run's budget, below the CTest TIMEOUT (1800 s) so that the report is always printed:
# suites that would start after it are reported as failures instead.
TOTAL_BUDGET_S = 1500.0
INSTALL_HINT = "run deploy/install-deps.sh (it runs `npm ci` in tests/clients)"
NODE_PACKAGES = ("ioredis", "redis4", "redis5")


@dataclasses.dataclass(frozen=True)
class Suite:
    name: str
    argv: list[str]  # run from HERE; the results file is appended by command()


def node_suite(name: str) -> Suite:
    return Suite(name, ["node", f"node/{name}.test.js"])


SUITES = [node_suite("ioredis"), node_suite("redis4"), node_suite("redis5"),
          Suite("redis-py", [PYTHON, "python/test_redis_py.py"])]


def command(suite: Suite, results: Path) -> list[str]:
    """The suite's argv with its results going to `results` (JSON lines)."""
    if suite.argv[0] == "node":
        return ["node", *NODE_REPORTER, f"--test-reporter-destination={results}",
                "--test-reporter=spec", "--test-reporter-destination=stdout", *suite.argv[1:]]
    return [*suite.argv, "--results", str(results)]


@dataclasses.dataclass
class SuiteRun:
    target: str
    suite: str
    returncode: Optional[int]  # None: killed at the time bound
    outcomes: dict[str, tuple[str, Optional[str]]]  # test name -> (outcome, error)
    summaries: dict[str, object]
    problems: list[str]  # things that fail the run besides test outcomes


# --------------------------------------------------------------------------------------------
# Preconditions
# --------------------------------------------------------------------------------------------


def check_node_modules() -> Optional[str]:
    """A message if node or the pinned node packages are missing, else None."""
    modules = HERE / "node_modules"
    if not modules.is_dir():
        return f"tests/clients/node_modules is missing: {INSTALL_HINT}"
    locked = json.loads((HERE / "package-lock.json").read_text())["packages"]
    for package in NODE_PACKAGES:
        meta = modules / package / "package.json"
        if not meta.is_file():
            return f"node package {package} is missing from tests/clients/node_modules: {INSTALL_HINT}"
        installed = json.loads(meta.read_text())["version"]
        pinned = locked[f"node_modules/{package}"]["version"]
        if installed != pinned:
            return f"{package} {installed} is installed but package-lock.json pins {pinned}: {INSTALL_HINT}"
    try:
        subprocess.run(["node", "--version"], capture_output=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return "`node --version` failed: install Node.js 18.19+ (deploy/install-deps.sh checks it)"
    return None


def _output(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip()
    except OSError:
        return ""


def installed_versions() -> dict[str, str]:
    """Versions of the runtimes and client libraries actually installed (for the log)."""
    versions = {"node": _output(["node", "--version"]) or "missing"}
    for package in NODE_PACKAGES:
        meta = HERE / "node_modules" / package / "package.json"
        versions[package] = json.loads(meta.read_text())["version"] if meta.is_file() else "missing"
    versions["python3-redis"] = _output([PYTHON, "-c", "import redis; print(redis.__version__)"]) or "missing"
    return versions


# --------------------------------------------------------------------------------------------
# Running one suite against one target
# --------------------------------------------------------------------------------------------

_LIBC = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def _die_with(parent_pid: int) -> Callable[[], None]:
    """A preexec_fn: the suite gets SIGKILL if this driver dies (e.g. at a CTest timeout)."""

    def preexec() -> None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:  # the driver died before prctl took effect
            os._exit(1)

    return preexec


def run_suite(suite: Suite, target: str, port: int, run_id: str, workdir: Path,
              timeout: float) -> SuiteRun:
    """Runs one suite as a child process (stopped by PID at `timeout`) and reads its results."""
    results = workdir / f"{target}.{suite.name}.jsonl"
    env = dict(os.environ, REDIS_HOST=harness.HOST, REDIS_PORT=str(port),
               CLIENTS_RUN_ID=run_id, PYTHONDONTWRITEBYTECODE="1")
    print(f"\n===== {suite.name} against {target} ({harness.HOST}:{port}) =====", flush=True)
    proc = subprocess.Popen(command(suite, results), cwd=HERE, env=env, stdin=subprocess.DEVNULL,
                            preexec_fn=_die_with(os.getpid()))
    problems = []
    try:
        returncode: Optional[int] = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=30)
        returncode = None
        problems.append(f"suite killed after {timeout:g} s")
    outcomes, summaries = read_results(results)
    if not outcomes:
        problems.append(f"suite reported no test results (exit code {returncode})")
    elif returncode not in (0, None) and all(o == "pass" for o, _ in outcomes.values()):
        problems.append(f"suite exited with {returncode} although every test passed")
    return SuiteRun(target, suite.name, returncode, outcomes, summaries, problems)


def read_results(path: Path) -> tuple[dict[str, tuple[str, Optional[str]]], dict[str, object]]:
    outcomes: dict[str, tuple[str, Optional[str]]] = {}
    summaries: dict[str, object] = {}
    if not path.exists():
        return outcomes, summaries
    for line in path.read_text(errors="replace").splitlines():
        if not line.strip():
            continue
        entry = json.loads(line)
        if entry["kind"] == "result":
            outcomes[entry["name"]] = (entry["outcome"], entry.get("error"))
        elif entry["kind"] == "summary":
            summaries[entry["name"]] = entry["summary"]
    return outcomes, summaries


# --------------------------------------------------------------------------------------------
# Targets
# --------------------------------------------------------------------------------------------


class ProxyTarget:
    """slotpilot in front of a 3-master cluster. After each suite: sanitizer reports (the debug
    build has ASan + UBSan) found in its log are that suite's failure, and a crashed proxy is
    restarted so that one crash fails that suite and not every later one."""

    def __init__(self, cluster: RedisCluster) -> None:
        self.cluster = cluster
        self.proxy = Proxy(cluster).start()
        self._log_lines_seen = 0

    @property
    def port(self) -> int:
        return self.proxy.port

    def after_suite(self, run: SuiteRun) -> None:
        lines = self.proxy.log().splitlines()
        new_lines, self._log_lines_seen = lines[self._log_lines_seen:], len(lines)
        reports = [line for line in new_lines if any(m in line for m in SANITIZER_MARKERS)]
        if reports:
            run.problems.append(f"slotpilot sanitizer reports during the suite: {reports[:5]}")
        if self.proxy.running():
            return
        code = self.proxy.stop()
        tail = "\n".join(self.proxy.log().splitlines()[-40:])
        run.problems.append(f"slotpilot exited with {code} during the suite; log tail:\n{tail}")
        try:
            self.proxy = Proxy(self.cluster).start()
            self._log_lines_seen = 0
        except HarnessError as e:  # later suites then fail on the dead port
            run.problems.append(f"slotpilot could not be restarted: {e}")

    def stop(self, problems: list[str]) -> None:
        """Stops slotpilot; a non-zero exit or a sanitizer report is added to `problems`."""
        try:
            stop_proxy_checked(self.proxy)
        except AssertionError as e:
            problems.append(f"slotpilot at shutdown: {e}")


Target = tuple[Callable[[], int], Callable[[SuiteRun], None]]  # port getter, after-suite check


@contextlib.contextmanager
def started_targets(names: list[str], problems: list[str]) -> Iterator[dict[str, Target]]:
    """Yields {target name: Target}; stops everything on exit (shutdown problems go to
    `problems`)."""
    with contextlib.ExitStack() as stack:
        targets = {}
        if "standalone" in names:
            server = stack.enter_context(StandaloneRedis(extra_args=SERVER_ARGS))
            targets["standalone"] = (lambda: server.port, lambda run: None)
        if "slotpilot" in names:
            cluster = stack.enter_context(RedisCluster(masters=3, extra_args=SERVER_ARGS))
            proxy = ProxyTarget(cluster)
            stack.callback(proxy.stop, problems)
            targets["slotpilot"] = (lambda: proxy.port, proxy.after_suite)
        yield {name: targets[name] for name in names}


# --------------------------------------------------------------------------------------------
# Comparing and reporting
# --------------------------------------------------------------------------------------------


def compare(runs: list[SuiteRun], targets: list[str]) -> list[tuple[str, bool]]:
    """Differences between targets, per suite and test, as (text, already failed): outcomes, and
    summaries of tests that passed everywhere. A test that failed somewhere is counted as a
    failure already; its outcome difference is listed for the reader, not counted again."""
    differences = []
    by_key = {(r.suite, r.target): r for r in runs}
    for suite in dict.fromkeys(r.suite for r in runs):
        per_target = [by_key[(suite, t)] for t in targets if (suite, t) in by_key]
        if len(per_target) < 2:
            continue
        for name in sorted(set().union(*(r.outcomes for r in per_target))):
            outcomes = {r.target: r.outcomes.get(name, ("missing", None))[0] for r in per_target}
            if len(set(outcomes.values())) > 1:
                failed = "fail" in outcomes.values()  # a missing result counts here
                differences.append((f"{suite} / {name}: outcomes differ: {outcomes}", failed))
                continue
            summaries = {r.target: r.summaries.get(name) for r in per_target}
            if len({json.dumps(s, sort_keys=True) for s in summaries.values()}) > 1:
                differences.append((f"{suite} / {name}: results differ: {summaries}", False))
    return differences


def first_lines(text: Optional[str], lines: int = 8, width: int = 300) -> str:
    return "\n       ".join(line[:width] for line in (text or "").splitlines()[:lines])


def report(runs: list[SuiteRun], differences: list[tuple[str, bool]], problems: list[str]) -> int:
    """Prints the per-test table, every problem and difference; returns the exit status."""
    passed, failed = 0, len(problems)
    print("\n===== client conformance: results =====")
    for run in runs:
        for name, (outcome, error) in run.outcomes.items():
            ok = outcome in ("pass", "skip")
            passed, failed = passed + ok, failed + (not ok)
            line = f"{outcome.upper():4} {run.target:10} {run.suite:8} {name}"
            print(line + ("" if ok else f"\n       {first_lines(error)}"))
        for problem in run.problems:
            failed += 1
            print(f"FAIL {run.target:10} {run.suite:8} {problem}")
    for text, already_failed in differences:
        failed += not already_failed
        print(f"DIFF {text}")
    for problem in problems:
        print(f"FAIL {problem}")
    print(f"\n{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


def serve(names: list[str], seconds: float) -> int:
    """Starts the targets, prints where they listen, and keeps them up for `seconds`."""
    problems: list[str] = []
    with started_targets(names, problems) as targets:
        for name, (port, _) in targets.items():
            print(f"{name}: REDIS_HOST={harness.HOST} REDIS_PORT={port()}", flush=True)
        time.sleep(seconds)
    for problem in problems:
        print(problem)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default="standalone,slotpilot")
    parser.add_argument("--suites", default=",".join(s.name for s in SUITES))
    parser.add_argument("--suite-timeout", type=float, default=SUITE_TIMEOUT_S)
    parser.add_argument("--budget", type=float, default=TOTAL_BUDGET_S,
                        help="seconds for the whole run; suites past it are reported as failed")
    parser.add_argument("--serve", type=float, metavar="SECONDS",
                        help="only start the targets and keep them up this long (for manual runs)")
    args = parser.parse_args()
    target_names = [t for t in args.targets.split(",") if t]
    if unknown := set(target_names) - {"standalone", "slotpilot"}:
        parser.error(f"unknown targets {sorted(unknown)}")
    if args.serve is not None:
        return serve(target_names, args.serve)
    suites = [s for s in SUITES if s.name in args.suites.split(",")]
    if not suites:
        parser.error(f"no suite among {args.suites!r}")
    if any(s.argv[0] == "node" for s in suites) and (problem := check_node_modules()):
        print(f"FAIL: {problem}", flush=True)
        return 1
    print(f"versions: {installed_versions()}", flush=True)

    run_id = f"{int(time.time()):x}-{os.getpid()}"
    deadline = time.monotonic() + args.budget
    runs: list[SuiteRun] = []
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="slotpilot-clients-") as workdir, \
            started_targets(target_names, problems) as targets:
        for name, (port, after_suite) in targets.items():
            for suite in suites:
                remaining = deadline - time.monotonic()
                if remaining < 30:
                    runs.append(SuiteRun(name, suite.name, None, {}, {},
                                         [f"not run: the {args.budget:g} s budget is spent"]))
                    continue
                run = run_suite(suite, name, port(), f"{run_id}-{name}", Path(workdir),
                                min(args.suite_timeout, remaining))
                after_suite(run)
                runs.append(run)
    return report(runs, compare(runs, target_names), problems)


if __name__ == "__main__":
    sys.exit(main())
