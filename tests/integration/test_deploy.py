"""The deployment artefacts of deploy/ (issue 8), checked against the built binary so they cannot
drift from it: the Dockerfile's runtime packages against `ldd` (no Docker engine needed), the
Kubernetes manifests, the systemd unit and the alert rules against the binary's real flags,
defaults, admin endpoints and metric names, every YAML file with yamllint, the rules with
promtool, and the configuration reference in deploy/README.md against --print-config-reference.
No cluster: the one running proxy points at a closed port (its /metrics lists every family).

Run: cd tests/integration && SLOTPILOT_BIN=... /usr/bin/python3 -m unittest -v test_deploy
"""

from __future__ import annotations

import functools
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import threading
import unittest
from http.client import HTTPConnection
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Optional

import yaml

import harness

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
ADMIN_SOURCE = REPO / "proxy" / "admin_server.cc"
REGENERATE = "deploy/update-reference.sh $SLOTPILOT_BIN"
# Runtime libraries of a sanitizer build (tests run one); the release image has none.
SANITIZER_PACKAGE = re.compile(r"^lib(asan|ubsan|tsan|lsan|hwasan)\d*$")
CMD_TIMEOUT_S = 30


def run(argv: list[str], check: bool = False, **kwargs: Any) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=CMD_TIMEOUT_S,
                          check=check, **kwargs)


def binary() -> str:
    return str(harness.slotpilot_binary())


# --------------------------------------------------------------------------------------------
# What the binary says about itself
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def option_names() -> frozenset[str]:
    """Every option flag of `slotpilot --help` (without "--")."""
    text = run([binary(), "--help"], check=True).stdout
    return frozenset(re.findall(r"^  --([a-z0-9-]+)[=\[]", text, re.M))


@functools.lru_cache(maxsize=None)
def action_flags() -> frozenset[str]:
    text = run([binary(), "--help"], check=True).stdout
    actions = text.split("Actions:\n", 1)[1].split("\n\n", 1)[0]
    return frozenset(re.findall(r"--([a-z-]+)", actions))


@functools.lru_cache(maxsize=None)
def reference() -> str:
    return run([binary(), "--print-config-reference"], check=True).stdout


def default_of(option: str) -> str:
    """The default of an option as the reference table prints it."""
    match = re.search(rf"^\| `--{re.escape(option)}` \|[^|]*\|[^|]*\| `([^`]*)` \|", reference(),
                      re.M)
    assert match, f"--{option} not in --print-config-reference"
    return match.group(1)


def port_of(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1])


def seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)(ms|s|m|h)?", duration)
    assert match, f"not a duration: {duration}"
    unit = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 0.001}[match.group(2)]
    return int(match.group(1)) * unit


@functools.lru_cache(maxsize=None)
def admin_paths() -> frozenset[tuple[str, str]]:
    """(METHOD, path) of every route in proxy/admin_server.cc; regex parts become {slot} etc."""
    source = ADMIN_SOURCE.read_text()
    routes = set()
    for method, raw, plain in re.findall(r'\bs\.(Get|Post|Put|Delete)\((?:R"\((.*?)\)"|"(.*?)")',
                                         source):
        path = (raw or plain).replace(r"(\d+)", "{slot}")
        alternatives = re.search(r"\(([a-z|]+)\)", path)
        if alternatives:
            for word in alternatives.group(1).split("|"):
                routes.add((method.upper(), path.replace(alternatives.group(0), word)))
        else:
            routes.add((method.upper(), path))
    assert ("GET", "/healthz") in routes, routes
    return frozenset(routes)


def get_paths() -> set[str]:
    return {path for method, path in admin_paths() if method == "GET"}


def check_config(config_text: str, extra: list[str] = ()) -> dict[str, str]:
    """`slotpilot --check-config --config=FILE ...` -> the effective configuration it prints."""
    with tempfile.TemporaryDirectory(prefix="slotpilot-deploy-") as tmp:
        path = Path(tmp) / "slotpilot.yaml"
        path.write_text(config_text)
        result = run([binary(), "--check-config", f"--config={path}", *extra])
    assert result.returncode == 0, f"--check-config failed: {result.stderr}"
    return dict(line.split("=", 1) for line in result.stdout.splitlines())


