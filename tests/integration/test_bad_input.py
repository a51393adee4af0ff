"""Hostile and broken clients over raw sockets (issue 3): malformed RESP, an oversized bulk, a
1M-argument header, slowloris, and a client that never reads. Each gets a clear error or a close;
the proxy keeps serving everyone else and its memory stays bounded.

Limits under test (small, so the tests are quick): --proto-max-bulk-len=1mb,
--partial-request-timeout=1s, --client-max-output-bytes=1mb.

Run: cd tests/integration && SLOTPILOT_BIN=... /usr/bin/python3 -m unittest -v test_bad_input
"""

from __future__ import annotations

import socket
import threading
import time
import unittest
from typing import Optional

import harness
from harness import Proxy, RedisCluster
from test_data_path import ClusterTestCase, binary_missing_reason, stop_proxy_checked

MAX_BULK = 1 << 20
PARTIAL_TIMEOUT_S = 1.0
SWEEP_S = 1.0  # the proxy checks partial requests once a second
MAX_OUTPUT = 1 << 20
ARGS = [f"--proto-max-bulk-len={MAX_BULK}", f"--partial-request-timeout={int(PARTIAL_TIMEOUT_S * 1000)}ms",
        f"--client-max-output-bytes={MAX_OUTPUT}"]


def resp(*args: str | bytes) -> bytes:
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a.encode() if isinstance(a, str) else a
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


def connect(port: int, rcvbuf: Optional[int] = None) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:  # before connect, so the window is small from the start
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(5.0)
    s.connect((harness.HOST, port))
    return s


def read_until_closed(s: socket.socket, timeout: float, limit: int = 1 << 30
                      ) -> tuple[bytes, Optional[str]]:
    """Reads until the peer closes (returns how: 'eof' or 'reset') or `timeout` passes (None)."""
    out = bytearray()
    deadline = time.monotonic() + timeout
    while len(out) < limit:
        left = deadline - time.monotonic()
        if left <= 0:
            return bytes(out), None
        s.settimeout(left)
        try:
            chunk = s.recv(1 << 16)
        except socket.timeout:
            return bytes(out), None
        except ConnectionResetError:
            return bytes(out), "reset"
        if not chunk:
            return bytes(out), "eof"
        out += chunk
    return bytes(out), None


def exchange(port: int, payload: bytes, timeout: float = 3.0) -> tuple[bytes, Optional[str]]:
    with connect(port) as s:
        s.sendall(payload)
        return read_until_closed(s, timeout)


