"""The admin HTTP port (issue 5), every endpoint over real HTTP against a proxy in front of a real
3-master cluster: probes, Prometheus metrics (checked by promtool), the JSON API, the bearer-token
paths, runtime log level, and hostile HTTP that must not disturb the data path.

Run: cd tests/integration && SLOTPILOT_BIN=... /usr/bin/python3 -m unittest -v test_admin
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from http.client import HTTPConnection
from pathlib import Path
from typing import Any, Optional

import redis

import harness
from harness import Proxy, RedisCluster

TOKEN = "tok-9f1c2b7e-admin"
CLIENT_PASSWORD = "pw-41d7e0c3-never-shown"
REFRESH = ["--topology-refresh-interval=500ms", "--topology-min-refresh-interval=100ms"]
PROMTOOL = shutil.which("promtool")


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


class Response:
    def __init__(self, status: int, headers: dict[str, str], body: str) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"Response({self.status}, {self.body[:300]!r})"


def http(proxy: Proxy, method: str, path: str, body: Optional[str] = None,
         headers: Optional[dict[str, str]] = None, timeout: float = 5.0) -> Response:
    """One request on a fresh connection. http.client sends Content-Length: 0 for a POST or PUT
    without a body (cpp-httplib answers 400 to one without Content-Length)."""
    conn = HTTPConnection(harness.HOST, proxy.admin_port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()},
                        resp.read().decode())
    finally:
        conn.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def raw_http(port: int, data: bytes, timeout: float = 10.0) -> bytes:
    """Sends raw bytes to the admin port and returns the response (head and Content-Length body),
    or what came before the server closed: b"" for a close without an answer. A server that
    closes early may reset our send: that is fine. (No half-close after sending: cpp-httplib
    drops its answer to a peer that has shut down its side.)"""
    with socket.create_connection((harness.HOST, port), timeout=timeout) as s:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        received = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            head, sep, body = received.partition(b"\r\n\r\n")
            if sep:
                length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                if len(body) >= (int(length.group(1)) if length else 0):
                    return received
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                return received
            except socket.timeout:
                break
            if not chunk:
                return received
            received += chunk
        raise AssertionError(f"no complete answer and no close within {timeout} s: {received[:200]!r}")


def status_of(raw: bytes) -> Optional[int]:
    """The status code of a raw HTTP response; None for a close without an answer."""
    if not raw:
        return None
    m = re.match(rb"HTTP/1\.[01] (\d{3}) ", raw)
    if m is None:
        raise AssertionError(f"not an HTTP response: {raw[:200]!r}")
    return int(m.group(1))


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


class Metrics:
    """A parsed /metrics body: samples by (name, labels) and family types."""

    def __init__(self, body: str) -> None:
        self.body = body
        self.types: dict[str, str] = {}
        self.samples: dict[tuple[str, frozenset], float] = {}
        for line in body.splitlines():
            if line.startswith("# TYPE "):
                _, _, name, kind = line.split(" ", 3)
                self.types[name] = kind
            elif line and not line.startswith("#"):
                m = _SAMPLE.match(line)
                if m is None:
                    raise AssertionError(f"unparsable metrics line {line!r}")
                labels = frozenset(_LABEL.findall(m.group(2) or ""))
                self.samples[(m.group(1), labels)] = float(m.group(3))

    def get(self, name: str, **labels: str) -> float:
        key = (name, frozenset(labels.items()))
        if key not in self.samples:
            raise AssertionError(f"no sample {name}{labels} in /metrics")
        return self.samples[key]

    def label_values(self, name: str, label: str) -> set[str]:
        return {v for (n, labels), _ in self.samples.items() if n == name
                for k, v in labels if k == label}

    def total(self, name: str) -> float:
        return sum(v for (n, _), v in self.samples.items() if n == name)


def scrape(proxy: Proxy) -> Metrics:
    resp = http(proxy, "GET", "/metrics")
    if resp.status != 200:
        raise AssertionError(f"/metrics: {resp!r}")
    return Metrics(resp.body)


def write_secret(directory: Path, name: str, value: str) -> str:
    path = directory / name
    path.write_text(value + "\n")
    path.chmod(0o600)
    return str(path)


class AuthProxy(Proxy):
    """A Proxy whose clients AUTH with --client-password-file's password (also for the start-up
    PING the harness waits for)."""

    def __init__(self, *args: Any, password: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.password = password

    def client(self, **kwargs: Any) -> redis.Redis:
        kwargs.setdefault("password", self.password)
        return super().client(**kwargs)


class ClusterTestCase(unittest.TestCase):
    cluster: RedisCluster
    proxies: list[Proxy]

    def setUp(self) -> None:
        self.proxies = []
        self.tmp = Path(tempfile.mkdtemp(prefix="slotpilot-admin-test-"))
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def _failed(self) -> bool:
        result = getattr(getattr(self, "_outcome", None), "result", None)
        problems = getattr(result, "errors", []) + getattr(result, "failures", [])
        return any(test is self for test, _ in problems)

    def stop_and_check(self, proxy: Proxy) -> None:
        """Stops the proxy (SIGTERM) and checks that it exited cleanly, sanitizers quiet."""
        code = proxy.stop()
        if code is None:  # never started
            return
        log = proxy.log()
        for alarm in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
            self.assertNotIn(alarm, log, log[-6000:])
        self.assertEqual(code, 0, log[-3000:])

    def tearDown(self) -> None:
        if self._failed():
            for p in self.proxies:
                print(f"\n==== slotpilot {p.argv} ====\n{p.log()[-6000:]}", file=sys.stderr)
            print(f"\n{self.cluster!r} node logs:\n{self.cluster.logs_tail()}", file=sys.stderr)

    def start_proxy(self, *args: str, token: bool = False, cls: type = Proxy,
                    **kwargs: Any) -> Proxy:
        extra = list(args)
        if token:
            extra.append(f"--admin-token-file={write_secret(self.tmp, 'token', TOKEN)}")
        kwargs.setdefault("log_level", "info")
        proxy = cls(self.cluster, extra_args=extra, **kwargs)
        self.proxies.append(proxy)
        self.addCleanup(self.stop_and_check, proxy)
        proxy.start()
        # PING is answered before the first topology arrives; requests are not.
        harness.wait_for(lambda: http(proxy, "GET", "/readyz").status == 200, 10, "/readyz 200")
        return proxy

    def assert_data_path_works(self, proxy: Proxy, tag: str = "dp") -> None:
        with proxy.client() as c:
            for master in self.cluster.masters():
                lo, _ = self.cluster.slots_of(master)[0]
                key = harness.keys_for_slot(lo + 7, 1, tag)[0]
                self.assertTrue(c.set(key, tag))
                self.assertEqual(c.get(key), tag)
                c.delete(key)


# --------------------------------------------------------------------------------------------
# Probes
# --------------------------------------------------------------------------------------------


class ProbeTest(ClusterTestCase):
    """A fresh cluster per test: these tests stop masters."""

    def setUp(self) -> None:
        super().setUp()
        self.cluster = RedisCluster().start()
        self.addCleanup(self.cluster.stop)

    def wait_ready(self, proxy: Proxy, want: int, what: str, timeout: float = 15.0) -> Response:
        return harness.wait_for(
            lambda: (lambda r: r if r.status == want else None)(http(proxy, "GET", "/readyz")),
            timeout, what, interval=0.1)

    def test_healthz_and_readyz_follow_a_paused_master(self) -> None:
        c = self.cluster
        proxy = self.start_proxy(*REFRESH)
        health = http(proxy, "GET", "/healthz")
        self.assertEqual(health.status, 200, health)
        self.wait_ready(proxy, 200, "/readyz 200 with every master up")
        victim = c.masters()[1]
        c.pause(victim)
        try:
            start = time.monotonic()
            down = self.wait_ready(proxy, 503, "/readyz 503 after a master stopped answering")
            self.assertLess(time.monotonic() - start, 5.0, "within a couple of refresh periods")
            self.assertIn(victim.address, down.body)
            self.assertIn("unreachable", down.body)
            self.assertEqual(http(proxy, "GET", "/healthz").status, 200, "alive, just not ready")
            self.assertEqual(scrape(proxy).get("slotpilot_master_reachable", address=victim.address), 0)
        finally:
            c.resume(victim)
        self.wait_ready(proxy, 200, "/readyz 200 again after SIGCONT")
        self.assertEqual(scrape(proxy).get("slotpilot_master_reachable", address=victim.address), 1)

    def test_readyz_names_a_killed_master_and_recovers_after_restart(self) -> None:
        c = self.cluster
        proxy = self.start_proxy(*REFRESH)
        self.wait_ready(proxy, 200, "/readyz 200 with every master up")
        self.assert_data_path_works(proxy)  # connections to every master
        before = scrape(proxy)
        victim = c.masters()[2]
        c.kill(victim)
        down = self.wait_ready(proxy, 503, "/readyz 503 after a master was killed")
        self.assertIn(victim.address, down.body)
        harness.wait_for(lambda: scrape(proxy).get("slotpilot_upstream_disconnects_total")
                         > before.get("slotpilot_upstream_disconnects_total"), 10,
                         "the lost upstream connection to be counted")
        c.restart(victim)
        self.wait_ready(proxy, 200, "/readyz 200 after the master came back")
        harness.wait_for(lambda: self._serves(proxy), 15, "the data path to serve every master")
        after = scrape(proxy)
        self.assertGreater(after.get("slotpilot_upstream_connects_total"),
                           before.get("slotpilot_upstream_connects_total"), "reconnected")

    def _serves(self, proxy: Proxy) -> bool:
        self.assert_data_path_works(proxy, "again")
        return True

    def test_readyz_without_a_topology(self) -> None:
        with harness.free_port_block(1, bus=False) as nothing_there:
            proxy = Proxy([f"{harness.HOST}:{nothing_there.ports[0]}"], extra_args=REFRESH,
                          log_level="info")
            self.proxies.append(proxy)
            self.addCleanup(self.stop_and_check, proxy)
            proxy.start()
            self.assertEqual(http(proxy, "GET", "/healthz").status, 200)
            resp = http(proxy, "GET", "/readyz")
            self.assertEqual(resp.status, 503, resp)
            self.assertIn("topology not loaded", resp.body)
            slots = http(proxy, "GET", "/v1/slots")
            self.assertEqual(slots.status, 200)
            self.assertEqual(slots.json()["loaded"], False)
            self.assertEqual(slots.json()["ranges"], [])


# --------------------------------------------------------------------------------------------
# Endpoints that do not disturb the cluster
# --------------------------------------------------------------------------------------------


class EndpointTest(ClusterTestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.cluster = RedisCluster().start()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.cluster.stop()

    # ---- /metrics ----------------------------------------------------------------------------

    REQUIRED_FAMILIES = {
        "slotpilot_requests_total": "counter",
        "slotpilot_request_errors_total": "counter",
        "slotpilot_request_duration_seconds": "histogram",
        "slotpilot_redirects_total": "counter",
        "slotpilot_redirect_loops_total": "counter",
        "slotpilot_redirect_loop_slot_requests_total": "counter",
        "slotpilot_topology_refreshes_total": "counter",
        "slotpilot_upstream_connections": "gauge",
        "slotpilot_upstream_connects_total": "counter",
        "slotpilot_upstream_disconnects_total": "counter",
        "slotpilot_client_connections": "gauge",
        "slotpilot_throttled_nodes": "gauge",
        "slotpilot_watcher_open_slots": "gauge",
        "slotpilot_watcher_stuck_slots": "gauge",
    }

    def promtool(self, body: str) -> None:
        if PROMTOOL is None:
            self.skipTest("promtool is not installed")
        done = subprocess.run([PROMTOOL, "check", "metrics"], input=body, capture_output=True,
                              text=True, timeout=60)
        self.assertEqual(done.returncode, 0, f"promtool:\n{done.stdout}{done.stderr}")

    def test_metrics_format_families_and_promtool(self) -> None:
        proxy = self.start_proxy()
        resp = http(proxy, "GET", "/metrics")
        self.assertEqual(resp.status, 200)
        self.assertTrue(resp.headers["content-type"].startswith("text/plain; version=0.0.4"),
                        resp.headers["content-type"])
        self.promtool(resp.body)
        m = Metrics(resp.body)
        for family, kind in self.REQUIRED_FAMILIES.items():
            self.assertEqual(m.types.get(family), kind, family)
        self.assertEqual(m.label_values("slotpilot_redirects_total", "kind"), {"moved", "ask"})
        self.assertEqual(m.label_values("slotpilot_redirect_loops_total", "pattern"),
                         {"ask-moved", "moved-moved", "hop-limit"})
        self.assertIn("read", m.label_values("slotpilot_requests_total", "class"))
        self.assertIn("write", m.label_values("slotpilot_requests_total", "class"))
        for gauge in ("slotpilot_throttled_nodes", "slotpilot_watcher_open_slots",
                      "slotpilot_watcher_stuck_slots"):
            self.assertEqual(m.get(gauge), 0, gauge)
        self.assertEqual(m.get("slotpilot_build_info", version=m.label_values(
            "slotpilot_build_info", "version").pop()), 1)

    def test_counters_increase_with_traffic(self) -> None:
        proxy = self.start_proxy()
        before = scrape(proxy)
        n = 30
        clients = [proxy.client() for _ in range(3)]
        try:
            for i in range(n):
                key = f"metrics:{i}"
                clients[i % 3].set(key, i)
                clients[i % 3].get(key)
            during = scrape(proxy)
            self.assertGreaterEqual(during.get("slotpilot_client_connections"), 3)
            for i in range(n):
                clients[0].delete(f"metrics:{i}")
        finally:
            for c in clients:
                c.connection_pool.disconnect()  # redis-py 4.3's close() keeps the socket
        after = harness.wait_for(
            lambda: (lambda m: m if m.get("slotpilot_client_connections") == 0 else None)(scrape(proxy)),
            5, "the client connection gauge to drop to 0")
        self.assertGreaterEqual(after.get("slotpilot_requests_total", **{"class": "write"})
                                - before.get("slotpilot_requests_total", **{"class": "write"}), n)
        self.assertGreaterEqual(after.get("slotpilot_requests_total", **{"class": "read"})
                                - before.get("slotpilot_requests_total", **{"class": "read"}), n)
        self.assertGreaterEqual(after.get("slotpilot_request_duration_seconds_count")
                                - before.get("slotpilot_request_duration_seconds_count"), 2 * n)
        self.assertGreater(after.get("slotpilot_request_duration_seconds_sum"),
                           before.get("slotpilot_request_duration_seconds_sum"))
        self.assertGreaterEqual(after.get("slotpilot_client_connections_accepted_total")
                                - before.get("slotpilot_client_connections_accepted_total"), 3)
        self.assertGreaterEqual(after.get("slotpilot_upstream_connections"), 3, "one per master")
        self.assertGreaterEqual(after.get("slotpilot_upstream_connects_total"), 3)
        self.assertGreaterEqual(after.get("slotpilot_topology_refreshes_total"), 1)
        self.assert_histogram_consistent(after)
        self.promtool(after.body)

    def assert_histogram_consistent(self, m: Metrics) -> None:
        name = "slotpilot_request_duration_seconds"
        buckets = sorted(((float(dict(labels)["le"]), v) for (n, labels), v in m.samples.items()
                          if n == f"{name}_bucket"), key=lambda b: b[0])
        self.assertGreater(len(buckets), 3)
        counts = [v for _, v in buckets]
        self.assertEqual(counts, sorted(counts), "cumulative buckets never decrease")
        self.assertEqual(buckets[-1][0], float("inf"))
        self.assertEqual(buckets[-1][1], m.get(f"{name}_count"))

    def test_metrics_with_loop_series_still_pass_promtool(self) -> None:
        c = self.cluster
        slot = 777
        src = c.node_for_slot(slot)
        dst = next(m for m in c.masters() if m != src)
        proxy = self.start_proxy()
        c.set_migrating(slot, src, dst)
        self.addCleanup(c.set_stable, slot, src)
        with proxy.client() as client:
            with self.assertRaises(redis.ResponseError):
                client.get(harness.keys_for_slot(slot, 1, "loop")[0])
        m = scrape(proxy)
        self.assertEqual(m.get("slotpilot_redirect_loop_slot_requests_total", slot=str(slot),
                               pattern="ask-moved"), 1)
        self.assertEqual(m.get("slotpilot_request_errors_total", **{"class": "read"}), 1)
        self.promtool(m.body)

    # ---- JSON API ----------------------------------------------------------------------------

    def test_slots_cover_every_slot_as_cluster_slots_says(self) -> None:
        c = self.cluster
        proxy = self.start_proxy()
        resp = http(proxy, "GET", "/v1/slots")
        self.assertEqual(resp.status, 200)
        self.assertTrue(resp.headers["content-type"].startswith("application/json"))
        view = resp.json()
        self.assertIs(view["loaded"], True)
        self.assertEqual(view["slots_assigned"], harness.SLOT_COUNT)
        self.assertEqual(view["open_slots"], [])
        expected: dict[int, tuple[str, str]] = {}
        for lo, hi, (host, port, node_id), _ in c.cluster_slots(c.masters()[0]):
            for s in range(lo, hi + 1):
                expected[s] = (f"{host}:{port}", node_id)
        ranges = view["ranges"]
        self.assertEqual(ranges[0]["start"], 0)
        self.assertEqual(ranges[-1]["end"], harness.SLOT_COUNT - 1)
        seen: dict[int, tuple[str, str]] = {}
        for prev, cur in zip(ranges, ranges[1:]):
            self.assertEqual(cur["start"], prev["end"] + 1, "contiguous, no overlap")
        for r in ranges:
            for s in range(r["start"], r["end"] + 1):
                seen[s] = (r["address"], r["node_id"])
        self.assertEqual(seen, expected)
        self.assertEqual(len(ranges), 3, "one range per master after --cluster create")

    def test_migrations_lists_nothing_on_a_stable_cluster(self) -> None:
        proxy = self.start_proxy()
        resp = http(proxy, "GET", "/v1/migrations")
        self.assertEqual(resp.status, 200)
        self.assertTrue(resp.headers["content-type"].startswith("application/json"))
        body = harness.wait_for(
            lambda: (lambda b: b if "cluster_healthy" in b else None)(
                http(proxy, "GET", "/v1/migrations").json()), 10, "the watcher's first poll")
        self.assertEqual(body["mode"], "observe")
        self.assertEqual(body["migrations"], [])
        self.assertTrue(body["cluster_healthy"])

    def test_unknown_paths_are_404(self) -> None:
        proxy = self.start_proxy()
        # "/" is the operator console (test_console.py); it is served at that one path only.
        for path in ("/index.html", "/console", "/v1", "/v1/loopz", "/metrics/x", "/v1/migrations/1"):
            self.assertEqual(http(proxy, "GET", path).status, 404, path)

    # ---- migration actions ---------------------------------------------------------------------

    def test_actions_are_forbidden_without_a_configured_token(self) -> None:
        proxy = self.start_proxy()
        for action in ("finish", "rollback"):
            for headers in ({}, bearer(TOKEN), bearer("")):
                resp = http(proxy, "POST", f"/v1/migrations/1234/{action}", headers=headers)
                self.assertEqual(resp.status, 403, (action, headers, resp))
                self.assertIn("admin-token-file", resp.json()["error"])

    def test_actions_need_the_right_bearer_token(self) -> None:
        """The right token reaches the watcher, which refuses to act on a slot nobody migrates
        (404, naming why); every wrong one is a 401 that never echoes the token."""
        proxy = self.start_proxy(token=True)
        wrong = [{}, bearer("nope"), bearer(TOKEN + "x"), bearer(TOKEN[:-1]), {"Authorization": TOKEN},
                 {"Authorization": f"Basic {TOKEN}"}, {"Authorization": f"bearer {TOKEN}"},
                 bearer("")]
        for action in ("finish", "rollback"):
            path = f"/v1/migrations/1234/{action}"
            for headers in wrong:
                resp = http(proxy, "POST", path, headers=headers)
                self.assertEqual(resp.status, 401, (action, headers, resp))
                self.assertNotIn(TOKEN, resp.body)
            for slot in (1234, 0, 16383):
                resp = http(proxy, "POST", f"/v1/migrations/{slot}/{action}", headers=bearer(TOKEN))
                self.assertEqual(resp.status, 404, resp)
                self.assertIn(f"slot {slot} is stable", resp.json()["error"])

    def test_a_post_without_content_length_reaches_the_route(self) -> None:
        """`curl -X POST -H 'Authorization: Bearer T' URL` sends no body and neither
        Content-Length nor Transfer-Encoding: a request without a body (RFC 9112 section 6.3).
        It reaches the route and gets the route's own answer at once (not a 400 after the
        server's 5 s read timeout, not a hang), with a keep-alive connection that then reads
        the next request as a request, and with Connection: close (answer, then close)."""
        proxy = self.start_proxy(token=True)

        def post(path: str, token: str, extra: bytes = b"") -> bytes:
            """Exactly what curl -X POST -H 'Authorization: Bearer T' sends (no body)."""
            return (b"POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n%s\r\n"
                    % (path.encode(), token.encode(), extra))

        def body_of(raw: bytes) -> Any:
            return json.loads(raw.partition(b"\r\n\r\n")[2])

        for action in ("finish", "rollback"):
            path = f"/v1/migrations/1234/{action}"
            for extra in (b"", b"Connection: close\r\n"):
                with self.subTest(action=action, connection_close=bool(extra)):
                    start = time.monotonic()
                    raw = raw_http(proxy.admin_port, post(path, TOKEN, extra))
                    elapsed = time.monotonic() - start
                    self.assertEqual(status_of(raw), 404, raw[:300])
                    self.assertIn("slot 1234 is stable", body_of(raw)["error"])
                    self.assertLess(elapsed, 2.0, "answered only after a read timeout")
                    raw = raw_http(proxy.admin_port, post(path, "nope", extra))
                    self.assertEqual(status_of(raw), 401, raw[:300])  # the route's check too
                    self.assertNotIn(TOKEN.encode(), raw)
        # Keep-alive: the next request on the connection is read as a request, not as a body.
        # (Each written after the previous answer: httplib 0.11 never answers a request already
        # written behind another one, with or without a body, GET behind GET too.)
        with socket.create_connection((harness.HOST, proxy.admin_port), timeout=10) as s:
            received = [b""]

            def answers(count: int) -> list[Optional[int]]:
                got: list[Optional[int]] = []
                deadline = time.monotonic() + 10
                while len(got) < count and time.monotonic() < deadline:  # bounded
                    head, sep, rest = received[0].partition(b"\r\n\r\n")
                    if sep:
                        length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                        size = int(length.group(1)) if length else 0
                        if len(rest) >= size:
                            got.append(status_of(head))
                            received[0] = rest[size:]
                            continue
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    received[0] += chunk
                return got

            healthz = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
            s.sendall(post("/v1/migrations/1234/finish", TOKEN))
            self.assertEqual(answers(1), [404])
            s.sendall(healthz)
            self.assertEqual(answers(1), [200])
            s.sendall(post("/v1/migrations/1234/rollback", TOKEN))
            self.assertEqual(answers(1), [404])
            s.sendall(healthz)
            self.assertEqual(answers(1), [200])
        # Connection: close: the answer, then the close.
        with socket.create_connection((harness.HOST, proxy.admin_port), timeout=10) as s:
            s.sendall(post("/v1/migrations/1234/finish", TOKEN, b"Connection: close\r\n"))
            received = b""
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                chunk = s.recv(65536)
                if not chunk:
                    break
                received += chunk
            self.assertEqual(status_of(received), 404, received[:300])
            self.assertIn(b"slot 1234 is stable", received)
        self.assert_data_path_works(proxy, "curl-post")

    def test_malformed_action_paths(self) -> None:
        proxy = self.start_proxy(token=True)
        for path, want in (("/v1/migrations/16384/finish", 400),
                           ("/v1/migrations/99999999999999999999/finish", 400),
                           ("/v1/migrations/abc/finish", 404),
                           ("/v1/migrations/-1/finish", 404),
                           ("/v1/migrations/1.5/rollback", 404),
                           ("/v1/migrations//finish", 404),
                           ("/v1/migrations/12/explode", 404)):
            resp = http(proxy, "POST", path, headers=bearer(TOKEN))
            self.assertEqual(resp.status, want, (path, resp))
        self.assertIn(http(proxy, "GET", "/v1/migrations/12/finish").status, (404, 405))

    # ---- config and log level ------------------------------------------------------------------

    def test_config_is_effective_and_redacts_secrets(self) -> None:
        password_file = write_secret(self.tmp, "client-password", CLIENT_PASSWORD)
        proxy = self.start_proxy(f"--client-password-file={password_file}", "--max-redirects=7",
                                 token=True, cls=AuthProxy, password=CLIENT_PASSWORD)
        with proxy.client(password=None) as anonymous:
            with self.assertRaisesRegex(redis.AuthenticationError, "NOAUTH|Authentication"):
                anonymous.get("x")
        resp = http(proxy, "GET", "/v1/config")
        self.assertEqual(resp.status, 200)
        self.assertTrue(resp.headers["content-type"].startswith("application/json"))
        config = resp.json()
        self.assertEqual(config["client-password"], "<redacted>")
        self.assertEqual(config["admin-token"], "<redacted>")
        self.assertEqual(config["upstream-password"], "<unset>")
        self.assertNotIn(CLIENT_PASSWORD, resp.body)
        self.assertNotIn(TOKEN, resp.body)
        self.assertEqual(config["max-redirects"], "7")
        self.assertEqual(config["listen"], proxy.address)
        self.assertEqual(config["admin-listen"], proxy.admin_address)
        self.assertEqual(config["loop-policy"], "error")
        self.assertEqual(config["log-level"], "info")
        for seed in self.cluster.seeds():
            self.assertIn(seed, config["seeds"])
        for endpoint in ("/metrics", "/v1/loops", "/v1/slots", "/v1/migrations", "/v1/log-level",
                         "/readyz"):
            self.assertNotIn(CLIENT_PASSWORD, http(proxy, "GET", endpoint).body, endpoint)
            self.assertNotIn(TOKEN, http(proxy, "GET", endpoint).body, endpoint)
        self.assertNotIn(CLIENT_PASSWORD, proxy.log())
        self.assertNotIn(TOKEN, proxy.log())

    def test_log_level_is_read_and_changed_at_runtime(self) -> None:
        proxy = self.start_proxy(token=True)
        self.assertEqual(http(proxy, "GET", "/v1/log-level").json(), {"level": "info"})
        self.assertEqual(http(proxy, "PUT", "/v1/log-level", "debug").status, 401)
        self.assertEqual(http(proxy, "PUT", "/v1/log-level", "debug", bearer("x")).status, 401)
        for bad in ("loud", "", "DEBUG", "info; rm -rf"):
            resp = http(proxy, "PUT", "/v1/log-level", bad, bearer(TOKEN))
            self.assertEqual(resp.status, 400, (bad, resp))
        self.assertEqual(http(proxy, "GET", "/v1/log-level").json(), {"level": "info"})
        self.connect_and_leave(proxy)  # at info: no debug line for it

        # error: the warning a redirect loop logs is not written ...
        resp = http(proxy, "PUT", "/v1/log-level", "error\n", bearer(TOKEN))
        self.assertEqual((resp.status, resp.json()), (200, {"level": "error"}))
        self.assertEqual(http(proxy, "GET", "/v1/config").json()["log-level"], "error")
        quiet_slot, loud_slot = 888, 889
        self.loop_once(proxy, quiet_slot)
        before_debug = proxy.log()
        # ... debug (set through the query string): it is.
        resp = http(proxy, "PUT", "/v1/log-level?level=debug", headers=bearer(TOKEN))
        self.assertEqual((resp.status, resp.json()), (200, {"level": "debug"}))
        self.assertEqual(http(proxy, "GET", "/v1/log-level").json(), {"level": "debug"})
        self.loop_once(proxy, loud_slot)
        log = harness.wait_for(lambda: (lambda t: t if f"slot {loud_slot} is in a redirect loop" in t
                                        else None)(proxy.log()), 5, "the loop warning")
        self.assertNotIn(f"slot {quiet_slot} is in a redirect loop", log)
        self.assertIn("log level set to debug", log)
        self.assertNotRegex(before_debug, r" D \[", "no debug line before the level was debug")
        # ... and debug lines appear.
        self.connect_and_leave(proxy)
        harness.wait_for(lambda: re.search(r" D \[.*closing", proxy.log()), 5,
                         "a debug line about the client that left")

    def connect_and_leave(self, proxy: Proxy) -> None:
        with proxy.client() as client:
            client.ping()

    def loop_once(self, proxy: Proxy, slot: int) -> None:
        c = self.cluster
        src = c.node_for_slot(slot)
        dst = next(m for m in c.masters() if m != src)
        c.set_migrating(slot, src, dst)
        self.addCleanup(c.set_stable, slot, src)
        with proxy.client() as client:
            with self.assertRaisesRegex(redis.ResponseError, "redirect loop"):
                client.get(harness.keys_for_slot(slot, 1, "log")[0])

    # ---- hostile HTTP ----------------------------------------------------------------------------

    def test_malformed_and_huge_requests_get_4xx_and_never_disturb_the_data_path(self) -> None:
        proxy = self.start_proxy(token=True)
        port = proxy.admin_port
        stop = threading.Event()
        served, failures, slowest = [0], [], [0.0]

        def data_path() -> None:
            c = proxy.client(socket_timeout=2)
            i = 0
            while not stop.is_set():
                key = f"hostile:{i % 50}"
                start = time.perf_counter()
                try:
                    c.set(key, i)
                    if c.get(key) != str(i):
                        failures.append(f"wrong value for {key}")
                    served[0] += 1
                except redis.RedisError as e:
                    failures.append(repr(e))
                slowest[0] = max(slowest[0], time.perf_counter() - start)
                i += 1
            c.connection_pool.disconnect()

        worker = threading.Thread(target=data_path, daemon=True)
        worker.start()
        try:
            cases = {
                "garbage request line": b"HELLO THERE\r\n\r\n",
                "binary garbage": bytes(range(256)) * 8,
                "no version": b"GET /healthz\r\n\r\n",
                "bad version": b"GET /healthz HTTP/9.9\r\n\r\n",
                "100 KB header": b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: "
                                 + b"a" * 100_000 + b"\r\n\r\n",
                "100 KB URI": b"GET /v1/loops?slot=" + b"1" * 100_000 + b" HTTP/1.1\r\n\r\n",
                "1 MB body": b"POST /v1/migrations/1/finish HTTP/1.1\r\nHost: x\r\n"
                             + b"Authorization: Bearer " + TOKEN.encode() + b"\r\n"
                             + b"Content-Length: 1048576\r\n\r\n" + b"z" * 1_048_576,
                "1 MB body to PUT": b"PUT /v1/log-level HTTP/1.1\r\nHost: x\r\n"
                                    + b"Authorization: Bearer " + TOKEN.encode() + b"\r\n"
                                    + b"Content-Length: 1048576\r\n\r\n" + b"z" * 1_048_576,
                "huge content length": b"POST /v1/migrations/1/finish HTTP/1.1\r\nHost: x\r\n"
                                       b"Content-Length: 99999999999999999999\r\n\r\nx",
                "negative content length": b"POST /v1/migrations/1/finish HTTP/1.1\r\nHost: x\r\n"
                                           b"Content-Length: -5\r\n\r\n",
                "huge chunk": b"POST /v1/migrations/1/finish HTTP/1.1\r\nHost: x\r\n"
                              b"Transfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nxyz\r\n",
            }
            for name, data in cases.items():
                status = status_of(raw_http(port, data))
                self.assertTrue(status is None or 400 <= status < 500, f"{name}: {status}")
            self.assertEqual(http(proxy, "GET", "/healthz").status, 200)
        finally:
            stop.set()
            worker.join(10)
        self.assertEqual(failures, [])
        self.assertGreater(served[0], 0, "the data path served meanwhile")
        self.assertLess(slowest[0], 0.5, "no SET+GET pair stalled behind the admin traffic")
        self.assertTrue(proxy.running())
        self.assert_data_path_works(proxy, "after")
        log = proxy.log()
        self.assertNotIn("ERROR: AddressSanitizer", log)
        self.assertNotIn("runtime error", log)

    def test_a_flood_of_small_headers_is_refused(self) -> None:
        """100 KB of request head is refused as one 100 KB header line is (4xx or a close), not
        parsed into 10,000 header entries and served: the count of header lines must be bounded
        too, or one admin connection can grow the sidecar's memory without limit."""
        proxy = self.start_proxy()
        flood = (b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
                 + b"".join(b"X-Flood-%05d: %s\r\n" % (i, b"v" * 40) for i in range(10_000))
                 + b"\r\n")
        self.assertGreater(len(flood), 100_000)
        status = status_of(raw_http(proxy.admin_port, flood))
        self.assertTrue(status is None or 400 <= status < 500, f"10,000 headers: {status}")
        self.assert_data_path_works(proxy, "flood")

    def test_slow_admin_clients_do_not_touch_the_data_path(self) -> None:
        proxy = self.start_proxy()
        idle = [socket.create_connection((harness.HOST, proxy.admin_port), timeout=10)
                for _ in range(4)]
        try:
            for s in idle:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # never finished
            start = time.monotonic()
            self.assert_data_path_works(proxy, "slowloris")
            self.assertLess(time.monotonic() - start, 1.0)
        finally:
            for s in idle:
                s.close()
        harness.wait_for(lambda: http(proxy, "GET", "/healthz", timeout=2).status == 200, 15,
                         "/healthz once the slow clients are gone")


if __name__ == "__main__":
    unittest.main()