# --------------------------------------------------------------------------------------------
# Dockerfile
# --------------------------------------------------------------------------------------------


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """[(INSTRUCTION, arguments)] per stage; continuation lines joined, comments dropped."""
    lines = [l for l in (DEPLOY / "Dockerfile").read_text().splitlines()
             if not l.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    stages: list[list[tuple[str, str]]] = []
    for line in joined.splitlines():
        if not line.strip():
            continue
        instruction, _, args = line.strip().partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((instruction.upper(), " ".join(args.split())))
    return stages


def apt_packages(stage: list[tuple[str, str]]) -> set[str]:
    packages = set()
    for instruction, args in stage:
        if instruction != "RUN":
            continue
        for command in re.split(r"&&|;", args):
            words = command.split()
            if words[:2] == ["apt-get", "install"]:
                packages.update(w for w in words[2:] if not w.startswith("-"))
    return packages


def dpkg_package(library: str) -> str:
    real = os.path.realpath(library)
    candidates = [real, library]
    for path in list(candidates):  # merged /usr: dpkg knows one spelling of the path
        candidates.append(path[4:] if path.startswith("/usr/") else "/usr" + path)
    for path in candidates:
        result = run(["dpkg", "-S", path])
        for line in result.stdout.splitlines():
            if not line.startswith("diversion"):
                return line.split(":", 1)[0]
    raise AssertionError(f"no Debian package owns {library}")


@functools.lru_cache(maxsize=None)
def ldd_packages() -> frozenset[str]:
    """Debian packages of every shared library `ldd` resolves for the binary."""
    out = run(["ldd", binary()], check=True).stdout
    libraries = re.findall(r"=> (/\S+)", out) + re.findall(r"^\s+(/\S+) \(", out, re.M)
    packages = {dpkg_package(lib) for lib in libraries}
    return frozenset(p for p in packages if not SANITIZER_PACKAGE.match(p))


def exec_form(args: str) -> Optional[list[str]]:
    try:
        value = yaml.safe_load(args)  # a JSON array is YAML
    except yaml.YAMLError:
        return None
    return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None


class DockerfileTest(unittest.TestCase):
    def setUp(self) -> None:
        self.stages = dockerfile_stages()
        self.assertGreaterEqual(len(self.stages), 2, "multi-stage build expected")
        self.build, self.runtime = self.stages[0], self.stages[-1]

    def instructions(self, stage: list[tuple[str, str]], name: str) -> list[str]:
        return [args for instruction, args in stage if instruction == name]

    def test_runtime_packages_are_exactly_the_linked_libraries(self) -> None:
        listed = apt_packages(self.runtime)
        needed = ldd_packages()
        self.assertIn("libuv1", needed)  # sanity: the mapping worked
        self.assertEqual(sorted(listed - needed), [], "packages the binary does not link")
        self.assertEqual(sorted(needed - listed), [], "linked libraries missing from the image")

    def test_both_stages_use_bookworm_slim(self) -> None:
        args = dict(re.findall(r"^ARG (\w+)=(\S+)", (DEPLOY / "Dockerfile").read_text(), re.M))
        for stage in self.stages:
            image = stage[0][1].split()[0]
            image = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), image)
            self.assertEqual(image, "debian:bookworm-slim")

    def test_build_stage_uses_the_readme_recipe(self) -> None:
        runs = " ".join(self.instructions(self.build, "RUN"))
        self.assertIn("deploy/install-deps.sh", runs)
        self.assertIn("cmake --preset release", runs)
        self.assertIn("cmake --build --preset release", runs)
        readme = (REPO / "README.md").read_text()
        self.assertIn("cmake --preset release && cmake --build --preset release", readme)
        self.assertTrue((DEPLOY / "install-deps.sh").is_file())

    def test_runtime_user_entrypoint_healthcheck(self) -> None:
        users = self.instructions(self.runtime, "USER")
        self.assertTrue(users, "no USER in the runtime stage")
        user = users[-1].split(":")[0]
        self.assertNotIn(user, ("root", "0"))
        entrypoint = exec_form(self.instructions(self.runtime, "ENTRYPOINT")[-1])
        self.assertIsNotNone(entrypoint, "ENTRYPOINT must be exec-form (a JSON array)")
        copies = self.instructions(self.runtime, "COPY")
        self.assertTrue(any(c.split()[-1] == entrypoint[0] for c in copies),
                        f"{entrypoint[0]} is not what the runtime stage copies in")
        health = self.instructions(self.runtime, "HEALTHCHECK")
        self.assertEqual(len(health), 1)
        command = exec_form(health[0].split(" CMD ", 1)[1])
        self.assertIsNotNone(command, "HEALTHCHECK CMD must be exec-form")
        self.assertEqual(command[0], entrypoint[0])
        probe = [a for a in command if a.startswith("--healthcheck=")]
        self.assertEqual(len(probe), 1, command)
        self.assertIn("healthcheck", action_flags())
        self.assertEqual(port_of(probe[0]), port_of(default_of("admin-listen")))
        exposed = {int(p) for e in self.instructions(self.runtime, "EXPOSE") for p in e.split()}
        self.assertEqual(exposed, {port_of(default_of("listen")),
                                   port_of(default_of("admin-listen"))})
        labels = " ".join(self.instructions(self.runtime, "LABEL"))
        for label in ("title", "description", "version", "revision"):
            self.assertIn(f"org.opencontainers.image.{label}=", labels)


