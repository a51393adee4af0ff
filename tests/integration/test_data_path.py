"""The data path (issue 3) against a real 3-master + 3-replica cluster, through the proxy, with
Debian's python3-redis used as an ordinary, cluster-unaware client:

  * 100k keys of every common type written through the proxy and read back through the proxy
    and straight from the node that owns each key's slot;
  * pipelines of 10k commands (one client, and several at once) answered in request order;
  * a real ASK window: a slot left IMPORTING/MIGRATING by hand with half its keys moved;
  * commands retried after CLUSTERDOWN still run in the order the client sent them.

Resharding under load is in test_resharding, failovers and stalls in test_failover, hostile
clients in test_bad_input.

Run: cd tests/integration && SLOTPILOT_BIN=... /usr/bin/python3 -m unittest -v test_data_path
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
import time
import unittest
import urllib.request
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence

import redis

import harness
from harness import Node, Proxy, RedisCluster

BATCH = 1000  # commands per pipelined round trip


# --------------------------------------------------------------------------------------------
# Shared helpers (the other test_*.py files of this suite import these; no TestCase here is
# collected twice because the base class has no tests)
# --------------------------------------------------------------------------------------------


def binary_missing_reason() -> Optional[str]:
    binary = harness.slotpilot_binary()
    if binary.is_file():
        return None
    return f"slotpilot binary not built: {binary} does not exist (set SLOTPILOT_BIN or build it)"


class ClusterTestCase(unittest.TestCase):
    """On failure, prints the tails of the node logs and of the proxy's log (set `cluster` and
    `proxy` before the test body runs)."""

    cluster: Optional[RedisCluster] = None
    proxy: Optional[Proxy] = None

    def _failed(self) -> bool:
        result = getattr(getattr(self, "_outcome", None), "result", None)
        problems = getattr(result, "errors", []) + getattr(result, "failures", [])
        return any(test is self for test, _ in problems)

    def tearDown(self) -> None:
        if not self._failed():
            return
        if self.proxy is not None:
            tail = "\n".join(self.proxy.log().splitlines()[-40:])
            print(f"\nslotpilot log (tail):\n{tail}", file=sys.stderr)
        if self.cluster is not None:
            print(f"\n{self.cluster!r} node logs:\n{self.cluster.logs_tail()}", file=sys.stderr)


SANITIZER_MARKERS = ("AddressSanitizer", "LeakSanitizer", "runtime error:")


def stop_proxy_checked(proxy: Proxy) -> None:
    """Stops the proxy (SIGTERM) and raises if it did not exit 0 or if a sanitizer (the debug
    build has ASan + UBSan) reported anything in its output. Use as a cleanup."""
    code = proxy.stop()
    log = proxy.log()
    reports = [line for line in log.splitlines() if any(m in line for m in SANITIZER_MARKERS)]
    if code != 0 or reports:
        tail = "\n".join(log.splitlines()[-60:])
        raise AssertionError(f"slotpilot exited with {code}; sanitizer lines: {reports[:5]}\n"
                             f"log tail:\n{tail}")


class SlotMap:
    """slot -> master Node, from one node's CLUSTER SLOTS (a snapshot: take it after changes)."""

    def __init__(self, cluster: RedisCluster, view: Optional[Node] = None) -> None:
        view = view or cluster.masters()[0]
        self._owner: list[Optional[Node]] = [None] * harness.SLOT_COUNT
        for lo, hi, (_, port, _), _ in cluster.cluster_slots(view):
            node = cluster.node_by_port(port)
            for slot in range(lo, hi + 1):
                self._owner[slot] = node

    def owner(self, key: str | bytes) -> Node:
        node = self._owner[harness.key_slot(key)]
        assert node is not None, f"slot of {key!r} is unassigned"
        return node

    def slot_owner(self, slot: int) -> Optional[Node]:
        return self._owner[slot]

    def group(self, keys: Iterable[Any], key_of: Callable[[Any], str | bytes] = lambda k: k
              ) -> dict[Node, list[Any]]:
        by_node: dict[Node, list[Any]] = {}
        for item in keys:
            by_node.setdefault(self.owner(key_of(item)), []).append(item)
        return by_node