@unittest.skipIf(binary_missing_reason() is not None, binary_missing_reason() or "")
class BadInputTest(ClusterTestCase):
    """3 masters shared by the class; a fresh proxy (small limits) per test."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.cluster = RedisCluster(masters=3).start()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.cluster.stop()

    def setUp(self) -> None:
        self.proxy = Proxy(self.cluster, log_level="info", extra_args=ARGS).start()
        self.addCleanup(stop_proxy_checked, self.proxy)

    def _assert_serves(self, tag: str = "x") -> float:
        """A well-behaved client works; returns its round-trip time for SET + GET."""
        start = time.monotonic()
        with self.proxy.client() as client:
            self.assertTrue(client.set(f"bad:{tag}", tag))
            self.assertEqual(client.get(f"bad:{tag}"), tag)
        return time.monotonic() - start

    # ---- malformed RESP ------------------------------------------------------------------------

    def test_malformed_resp_gets_redis_protocol_error_then_close(self) -> None:
        cases = {
            b"*x\r\n": b"-ERR Protocol error: invalid multibulk length\r\n",
            b"*1\r\n$-5\r\n": b"-ERR Protocol error: invalid bulk length\r\n",
            b"*1\r\n#3\r\n": b"-ERR Protocol error: expected '$', got '#'\r\n",
            b"*2\r\n$3\r\nGET\r\n$abc\r\n": b"-ERR Protocol error: invalid bulk length\r\n",
        }
        # Redis skips the two bytes after a bulk without checking them: "GETxx" is GET without
        # arguments (an arity error) and no close. The proxy must agree byte for byte.
        lenient = {b"*1\r\n$3\r\nGETxx\r\n"}
        node = self.cluster.masters()[0]
        for payload, want in cases.items():
            with self.subTest(payload=payload):
                got, closed = exchange(self.proxy.port, resp("PING") + payload)
                redis_says, redis_closed = exchange(node.port, resp("PING") + payload)
                self.assertEqual(got, b"+PONG\r\n" + want)
                self.assertIn(closed, ("eof", "reset"))
                self.assertEqual((got, closed is not None), (redis_says, redis_closed is not None))
        for payload in lenient:
            with self.subTest(payload=payload):
                got, closed = exchange(self.proxy.port, resp("PING") + payload, timeout=1.0)
                redis_says, redis_closed = exchange(node.port, resp("PING") + payload, timeout=1.0)
                self.assertEqual((got, closed), (redis_says, redis_closed))
        self._assert_serves()

    def test_bare_dollar_line_is_an_inline_command_as_in_redis(self) -> None:
        # Outside a multibulk, "$-5" is an inline command (Redis's rule): an error, no close.
        node = self.cluster.masters()[0]
        with connect(self.proxy.port) as s, connect(node.port) as direct:
            s.sendall(b"$-5\r\n")
            direct.sendall(b"$-5\r\n")
            got, closed = read_until_closed(s, 1.0)
            redis_says, _ = read_until_closed(direct, 1.0)
            self.assertEqual(got, redis_says)
            self.assertTrue(got.startswith(b"-ERR unknown command '$-5'"), got)
            self.assertIsNone(closed)
            s.sendall(resp("PING"))
            self.assertEqual(s.recv(100), b"+PONG\r\n")

    # ---- oversized bulk --------------------------------------------------------------------------

    def test_bulk_over_proto_max_bulk_len_is_refused_and_closed(self) -> None:
        got, closed = exchange(self.proxy.port, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$%d\r\n" % (MAX_BULK + 1))
        self.assertEqual(got, b"-ERR Protocol error: invalid bulk length\r\n")
        self.assertIn(closed, ("eof", "reset"))
        big = b"b" * MAX_BULK  # exactly at the limit: fine
        with connect(self.proxy.port) as s:
            s.sendall(resp("SET", "bad:big", big) + resp("STRLEN", "bad:big"))
            got, closed = read_until_closed(s, 1.0, limit=len(b"+OK\r\n:1048576\r\n"))
            self.assertEqual(got, b"+OK\r\n:%d\r\n" % MAX_BULK)
        self._assert_serves()

    # ---- a 1M-argument header ------------------------------------------------------------------

    def test_million_argument_headers_cost_no_memory_and_time_out(self) -> None:
        self._assert_serves("warm")
        rss_before = self.proxy.rss_kib()
        sockets = [connect(self.proxy.port) for _ in range(20)]
        try:
            for s in sockets:
                s.sendall(b"*1000000\r\n")
            sockets[0].sendall(b"$3\r\nGET\r\n$1\r\nk\r\n" * 10)  # and a few real arguments
            time.sleep(0.3)
            rtt = self._assert_serves("during")
            rss_during = self.proxy.rss_kib()
            start = time.monotonic()
            outcomes = [read_until_closed(s, PARTIAL_TIMEOUT_S + SWEEP_S + 3.0) for s in sockets]
            waited = time.monotonic() - start
        finally:
            for s in sockets:
                s.close()
        print(f"\n20 x '*1000000': RSS {rss_before} -> {rss_during} KiB, other client "
              f"{rtt * 1000:.1f} ms, all closed after {waited:.2f} s", flush=True)
        self.assertLess(rss_during - rss_before, 16 * 1024, "memory grew with announced arguments")
        self.assertLess(rtt, 0.5)
        for data, closed in outcomes:
            self.assertIn(closed, ("eof", "reset"))  # held an incomplete request: dropped
            self.assertEqual(data, b"")
        self._assert_serves("after")

    # ---- slowloris -------------------------------------------------------------------------------

    def test_slowloris_partial_request_is_closed_after_the_timeout(self) -> None:
        with connect(self.proxy.port) as held, connect(self.proxy.port) as trickle, \
                connect(self.proxy.port) as idle:
            start = time.monotonic()
            held.sendall(b"*2\r\n$3\r\nGET\r\n$3\r\nfo")  # and nothing more
            closed_at: dict[str, float] = {}

            def trickle_bytes() -> None:  # one byte every 200 ms, never completing
                payload = resp("SET", "slow", "x" * 1000)
                for i in range(len(payload) - 1):
                    try:
                        trickle.sendall(payload[i:i + 1])
                    except OSError:
                        return
                    if time.monotonic() - start > 10:
                        return
                    time.sleep(0.2)

            t = threading.Thread(target=trickle_bytes, daemon=True)
            t.start()
            for name, s in (("held", held), ("trickle", trickle)):
                _, how = read_until_closed(s, PARTIAL_TIMEOUT_S + SWEEP_S + 3.0)
                self.assertIn(how, ("eof", "reset"), f"{name} not closed")
                closed_at[name] = time.monotonic() - start
            t.join(timeout=15)
            print(f"\nslowloris closed after {closed_at}", flush=True)
            for name, when in closed_at.items():
                self.assertGreaterEqual(when, PARTIAL_TIMEOUT_S - 0.05, name)
                self.assertLessEqual(when, PARTIAL_TIMEOUT_S + SWEEP_S + 1.0, name)
            idle.sendall(resp("PING"))  # an idle client with nothing partial is left alone
            self.assertEqual(idle.recv(100), b"+PONG\r\n")
        self._assert_serves()

    # ---- a client that never reads -----------------------------------------------------------

    def test_client_that_never_reads_is_disconnected_and_memory_stays_bounded(self) -> None:
        value = b"v" * (256 << 10)
        with self.proxy.client(decode=False) as client:
            client.set("bad:bigvalue", value)
        self._assert_serves("warm")
        rss_before = self.proxy.rss_kib()
        requests = 400  # 100 MiB of replies
        with connect(self.proxy.port, rcvbuf=4096) as s:
            s.sendall(resp("GET", "bad:bigvalue") * requests)
            peak, rtts = rss_before, []
            for _ in range(15):  # 3 s of watching
                time.sleep(0.2)
                peak = max(peak, self.proxy.rss_kib())
                rtts.append(self._assert_serves("meanwhile"))
            data, how = read_until_closed(s, 10.0)
        print(f"\nnever-reading client: got {len(data) >> 10} KiB of {requests * len(value) >> 20} MiB "
              f"then {how}; RSS {rss_before} -> peak {peak} KiB; others max "
              f"{max(rtts) * 1000:.1f} ms", flush=True)
        self.assertIn(how, ("eof", "reset"), "the proxy kept a client that never reads")
        self.assertLess(len(data), requests * len(value) // 4)
        self.assertLess(peak - rss_before, 64 * 1024, "the proxy buffered the unread replies")
        self.assertLess(max(rtts), 0.5)
        self.assertIn("client-max-output-bytes", self.proxy.log())
        with self.proxy.client(decode=False) as client:
            self.assertEqual(client.get("bad:bigvalue"), value)


if __name__ == "__main__":
    unittest.main()