class _Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        code = self.status if self.path == "/healthz" else 404
        self.send_response(code)
        self.send_header("Content-Length", "3")
        self.end_headers()
        self.wfile.write(b"ok\n")

    def log_message(self, *args: Any) -> None:
        pass


class HealthcheckFlagTest(unittest.TestCase):
    """`slotpilot --healthcheck=HOST:PORT` (the image's HEALTHCHECK) against a stand-in server."""

    def probe(self, port: int) -> subprocess.CompletedProcess:
        return run([binary(), f"--healthcheck={harness.HOST}:{port}"])

    def test_exit_code_follows_healthz(self) -> None:
        for status, expected in ((200, 0), (503, 1)):
            handler = type("Handler", (_Health,), {"status": status})
            server = ThreadingHTTPServer((harness.HOST, 0), handler)
            thread = threading.Thread(target=server.serve_forever, daemon=True)
            thread.start()
            try:
                result = self.probe(server.server_address[1])
            finally:
                server.shutdown()
                server.server_close()
            self.assertEqual(result.returncode, expected, result.stderr)
            if expected:
                self.assertIn("HTTP 503", result.stderr)

    def test_nothing_listening_is_unhealthy(self) -> None:
        with harness.free_port_block(1, bus=False) as block:
            result = self.probe(block.ports[0])
        self.assertEqual(result.returncode, 1)
        self.assertIn("unhealthy", result.stderr)


# --------------------------------------------------------------------------------------------
# YAML, alert rules, metrics, docs
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def exported_metrics() -> frozenset[str]:
    """Metric families of a live /metrics: a proxy whose only seed is a closed port."""
    with harness.free_port_block(1, bus=False) as closed:
        proxy = harness.Proxy([f"{harness.HOST}:{closed.ports[0]}"]).start()
        try:
            conn = HTTPConnection(harness.HOST, proxy.admin_port, timeout=5)
            conn.request("GET", "/metrics")
            body = conn.getresponse().read().decode()
            conn.close()
        finally:
            proxy.stop()
    families = frozenset(re.findall(r"^# TYPE (slotpilot_\w+) ", body, re.M))
    assert "slotpilot_requests_total" in families, body[:500]
    return families


def yaml_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml")) + \
        [DEPLOY / ".yamllint"]