def run_pipelined(client: redis.Redis, ops: Sequence[Callable[[Any], None]],
                  batch: int = BATCH) -> list:
    """Queues every op (a function of a pipeline) in pipelines of `batch` commands each and
    returns all replies in order. Errors are returned in place, not raised."""
    replies: list = []
    for start in range(0, len(ops), batch):
        with client.pipeline(transaction=False) as pipe:
            for op in ops[start:start + batch]:
                op(pipe)
            replies.extend(pipe.execute(raise_on_error=False))
    return replies


def errors_in(replies: Iterable[Any]) -> list[Exception]:
    return [r for r in replies if isinstance(r, Exception)]


def proxy_metrics(proxy: Proxy) -> dict[str, float]:
    """The admin port's Prometheus metrics (summed over workers by the proxy), as
    {'name{labels}': value}; e.g. m['slotpilot_retries_total{reason="tryagain"}']."""
    with urllib.request.urlopen(f"http://{proxy.admin_address}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


# --------------------------------------------------------------------------------------------
# The data set of test 1: 100k keys of 8 types, every value derived from the key's index
# --------------------------------------------------------------------------------------------


TYPES = ("string", "hash", "list", "set", "zset", "stream", "hll", "bitmap")
ALL_BYTES = bytes(range(256))


def key_name(kind: str, i: int) -> bytes:
    """Key names of many shapes: plain, with a {hashtag}, and binary (CR LF, NUL, 0xff)."""
    if i % 11 == 0:
        return b"dp:%s:{tag%d}:%d" % (kind.encode(), i % 97, i)
    if i % 13 == 0:
        return b"dp:%s:\r\n\x00\xff:%d" % (kind.encode(), i)
    return b"dp:%s:%d" % (kind.encode(), i)


def string_value(i: int) -> bytes:
    if i % 1000 == 0:
        return b"L" * 65536 + b"%d" % i  # a few large values
    if i % 7 == 0:
        return ALL_BYTES + b"%d" % i     # binary
    if i % 101 == 0:
        return b""                       # empty
    return ("v\u00e9-%d" % i).encode()            # UTF-8


class Item:
    """One key of the data set: how to write it, how to read it, and what reading must give."""

    __slots__ = ("kind", "i", "key")

    def __init__(self, kind: str, i: int) -> None:
        self.kind, self.i, self.key = kind, i, key_name(kind, i)

    def write(self, pipe: Any) -> None:
        k, i = self.key, self.i
        if self.kind == "string":
            pipe.set(k, string_value(i))
        elif self.kind == "hash":
            pipe.hset(k, mapping={b"f1": b"%d" % i, b"f2": string_value(i), b"\x00f": b"x"})
        elif self.kind == "list":
            pipe.rpush(k, b"a%d" % i, b"", b"c\r\n", b"a%d" % i)
        elif self.kind == "set":
            pipe.sadd(k, b"m%d" % i, b"n%d" % (i + 1), b"\xff")
        elif self.kind == "zset":
            pipe.zadd(k, {b"a": i, b"b": -i / 4, b"c\x00": 1.5})
        elif self.kind == "stream":
            pipe.xadd(k, {b"f": b"%d" % i, b"g": string_value(i)}, id=b"%d-1" % (i + 1))
        elif self.kind == "hll":
            pipe.pfadd(k, *(b"e%d" % (i + j) for j in range(i % 5 + 1)))
        else:  # bitmap
            pipe.setbit(k, i % 4096, 1)
            pipe.setbit(k, 7, 1)

    def write_count(self) -> int:
        return 2 if self.kind == "bitmap" else 1

    def read(self, pipe: Any) -> None:
        k = self.key
        if self.kind == "string":
            pipe.get(k)
        elif self.kind == "hash":
            pipe.hgetall(k)
        elif self.kind == "list":
            pipe.lrange(k, 0, -1)
        elif self.kind == "set":
            pipe.smembers(k)
        elif self.kind == "zset":
            pipe.zrange(k, 0, -1, withscores=True)
        elif self.kind == "stream":
            pipe.xrange(k)
        elif self.kind == "hll":
            pipe.pfcount(k)
            pipe.get(k)  # the raw HLL encoding: must be byte-identical through the proxy
        else:
            pipe.bitcount(k)
            pipe.get(k)

    def read_count(self) -> int:
        return 2 if self.kind in ("hll", "bitmap") else 1

    def expected(self) -> list:
        """What read() gives, except raw HLL bytes (compared between proxy and node)."""
        i = self.i
        if self.kind == "string":
            return [string_value(i)]
        if self.kind == "hash":
            return [{b"f1": b"%d" % i, b"f2": string_value(i), b"\x00f": b"x"}]
        if self.kind == "list":
            return [[b"a%d" % i, b"", b"c\r\n", b"a%d" % i]]
        if self.kind == "set":
            return [{b"m%d" % i, b"n%d" % (i + 1), b"\xff"}]
        if self.kind == "zset":
            return [sorted([(b"a", float(i)), (b"b", -i / 4), (b"c\x00", 1.5)],
                           key=lambda m: (m[1], m[0]))]
        if self.kind == "stream":
            return [[(b"%d-1" % (i + 1), {b"f": b"%d" % i, b"g": string_value(i)})]]
        if self.kind == "hll":
            return [i % 5 + 1, None]
        offset = i % 4096
        raw = bytearray(max(offset, 7) // 8 + 1)
        for bit in {offset, 7}:
            raw[bit // 8] |= 0x80 >> (bit % 8)
        return [len({offset, 7}), bytes(raw)]


def split_replies(items: Sequence[Item], replies: list) -> list[list]:
    out, at = [], 0
    for item in items:
        n = item.read_count()
        out.append(replies[at:at + n])
        at += n
    assert at == len(replies), (at, len(replies))
    return out


def read_items(client: redis.Redis, items: Sequence[Item]) -> list[list]:
    replies: list = []
    for start in range(0, len(items), BATCH):
        with client.pipeline(transaction=False) as pipe:
            for item in items[start:start + BATCH]:
                item.read(pipe)
            replies.extend(pipe.execute(raise_on_error=False))
    return split_replies(items, replies)


# --------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------


@unittest.skipIf(binary_missing_reason() is not None, binary_missing_reason() or "")
class DataPathTest(ClusterTestCase):
    """3 masters + 3 replicas and one proxy, shared by the tests of this class. Each test uses
    its own key names and slots."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.cluster = RedisCluster(masters=3, replicas=1).start()
        try:
            cls.proxy = Proxy(cls.cluster, log_level="info").start()
        except BaseException:
            cls.cluster.stop()
            raise

    @classmethod
    def tearDownClass(cls) -> None:
        try:
            stop_proxy_checked(cls.proxy)
        finally:
            cls.cluster.stop()

    # ---- 1: 100k keys of every common type ---------------------------------------------------

    def test_100k_keys_of_every_type_read_back_through_proxy_and_from_owner(self) -> None:
        self.addCleanup(self._flush_masters)
        per_type = 100_000 // len(TYPES)
        items = [Item(kind, i) for i in range(per_type) for kind in TYPES]
        self.assertEqual(len({it.key for it in items}), 100_000)
        with self.proxy.client(decode=False) as client:
            writes: list = []
            for start in range(0, len(items), BATCH):
                with client.pipeline(transaction=False) as pipe:
                    for item in items[start:start + BATCH]:
                        item.write(pipe)
                    writes.extend(pipe.execute(raise_on_error=False))
            self.assertEqual(errors_in(writes), [])
            self.assertEqual(len(writes), sum(it.write_count() for it in items))
            via_proxy = {it.key: r for it, r in zip(items, read_items(client, items))}
        self._assert_expected("proxy", items, via_proxy)
        direct = self._read_from_owners(items)
        self._assert_expected("owning nodes", items, direct)
        mismatched = [it.key for it in items if via_proxy[it.key] != direct[it.key]]
        self.assertEqual(mismatched[:5], [], f"{len(mismatched)} keys read differently")
        types = self._types_on_owners(items[:len(TYPES)])
        self.assertEqual(types, [t.encode() if t not in ("hll", "bitmap") else b"string"
                                 for t in TYPES])

    def _flush_masters(self) -> None:
        for master in self.cluster.masters():
            self.cluster.execute(master, "FLUSHALL")

    def _assert_expected(self, where: str, items: Sequence[Item],
                         got: dict[bytes, list]) -> None:
        bad = []
        for item in items:
            replies, want = got[item.key], item.expected()
            if item.kind == "zset":  # equal scores come back in member order either way
                replies = [sorted(replies[0], key=lambda m: (m[1], m[0]))]
            if item.kind == "hll":
                ok = (replies[0] == want[0] and isinstance(replies[1], bytes)
                      and replies[1].startswith(b"HYLL"))
            else:
                ok = replies == want
            if not ok:
                bad.append((item.key, str(replies)[:200], str(want)[:200]))
        self.assertEqual(bad[:3], [], f"{len(bad)} keys read wrong from the {where}")

    def _read_from_owners(self, items: Sequence[Item]) -> dict[bytes, list]:
        slots = SlotMap(self.cluster)
        out: dict[bytes, list] = {}
        for node, group in slots.group(items, key_of=lambda it: it.key).items():
            with self.cluster.client(node, decode=False) as direct:
                for item, replies in zip(group, read_items(direct, group)):
                    out[item.key] = replies
        self.assertEqual(len(out), len(items))
        return out

    def _types_on_owners(self, items: Sequence[Item]) -> list[bytes]:
        slots = SlotMap(self.cluster)
        types = []
        for item in items:
            with self.cluster.client(slots.owner(item.key), decode=False) as direct:
                types.append(direct.type(item.key))
        return types

    # ---- 2: pipelines of 10k commands, replies in request order ------------------------------

    def test_pipeline_of_10k_commands_across_all_masters_answers_in_order(self) -> None:
        known = {f"p2:known:{i}": f"k{i}" for i in range(300)}
        with self.proxy.client() as client:
            self.assertEqual(errors_in(run_pipelined(
                client, [lambda p, k=k, v=v: p.set(k, v) for k, v in known.items()])), [])
            ops, want = self._mixed_ops("p2:one", list(known.items()), 10_000)
            self._assert_in_order(run_pipelined(client, ops, batch=10_000), want)
        masters_hit = {SlotMap(self.cluster).owner(f"p2:one:c{i}") for i in range(0, 10_000, 5)}
        self.assertEqual(len(masters_hit), 3)

    def test_concurrent_pipelining_clients_each_get_their_own_replies_in_order(self) -> None:
        known = {f"p2:shared:{i}": f"s{i}" for i in range(100)}
        with self.proxy.client() as client:
            run_pipelined(client, [lambda p, k=k, v=v: p.set(k, v) for k, v in known.items()])
        results: dict[int, Any] = {}

        def one_client(n: int) -> None:
            try:
                ops, want = self._mixed_ops(f"p2:c{n}", list(known.items()), 5_000)
                with self.proxy.client() as c:
                    got = []
                    for _ in range(2):  # the second round sees INCR at 2
                        got.append(run_pipelined(c, ops, batch=500))
                results[n] = (got, want)
            except BaseException as e:  # noqa: BLE001 - reported by the main thread
                results[n] = e

        threads = [threading.Thread(target=one_client, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        self.assertFalse(any(t.is_alive() for t in threads), "a client hung")
        for n in range(4):
            self.assertNotIsInstance(results[n], BaseException, results[n])
            (first, second), want = results[n]
            self._assert_in_order(first, want)
            self._assert_in_order(second, [w + 1 if isinstance(w, int) and not isinstance(w, bool)
                                           else w for w in want])

    @staticmethod
    def _mixed_ops(prefix: str, known: list[tuple[str, str]], count: int
                   ) -> tuple[list[Callable[[Any], None]], list]:
        """count commands over every master whose replies are all known in advance: INCR of
        distinct counters, GET of known keys, SET, GET of missing keys, ECHO and PING (answered
        by the proxy itself, so local and forwarded replies interleave)."""
        ops: list[Callable[[Any], None]] = []
        want: list = []
        for i in range(count):
            kind = i % 5
            if kind == 0:
                ops.append(lambda p, k=f"{prefix}:c{i}": p.incr(k))
                want.append(1)
            elif kind == 1:
                k, v = known[i % len(known)]
                ops.append(lambda p, k=k: p.get(k))
                want.append(v)
            elif kind == 2:
                ops.append(lambda p, k=f"{prefix}:s{i}", v=f"w{i}": p.set(k, v))
                want.append(True)
            elif kind == 3:
                ops.append(lambda p, k=f"{prefix}:missing:{i}": p.get(k))
                want.append(None)
            elif i % 2:
                ops.append(lambda p, v=f"echo{i}": p.echo(v))
                want.append(f"echo{i}")
            else:
                ops.append(lambda p: p.ping())
                want.append(True)
        return ops, want

    def _assert_in_order(self, got: list, want: list) -> None:
        self.assertEqual(len(got), len(want))
        self.assertEqual(errors_in(got), [])
        wrong = [(i, g, w) for i, (g, w) in enumerate(zip(got, want)) if g != w]
        self.assertEqual(wrong[:5], [], f"{len(wrong)} replies out of place")

    # ---- 4: a real ASK window ----------------------------------------------------------------

    ASK_SLOT = 4242

    def test_ask_window_moved_unmoved_and_new_keys_all_work(self) -> None:
        c, slot = self.cluster, self.ASK_SLOT
        src = c.node_for_slot(slot)
        dst = next(m for m in c.masters() if m != src)
        leftovers = c.keys_in_slot(slot, src, count=100_000, decode=False)  # other tests' keys
        if leftovers:
            c.execute(src, "DEL", *leftovers)
        keys = c.fill_slot(slot, 40, prefix="ask", value="orig")
        asks_before = proxy_metrics(self.proxy)['slotpilot_redirects_total{kind="ask"}']
        c.open_slot(slot, src, dst)
        try:
            moved = c.migrate_keys(src, dst, slot, 20, batch=7)
            unmoved = sorted(set(keys) - set(moved))
            self.assertEqual((len(moved), len(unmoved)), (20, 20))
            new = harness.keys_for_slot(slot, 50, prefix="asknew")[40:]
            self._use_open_slot(moved, unmoved, new)
            self._check_on_nodes(src, dst, moved, unmoved, new)
            self.assertGreater(proxy_metrics(self.proxy)['slotpilot_redirects_total{kind="ask"}'],
                               asks_before)
            c.migrate_keys(src, dst, slot, 1000)  # the rest, then close the slot
            c.finish_slot(slot, dst)
        finally:
            for master in c.masters():
                c.set_stable(slot, master)
        self.assertEqual(c.count_keys_in_slot(slot, src), 0)
        self._use_closed_slot(moved, unmoved, new)

    def _use_open_slot(self, moved: list[str], unmoved: list[str], new: list[str]) -> None:
        with self.proxy.client() as client:
            for keys, old in ((moved, "orig"), (unmoved, "orig")):
                self.assertEqual(client.mget(keys[:5]), [old] * 5)  # same slot, all on one side
                for key in keys:
                    self.assertEqual(client.get(key), old, key)
                    self.assertEqual(client.append(key, "+1"), len(old) + 2, key)
                    self.assertEqual(client.get(key), old + "+1", key)
            for key in new:
                self.assertIsNone(client.get(key), key)
                self.assertTrue(client.set(key, "new"), key)
                self.assertEqual(client.get(key), "new", key)
                self.assertEqual(client.incrby(key + ":n", 5), 5, key)
            pipe_ops = ([lambda p, k=k: p.get(k) for k in moved + unmoved + new]
                        + [lambda p, k=k: p.strlen(k) for k in moved])
            self.assertEqual(run_pipelined(client, pipe_ops),
                             ["orig+1"] * 40 + ["new"] * 10 + [6] * 20)
            self.assertEqual(client.delete(unmoved[0]), 1)
            self.assertEqual(client.delete(moved[0]), 1)
            self.assertEqual((client.exists(unmoved[0]), client.exists(moved[0])), (0, 0))
            self.assertTrue(client.set(unmoved[0], "orig+1"))  # recreated: ASK to dst
            self.assertTrue(client.set(moved[0], "orig+1"))

    def _check_on_nodes(self, src: Node, dst: Node, moved: list[str], unmoved: list[str],
                        new: list[str]) -> None:
        with self.cluster.client(src) as at_src, self.cluster.client(dst) as at_dst:
            for key in unmoved[1:]:
                self.assertEqual(at_src.get(key), "orig+1", key)
            for key in moved + new + [unmoved[0]]:
                at_dst.execute_command("ASKING")  # dst serves an importing slot only after it
                self.assertEqual(at_dst.get(key), "orig+1" if key not in new else "new", key)

    def _use_closed_slot(self, moved: list[str], unmoved: list[str], new: list[str]) -> None:
        with self.proxy.client() as client:
            got = run_pipelined(client, [lambda p, k=k: p.get(k) for k in moved + unmoved + new])
            self.assertEqual(got, ["orig+1"] * 40 + ["new"] * 10)
            for key in unmoved:
                self.assertTrue(client.set(key, "after"))
            self.assertEqual(client.mget(unmoved), ["after"] * 20)


@unittest.skipIf(binary_missing_reason() is not None, binary_missing_reason() or "")
class RetryOrderTest(ClusterTestCase):
    """A client's commands run in the order it sent them even when the cluster answers
    CLUSTERDOWN for a while and the proxy retries them (what every master answers between a
    master's failure and its replica's promotion). 3 masters, no replicas, fresh per test."""

    def setUp(self) -> None:
        self.cluster = RedisCluster(masters=3).start()
        self.addCleanup(self.cluster.stop)
        self.proxy = Proxy(self.cluster, log_level="info").start()
        self.addCleanup(stop_proxy_checked, self.proxy)

    KEY = "order:list"
    COUNT = 300

    def test_retried_commands_keep_their_order(self) -> None:
        """One pipeline, all of it answered CLUSTERDOWN at first."""
        with self.proxy.client() as client, self._cluster_down_for(0.3):
            with client.pipeline(transaction=False) as pipe:
                for i in range(self.COUNT):
                    pipe.rpush(self.KEY, i)
                replies = pipe.execute(raise_on_error=False)
        self.assertEqual(errors_in(replies), [])
        self._assert_ran_in_order(replies)

    def test_new_commands_do_not_overtake_retried_ones(self) -> None:
        """A client that keeps sending (10 commands every 20 ms) before and after the window
        closes: what it sends after must wait for what still waits for a retry."""
        payload = b"*3\r\n$5\r\nRPUSH\r\n$%d\r\n%s\r\n$%d\r\n%d\r\n"
        key = self.KEY.encode()
        with socket.create_connection((harness.HOST, self.proxy.port), timeout=10) as s, \
                self._cluster_down_for(0.3):
            for start in range(0, self.COUNT, 10):
                s.sendall(b"".join(payload % (len(key), key, len(str(i)), i)
                                   for i in range(start, start + 10)))
                time.sleep(0.02)
            data = b""
            while data.count(b"\r\n") < self.COUNT:
                chunk = s.recv(65536)
                self.assertTrue(chunk, f"proxy closed the connection after {data!r}")
                data += chunk
        lines = data.split(b"\r\n")[:self.COUNT]
        self.assertEqual([l for l in lines if not l.startswith(b":")], [])
        self._assert_ran_in_order([int(l[1:]) for l in lines])

    @contextlib.contextmanager
    def _cluster_down_for(self, seconds: float) -> Iterator[None]:
        """Unassigning another of the key owner's slots puts the owner in cluster_state:fail:
        it answers "CLUSTERDOWN The cluster is down" for the key too, until the slot is back
        `seconds` later."""
        c = self.cluster
        owner = c.node_for_slot(harness.key_slot(self.KEY))
        lo, hi = c.slots_of(owner)[0]
        spare = hi if hi != harness.key_slot(self.KEY) else lo
        c.execute(owner, "DEL", self.KEY)
        retries_before = self._clusterdown_retries()
        c.execute(owner, "CLUSTER", "DELSLOTS", spare)
        restore = threading.Timer(seconds, c.execute, (owner, "CLUSTER", "ADDSLOTS", spare))
        restore.start()
        try:
            yield
        finally:
            restore.join(timeout=10)
            c.wait_stable(10)
        self.assertGreater(self._clusterdown_retries(), retries_before,
                           "the window closed before the proxy saw CLUSTERDOWN")

    def _clusterdown_retries(self) -> float:
        return proxy_metrics(self.proxy)['slotpilot_retries_total{reason="clusterdown"}']

    def _assert_ran_in_order(self, replies: list) -> None:
        with self.proxy.client() as client:
            got = [int(v) for v in client.lrange(self.KEY, 0, -1)]
        inversions = sum(1 for a, b in zip(got, got[1:]) if b < a)
        self.assertEqual(got, list(range(self.COUNT)),
                         f"RPUSHes ran out of order ({inversions} inversions; "
                         f"{self._clusterdown_retries():.0f} retries): {got[:20]}...")
        self.assertEqual(replies, list(range(1, self.COUNT + 1)))


if __name__ == "__main__":
    unittest.main()
