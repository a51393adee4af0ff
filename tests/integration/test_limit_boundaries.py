"""Never crash, never hang: every fixed-size limit of the data path at its boundary, one past it
and ten times past it. At the limit the proxy serves correctly; past it the client gets a clear
RESP error or a clean close (or, where the limit is backpressure, correct service), the proxy
stays up, and other clients are served throughout.

Each limit is set SMALL on a proxy of its own (proxies are cheap; one cluster for the class):

  --max-clients=4                 the 5th connection and 40 more at once: Redis's own error, close
  --max-pending-per-client=8      backpressure, not an error: exactly 8 dispatched, all answered
  --client-max-input-bytes=64kb   one request frame of 64 KiB is served, 64 KiB + 1 refused;
                                  a MULTI may queue 64 KiB of commands
  --client-max-output-bytes=256kb one reply of exactly 256 KiB is served; a client that does not
                                  read is cut off; a client that reads must not be (documented:
                                  "replies buffered for a client that does not read them")
  --proto-max-bulk-len=4kb        a 4 KiB bulk is served, 4 KiB + 1 refused; replies are unlimited
  --max-args=8                    8 arguments (multibulk and inline) served, 9 refused
  --max-inline-bytes=1kb          a 1 KiB inline line served, 1 KiB + 1 refused; count lines too
  --upstream-max-pending=4        4 in flight on a node connection, the 5th fails fast by name
  --partial-request-timeout=500ms an incomplete request held past it is closed; complete requests
                                  (streamed, or held back by max-pending-per-client) never are
  --request-timeout=200ms         a slower request gets the timeout error at its deadline

With the default --client-max-output-bytes (64 MiB): a client that reads promptly GETs one
100 MiB value, and ten pipelined 10 MiB values (a standalone redis-server serves both).

Error texts are compared with a standalone redis-server where Redis has the same limit
(maxclients, proto-max-bulk-len, the multibulk count, the inline and count-line sizes).

Run: cd tests/integration && SLOTPILOT_BIN=... /usr/bin/python3 -m unittest -v test_limit_boundaries
"""

from __future__ import annotations

import socket
import threading
import time
import unittest
from typing import Optional

import redis

import harness
from harness import Node, Proxy, RedisCluster, StandaloneRedis
from test_data_path import ClusterTestCase, binary_missing_reason, proxy_metrics, stop_proxy_checked

SOCKET_TIMEOUT_S = 10.0   # well above every deadline the proxies below are given
BIG_TIMEOUT_S = 60.0      # for the 100 MiB transfers
CLOSED = ("eof", "reset")

# Spins on the server for ARGV[1] ms (redis.call('TIME') is allowed in Redis 7 scripts): a request
# that takes exactly as long as a test wants, on the master of KEYS[1].
SPIN = ("local t0 = redis.call('TIME') local ms = tonumber(ARGV[1]) "
        "while true do local t = redis.call('TIME') "
        "if (t[1] - t0[1]) * 1000 + (t[2] - t0[2]) / 1000 >= ms then return 1 end end")


# --------------------------------------------------------------------------------------------
# Raw RESP over sockets
# --------------------------------------------------------------------------------------------


def resp(*args: str | bytes | int) -> bytes:
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


def set_value_len(key: bytes, total: int) -> int:
    """The value length that makes `SET key value` a request of exactly `total` bytes."""
    head = len(resp(b"SET", key, b"")) - len(b"$0\r\n\r\n")  # all but the value's bulk
    n = total - head - 4
    while n > 0 and head + bulk_reply_size(n) > total:  # a bulk is framed as a bulk reply
        n -= 1
    assert len(resp(b"SET", key, b"x" * n)) == total, (n, total)
    return n


def set_frame(key: bytes, total: int) -> bytes:
    """A `SET key value` request of exactly `total` bytes."""
    return resp(b"SET", key, b"x" * set_value_len(key, total))


def bulk_reply_size(n: int) -> int:
    """Bytes of a bulk reply carrying n bytes: $n CRLF payload CRLF."""
    return len(b"$%d\r\n" % n) + n + 2


def value_len_for_reply(total: int) -> int:
    """The value length whose GET reply is exactly `total` bytes."""
    n = total - 4 - len(str(total))
    while bulk_reply_size(n) < total:
        n += 1
    while bulk_reply_size(n) > total:
        n -= 1
    assert bulk_reply_size(n) == total
    return n


def connect(port: int, rcvbuf: Optional[int] = None) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:  # before connect, so the window is small from the start
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(SOCKET_TIMEOUT_S)
    s.connect((harness.HOST, port))
    return s


def read_from(s: socket.socket, expect: Optional[int], timeout: float) -> tuple[bytes, Optional[str]]:
    """Reads until `expect` bytes arrived (then 'open'), the peer closed ('eof' or 'reset') or
    `timeout` passed (None)."""
    out = bytearray()
    deadline = time.monotonic() + timeout
    while expect is None or len(out) < expect:
        left = deadline - time.monotonic()
        if left <= 0:
            return bytes(out), None
        s.settimeout(left)
        try:
            chunk = s.recv(1 << 20)
        except socket.timeout:
            return bytes(out), None
        except ConnectionResetError:
            return bytes(out), "reset"
        if not chunk:
            return bytes(out), "eof"
        out += chunk
    return bytes(out), "open"