class YamlAndRulesTest(unittest.TestCase):
    def test_yamllint(self) -> None:
        yamllint = shutil.which("yamllint")
        if yamllint is None:
            self.skipTest("yamllint not installed (Debian package yamllint)")
        result = run([yamllint, "--strict", "-c", str(DEPLOY / ".yamllint"),
                      *map(str, yaml_files())])
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertGreaterEqual(len(yaml_files()), 5)

    def test_promtool_check_and_unit_test_rules(self) -> None:
        promtool = shutil.which("promtool")
        if promtool is None:
            self.skipTest("promtool not installed (Debian package prometheus)")
        rules = DEPLOY / "prometheus"
        checked = run([promtool, "check", "rules", "alerts.yaml"], cwd=rules)
        self.assertEqual(checked.returncode, 0, checked.stdout + checked.stderr)
        tested = run([promtool, "test", "rules", "alerts_test.yaml"], cwd=rules)
        self.assertEqual(tested.returncode, 0, tested.stdout + tested.stderr)

    def test_alerts_cover_the_issue_and_use_real_metrics(self) -> None:
        rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yaml").read_text())
        exprs = {r["alert"]: r["expr"] for g in rules["groups"] for r in g["rules"]}
        used = {m for e in exprs.values() for m in re.findall(r"\bslotpilot_\w+", e)}
        self.assertEqual(sorted(used - exported_metrics()), [], "metrics the binary does not export")
        joined = "\n".join(exprs.values())
        for needle in ("slotpilot_watcher_open_slot_age_seconds", "> 1800",
                       "slotpilot_watcher_stuck_slots", "slotpilot_redirect_loops_total",
                       "slotpilot_topology_slots_assigned", "< 16384",
                       "slotpilot_cluster_flagged_nodes", "slotpilot_cluster_replica_link_up"):
            self.assertIn(needle, joined)

    def test_guide_documents_every_metric_and_endpoint(self) -> None:
        guide = (DEPLOY / "README.md").read_text()
        documented = set(re.findall(r"^\| `(slotpilot_\w+)` \|", guide, re.M))
        self.assertEqual(sorted(exported_metrics() - documented), [], "undocumented metrics")
        self.assertEqual(sorted(documented - exported_metrics()), [], "documented, not exported")
        rows = set(re.findall(r"^\| `(GET|POST|PUT|DELETE) (/[^` ]*)` \|", guide, re.M))
        self.assertEqual(sorted(admin_paths() - rows), [], "undocumented admin endpoints")
        self.assertEqual(sorted(rows - admin_paths()), [], "documented endpoints that do not exist")
        for verdict in re.findall(r'return "([a-z-]+)";',
                                  _function(REPO / "migration" / "stuck_detector.cc",
                                            "VerdictName")):
            self.assertIn(f"| `{verdict}` |", guide, verdict)

    def test_config_reference_is_generated(self) -> None:
        guide = (DEPLOY / "README.md").read_text()
        match = re.search(r"^<!-- BEGIN CONFIG REFERENCE.*?-->\n(.*)^<!-- END CONFIG REFERENCE -->",
                          guide, re.M | re.S)
        self.assertIsNotNone(match, "deploy/README.md lacks the CONFIG REFERENCE markers")
        self.assertEqual(match.group(1), reference().rstrip("\n") + "\n",
                         f"deploy/README.md's reference is stale; run: {REGENERATE}")
        self.assertIn("deploy/README.md", (REPO / "README.md").read_text())


def _function(path: Path, name: str) -> str:
    text = path.read_text()
    start = text.index(f" {name}(")
    return text[start:text.index("\n}\n", start)]


# --------------------------------------------------------------------------------------------
# Kubernetes
# --------------------------------------------------------------------------------------------


def k8s_documents(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((DEPLOY / "k8s" / name).read_text()) if d]


def flag_value(args: list[str], flag: str) -> Optional[str]:
    for arg in args:
        if arg.startswith(f"--{flag}="):
            return arg.split("=", 1)[1]
    return None


