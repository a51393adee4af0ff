"""SIGHUP reload (issue 8) against a real 3-master cluster: the --config file is re-read, flags
still win, reloadable options (log level, limits, deadlines) take effect without dropping the open
client connection, a changed listen address is reported as needing a restart (log line and
metric) and not applied, and a broken file is rejected as a whole.

Run: cd tests/integration && SLOTPILOT_BIN=... /usr/bin/python3 -m unittest -v test_reload
"""

from __future__ import annotations

import json
import os
import re
import signal
import unittest
from http.client import HTTPConnection
from pathlib import Path
from typing import Optional

import redis

import harness
from harness import Proxy, RedisCluster

FLAG_PENDING = 77  # --max-pending-per-client on the command line: must beat the file


class FileProxy(Proxy):
    """slotpilot started as `slotpilot --config=FILE --max-pending-per-client=77`: everything
    else, listen addresses included, comes from the file, so a reload can change them."""

    def __init__(self, cluster: RedisCluster) -> None:
        super().__init__(cluster, extra_args=[f"--max-pending-per-client={FLAG_PENDING}"])
        self.config_path: Optional[Path] = None

    def _build_argv(self) -> list[str]:
        assert self._dir is not None
        self.config_path = self._dir / "slotpilot.yaml"
        self.write_config(listen_port=self.port, log_level="info", max_clients=100,
                          request_timeout="5s")
        return [str(self.binary), f"--config={self.config_path}", *self.extra_args]

    def write_config(self, *, listen_port: int, log_level: str, max_clients: int,
                     request_timeout: str, extra: str = "") -> None:
        assert self.config_path is not None
        seeds = "".join(f"  - {s}\n" for s in self.seeds)
        text = (f"seeds:\n{seeds}listen: {harness.HOST}:{listen_port}\n"
                f"admin_listen: {harness.HOST}:{self.admin_port}\n"
                f"log_level: {log_level}\nmax_clients: {max_clients}\n"
                f"max_pending_per_client: 10\nrequest_timeout: {request_timeout}\n{extra}")
        # Replace, not rewrite in place: the proxy never sees a half-written file.
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.config_path)

    def admin_get(self, path: str) -> str:
        conn = HTTPConnection(harness.HOST, self.admin_port, timeout=5)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read().decode()
            assert resp.status == 200, (path, resp.status, body)
            return body
        finally:
            conn.close()

    def ready(self) -> bool:
        conn = HTTPConnection(harness.HOST, self.admin_port, timeout=5)
        try:
            conn.request("GET", "/readyz")
            return conn.getresponse().status == 200
        finally:
            conn.close()

    def config(self) -> dict[str, str]:
        return json.loads(self.admin_get("/v1/config"))

    def metric(self, name: str, labels: str = "") -> float:
        pattern = rf"^{re.escape(name)}{re.escape(labels)} (\S+)$"
        match = re.search(pattern, self.admin_get("/metrics"), re.M)
        assert match, f"{name}{labels} not in /metrics"
        return float(match.group(1))

    def hup(self) -> None:
        os.kill(self.pid, signal.SIGHUP)


class ReloadTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.cluster = RedisCluster().start()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.cluster.stop()

    def setUp(self) -> None:
        self.proxy = FileProxy(self.cluster).start()
        self.addCleanup(self.proxy.stop)
        harness.wait_for(self.proxy.ready, 20, "the proxy to load the topology (/readyz)")
        # One connection, kept open across the reload (a pool of one, never replaced).
        self.client = redis.Redis(connection_pool=redis.BlockingConnectionPool(
            host=harness.HOST, port=self.proxy.port, max_connections=1, timeout=5,
            socket_timeout=5, decode_responses=True))
        self.addCleanup(self.client.close)

    def wait_reloads(self, result: str, count: int) -> None:
        harness.wait_for(
            lambda: self.proxy.metric("slotpilot_config_reloads_total", f'{{result="{result}"}}')
            >= count, 10, f"{count} reload(s) with result {result}")

    def test_sighup_applies_reloadable_options_and_reports_the_rest(self) -> None:
        proxy = self.proxy
        self.assertTrue(self.client.set("reload:k", "v1"))
        client_id = self.client.client_id()
        before = proxy.config()
        self.assertEqual(before["log-level"], "info")
        self.assertEqual(before["max-pending-per-client"], str(FLAG_PENDING))

        with harness.free_port_block(1, bus=False) as other:
            # watcher: finish needs a restart when the proxy started observing (its finisher
            # was not built to refuse keys too big to move unattended).
            proxy.write_config(listen_port=other.ports[0], log_level="debug", max_clients=2,
                               request_timeout="3s", extra="watcher: finish\n")
            proxy.hup()
            self.wait_reloads("ok", 1)
            after = proxy.config()
            self.assertEqual(after["log-level"], "debug")
            self.assertEqual(after["max-clients"], "2")
            self.assertEqual(after["request-timeout"], "3s")
            self.assertEqual(after["max-pending-per-client"], str(FLAG_PENDING), "flags win")
            self.assertEqual(after["listen"], f"{harness.HOST}:{proxy.port}", "not applied")
            self.assertEqual(after["watcher"], "observe", "not applied")
            self.assertEqual(proxy.metric("slotpilot_config_restart_required"), 2)
            self.assertRegex(proxy.log(),
                             r"need a restart and were not applied: listen, watcher\n")
            with self.assertRaises(redis.ConnectionError):
                redis.Redis(host=harness.HOST, port=other.ports[0],
                            socket_connect_timeout=1).ping()

        # The same connection still serves, on the old listen address.
        self.assertEqual(self.client.client_id(), client_id)
        self.assertEqual(self.client.get("reload:k"), "v1")
        self.assertTrue(self.client.set("reload:k", "v2"))
        # The new limit is live in the worker: this client plus one more, then refusals. (The
        # refusal is "-ERR max number of clients reached" and a close; depending on which
        # redis-py sees first the exception text differs, so the counter is the evidence.)
        refusals = '{reason="max_clients"}'
        self.assertEqual(proxy.metric("slotpilot_client_closed_total", refusals), 0)
        with proxy.client() as second:
            self.assertTrue(second.ping())
            with proxy.client() as third:
                with self.assertRaises((redis.ConnectionError, redis.ResponseError)):
                    third.ping()
        # At least one: redis-py may reconnect once when the refusal reaches it as a close.
        self.assertGreaterEqual(proxy.metric("slotpilot_client_closed_total", refusals), 1)
        # The debug level is live: the reload itself is logged at info, requests now at debug.
        self.assertIn("log level set to debug", proxy.log())

    def test_a_broken_file_keeps_the_running_configuration(self) -> None:
        proxy = self.proxy
        proxy.write_config(listen_port=proxy.port, log_level="warn", max_clients=100,
                           request_timeout="5s", extra="tread: 2\n")
        proxy.hup()
        self.wait_reloads("error", 1)
        self.assertEqual(proxy.metric("slotpilot_config_reloads_total", '{result="ok"}'), 0)
        self.assertEqual(proxy.config()["log-level"], "info")
        self.assertIn("configuration not reloaded, keeping the running one: config file", proxy.log())
        self.assertIn("unknown key 'tread'", proxy.log())
        self.assertTrue(self.client.set("reload:broken", "still-serving"))
        # Fixing the file and signalling again applies it, with nothing waiting for a restart.
        proxy.write_config(listen_port=proxy.port, log_level="warn", max_clients=100,
                           request_timeout="5s", extra="watcher: off\n")
        proxy.hup()
        self.wait_reloads("ok", 1)
        self.assertEqual(proxy.config()["log-level"], "warn")
        self.assertEqual(proxy.config()["watcher"], "off")
        harness.wait_for(lambda: json.loads(proxy.admin_get("/v1/migrations"))["mode"] == "off",
                         10, "the watcher to report mode off")
        self.assertEqual(proxy.metric("slotpilot_config_restart_required"), 0)
        self.assertEqual(self.client.get("reload:broken"), "still-serving")


if __name__ == "__main__":
    unittest.main()