def talk(port: int, payload: bytes, expect: Optional[int] = None,
         timeout: float = SOCKET_TIMEOUT_S) -> tuple[bytes, Optional[str]]:
    """Sends payload on a fresh connection while a thread reads, so a server that answers and
    closes before the whole payload is sent still has its answer read (our send then fails,
    which is fine). Returns read_from's (data, how)."""
    with connect(port) as s:
        result: list = []
        reader = threading.Thread(target=lambda: result.append(read_from(s, expect, timeout)),
                                  daemon=True)
        reader.start()
        try:
            s.sendall(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass
        reader.join(timeout + 5)
        if not result:
            raise AssertionError(f"the reader hung past {timeout} s")
        return result[0]


def error_line(text: str) -> bytes:
    return b"-" + text.encode() + b"\r\n"


# --------------------------------------------------------------------------------------------
# The tests
# --------------------------------------------------------------------------------------------


class LimitTestCase(ClusterTestCase):
    """One cluster for the class (a long node timeout: some tests stop a master or spin a script
    for up to 2 s), a fresh proxy with one small limit per test."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.cluster = RedisCluster(masters=3, node_timeout_ms=15000).start()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.cluster.stop()

    def start_proxy(self, *args: str) -> Proxy:
        proxy = Proxy(self.cluster, log_level="info", extra_args=list(args)).start()
        self.addCleanup(stop_proxy_checked, proxy)
        self.proxy = proxy
        # PING is answered before the first topology arrives; requests wait for it.
        with proxy.client() as c:
            harness.wait_for(lambda: c.set("lb:ready", "1"), 10, "the proxy to serve a SET")
            c.connection_pool.disconnect()
        return proxy

    def assert_serves(self, proxy: Proxy, tag: str = "x") -> None:
        """Another client is served on every master."""
        with proxy.client(socket_timeout=SOCKET_TIMEOUT_S) as c:
            for slot in (0, 6000, 12000):  # one slot on each master of a fresh 3-master cluster
                key = harness.keys_for_slot(slot, 1, f"serves-{tag}")[0]
                self.assertTrue(c.set(key, tag))
                self.assertEqual(c.get(key), tag)
            c.connection_pool.disconnect()
        self.assertTrue(proxy.running(), "the proxy died:\n" + proxy.log()[-3000:])

    def owner(self, key: str) -> Node:
        node = self.cluster.node_for_slot(harness.key_slot(key))
        assert node is not None
        return node

    def key_elsewhere(self, key: str, tag: str) -> str:
        """A key on another master than `key`'s."""
        for slot in (0, 6000, 12000):
            other = harness.keys_for_slot(slot, 1, tag)[0]
            if self.owner(other) != self.owner(key):
                return other
        raise AssertionError("no other master")

    def assert_refused(self, got: tuple[bytes, Optional[str]], error: str,
                       before: bytes = b"") -> None:
        data, how = got
        self.assertEqual(data, before + error_line(error))
        self.assertIn(how, CLOSED, "answered the error but kept the connection")


@unittest.skipIf(binary_missing_reason() is not None, binary_missing_reason() or "")
class ConnectionLimitsTest(LimitTestCase):
    """max-clients, max-pending-per-client, upstream-max-pending, request-timeout."""

    def test_max_clients_at_one_past_and_ten_times_past(self) -> None:
        limit = 4
        proxy = self.start_proxy(f"--max-clients={limit}")
        harness.wait_for(lambda: proxy_metrics(proxy)["slotpilot_client_connections"] == 0, 5,
                         "the harness's own clients to be gone")
        held = [connect(proxy.port) for _ in range(limit)]
        try:
            for s in held:  # exactly at the limit: all served
                s.sendall(resp("PING"))
                self.assertEqual(read_from(s, 7, SOCKET_TIMEOUT_S), (b"+PONG\r\n", "open"))
            full = error_line("ERR max number of clients reached")
            for extra in (1, 10 * limit):  # one past, then 40 at once
                with self.subTest(extra=extra):
                    refused = [connect(proxy.port) for _ in range(extra)]
                    try:
                        outcomes = [read_from(s, None, SOCKET_TIMEOUT_S) for s in refused]
                    finally:
                        for s in refused:
                            s.close()
                    for data, how in outcomes:
                        self.assertEqual(data, full)
                        self.assertIn(how, CLOSED)
            for s in held:  # the held clients were never disturbed
                s.sendall(resp("ECHO", "still"))
                self.assertEqual(read_from(s, 11, SOCKET_TIMEOUT_S), (b"$5\r\nstill\r\n", "open"))
            # A slot freed is a slot to take (the close is noticed asynchronously: bounded wait).
            held.pop().close()

            def newcomer_served() -> bool:
                data, _ = talk(proxy.port, resp("PING"), expect=7, timeout=2.0)
                return data == b"+PONG\r\n"

            harness.wait_for(newcomer_served, 5, "a new client to be served after one left")
        finally:
            for s in held:
                s.close()
        metrics = proxy_metrics(proxy)
        self.assertGreaterEqual(metrics['slotpilot_client_closed_total{reason="max_clients"}'],
                                1 + 10 * limit)
        self.assert_serves(proxy)

    def test_max_pending_per_client_is_backpressure_never_an_error(self) -> None:
        limit = 8
        proxy = self.start_proxy(f"--max-pending-per-client={limit}")
        counter = "{mp}counter"
        bystander_key = self.key_elsewhere(counter, "mp-bystander")
        owner = self.owner(counter)

        def dispatched() -> float:
            return sum(v for k, v in proxy_metrics(proxy).items()
                       if k.startswith("slotpilot_requests_total{"))

        base = 0
        for n in (limit, limit + 1, 10 * limit):
            with self.subTest(pipelined=n), connect(proxy.port) as s:
                before = dispatched()
                self.cluster.pause(owner)  # nothing is answered: in flight stays in flight
                try:
                    s.sendall(resp("INCR", counter) * n)
                    harness.wait_for(lambda: dispatched() - before >= limit, 5,
                                     f"{limit} requests to be dispatched")
                    time.sleep(0.2)  # and no more than that
                    in_flight = dispatched() - before
                    with proxy.client() as other:  # another client is not held back
                        self.assertTrue(other.set(bystander_key, n))
                        other.connection_pool.disconnect()
                finally:
                    self.cluster.resume(owner)
                self.assertEqual(in_flight, limit)
                want = b"".join(b":%d\r\n" % (base + i + 1) for i in range(n))
                self.assertEqual(read_from(s, len(want), SOCKET_TIMEOUT_S), (want, "open"))
                base += n
        with self.subTest(pipelined=10000), connect(proxy.port) as s:  # far past, unpaused
            s.sendall(resp("INCR", counter) * 10000)
            want = b"".join(b":%d\r\n" % (base + i + 1) for i in range(10000))
            self.assertEqual(read_from(s, len(want), SOCKET_TIMEOUT_S), (want, "open"))
        self.assert_serves(proxy)

    def test_upstream_max_pending_fails_fast_with_the_node_named(self) -> None:
        limit = 4
        proxy = self.start_proxy(f"--upstream-max-pending={limit}")
        key = "{up}k"
        with proxy.client() as c:
            c.set(key, "v")
            c.connection_pool.disconnect()
        node = self.owner(key)
        value = b"$1\r\nv\r\n"
        queued = error_line(f"ERR slotpilot: too many requests queued for node {node.address}")
        for n in (limit, limit + 1, 10 * limit):
            with self.subTest(pipelined=n):
                # One write, one read by the proxy: all n reach the node connection before any
                # reply can come back, so exactly `limit` of them are in flight.
                want = value * limit + queued * (n - limit)
                data, how = talk(proxy.port, resp("GET", key) * n, expect=len(want))
                self.assertEqual((data, how), (want, "open"))
        with proxy.client() as c:  # nothing stays queued: the connection serves again
            self.assertEqual([c.get(key) for _ in range(3)], ["v"] * 3)
            c.connection_pool.disconnect()
        self.assert_serves(proxy)

    def test_request_timeout_under_at_and_ten_times_past(self) -> None:
        timeout_ms, margin_s = 200, 0.6
        proxy = self.start_proxy(f"--request-timeout={timeout_ms}ms")
        key = "{rt}k"
        other = self.key_elsewhere(key, "rt-other")
        node = self.owner(key)
        expired = f"slotpilot: request timed out after {timeout_ms} ms waiting for {node.address}"
        with proxy.client(socket_timeout=SOCKET_TIMEOUT_S) as c:
            c.set(key, "kept")
            self.assertEqual(c.eval(SPIN, 1, key, timeout_ms // 2), 1)  # half the deadline
            for spin_ms in (2 * timeout_ms, 10 * timeout_ms):
                with self.subTest(spin_ms=spin_ms):
                    spin_started = time.monotonic()
                    with self.assertRaises(redis.ResponseError) as caught:
                        c.eval(SPIN, 1, key, spin_ms)
                    elapsed = time.monotonic() - spin_started
                    self.assertEqual(str(caught.exception), expired)
                    self.assertGreaterEqual(elapsed, timeout_ms / 1000 - 0.02)
                    self.assertLessEqual(elapsed, timeout_ms / 1000 + margin_s)
                    # Meanwhile another master serves this very connection.
                    self.assertTrue(c.set(other, spin_ms))
                    # Once the script ends, the late reply is dropped, not handed to the next
                    # request on the same node.
                    harness.wait_for(lambda: time.monotonic() - spin_started > spin_ms / 1000, 30,
                                     "the script to end")
                    self.assertEqual(harness.wait_for(lambda: c.get(key), 5, "the node again"),
                                     "kept")
            # A pipeline behind a 10x spin: each request has its own deadline.
            with c.pipeline(transaction=False) as pipe:
                pipe.eval(SPIN, 1, key, 10 * timeout_ms)
                for _ in range(5):
                    pipe.get(key)
                start = time.monotonic()
                replies = pipe.execute(raise_on_error=False)
                elapsed = time.monotonic() - start
            self.assertEqual([str(r) for r in replies], [expired] * 6)
            self.assertLessEqual(elapsed, timeout_ms / 1000 + margin_s)
            time.sleep(10 * timeout_ms / 1000)
            self.assertEqual(harness.wait_for(lambda: c.get(key), 5, "the node again"), "kept")
            c.connection_pool.disconnect()
        self.assert_serves(proxy)


@unittest.skipIf(binary_missing_reason() is not None, binary_missing_reason() or "")
class RequestLimitsTest(LimitTestCase):
    """proto-max-bulk-len, max-args, max-inline-bytes, client-max-input-bytes,
    partial-request-timeout."""

    def test_proto_max_bulk_len_at_one_past_and_ten_times_past(self) -> None:
        limit = 4096
        proxy = self.start_proxy(f"--proto-max-bulk-len={limit}")
        ok = b"+OK\r\n:%d\r\n" % limit
        self.assertEqual(talk(proxy.port, resp("SET", "{bulk}k", b"b" * limit)
                              + resp("STRLEN", "{bulk}k"), expect=len(ok)), (ok, "open"))
        for n in (limit + 1, 10 * limit):
            with self.subTest(bulk=n):
                # The whole request, and the header alone: refused at the header, at once.
                for payload in (resp("SET", "{bulk}k", b"b" * n),
                                b"*3\r\n$3\r\nSET\r\n$7\r\n{bulk}k\r\n$%d\r\n" % n):
                    self.assert_refused(talk(proxy.port, resp("PING") + payload),
                                        "ERR Protocol error: invalid bulk length", b"+PONG\r\n")
                # Any argument, not only values.
                self.assert_refused(talk(proxy.port, resp("GET", b"k" * n)),
                                    "ERR Protocol error: invalid bulk length")
        # A request limit only: a reply ten times past it is served.
        big = b"r" * (10 * limit)
        key = "{bulk}reply"
        direct = self.cluster.client(self.owner(key), decode=False)
        self.addCleanup(direct.close)
        direct.set(key, big)
        with proxy.client(decode=False) as c:
            self.assertEqual(c.get(key), big)
            c.connection_pool.disconnect()
        self.assert_serves(proxy)

    def test_max_args_multibulk_and_inline(self) -> None:
        limit = 8
        proxy = self.start_proxy(f"--max-args={limit}")
        with proxy.client() as c:
            c.mset({f"{{args}}k{i}": "1" for i in range(3)})
            c.connection_pool.disconnect()
        for n in (limit, limit + 1, 10 * limit):
            keys = [f"{{args}}k{i}" for i in range(n - 1)]
            multibulk = resp("EXISTS", *keys)
            inline = ("EXISTS " + " ".join(keys) + "\r\n").encode()
            with self.subTest(args=n):
                if n <= limit:
                    self.assertEqual(talk(proxy.port, multibulk, expect=4), (b":3\r\n", "open"))
                    self.assertEqual(talk(proxy.port, inline, expect=4), (b":3\r\n", "open"))
                    continue
                self.assert_refused(talk(proxy.port, resp("PING") + multibulk),
                                    "ERR Protocol error: invalid multibulk length", b"+PONG\r\n")
                # Refused at the count line, before any argument arrives.
                self.assert_refused(talk(proxy.port, b"*%d\r\n" % n),
                                    "ERR Protocol error: invalid multibulk length")
                # Redis has no inline argument limit: this text is the proxy's own.
                self.assert_refused(talk(proxy.port, resp("PING") + inline),
                                    "ERR Protocol error: too many arguments in request", b"+PONG\r\n")
        self.assert_serves(proxy)

    def test_max_inline_bytes_lines_and_count_lines(self) -> None:
        limit = 1024
        proxy = self.start_proxy(f"--max-inline-bytes={limit}")
        for n in (limit, limit + 1, 10 * limit):
            # n bytes before the '\n', with and without a '\r' (which counts).
            for line in (b"ECHO " + b"e" * (n - 6) + b"\r\n", b"ECHO " + b"e" * (n - 5) + b"\n"):
                with self.subTest(line_bytes=n, cr=line.endswith(b"\r\n")):
                    if n <= limit:
                        arg = line[5:].rstrip(b"\r\n")
                        want = b"$%d\r\n%s\r\n" % (len(arg), arg)
                        self.assertEqual(talk(proxy.port, line, expect=len(want)), (want, "open"))
                    else:
                        self.assert_refused(talk(proxy.port, resp("PING") + line),
                                            "ERR Protocol error: too big inline request", b"+PONG\r\n")
            if n > limit:
                with self.subTest(line_bytes=n, newline=False):
                    # n bytes and no newline yet: refused as soon as they are there.
                    self.assert_refused(talk(proxy.port, b"ECHO " + b"e" * (n - 5)),
                                        "ERR Protocol error: too big inline request")
        for n in (limit + 1, 10 * limit):
            with self.subTest(count_line_bytes=n):
                self.assert_refused(talk(proxy.port, b"*" + b"1" * n),
                                    "ERR Protocol error: too big mbulk count string")
                self.assert_refused(talk(proxy.port, b"*1\r\n$" + b"1" * n),
                                    "ERR Protocol error: too big bulk count string")
        self.assert_serves(proxy)

    def test_client_max_input_bytes_one_request_frame(self) -> None:
        limit = 64 << 10  # at least the proxy's 16 KiB read block: see the test after this one
        proxy = self.start_proxy(f"--client-max-input-bytes={limit}")
        want = b"+OK\r\n:%d\r\n" % set_value_len(b"{in}k", limit)
        self.assertEqual(talk(proxy.port, set_frame(b"{in}k", limit) + resp("STRLEN", "{in}k"),
                              expect=len(want)), (want, "open"), "a frame of exactly the limit")
        for n in (limit + 1, 10 * limit):
            with self.subTest(frame=n):
                self.assert_refused(talk(proxy.port, resp("PING") + set_frame(b"{in}k", n)),
                                    "ERR Protocol error: request exceeds client-max-input-bytes",
                                    b"+PONG\r\n")
        # Many small requests far past the limit in total are not one big request.
        data, how = talk(proxy.port, resp("SET", "{in}small", "v" * 100) * 5000, expect=5 * 5000)
        self.assertEqual((data, how), (b"+OK\r\n" * 5000, "open"))
        self.assert_serves(proxy)

    def test_client_max_input_bytes_bounds_a_transaction(self) -> None:
        limit = 64 << 10
        proxy = self.start_proxy(f"--client-max-input-bytes={limit}")
        quarter = set_frame(b"{tx}k", limit // 4)
        over = set_frame(b"{tx}k", limit // 4 + 1)
        queued, abort = b"+QUEUED\r\n", b"-EXECABORT Transaction discarded because of previous errors.\r\n"
        too_big = error_line("ERR slotpilot: transaction exceeds client-max-input-bytes")
        cases = {
            "exactly the limit": ([quarter] * 4, queued * 4 + b"*4\r\n" + b"+OK\r\n" * 4),
            "one byte past": ([quarter] * 3 + [over], queued * 3 + too_big + abort),
            "ten times past": ([quarter] * 40, queued * 4 + too_big * 36 + abort),
        }
        for name, (commands, replies) in cases.items():
            with self.subTest(name), connect(proxy.port) as s:
                want = b"+OK\r\n" + replies
                s.sendall(resp("MULTI") + b"".join(commands) + resp("EXEC"))
                self.assertEqual(read_from(s, len(want), SOCKET_TIMEOUT_S), (want, "open"))
                # Not in MULTI any more, the connection open: a PING is a PING.
                s.sendall(resp("PING"))
                self.assertEqual(read_from(s, 7, SOCKET_TIMEOUT_S), (b"+PONG\r\n", "open"))
        self.assert_serves(proxy)

    def test_commands_pipelined_after_exec_are_not_queued_into_it(self) -> None:
        """Found by the test above (when the PING went in the same write as EXEC, it was
        refused with 'transaction exceeds client-max-input-bytes'). Commands a client writes
        right behind EXEC, before EXEC's reply is back, run after the transaction, as on a
        node. (Before the fix: the proxy answers them +QUEUED, as if still in MULTI, and they are
        never run: the INCR below is lost.)"""
        proxy = self.start_proxy()
        key = "{afterexec}n"
        payload = (resp("MULTI") + resp("SET", key, "1") + resp("EXEC") + resp("INCR", key)
                   + resp("GET", key) + resp("PING"))
        want = b"+OK\r\n+QUEUED\r\n*1\r\n+OK\r\n:2\r\n$1\r\n2\r\n+PONG\r\n"
        node = talk(self.owner(key).port, payload, expect=len(want), timeout=2.0)
        self.assertEqual(node, (want, "open"), "the node itself")
        got = talk(proxy.port, payload, expect=len(want), timeout=2.0)
        self.assertEqual(got, (want, "open"))
        with proxy.client() as c:
            self.assertEqual(c.get(key), "2", "the INCR written after EXEC was lost")
            c.connection_pool.disconnect()
        self.assert_serves(proxy)

    def test_client_max_input_bytes_below_the_read_block_counts_requests_not_reads(self) -> None:
        """With a limit below the proxy's 16 KiB read block, a client pipelining small requests
        must still be served: no request comes near the limit. (Before the fix: when
        max-pending-per-client stops the parsing, the complete requests already read are counted
        as one oversized request and the client is closed with 'request exceeds
        client-max-input-bytes'.)"""
        limit = 4096
        proxy = self.start_proxy(f"--client-max-input-bytes={limit}")
        n = 5000  # ~650 KiB of 131-byte SETs; more than the default 1024 in flight
        data, how = talk(proxy.port, resp("SET", "{in}small", "v" * 100) * n, expect=5 * n)
        self.assertEqual(data.count(b"+OK\r\n"), n, data[-200:])
        self.assertEqual(how, "open")
        self.assert_serves(proxy)

    # ---- partial-request-timeout ---------------------------------------------------------------

    PARTIAL_MS = 500
    SWEEP_S = 1.0  # the proxy looks at partial requests once a second

    def test_partial_request_under_and_past_the_timeout(self) -> None:
        proxy = self.start_proxy(f"--partial-request-timeout={self.PARTIAL_MS}ms")
        request = resp("SET", "{pt}k", "v" * 100)
        with connect(proxy.port) as s:  # completed at half the timeout: served, kept
            s.sendall(request[:40])
            time.sleep(self.PARTIAL_MS / 2000)
            s.sendall(request[40:] + resp("PING"))
            self.assertEqual(read_from(s, 12, SOCKET_TIMEOUT_S), (b"+OK\r\n+PONG\r\n", "open"))
        with connect(proxy.port) as s:  # never completed: closed after the timeout, not later
            start = time.monotonic()
            s.sendall(resp("PING") + request[:40])
            data, how = read_from(s, None, 10 * self.PARTIAL_MS / 1000)
            closed_after = time.monotonic() - start
            self.assertEqual(data, b"+PONG\r\n")
            self.assertIn(how, CLOSED, "an incomplete request was held ten times the timeout")
            self.assertGreaterEqual(closed_after, self.PARTIAL_MS / 1000 - 0.05)
            self.assertLessEqual(closed_after, self.PARTIAL_MS / 1000 + self.SWEEP_S + 1.0)
        self.assert_serves(proxy)

    def test_a_stream_of_requests_split_across_reads_is_not_a_slowloris(self) -> None:
        """A client streaming requests whose every read ends inside the next request (any big
        pipeline does this) completes a request every 20 ms for 5x the timeout. It never holds
        one incomplete request that long and must not be closed. (Before the fix: the timer starts
        at the first partial read and is only reset when the input buffer is empty, so the
        client is closed after ~timeout + sweep with its requests served. With the default 30 s
        it cuts off e.g. `redis-cli --pipe` mass inserts that run longer than 30 s.)"""
        proxy = self.start_proxy(f"--partial-request-timeout={self.PARTIAL_MS}ms")
        request = resp("SET", "{pt}stream", "v" * 50)
        mid = len(request) // 2
        with connect(proxy.port) as s:
            result: list = []
            reader = threading.Thread(target=lambda: result.append(
                read_from(s, None, 5 * self.PARTIAL_MS / 1000 + 3)), daemon=True)
            reader.start()
            sent, start = 0, time.monotonic()
            try:
                s.sendall(request[:mid])
                while time.monotonic() - start < 5 * self.PARTIAL_MS / 1000 and sent < 1000:
                    time.sleep(0.02)
                    s.sendall(request[mid:] + request[:mid])  # completes one, starts the next
                    sent += 1
                s.sendall(request[mid:])
                sent += 1
                s.sendall(resp("QUIT"))
            except OSError as e:
                self.fail(f"closed after {time.monotonic() - start:.2f} s and {sent} requests: {e!r}")
            reader.join(SOCKET_TIMEOUT_S)
            self.assertTrue(result, "the reader hung")
            data, how = result[0]
        self.assertEqual(data, b"+OK\r\n" * sent + b"+OK\r\n", f"{sent} sent, closed: {how}")
        self.assertIn(how, CLOSED)  # by QUIT
        self.assert_serves(proxy)

    def test_complete_requests_held_back_by_max_pending_are_not_a_slowloris(self) -> None:
        """Requests the client sent in full but the proxy has not parsed yet (reading stopped at
        max-pending-per-client while a slow script runs) are not an incomplete request. (Before the fix:
        now: the client is closed after ~timeout + sweep, and even the answers already in
        flight are lost.)"""
        proxy = self.start_proxy(f"--partial-request-timeout={self.PARTIAL_MS}ms",
                                 "--max-pending-per-client=8")
        key = "{pp}k"
        spin_ms = 4 * self.PARTIAL_MS
        want = b":1\r\n" + b"$-1\r\n" * 20
        data, how = talk(proxy.port, resp("EVAL", SPIN, 1, key, spin_ms) + resp("GET", key) * 20,
                         expect=len(want))
        self.assertEqual((data, how), (want, "open"))
        self.assert_serves(proxy)


@unittest.skipIf(binary_missing_reason() is not None, binary_missing_reason() or "")
class OutputLimitTest(LimitTestCase):
    """client-max-output-bytes: small, and the default (512 MiB) against 100 MiB of replies."""

    def put(self, proxy: Proxy, key: str, value: bytes) -> None:
        with proxy.client(decode=False, socket_timeout=BIG_TIMEOUT_S) as c:
            self.assertTrue(c.set(key, value))
            c.connection_pool.disconnect()

    def read_replies(self, port: int, payload: bytes, want: bytes) -> tuple[int, Optional[str], bool]:
        """A client that reads promptly: (bytes received, how it ended, all correct)."""
        with connect(port, rcvbuf=4 << 20) as s:
            s.sendall(payload)
            data, how = read_from(s, len(want), BIG_TIMEOUT_S)
        return len(data), how, data == want

    def test_output_limit_exactly_at_it_and_a_client_that_does_not_read(self) -> None:
        limit = 256 << 10
        proxy = self.start_proxy(f"--client-max-output-bytes={limit}")
        exact = b"o" * value_len_for_reply(limit)
        self.put(proxy, "{out}exact", exact)
        want = b"+PONG\r\n" + b"$%d\r\n%s\r\n" % (len(exact), exact)
        self.assertEqual(self.read_replies(proxy.port, resp("PING") + resp("GET", "{out}exact"), want),
                         (len(want), "open", True), "one reply of exactly the limit")
        # A client that never reads, replies each under the limit, 25 times past it in total
        # (the kernel's socket buffers take some of it).
        before = proxy_metrics(proxy)['slotpilot_client_closed_total{reason="output_limit"}']
        quarter = b"q" * (limit // 4)
        self.put(proxy, "{out}quarter", quarter)
        with connect(proxy.port, rcvbuf=4096) as s:
            s.sendall(resp("GET", "{out}quarter") * 100)
            self.assert_serves(proxy, "unread")
            data, how = read_from(s, None, SOCKET_TIMEOUT_S)
        self.assertIn(how, CLOSED, "kept a client that never reads")
        self.assertLess(len(data), 100 * len(quarter))
        self.assertEqual(proxy_metrics(proxy)['slotpilot_client_closed_total{reason="output_limit"}'],
                         before + 1)
        self.assert_serves(proxy)

    def test_past_the_output_limit_a_client_is_closed_even_while_it_reads(self) -> None:
        """client-max-output-bytes is a hard limit, as Redis's `client-output-buffer-limit
        normal <hard> 0 0`: a reply counts whole until written, so one reply past the limit, or
        pipelined replies that arrive faster than the client drains them, close the connection
        (and are counted), however promptly it reads. The default (512 MiB) is above any value
        Redis accepts; the proxy keeps serving everyone else."""
        limit = 256 << 10
        proxy = self.start_proxy(f"--client-max-output-bytes={limit}")
        before = proxy_metrics(proxy)['slotpilot_client_closed_total{reason="output_limit"}']
        for total in (limit + 1, 10 * limit):
            with self.subTest(one_reply=total):
                value = b"p" * value_len_for_reply(total)
                self.put(proxy, "{out}big", value)
                want = b"+PONG\r\n" + b"$%d\r\n%s\r\n" % (len(value), value)
                received, how, _ = self.read_replies(proxy.port, resp("PING") + resp("GET", "{out}big"), want)
                self.assertIn(how, CLOSED)
                self.assertLess(received, len(want))
                self.assert_serves(proxy)
        self.assertEqual(proxy_metrics(proxy)['slotpilot_client_closed_total{reason="output_limit"}'],
                         before + 2)
        self.assertIn("over client-max-output-bytes", proxy.log())

    def test_default_limit_a_reading_client_gets_one_100_mib_value(self) -> None:
        """With the default limit a client that GETs one 100 MiB value is served in full, as by
        the cluster node itself. (With the old 64 MiB default it was closed before a byte of it
        was sent.)"""
        proxy = self.start_proxy("--request-timeout=60s")  # 100 MiB through an ASan build
        value = b"h" * (100 << 20)
        key = "{out}100mib"
        self.put(proxy, key, value)
        want = b"$%d\r\n%s\r\n" % (len(value), value)
        node = self.read_replies(self.owner(key).port, resp("GET", key), want)
        self.assertEqual(node, (len(want), "open", True), "the node itself")
        got = self.read_replies(proxy.port, resp("GET", key), want)
        print(f"\n100 MiB GET through the proxy: {got[0]} of {len(want)} bytes, then {got[1]}; "
              f"proxy RSS {proxy.rss_kib() >> 10} MiB", flush=True)
        self.assertEqual(got, (len(want), "open", True))
        self.assert_serves(proxy)

    def test_default_limit_a_reading_client_gets_ten_pipelined_10_mib_values(self) -> None:
        """Ten pipelined GETs of 10 MiB values (100 MiB in all) by an ordinary client that
        reads as it parses (a redis-py pipeline), five times over; the node itself serves it,
        and so does the proxy with its default limit. (With the old 64 MiB default most attempts
        were cut off: replies arrive from the node faster than the client drains them.)"""
        proxy = self.start_proxy("--request-timeout=60s")  # 100 MiB through an ASan build
        keys = [f"{{out}}10mib:{i}" for i in range(10)]
        values = [bytes([65 + i]) * (10 << 20) for i in range(10)]
        for key, value in zip(keys, values):
            self.put(proxy, key, value)

        def pipelined_gets(client: redis.Redis) -> str:
            try:
                with client.pipeline(transaction=False) as pipe:
                    for key in keys:
                        pipe.get(key)
                    return "served" if pipe.execute() == values else "wrong values"
            except redis.RedisError as e:
                return repr(e)
            finally:
                client.connection_pool.disconnect()

        node = self.cluster.client(self.owner(keys[0]), decode=False, socket_timeout=BIG_TIMEOUT_S)
        self.assertEqual(pipelined_gets(node), "served", "the node itself")
        outcomes = []
        for _ in range(5):  # bounded; stops at the first cut-off
            outcomes.append(pipelined_gets(proxy.client(decode=False, socket_timeout=BIG_TIMEOUT_S)))
            if outcomes[-1] != "served":
                break
        print(f"\n10 x 10 MiB pipelined GETs through the proxy, per attempt: {outcomes}", flush=True)
        self.assertEqual(outcomes, ["served"] * 5)
        self.assert_serves(proxy)


@unittest.skipIf(binary_missing_reason() is not None, binary_missing_reason() or "")
class RedisErrorTextsTest(LimitTestCase):
    """The proxy's refusals next to a standalone redis-server's, where Redis has the same limit:
    same bytes, and both close. Where Redis differs (no such limit, or a silent close), both
    sides must still give a clear error or a clean close; the difference is printed."""

    def compare(self, proxy_port: int, redis_port: int, payload: bytes) -> None:
        ours, theirs = talk(proxy_port, payload), talk(redis_port, payload)
        self.assertEqual(ours[0], theirs[0], payload[:60])
        self.assertIn(ours[1], CLOSED, payload[:60])
        self.assertIn(theirs[1], CLOSED, payload[:60])

    def test_same_limits_same_errors(self) -> None:
        mib = 1 << 20  # Redis's smallest proto-max-bulk-len
        proxy = self.start_proxy("--max-clients=4", f"--proto-max-bulk-len={mib}")
        server = StandaloneRedis(extra_args=["--maxclients", "4", "--proto-max-bulk-len", "1mb"]).start()
        self.addCleanup(server.stop)
        cases = {
            "bulk one past": b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$%d\r\n" % (mib + 1),
            "bulk ten times past": b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$%d\r\n" % (10 * mib),
            "multibulk past INT_MAX": b"*2147483648\r\n",
            "inline 10 x 64 KiB": b"ECHO " + b"e" * (640 << 10),
            "count line 10 x 64 KiB": b"*" + b"1" * (640 << 10),
            "bulk count line 10 x 64 KiB": b"*1\r\n$" + b"1" * (640 << 10),
        }
        for name, payload in cases.items():
            with self.subTest(name):
                self.compare(proxy.port, server.port, resp("PING") + payload)
        with self.subTest("maxclients"):
            harness.wait_for(lambda: proxy_metrics(proxy)["slotpilot_client_connections"] == 0, 5,
                             "the harness's own clients to be gone")
            refusals = []
            for port in (proxy.port, server.port):
                held = []
                try:
                    for _ in range(10):  # until one is refused: bounded
                        s = connect(port)
                        held.append(s)
                        s.sendall(resp("PING"))
                        data, how = read_from(s, 7, 2.0)
                        if data != b"+PONG\r\n":
                            data += read_from(s, None, 2.0)[0]
                            refusals.append(data)
                            break
                finally:
                    for s in held:
                        s.close()
            self.assertEqual(refusals, [error_line("ERR max number of clients reached")] * 2)

    def test_where_redis_differs(self) -> None:
        mib = 1 << 20  # Redis's smallest client-query-buffer-limit
        proxy = self.start_proxy(f"--client-max-input-bytes={mib}", "--max-args=8")
        server = StandaloneRedis(extra_args=["--client-query-buffer-limit", "1mb"]).start()
        self.addCleanup(server.stop)
        cases = {
            "a request frame of 2 MiB": resp("SET", "k", b"x" * (2 * mib)),
            "an inline line of 9 arguments": b"EXISTS a b c d e f g h\r\n",
        }
        lines = []
        for name, payload in cases.items():
            with self.subTest(name):
                ours, theirs = talk(proxy.port, payload, timeout=1.0), talk(server.port, payload, timeout=1.0)
                for data, how in (ours, theirs):
                    self.assertTrue(how in CLOSED or data.startswith((b"-", b":")), (data[:80], how))
                lines.append(f"  {name}: slotpilot {ours[0][:70]!r} then {ours[1] or 'open'}; "
                             f"redis-server {theirs[0][:70]!r} then {theirs[1] or 'open'}")
        print("\nwhere slotpilot and redis-server differ:\n" + "\n".join(lines), flush=True)
        self.assert_serves(proxy)


if __name__ == "__main__":
    unittest.main()