class KubernetesTest(unittest.TestCase):
    def setUp(self) -> None:
        docs = k8s_documents("deployment.yaml")
        self.by_kind: dict[str, list[dict]] = {}
        for d in docs:
            self.by_kind.setdefault(d["kind"], []).append(d)
        self.deployment = self.by_kind["Deployment"][0]
        self.pod = self.deployment["spec"]["template"]
        containers = self.pod["spec"]["containers"]
        self.sidecar = next(c for c in containers if c["name"] == "slotpilot")
        self.assertTrue(any(c["name"] != "slotpilot" for c in containers), "no app container")
        self.volumes = {v["name"]: v for v in self.pod["spec"]["volumes"]}
        self.mounts = {m["mountPath"]: m for m in self.sidecar["volumeMounts"]}

    def mounted_file(self, path: str) -> tuple[str, dict]:
        """(source kind, volume) of the volume mounted at dirname(path); the key must exist."""
        directory, key = path.rsplit("/", 1)
        self.assertIn(directory, self.mounts, f"{path}: nothing mounted at {directory}")
        mount = self.mounts[directory]
        self.assertTrue(mount.get("readOnly"), directory)
        volume = self.volumes[mount["name"]]
        if "configMap" in volume:
            source = next(c for c in self.by_kind["ConfigMap"]
                          if c["metadata"]["name"] == volume["configMap"]["name"])
            self.assertIn(key, source["data"], path)
            return "configMap", source
        self.assertIn("secret", volume, f"{path} comes neither from a ConfigMap nor a Secret")
        source = next(s for s in self.by_kind["Secret"]
                      if s["metadata"]["name"] == volume["secret"]["secretName"])
        self.assertIn(key, source.get("stringData", {}) | source.get("data", {}), path)
        return "secret", source

    def effective(self) -> dict[str, str]:
        args = self.sidecar["args"]
        config_path = flag_value(args, "config")
        kind, config_map = self.mounted_file(config_path)
        self.assertEqual(kind, "configMap")
        text = config_map["data"][config_path.rsplit("/", 1)[1]]
        with tempfile.TemporaryDirectory(prefix="slotpilot-secrets-") as tmp:
            secrets = []
            for flag in ("upstream-password-file", "admin-token-file"):
                (Path(tmp) / flag).write_text("x\n")
                secrets.append(f"--{flag}={tmp}/{flag}")
            # Flags win over the file: the secret paths are swapped for local stand-ins, the
            # rest is the pod's exact configuration (minus $(POD_NAME), expanded by the kubelet).
            rest = [a.replace("$(POD_NAME)", "pod-0") for a in args if not a.startswith("--config=")]
            values = check_config(text, [*rest, *secrets])
        self.config_text = text
        return values

    def test_config_loads_and_secrets_are_mounted_files(self) -> None:
        values = self.effective()
        loaded = yaml.safe_load(self.config_text)
        for flag in ("upstream-password-file", "admin-token-file"):
            path = loaded[flag.replace("-", "_")]
            self.assertEqual(self.mounted_file(path)[0], "secret", flag)
        self.assertEqual(values["upstream-password"], "<redacted>")
        self.assertEqual(values["admin-token"], "<redacted>")
        self.assertEqual(port_of(values["listen"]), 6379)
        self.assertTrue(values["listen"].startswith("127.0.0.1:"), "RESP only inside the pod")
        for arg in self.sidecar["args"]:
            self.assertIn(arg[2:].split("=", 1)[0], option_names(), arg)
        self.assertNotIn("envFrom", self.sidecar)
        for env in self.sidecar.get("env", []):
            self.assertNotIn("PASSWORD", env["name"], "secrets come from files, not env")

    def test_probes_ports_and_scrape_config_match_the_admin_server(self) -> None:
        admin_port = port_of(self.effective()["admin-listen"])
        ports = {p["name"]: p["containerPort"] for p in self.sidecar["ports"]}
        for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
            get = self.sidecar[probe]["httpGet"]
            self.assertEqual(get["path"], path)
            self.assertIn(path, get_paths())
            port = ports.get(get["port"], get["port"])
            self.assertEqual(port, admin_port, probe)
        notes = self.pod["metadata"]["annotations"]
        self.assertEqual(notes["prometheus.io/scrape"], "true")
        self.assertEqual(int(notes["prometheus.io/port"]), admin_port)
        self.assertIn(notes["prometheus.io/path"], get_paths())
        monitor = k8s_documents("podmonitor.yaml")[0]
        self.assertEqual(monitor["kind"], "PodMonitor")
        labels = self.pod["metadata"]["labels"]
        self.assertLessEqual(monitor["spec"]["selector"]["matchLabels"].items(), labels.items())
        for endpoint in monitor["spec"]["podMetricsEndpoints"]:
            self.assertEqual(ports.get(endpoint["port"]), admin_port)
            self.assertEqual(endpoint["path"], "/metrics")
            self.assertIn(endpoint["path"], get_paths())

    def test_termination_grace_covers_prestop_and_drain(self) -> None:
        grace = seconds(self.effective()["shutdown-grace"])
        command = self.sidecar["lifecycle"]["preStop"]["exec"]["command"]
        self.assertEqual(command[0], "/bin/sleep")  # present in debian:bookworm-slim
        pre_stop = float(command[1])
        total = self.pod["spec"]["terminationGracePeriodSeconds"]
        self.assertGreater(total, pre_stop + grace, "SIGKILL would cut the drain short")
        self.assertLessEqual(total, pre_stop + grace + 30, "grace period far beyond the drain")

    def test_security_context_and_resources(self) -> None:
        context = self.sidecar["securityContext"]
        self.assertTrue(context["runAsNonRoot"])
        self.assertTrue(context["readOnlyRootFilesystem"])
        self.assertFalse(context["allowPrivilegeEscalation"])
        self.assertEqual(context["capabilities"]["drop"], ["ALL"])
        user = [a for i, a in dockerfile_stages()[-1] if i == "USER"][-1].split(":")[0]
        self.assertEqual(str(context["runAsUser"]), user, "same uid as the image")
        resources = self.sidecar["resources"]
        for kind in ("cpu", "memory"):
            self.assertIn(kind, resources["requests"])
            self.assertIn(kind, resources["limits"])
        # bench/RESULTS.md: 25.1 MiB RSS with 10k idle clients; the request must cover it.
        self.assertGreaterEqual(_mebibytes(resources["requests"]["memory"]), 26)
        self.assertGreater(_mebibytes(resources["limits"]["memory"]),
                           _mebibytes(resources["requests"]["memory"]))


def _mebibytes(quantity: str) -> float:
    match = re.fullmatch(r"(\d+)(Ki|Mi|Gi)", quantity)
    assert match, quantity
    return int(match.group(1)) * {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024}[match.group(2)]


# --------------------------------------------------------------------------------------------
# systemd
# --------------------------------------------------------------------------------------------


class SystemdTest(unittest.TestCase):
    UNIT = DEPLOY / "systemd" / "slotpilot.service"

    def directives(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for line in self.UNIT.read_text().splitlines():
            if "=" in line and not line.startswith(("#", ";", "[")):
                key, value = line.split("=", 1)
                out.setdefault(key.strip(), []).append(value.strip())
        return out

    def test_flags_are_real(self) -> None:
        d = self.directives()
        for key in ("ExecStart", "ExecStartPre"):
            argv = shlex.split(d[key][0])
            self.assertEqual(argv[0], "/usr/local/bin/slotpilot")
            for arg in argv[1:]:
                name = arg[2:].split("=", 1)[0]
                self.assertTrue(name in option_names() or name in action_flags(), arg)
        self.assertIn("--check-config", d["ExecStartPre"][0])
        self.assertEqual(d["ExecReload"], ["/bin/kill -HUP $MAINPID"])
        self.assertGreater(seconds(d["TimeoutStopSec"][0]), seconds(default_of("shutdown-grace")))
        credentials = {v.split(":", 1)[0] for v in d["LoadCredential"]}
        self.assertEqual(credentials, {"upstream-password", "admin-token"})
        for name in credentials:
            self.assertIn(f"${{CREDENTIALS_DIRECTORY}}/{name}", d["ExecStart"][0])

    def test_hardening(self) -> None:
        d = self.directives()
        expected = {
            "DynamicUser": "yes", "NoNewPrivileges": "yes", "ProtectSystem": "strict",
            "ProtectHome": "yes", "PrivateTmp": "yes", "PrivateDevices": "yes",
            "CapabilityBoundingSet": "", "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
            "MemoryDenyWriteExecute": "yes",
        }
        for key, value in expected.items():
            self.assertEqual(d.get(key, [None])[0], value, key)
        self.assertIn("@system-service", d["SystemCallFilter"])
        self.assertGreaterEqual(int(d["LimitNOFILE"][0]), int(default_of("max-clients")))

    def test_systemd_analyze_verify(self) -> None:
        analyze = shutil.which("systemd-analyze")
        if analyze is None:
            self.skipTest("systemd-analyze not installed")
        with tempfile.TemporaryDirectory(prefix="slotpilot-unit-") as tmp:
            # verify wants the executable to exist: point the unit at the built binary.
            unit = Path(tmp) / "slotpilot.service"
            unit.write_text(self.UNIT.read_text().replace("/usr/local/bin/slotpilot", binary()))
            result = run([analyze, "verify", str(unit)])
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertNotIn("slotpilot.service", result.stderr, result.stderr)


class CheckConfigTest(unittest.TestCase):
    def test_rejects_a_bad_file_with_one_line(self) -> None:
        with tempfile.TemporaryDirectory(prefix="slotpilot-check-") as tmp:
            path = Path(tmp) / "bad.yaml"
            path.write_text("seeds: [127.0.0.1:7000]\ntread: 2\n")
            result = run([binary(), "--check-config", f"--config={path}"])
        self.assertEqual(result.returncode, 2)
        self.assertEqual(result.stderr, f"slotpilot: config file {path}: unknown key 'tread'\n")
        self.assertEqual(result.stdout, "")


if __name__ == "__main__":
    unittest.main()
