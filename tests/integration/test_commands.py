"""Command coverage (issue 4) as a differential test: the same script of commands goes to a real
3-master cluster through slotpilot and to one standalone redis-server (same binary), over raw
RESP connections, and every reply must be the same bytes. One test per command family.

Where Redis Cluster semantics legitimately differ (CROSSSLOT for atomic commands across slots,
SELECT n>0, ...) the test asserts the proxy's exact answer instead; README.md lists every case
("Differences from a single Redis"). Replies that depend on time or hash-table order are
normalised (named in each place). ClientLibraryTest drives the same comparisons through
python3-redis (pipelines, transactions, WATCH, pub/sub). SplitCommandsUnderReshardTest runs split
MGET/MSET/DEL/EXISTS in a loop while slots move between masters: no error may reach the client.

Run: cd tests/integration && SLOTPILOT_BIN=... /usr/bin/python3 -m unittest -v test_commands
"""

from __future__ import annotations

import hashlib
import socket
import threading
import time
import unittest
from typing import Any, Callable, Optional, Sequence

import redis

import harness
from harness import Proxy, RedisCluster, StandaloneRedis
from test_data_path import (ClusterTestCase, binary_missing_reason, proxy_metrics,
                            stop_proxy_checked)

CROSSSLOT = b"-CROSSSLOT Keys in request don't hash to the same slot\r\n"
SOCKET_TIMEOUT_S = 10.0


# --------------------------------------------------------------------------------------------
# A raw RESP client: sends commands, reads exactly one complete reply as bytes
# --------------------------------------------------------------------------------------------


def encode(args: Sequence[Any]) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


def parse(buf: bytes, pos: int = 0) -> tuple[Any, int]:
    """One RESP2 reply at buf[pos:] as (value, end), or raises IndexError if incomplete.
    Values: ('+'|'-', bytes), int, bytes or None (bulk), list or None (array)."""
    nl = buf.index(b"\r\n", pos)  # ValueError -> incomplete
    kind, line = buf[pos:pos + 1], buf[pos + 1:nl]
    if kind in (b"+", b"-"):
        return (kind.decode(), line), nl + 2
    if kind == b":":
        return int(line), nl + 2
    if kind == b"$":
        n = int(line)
        if n < 0:
            return None, nl + 2
        end = nl + 2 + n
        if len(buf) < end + 2:
            raise IndexError("incomplete bulk")
        return buf[nl + 2:end], end + 2
    if kind == b"*":
        n = int(line)
        if n < 0:
            return None, nl + 2
        items, p = [], nl + 2
        for _ in range(n):
            item, p = parse(buf, p)
            items.append(item)
        return items, p
    raise AssertionError(f"not RESP: {buf[pos:pos + 40]!r}")


class RawConn:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection((harness.HOST, port), timeout=SOCKET_TIMEOUT_S)
        self.buf = b""

    def send(self, *args: Any) -> None:
        self.sock.sendall(encode(args))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read(self) -> bytes:
        while True:
            try:
                _, end = parse(self.buf)
                reply, self.buf = self.buf[:end], self.buf[end:]
                return reply
            except (IndexError, ValueError):
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError(f"closed with {self.buf!r} pending")
                self.buf += chunk

    def call(self, *args: Any) -> bytes:
        self.send(*args)
        return self.read()

    def close(self) -> None:
        self.sock.close()


# --------------------------------------------------------------------------------------------
# Normalisers: map a reply to what must be equal on both sides
# --------------------------------------------------------------------------------------------


def value(reply: bytes) -> Any:
    return parse(reply)[0]


def sorted_array(reply: bytes) -> Any:
    """Set members come in hash-table order, which depends on each server's random hash seed."""
    v = value(reply)
    return sorted(v) if isinstance(v, list) else v


def ttl_bucket(reply: bytes) -> Any:
    """A TTL counts down: positive values are compared as 'positive'."""
    v = value(reply)
    return "positive" if isinstance(v, int) and v > 0 else v


def drop_fields(*names: bytes) -> Callable[[bytes], Any]:
    """XINFO-style flat maps (possibly nested in arrays): idle times and the like removed."""
    def strip(v: Any) -> Any:
        if isinstance(v, list):
            if len(v) % 2 == 0 and all(isinstance(k, bytes) for k in v[0::2]) and v:
                return [x for i in range(0, len(v), 2) if v[i] not in names
                        for x in (v[i], strip(v[i + 1]))]
            return [strip(x) for x in v]
        return v
    return lambda reply: strip(value(reply))


def no_timestamps(reply: bytes) -> Any:
    """Delivery and seen times (ms since the epoch) replaced by a marker."""
    def strip(v: Any) -> Any:
        if isinstance(v, list):
            return [strip(x) for x in v]
        return "time" if isinstance(v, int) and v > 10**12 else v
    return strip(value(reply))


def xpending_no_idle(reply: bytes) -> Any:
    """XPENDING's extended form: [id, consumer, idle ms, deliveries] per entry."""
    v = value(reply)
    return [[e[0], e[1], e[3]] for e in v] if isinstance(v, list) else v


def info_field(reply: bytes, name: str) -> Optional[str]:
    for line in value(reply).decode().splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1]
    return None


def client_line(conn: RawConn, marker: bytes) -> dict[str, str]:
    """The CLIENT LIST line containing `marker`, as {field: value}."""
    lines = [l for l in value(conn.call("CLIENT", "LIST")).split(b"\n") if marker in l]
    assert len(lines) == 1, lines
    return dict(f.split("=", 1) for f in lines[0].decode().split(" "))


class C:
    """A command whose replies are compared through `norm` instead of byte for byte."""

    def __init__(self, *args: Any, norm: Callable[[bytes], Any]) -> None:
        self.args = args
        self.norm = norm


# --------------------------------------------------------------------------------------------
# The two sides
# --------------------------------------------------------------------------------------------


class Pair:
    """The same connection twice: through the proxy (`p`) and to the standalone server (`r`)."""

    def __init__(self, test: unittest.TestCase, proxy_port: int, ref_port: int) -> None:
        self.test = test
        self.p = RawConn(proxy_port)
        self.r = RawConn(ref_port)
        test.addCleanup(self.close)

    def close(self) -> None:
        self.p.close()
        self.r.close()

    def both(self, *args: Any) -> tuple[bytes, bytes]:
        self.p.send(*args)
        self.r.send(*args)
        return self.p.read(), self.r.read()

    def same(self, *args: Any, norm: Optional[Callable[[bytes], Any]] = None) -> bytes:
        got, want = self.both(*args)
        if norm is None:
            self.test.assertEqual(got, want, f"reply to {args!r}")
        else:
            self.test.assertEqual(norm(got), norm(want), f"normalised reply to {args!r}: "
                                  f"{got!r} vs {want!r}")
        return got

    def script(self, commands: Sequence[Any]) -> None:
        """Runs every command on both sides and reports every mismatch at once."""
        mismatches = []
        for c in commands:
            args, norm = (c.args, c.norm) if isinstance(c, C) else (c, None)
            got, want = self.both(*args)
            equal = got == want if norm is None else norm(got) == norm(want)
            if not equal:
                mismatches.append(f"{args!r}:\n   proxy: {got[:300]!r}\n  single: {want[:300]!r}")
        if mismatches:
            self.test.fail(f"{len(mismatches)} of {len(commands)} replies differ:\n" +
                           "\n".join(mismatches))

    def crossslot(self, *args: Any) -> None:
        """An atomic command over slots of different masters: the proxy answers -CROSSSLOT as a
        cluster node would; the single server runs it (its side effects are then undone)."""
        got, want = self.both(*args)
        self.test.assertEqual(got, CROSSSLOT, f"proxy reply to {args!r}")
        self.test.assertFalse(want.startswith((b"-ERR wrong number", b"-ERR syntax", b"-CROSSSLOT")),
                              f"single-server reply to {args!r}: {want!r}")


# --------------------------------------------------------------------------------------------
# One cluster, one proxy and one standalone server for the whole module
# --------------------------------------------------------------------------------------------

_env: dict[str, Any] = {}


def setUpModule() -> None:
    if binary_missing_reason():
        return
    cluster = RedisCluster(masters=3, replicas=0).start()
    _env["cluster"] = cluster
    try:
        _env["ref"] = StandaloneRedis().start()
        _env["proxy"] = Proxy(cluster).start()
    except BaseException:
        tearDownModule()
        raise


def tearDownModule() -> None:
    try:
        if "proxy" in _env:
            stop_proxy_checked(_env.pop("proxy"))
    finally:
        for name in ("ref", "cluster"):
            if name in _env:
                _env.pop(name).stop()


@unittest.skipIf(binary_missing_reason(), binary_missing_reason() or "")
class DiffTestCase(ClusterTestCase):
    def setUp(self) -> None:
        self.cluster = _env["cluster"]
        self.proxy = _env["proxy"]
        self.ref: StandaloneRedis = _env["ref"]

    def pair(self) -> Pair:
        return Pair(self, self.proxy.port, self.ref.port)

    def spread_keys(self, prefix: str, count: int) -> list[str]:
        """`count` plain keys (no hashtag) owned by the masters in turn, so the keys of any
        two consecutive ones live on different masters."""
        masters = self.cluster.masters()
        owner = {}
        for m in masters:
            for lo, hi in self.cluster.slots_of(m):
                owner.update({(lo, hi): m})
        def master_of(key: str) -> Any:
            slot = harness.key_slot(key)
            return next(m for (lo, hi), m in owner.items() if lo <= slot <= hi)
        out: list[str] = []
        n = 0
        while len(out) < count:
            key = f"{prefix}:{n}"
            n += 1
            if master_of(key) == masters[len(out) % len(masters)]:
                out.append(key)
        return out


class FamiliesTest(DiffTestCase):
    """Data-type families, byte for byte."""

    def test_strings(self) -> None:
        d = self.pair()
        a, b, c = self.spread_keys("str", 3)
        d.script([
            ("SET", "str:x", "hello"), ("GET", "str:x"), ("APPEND", "str:x", " world"),
            ("STRLEN", "str:x"), ("GETRANGE", "str:x", "0", "4"), ("SETRANGE", "str:x", "6", "W"),
            ("GET", "str:x"), ("SET", "str:n", "10"), ("INCR", "str:n"), ("INCRBY", "str:n", "5"),
            ("DECR", "str:n"), ("DECRBY", "str:n", "3"), ("INCRBYFLOAT", "str:n", "1.5"),
            ("INCR", "str:x"), ("SETNX", "str:x", "v"), ("SET", "str:x", "v2", "GET"),
            ("SET", "str:x", "v3", "NX"), ("SET", "str:y", "v", "XX"), ("GETDEL", "str:x"),
            ("GET", "str:x"), ("GETSET", "str:g", "1"), ("GETSET", "str:g", "2"),
            ("SET", "str:bin", b"\x00\xff\r\n"), ("GET", "str:bin"),
            ("MSET", a, "1", b, "2", c, "3"), ("MGET", a, b, c, "str:missing", a),
            ("MSET", a, "x", a, "y"), ("GET", a),
            ("MSETNX", "{str}1", "a", "{str}2", "b"), ("MSETNX", "{str}1", "c", "{str}3", "d"),
            ("MGET", "{str}1", "{str}2", "{str}3"), ("LCS", "{str}1", "{str}2"),
            ("SET", "{str}l1", "ohmytext"), ("SET", "{str}l2", "mynewtext"),
            ("LCS", "{str}l1", "{str}l2"), ("LCS", "{str}l1", "{str}l2", "LEN"),
            ("LCS", "{str}l1", "{str}l2", "IDX", "MINMATCHLEN", "2", "WITHMATCHLEN"),
            ("OBJECT", "ENCODING", "str:n"), ("TYPE", "str:n"), ("TYPE", "str:none"),
            ("SUBSTR", "str:bin", "0", "1"), ("DEL", a, b, c, "str:n", "str:g", a),
        ])

    def test_lists(self) -> None:
        d = self.pair()
        d.script([
            ("RPUSH", "lst:a", "a", "b", "c"), ("LPUSH", "lst:a", "z"), ("LRANGE", "lst:a", "0", "-1"),
            ("LLEN", "lst:a"), ("LINDEX", "lst:a", "1"), ("LINSERT", "lst:a", "BEFORE", "b", "ab"),
            ("LPOS", "lst:a", "b"), ("LSET", "lst:a", "0", "zz"), ("LSET", "lst:a", "99", "x"),
            ("LREM", "lst:a", "0", "ab"), ("LTRIM", "lst:a", "0", "2"), ("LPOP", "lst:a"),
            ("RPOP", "lst:a", "2"), ("LPOP", "lst:a"), ("RPUSHX", "lst:none", "x"),
            ("RPUSH", "{lst}s", "1", "2", "3"), ("LMOVE", "{lst}s", "{lst}d", "LEFT", "RIGHT"),
            ("RPOPLPUSH", "{lst}s", "{lst}d"), ("LRANGE", "{lst}d", "0", "-1"),
            ("LMPOP", "2", "{lst}none", "{lst}s", "LEFT", "COUNT", "5"),
            ("LMPOP", "1", "{lst}none", "LEFT"), ("LPUSH", "lst:a", "x"), ("LPUSHX", "lst:a", "y"),
            ("LRANGE", "lst:a", "0", "-1"), ("SET", "lst:str", "v"), ("LPUSH", "lst:str", "x"),
            ("OBJECT", "ENCODING", "lst:a"),
        ])

    def test_hashes(self) -> None:
        d = self.pair()
        d.script([
            ("HSET", "h:a", "f1", "v1", "f2", "v2"), ("HGET", "h:a", "f1"), ("HGETALL", "h:a"),
            ("HMGET", "h:a", "f1", "nope", "f2"), ("HINCRBY", "h:a", "n", "5"),
            ("HINCRBYFLOAT", "h:a", "fl", "0.25"), ("HEXISTS", "h:a", "f1"), ("HLEN", "h:a"),
            ("HKEYS", "h:a"), ("HVALS", "h:a"), ("HSTRLEN", "h:a", "f2"), ("HSETNX", "h:a", "f1", "x"),
            ("HDEL", "h:a", "f1", "nope"), ("HSCAN", "h:a", "0"), ("HMSET", "h:a", "k", "v"),
            ("HINCRBY", "h:a", "f2", "1"), ("HSET", "h:a", "f1"), ("HRANDFIELD", "h:none"),
            ("OBJECT", "ENCODING", "h:a"),
        ])

    def test_sets(self) -> None:
        d = self.pair()
        d.script([
            ("SADD", "set:a", "x", "y", "z"), ("SADD", "set:a", "x"), ("SCARD", "set:a"),
            C("SMEMBERS", "set:a", norm=sorted_array), ("SISMEMBER", "set:a", "y"),
            ("SMISMEMBER", "set:a", "y", "q"), ("SREM", "set:a", "y", "q"),
            ("SADD", "{set}1", "a", "b", "c"), ("SADD", "{set}2", "b", "c", "d"),
            C("SINTER", "{set}1", "{set}2", norm=sorted_array),
            C("SUNION", "{set}1", "{set}2", norm=sorted_array),
            C("SDIFF", "{set}1", "{set}2", norm=sorted_array),
            ("SINTERSTORE", "{set}3", "{set}1", "{set}2"), ("SINTERCARD", "2", "{set}1", "{set}2"),
            ("SUNIONSTORE", "{set}4", "{set}1", "{set}2"), ("SDIFFSTORE", "{set}5", "{set}1", "{set}2"),
            ("SMOVE", "{set}1", "{set}2", "a"), C("SMEMBERS", "{set}2", norm=sorted_array),
            ("SADD", "set:i", "3", "1", "2"), ("SMEMBERS", "set:i"), ("SPOP", "set:none"),
            ("SRANDMEMBER", "set:none"), ("OBJECT", "ENCODING", "set:i"),
        ])

    def test_sorted_sets(self) -> None:
        d = self.pair()
        d.script([
            ("ZADD", "z:a", "1", "one", "2", "two", "3", "three"), ("ZCARD", "z:a"),
            ("ZRANGE", "z:a", "0", "-1", "WITHSCORES"), ("ZSCORE", "z:a", "two"),
            ("ZINCRBY", "z:a", "2.5", "one"), ("ZRANK", "z:a", "one"), ("ZREVRANK", "z:a", "one"),
            ("ZRANGEBYSCORE", "z:a", "(1", "+inf"), ("ZRANGE", "z:a", "+inf", "-inf", "BYSCORE", "REV"),
            ("ZCOUNT", "z:a", "-inf", "+inf"), ("ZADD", "z:a", "XX", "GT", "CH", "10", "two"),
            ("ZMSCORE", "z:a", "one", "none"), ("ZADD", "z:l", "0", "a", "0", "b", "0", "c"),
            ("ZRANGEBYLEX", "z:l", "[a", "(c"), ("ZLEXCOUNT", "z:l", "-", "+"),
            ("ZREMRANGEBYLEX", "z:l", "[a", "[a"), ("ZPOPMIN", "z:a"), ("ZPOPMAX", "z:a", "2"),
            ("ZADD", "{z}1", "1", "a", "2", "b"), ("ZADD", "{z}2", "3", "b", "4", "c"),
            ("ZUNIONSTORE", "{z}3", "2", "{z}1", "{z}2", "WEIGHTS", "1", "2"),
            ("ZRANGE", "{z}3", "0", "-1", "WITHSCORES"), ("ZINTER", "2", "{z}1", "{z}2", "WITHSCORES"),
            ("ZDIFF", "2", "{z}1", "{z}2"), ("ZINTERCARD", "2", "{z}1", "{z}2"),
            ("ZRANGESTORE", "{z}4", "{z}3", "0", "1"), ("ZMPOP", "2", "{z}none", "{z}4", "MIN"),
            ("ZADD", "z:a", "nan", "x"), ("ZADD", "z:a", "NX", "XX", "1", "x"),
            ("ZSCAN", "{z}3", "0"), ("ZREM", "{z}3", "a"), ("ZREMRANGEBYRANK", "{z}3", "0", "0"),
            ("ZREMRANGEBYSCORE", "{z}3", "-inf", "+inf"), ("EXISTS", "{z}3"),
        ])

    def test_streams_and_consumer_groups(self) -> None:
        d = self.pair()
        idle = drop_fields(b"idle", b"inactive")
        d.script([
            ("XADD", "st:a", "1-1", "f", "v1"), ("XADD", "st:a", "1-2", "f", "v2"),
            ("XADD", "st:a", "2-0", "g", "v3"), ("XADD", "st:a", "1-0", "f", "old"),
            ("XLEN", "st:a"), ("XRANGE", "st:a", "-", "+"), ("XREVRANGE", "st:a", "+", "-", "COUNT", "1"),
            ("XREAD", "COUNT", "2", "STREAMS", "st:a", "0"),
            ("XGROUP", "CREATE", "st:a", "g1", "0"), ("XGROUP", "CREATE", "st:a", "g1", "0"),
            ("XGROUP", "CREATE", "st:new", "g1", "$", "MKSTREAM"),
            ("XGROUP", "CREATECONSUMER", "st:a", "g1", "c0"),
            ("XREADGROUP", "GROUP", "g1", "c1", "COUNT", "2", "STREAMS", "st:a", ">"),
            ("XREADGROUP", "GROUP", "g1", "c2", "STREAMS", "st:a", ">"),
            ("XREADGROUP", "GROUP", "g1", "c2", "STREAMS", "st:a", ">"),
            ("XPENDING", "st:a", "g1"), C("XPENDING", "st:a", "g1", "-", "+", "10", norm=xpending_no_idle),
            ("XACK", "st:a", "g1", "1-1", "9-9"),
            ("XCLAIM", "st:a", "g1", "c3", "0", "1-2"), ("XCLAIM", "st:a", "g1", "c3", "0", "1-2", "JUSTID"),
            ("XAUTOCLAIM", "st:a", "g1", "c4", "0", "0-0", "COUNT", "1"),
            ("XAUTOCLAIM", "st:a", "g1", "c4", "0", "0-0", "JUSTID"),
            ("XINFO", "STREAM", "st:a"), C("XINFO", "STREAM", "st:a", "FULL", norm=no_timestamps),
            ("XINFO", "GROUPS", "st:a"), C("XINFO", "CONSUMERS", "st:a", "g1", norm=idle),
            ("XGROUP", "SETID", "st:a", "g1", "0"), ("XGROUP", "DELCONSUMER", "st:a", "g1", "c0"),
            ("XDEL", "st:a", "1-0"), ("XTRIM", "st:a", "MAXLEN", "2"), ("XLEN", "st:a"),
            ("XADD", "st:a", "1-0", "f", "v"), ("XADD", "st:a", "NOMKSTREAM", "3-0", "f", "v"),
            ("XADD", "st:none", "NOMKSTREAM", "*", "f", "v"), ("XGROUP", "DESTROY", "st:a", "g1"),
            ("XINFO", "STREAM", "st:missing"),
        ])

    def test_hyperloglog(self) -> None:
        d = self.pair()
        d.script([
            ("PFADD", "hll:a", "a", "b", "c"), ("PFADD", "hll:a", "a"), ("PFCOUNT", "hll:a"),
            ("PFADD", "{hll}1", "x", "y"), ("PFADD", "{hll}2", "y", "z"),
            ("PFCOUNT", "{hll}1", "{hll}2"), ("PFMERGE", "{hll}3", "{hll}1", "{hll}2"),
            ("PFCOUNT", "{hll}3"), ("GET", "{hll}3"), ("SET", "hll:s", "nope"), ("PFADD", "hll:s", "x"),
        ])

    def test_geo(self) -> None:
        d = self.pair()
        d.script([
            ("GEOADD", "geo:a", "13.361389", "38.115556", "Palermo", "15.087269", "37.502669", "Catania"),
            ("GEODIST", "geo:a", "Palermo", "Catania", "km"), ("GEOPOS", "geo:a", "Palermo", "nowhere"),
            ("GEOHASH", "geo:a", "Palermo", "Catania"),
            ("GEOSEARCH", "geo:a", "FROMLONLAT", "15", "37", "BYRADIUS", "200", "km", "ASC",
             "WITHCOORD", "WITHDIST"),
            ("GEORADIUS", "geo:a", "15", "37", "200", "km", "WITHDIST", "ASC"),
            ("GEORADIUSBYMEMBER", "geo:a", "Palermo", "100", "km"),
            ("GEOADD", "{geo}1", "13.361389", "38.115556", "Palermo"),
            ("GEOSEARCHSTORE", "{geo}2", "{geo}1", "FROMLONLAT", "13", "38", "BYBOX", "400", "400", "km"),
            ("ZRANGE", "{geo}2", "0", "-1", "WITHSCORES"), ("GEOADD", "geo:a", "200", "100", "bad"),
        ])

    def test_bitmaps_and_bitfields(self) -> None:
        d = self.pair()
        d.script([
            ("SETBIT", "bit:a", "7", "1"), ("SETBIT", "bit:a", "100", "1"), ("GETBIT", "bit:a", "7"),
            ("BITCOUNT", "bit:a"), ("BITCOUNT", "bit:a", "0", "0", "BIT"), ("BITPOS", "bit:a", "1"),
            ("BITPOS", "bit:a", "0", "2"), ("SETBIT", "bit:a", "-1", "1"), ("SETBIT", "bit:a", "1", "2"),
            ("BITFIELD", "bit:f", "SET", "i8", "0", "100", "GET", "u4", "0", "INCRBY", "i8", "0", "100"),
            ("BITFIELD", "bit:f", "OVERFLOW", "SAT", "INCRBY", "u8", "8", "300"),
            ("BITFIELD_RO", "bit:f", "GET", "u8", "8"), ("BITFIELD", "bit:f", "GET", "x9", "0"),
            ("SET", "{bit}1", "foobar"), ("SET", "{bit}2", "abcdef"),
            ("BITOP", "AND", "{bit}3", "{bit}1", "{bit}2"), ("GET", "{bit}3"),
            ("BITOP", "NOT", "{bit}4", "{bit}1"), ("GET", "{bit}4"),
        ])

    def test_expiry(self) -> None:
        d = self.pair()
        far = "4102444800"  # 2100-01-01: EXPIRETIME is then exact
        d.script([
            ("SET", "exp:a", "v"), ("TTL", "exp:a"), ("PTTL", "exp:a"), ("TTL", "exp:none"),
            ("EXPIRETIME", "exp:a"), ("EXPIRE", "exp:a", "1000"), C("TTL", "exp:a", norm=ttl_bucket),
            C("PTTL", "exp:a", norm=ttl_bucket), ("EXPIRE", "exp:a", "10", "NX"),
            ("EXPIRE", "exp:a", "10", "GT"), ("PERSIST", "exp:a"), ("PERSIST", "exp:a"),
            ("TTL", "exp:a"), ("EXPIREAT", "exp:a", far), ("EXPIRETIME", "exp:a"),
            ("PEXPIRETIME", "exp:a"), ("PEXPIREAT", "exp:a", far + "000"), ("EXPIRETIME", "exp:a"),
            ("SET", "exp:b", "v", "EX", "100"), C("TTL", "exp:b", norm=ttl_bucket),
            ("GETEX", "exp:b", "PERSIST"), ("TTL", "exp:b"), ("SET", "exp:c", "v", "PX", "100000"),
            C("PTTL", "exp:c", norm=ttl_bucket), ("SET", "exp:c", "v", "KEEPTTL"),
            C("TTL", "exp:c", norm=ttl_bucket), ("EXPIRE", "exp:c", "-1"), ("EXISTS", "exp:c"),
            ("EXPIRE", "exp:c", "abc"), ("SET", "exp:d", "v", "EX", "0"),
            ("SET", "exp:d", "v", "EXAT", far), ("EXPIRETIME", "exp:d"), ("EXPIRE", "exp:none", "5"),
        ])

    def test_scripting_and_functions(self) -> None:
        d = self.pair()
        get = "return redis.call('get', KEYS[1])"
        d.same("SCRIPT", "FLUSH")
        d.same("FUNCTION", "FLUSH")
        sha = value(d.same("SCRIPT", "LOAD", get)).decode()
        lib = ("#!lua name=sptest\n"
               "redis.register_function('spget', function(keys, args) return redis.call('get', keys[1]) end)\n"
               "redis.register_function{function_name='spro', callback=function(keys, args) "
               "return #keys end, flags={'no-writes'}}\n")
        d.script([
            ("EVAL", "return 1", "0"), ("EVAL", "return {1, 'two', {3}}", "0"),
            ("EVAL", "return redis.call('set', KEYS[1], ARGV[1])", "1", "lua:a", "va"),
            ("EVAL", "return redis.call('mget', KEYS[1], KEYS[2])", "2", "{lua}1", "{lua}2"),
            ("EVALSHA", sha, "1", "lua:a"), ("EVALSHA_RO", sha, "1", "lua:a"),
            ("EVAL_RO", get, "1", "lua:a"), ("EVALSHA", "f" * 40, "0"),
            ("SCRIPT", "EXISTS", sha, "0" * 40), ("EVAL", "return redis.call('incr', KEYS[1])", "1", "lua:a"),
            ("EVAL", "return redis.pcall('nosuch')", "0"), ("EVAL", "syntax error here", "0"),
            ("EVAL", "return 1", "-1"), ("EVAL", "return 1", "2", "k"),
            ("FUNCTION", "LOAD", lib), ("FUNCTION", "LOAD", lib), ("FCALL", "spget", "1", "lua:a"),
            ("FCALL_RO", "spro", "2", "{lua}1", "{lua}2"), ("FCALL_RO", "spget", "1", "lua:a"),
            ("FCALL", "nosuch", "0"), ("FUNCTION", "LOAD", "REPLACE", lib),
            ("FUNCTION", "DELETE", "sptest"), ("FUNCTION", "DELETE", "sptest"),
            ("FCALL", "spget", "1", "lua:a"), ("SCRIPT", "FLUSH"), ("EVALSHA", sha, "1", "lua:a"),
        ])

    def test_argument_errors_match_redis(self) -> None:
        d = self.pair()
        d.script([
            ("GET",), ("SET", "k"), ("NOSUCHCMD", "a", "b"), ("nosuchcmd",), ("",),
            ("CONFIG", "NOSUCH"), ("CONFIG",), ("CLIENT",), ("OBJECT", "NOSUCH", "k"), ("XADD", "k"), ("MSET", "a"),
            ("MGET",), ("DEL",), ("SET", "err:k", "v", "EX", "abc"),
            ("SET", "err:k", "v", "NX", "XX"), ("INCRBY", "err:k", "1.5"), ("PING", "a", "b"),
            ("ECHO",), ("EXPIRE", "err:k"), ("SCRIPT", "NOSUCH"), ("XGROUP", "NOSUCH"),
            ("FUNCTION", "NOSUCH"), ("CLIENT", "NOSUCH"), ("EXISTS",), ("SELECT", "abc"),
            ("SELECT", "0"), ("ZADD", "err:z", "1"), ("EVAL",), ("SCAN",), ("SCAN", "abc"), ("SCAN", "0", "COUNT", "abc"), ("SCAN", "0", "BAD"),
            ("HELLO", "abc"), ("COMMAND", "COUNT"), ("COMMAND", "INFO", "get"),
            ("COMMAND", "GETKEYS", "SET", "a", "b"), ("PING",), ("ECHO", "hi"),
        ])
        # Inline commands (telnet style) parse the same way.
        for line in (b"PING\r\n", b"SET err:inline v\r\n", b"GET err:inline\r\n", b"NOPE x\r\n"):
            d.p.send_raw(line)
            d.r.send_raw(line)
            self.assertEqual(d.p.read(), d.r.read(), line)

    def test_split_commands_across_masters(self) -> None:
        d = self.pair()
        keys = self.spread_keys("split", 9)
        mset = [x for i, k in enumerate(keys) for x in (k, f"v{i}")]
        d.script([
            ("MSET", *mset), ("MGET", *keys, "split:none"), ("MGET", keys[2], keys[0], keys[2]),
            ("EXISTS", *keys, keys[0], "split:none"), ("TOUCH", *keys[:4], keys[0]),
            ("DEL", keys[0], keys[1], keys[0]), ("UNLINK", *keys[2:5]), ("MGET", *keys),
            ("SET", keys[5], "x"), ("LPUSH", keys[6], "l"), ("MGET", keys[5], keys[6], keys[7]),
            ("DEL", *keys), ("EXISTS", *keys),
        ])

    def test_atomic_commands_across_masters_get_crossslot(self) -> None:
        d = self.pair()
        a, b, c = self.spread_keys("xs", 3)
        for k in (a, b):  # sources the single server can operate on
            d.both("DEL", k, f"{k}:x")
        d.same("SET", a, "1")
        d.same("SADD", f"s{a}", "x")
        cases = [
            ("MSETNX", a, "1", b, "2"), ("RENAME", a, b), ("COPY", a, b), ("LCS", a, b),
            ("SMOVE", a, b, "x"), ("SINTER", a, b), ("SUNIONSTORE", c, a, b), ("SDIFF", a, b),
            ("SINTERCARD", "2", a, b), ("ZUNIONSTORE", c, "2", a, b), ("ZINTER", "2", a, b),
            ("ZDIFF", "2", a, b), ("LMOVE", a, b, "LEFT", "LEFT"), ("RPOPLPUSH", a, b),
            ("LMPOP", "2", a, b, "LEFT"), ("BITOP", "OR", c, a, b), ("PFCOUNT", a, b),
            ("PFMERGE", c, a, b), ("EVAL", "return 1", "2", a, b), ("XREAD", "STREAMS", a, b, "0", "0"),
            ("GEOSEARCHSTORE", c, a, "FROMLONLAT", "0", "0", "BYRADIUS", "1", "m"),
            ("SORT", a, "STORE", b), ("OBJECT", "ENCODING", a),  # the last is single-key: no CROSSSLOT
        ]
        for args in cases[:-1]:
            with self.subTest(cmd=args[0]):
                d.crossslot(*args)
                d.r.call("FLUSHALL")
                d.r.call("SET", a, "1")
        d.same(*cases[-1])
        d.both("DEL", a, f"s{a}")


class TransactionTest(DiffTestCase):
    def test_multi_exec_discard_and_errors(self) -> None:
        d = self.pair()
        d.script([
            ("EXEC",), ("DISCARD",), ("MULTI",), ("SET", "{tx}a", "1"), ("INCR", "{tx}a"),
            ("GET", "{tx}b"), ("LPUSH", "{tx}a", "x"), ("EXEC",),
            ("MULTI",), ("MULTI",), ("SET", "{tx}a", "2"), ("DISCARD",), ("GET", "{tx}a"),
            ("MULTI",), ("EXEC",),
            ("MULTI",), ("SET", "{tx}a"), ("SET", "{tx}a", "3"), ("EXEC",), ("GET", "{tx}a"),
            ("MULTI",), ("NOSUCH", "x"), ("EXEC",),
            ("MULTI",), ("WATCH", "{tx}a"), ("PING",), ("ECHO", "x"), ("EXEC",),
            ("WATCH", "{tx}a"), ("UNWATCH",), ("MULTI",), ("GET", "{tx}a"), ("EXEC",),
        ])

    def test_watch_aborts_when_another_client_writes(self) -> None:
        d, other = self.pair(), self.pair()
        d.same("SET", "{tx}w", "0")
        d.same("WATCH", "{tx}w")
        other.same("SET", "{tx}w", "changed")
        d.script([("MULTI",), ("SET", "{tx}w", "mine"), ("EXEC",), ("GET", "{tx}w")])
        # Unchanged watched key: the transaction runs.
        d.script([("WATCH", "{tx}w"), ("MULTI",), ("SET", "{tx}w", "mine"), ("EXEC",), ("GET", "{tx}w")])

    def test_keys_of_two_masters_in_one_transaction_get_crossslot_at_queue_time(self) -> None:
        d = self.pair()
        a, b = self.spread_keys("txs", 2)
        d.same("MULTI")
        d.same("SET", a, "1")
        got, want = d.both("SET", b, "2")
        self.assertEqual(got, CROSSSLOT)
        self.assertEqual(want, b"+QUEUED\r\n")
        got, want = d.both("EXEC")
        self.assertEqual(got, b"-EXECABORT Transaction discarded because of previous errors.\r\n")
        self.assertEqual(want, b"*2\r\n+OK\r\n+OK\r\n")
        d.r.call("DEL", a, b)
        d.same("EXISTS", a, b)
        # A WATCH on one slot and a transaction on another.
        d.same("WATCH", a)
        d.same("MULTI")
        got, want = d.both("SET", b, "1")
        self.assertEqual(got, CROSSSLOT)
        d.both("DISCARD")
        d.r.call("DEL", b)


class BlockingTest(DiffTestCase):
    def test_timeouts_and_argument_errors(self) -> None:
        d = self.pair()
        d.script([
            ("BLPOP", "blk:none", "0.1"), ("BRPOP", "{blk}a", "{blk}b", "0.1"),
            ("BLMOVE", "{blk}a", "{blk}b", "LEFT", "RIGHT", "0.1"), ("BZPOPMIN", "blk:z", "0.1"),
            ("BZMPOP", "0.1", "1", "blk:z", "MIN"), ("BLMPOP", "0.1", "1", "blk:none", "LEFT"),
            ("XREAD", "BLOCK", "100", "STREAMS", "blk:s", "$"), ("BLPOP", "blk:none", "-1"),
            ("BLPOP", "blk:none", "abc"), ("RPUSH", "{blk}b", "x", "y"),
            ("BRPOP", "{blk}a", "{blk}b", "0.1"), ("BLPOP", "{blk}a", "{blk}b", "0"),
            ("WAIT", "0", "0"), ("XGROUP", "CREATE", "blk:s", "g", "$", "MKSTREAM"),
            ("XREADGROUP", "GROUP", "g", "c", "BLOCK", "100", "STREAMS", "blk:s", ">"),
        ])

    def test_blpop_is_woken_by_a_pusher(self) -> None:
        d, pusher = self.pair(), self.pair()
        for conn_name in ("p", "r"):
            waiter = getattr(d, conn_name)
            waiter.send("BLPOP", "{blk}q", "{blk}other", "5")
        time.sleep(0.3)  # both are blocked by now
        pusher.same("RPUSH", "{blk}q", "hello")
        self.assertEqual(d.p.read(), d.r.read())
        # The connection is usable again, in order.
        d.script([("LLEN", "{blk}q"), ("PING",)])

    def test_blocked_client_does_not_block_others_and_is_counted(self) -> None:
        d, other = self.pair(), self.pair()
        d.p.send("BLPOP", "blk:slow", "2")
        d.r.send("BLPOP", "blk:slow", "2")
        start = time.monotonic()
        self.assertEqual(other.p.call("PING"), b"+PONG\r\n")
        self.assertLess(time.monotonic() - start, 1.5)
        time.sleep(0.2)
        blocked = [info_field(c.call("INFO", "clients"), "blocked_clients") for c in (other.p, other.r)]
        self.assertEqual(blocked, ["1", "1"])
        flags = [client_line(c, b"cmd=blpop")["flags"] for c in (other.p, other.r)]
        self.assertEqual(flags, ["b", "b"])
        self.assertEqual(d.p.read(), b"*-1\r\n")
        self.assertEqual(d.r.read(), b"*-1\r\n")
        self.assertEqual(info_field(other.p.call("INFO", "clients"), "blocked_clients"), "0")


class PubSubTest(DiffTestCase):
    def test_subscribe_publish_and_subscribed_mode(self) -> None:
        sub, pub = self.pair(), self.pair()
        sub.same("SUBSCRIBE", "ch:1", "ch:2")
        self.assertEqual(sub.p.read(), sub.r.read())  # second confirmation
        sub.same("PSUBSCRIBE", "pat:*")
        sub.script([("GET", "x"), ("SET", "x", "y"), ("PING",), ("PING", "hi")])
        for channel, msg in (("ch:1", "hello"), ("pat:x", b"\x00bin\r\n")):
            got, want = pub.both("PUBLISH", channel, msg)
            self.assertEqual(value(got), value(want), "receivers are counted on the proxy's node")
            self.assertEqual(sub.p.read(), sub.r.read())
        sub.same("UNSUBSCRIBE", "ch:1")
        sub.same("PUNSUBSCRIBE")
        sub.same("UNSUBSCRIBE")
        sub.script([("GET", "x"), ("PING",)])  # back in normal mode

    def test_shard_channels(self) -> None:
        sub, pub = self.pair(), self.pair()
        sub.same("SSUBSCRIBE", "{sch}a", "{sch}b")
        self.assertEqual(sub.p.read(), sub.r.read())
        pub.same("SPUBLISH", "{sch}a", "m1")
        self.assertEqual(sub.p.read(), sub.r.read())
        sub.script([("GET", "x"), ("SUNSUBSCRIBE", "{sch}a")])
        sub.same("SUNSUBSCRIBE")
        sub.same("PING")


    def pipelined(self, pair: Pair, commands: Sequence[tuple], replies: int) -> None:
        """Sends every command before reading, as clients pipeline, then compares `replies`
        replies one by one: order matters, not only content."""
        for side in (pair.p, pair.r):
            side.send_raw(b"".join(encode(c) for c in commands))
        for i in range(replies):
            self.assertEqual(pair.p.read(), pair.r.read(), f"reply {i} to {commands!r}")

    def test_commands_pipelined_behind_an_unsubscribe_run_in_normal_mode(self) -> None:
        # Subscribed mode follows the commands, as Redis runs them in order, not the replies.
        d = self.pair()
        self.pipelined(d, [("SUBSCRIBE", "x"), ("UNSUBSCRIBE", "x"), ("GET", "x"), ("PING",)], 4)
        self.pipelined(d, [("SUBSCRIBE", "a", "b"), ("PSUBSCRIBE", "p*"), ("PING",), ("PING", "m"),
                           ("GET", "x"), ("UNSUBSCRIBE", "nope"), ("PUNSUBSCRIBE",),
                           ("UNSUBSCRIBE", "a"), ("UNSUBSCRIBE", "b"), ("PING",), ("GET", "x")], 12)
        self.pipelined(d, [("UNSUBSCRIBE",), ("PUNSUBSCRIBE", "q", "r"), ("SUNSUBSCRIBE",),
                           ("SUNSUBSCRIBE", "{s}x"), ("PING",)], 6)
        self.pipelined(d, [("SUBSCRIBE", "x"), ("PING", "a", "b"), ("RESET",), ("GET", "x")], 4)

    def test_shard_subscription_counts_span_every_master(self) -> None:
        # Each master counts only its own shard channels; the client must see one total.
        d = self.pair()
        channels = [f"{{{harness.hashtag_for_slot(slot)}}}ch" for slot in (0, 6000, 12000)]
        self.pipelined(d, [("SSUBSCRIBE", channels[0]), ("SSUBSCRIBE", channels[1]), ("PING",),
                           ("SSUBSCRIBE", channels[2]), ("SSUBSCRIBE", channels[1]),
                           ("SUNSUBSCRIBE", channels[1]), ("PING", "x")], 7)
        for publisher in (self.pair(),):
            got, want = publisher.both("SPUBLISH", channels[2], "m")
            self.assertEqual(got, want)
        self.assertEqual(d.p.read(), d.r.read())
        # SUNSUBSCRIBE without channels: one frame per channel, counts down to 0 (the channel
        # order is the server's hash order, so compare the frames as a set).
        for side in (d.p, d.r):
            side.send("SUNSUBSCRIBE")
        got = [value(d.p.read()) for _ in range(2)]
        want = [value(d.r.read()) for _ in range(2)]
        self.assertEqual([g[2] for g in got], [w[2] for w in want])  # 1, then 0
        self.assertEqual(sorted(g[1] for g in got), sorted(w[1] for w in want))
        self.pipelined(d, [("GET", "x"), ("PING",)], 2)


class ScriptCacheTest(DiffTestCase):
    """One Redis has one script cache; a cluster has one per master. EVALSHA must work on every
    key once the script was seen by EVAL or SCRIPT LOAD, inside MULTI too, and not after SCRIPT
    FLUSH."""

    def test_evalsha_after_eval_on_keys_of_every_master(self) -> None:
        d = self.pair()
        d.same("SCRIPT", "FLUSH")
        body = "return {KEYS[1], ARGV[1]}"
        sha = hashlib.sha1(body.encode()).hexdigest()
        keys = self.spread_keys("evalsha", 3)
        d.script([("EVALSHA", sha, "1", keys[0], "before"), ("EVAL", body, "1", keys[0], "x")] +
                 [("EVALSHA", sha, "1", k, "a") for k in keys] +
                 [("EVALSHA", sha.upper(), "1", k, "b") for k in keys] +
                 [("EVALSHA_RO", sha, "1", k, "c") for k in keys] +
                 [("MULTI",), ("EVALSHA", sha, "1", keys[2], "tx"), ("EXEC",)] +
                 [("SCRIPT", "FLUSH"), ("EVALSHA", sha, "1", keys[1], "gone")])

    def test_evalsha_after_script_load_in_a_transaction(self) -> None:
        d = self.pair()
        body = "return redis.call('incr', KEYS[1])"
        keys = self.spread_keys("evalshatx", 3)
        sha = value(d.same("SCRIPT", "LOAD", body)).decode()
        for k in keys:
            d.script([("DEL", k), ("MULTI",), ("EVALSHA", sha, "1", k), ("EVALSHA", sha, "1", k),
                      ("EXEC",)])


class ScanTest(DiffTestCase):
    def test_scan_keys_dbsize_see_the_same_keyspace(self) -> None:
        d = self.pair()
        d.same("FLUSHALL")
        for i in range(300):
            d.same("SET", f"scan:{i}", "v")
        for i in range(20):
            d.same("HSET", f"scanh:{i}", "f", "v")
        d.same("DBSIZE")
        d.same("INFO", "keyspace")  # summed over the masters: the same bytes when no key expires
        d.same("KEYS", "scan:1*", norm=sorted_array)
        d.same("KEYS", "nomatch*")
        for match, kind in (("scan:*", None), ("*", "hash"), ("*", None)):
            seen = {}
            for side in ("p", "r"):
                conn, cursor, keys, rounds = getattr(d, side), b"0", [], 0
                while True:
                    args = ["SCAN", cursor, "MATCH", match, "COUNT", "50"]
                    if kind:
                        args += ["TYPE", kind]
                    cursor, batch = value(conn.call(*args))
                    keys += batch
                    rounds += 1
                    self.assertLess(rounds, 1000)
                    if cursor == b"0":
                        break
                seen[side] = keys
            self.assertEqual(len(seen["p"]), len(set(seen["p"])), "SCAN returned a key twice")
            self.assertEqual(sorted(seen["p"]), sorted(seen["r"]), (match, kind))
        got, want = d.both("RANDOMKEY")
        self.assertTrue(value(got).startswith(b"scan"))
        d.same("FLUSHDB")
        d.same("DBSIZE")
        d.same("RANDOMKEY")


class LegitimateDifferencesTest(DiffTestCase):
    """Each case here is a row of README's "Differences from a single Redis"."""

    def test_select_nonzero(self) -> None:
        d = self.pair()
        got, want = d.both("SELECT", "1")
        self.assertEqual(got, b"-ERR SELECT is not allowed in cluster mode\r\n")
        self.assertEqual(want, b"+OK\r\n")
        d.r.call("SELECT", "0")

    def test_hello_3_and_info(self) -> None:
        d = self.pair()
        got = d.p.call("HELLO", "3")  # RESP3 is not relayed: clients fall back to RESP2
        self.assertEqual(got, b"-NOPROTO unsupported protocol version\r\n")
        info = value(d.p.call("INFO")).decode()
        self.assertIn("redis_version:", info)
        self.assertIn("connected_clients:", info)

    def test_client_list_and_info_show_the_proxys_own_clients(self) -> None:
        d, other = self.pair(), self.pair()
        d.same("CLIENT", "SETNAME", "diff-me")
        other.same("MULTI")
        other.same("SET", "{cl}a", "1")
        for side in ("p", "r"):
            conn = getattr(d, side)
            mine = client_line(conn, b"name=diff-me")
            theirs = client_line(conn, b"cmd=set ")
            self.assertEqual(mine["id"], str(value(conn.call("CLIENT", "ID"))))
            self.assertEqual(mine["addr"], "%s:%d" % conn.sock.getsockname())
            self.assertEqual(mine["laddr"], "%s:%d" % conn.sock.getpeername())
            self.assertEqual((mine["flags"], mine["db"], mine["multi"], mine["cmd"]),
                             ("N", "0", "-1", "client|list"), side)
            self.assertEqual((theirs["flags"], theirs["multi"]), ("x", "1"), side)
            info = value(conn.call("CLIENT", "INFO")).decode()
            self.assertIn(f"id={mine['id']} ", info)
            self.assertTrue(info.endswith(" cmd=client|info user=default redir=-1 resp=2\n"), info)
        other.same("DISCARD")
        d.script([("CLIENT", "LIST", "TYPE", "nope"), ("CLIENT", "LIST", "ID", "x"),
                  ("CLIENT", "LIST", "TYPE", "master"), ("CLIENT", "LIST", "ID", "999999")])

    def test_client_list_covers_every_worker(self) -> None:
        proxy = Proxy(self.cluster, threads=2).start()
        self.addCleanup(stop_proxy_checked, proxy)
        n = 24  # SO_REUSEPORT spreads them over the workers (all on one: p = 2^-23)
        conns = [RawConn(proxy.port) for _ in range(n)]
        for i, c in enumerate(conns):
            self.addCleanup(c.close)
            self.assertEqual(c.call("CLIENT", "SETNAME", f"w{i}"), b"+OK\r\n")
        workers = {info_field(c.call("INFO", "proxy"), "proxy_worker") for c in conns}
        listing = value(conns[0].call("CLIENT", "LIST")).decode()
        names = sorted(f.split("=", 1)[1] for line in listing.splitlines()
                       for f in line.split(" ") if f.startswith("name="))
        self.assertEqual(names, sorted(f"w{i}" for i in range(n)), listing)
        self.assertEqual(info_field(conns[-1].call("INFO", "clients"), "connected_clients"), str(n))
        self.assertEqual(len(workers), 2, "all connections landed on one worker")

    def test_forbidden_commands_are_refused_with_their_name(self) -> None:
        d = self.pair()
        for args in (("MONITOR",), ("DEBUG", "SLEEP", "0"), ("CLUSTER", "NODES"), ("SWAPDB", "0", "1"),
                     ("CONFIG", "SET", "maxmemory", "0"), ("CLIENT", "KILL", "ID", "1")):
            got = d.p.call(*args)
            self.assertTrue(got.startswith(b"-ERR slotpilot: '"), got)
            self.assertIn(args[0].encode(), got)


# --------------------------------------------------------------------------------------------
# Split commands while slots move
# --------------------------------------------------------------------------------------------


class SplitCommandsUnderReshardTest(DiffTestCase):
    """MGET/MSET/DEL/EXISTS over many slots in a bounded loop while the test moves slots between
    masters by hand (IMPORTING/MIGRATING, MIGRATE in small batches, SETSLOT NODE): every
    sub-request meets ASK and TRYAGAIN windows; no error may reach the client, values stay right."""

    SLOTS = 4
    FILL = 150        # keys per moving slot, moved 10 per MIGRATE
    LOOP_CAP_S = 60.0
    LOOP_CAP_N = 50_000

    def test_split_commands_see_no_error_while_slots_move(self) -> None:
        cluster = self.cluster
        src, dst = cluster.masters()[0], cluster.masters()[1]
        lo, _ = cluster.slots_of(src)[0]
        moving = list(range(lo + 100, lo + 100 + self.SLOTS))
        for slot in moving:
            cluster.fill_slot(slot, self.FILL, prefix="fill")
        keys = [k for slot in moving for k in harness.keys_for_slot(slot, 3, "load")]
        keys += self.spread_keys("stable", 6)
        stop = threading.Event()
        errors: list[str] = []
        done = {"n": 0}

        def load() -> None:
            c = self.proxy.client(decode=True, socket_timeout=15)
            deadline = time.monotonic() + self.LOOP_CAP_S
            try:
                while not stop.is_set() and time.monotonic() < deadline and done["n"] < self.LOOP_CAP_N:
                    i = done["n"]
                    want = {k: f"{i}:{j}" for j, k in enumerate(keys)}
                    try:
                        if c.mset(want) is not True:
                            errors.append(f"MSET {i} not OK")
                        got = c.mget(keys)
                        if got != [want[k] for k in keys]:
                            errors.append(f"MGET {i}: {got}")
                        gone = keys[i % 3::3]
                        if c.delete(*gone) != len(gone):
                            errors.append(f"DEL {i} count")
                        if c.exists(*keys) != len(keys) - len(gone):
                            errors.append(f"EXISTS {i} count")
                    except redis.RedisError as e:
                        errors.append(f"{i}: {e!r}")
                    done["n"] += 1
                    if len(errors) > 20:
                        return
            finally:
                c.close()

        before = proxy_metrics(self.proxy)
        loader = threading.Thread(target=load, daemon=True)
        loader.start()
        try:
            time.sleep(0.2)
            for slot in moving:
                cluster.open_slot(slot, src, dst)
                for _ in range(self.FILL // 10 + 2):  # bounded: 10 keys per pass
                    if not cluster.migrate_keys(src, dst, slot, 10, batch=10):
                        break
                    time.sleep(0.1)  # keep the ASK/TRYAGAIN window open under load
                cluster.finish_slot(slot, dst)
        finally:
            stop.set()
            loader.join(timeout=30)
        self.assertFalse(loader.is_alive())
        self.assertEqual(errors, [])
        # Multi-key sub-requests on a half-moved slot get TRYAGAIN until the slot is done (as
        # from Redis itself), so rounds stall while a slot moves; but they must go on.
        self.assertGreater(done["n"], self.SLOTS, "the load loop barely ran while slots moved")
        after = proxy_metrics(self.proxy)
        redirects = sum(after.get(f'slotpilot_{m}', 0) - before.get(f'slotpilot_{m}', 0)
                        for m in ('redirects_total{kind="ask"}', 'redirects_total{kind="moved"}',
                                  'retries_total{reason="tryagain"}'))
        self.assertGreater(redirects, 0, "no sub-request met a migrating slot")
        for slot in moving:
            self.assertEqual(cluster.node_for_slot(slot), dst)
            self.assertEqual(cluster.count_keys_in_slot(slot, src), 0)
        # The last round's survivors are on their owners, with their values.
        with self.proxy.client() as c:
            got = c.mget(keys)
        last = done["n"] - 1
        gone = set(keys[last % 3::3])
        self.assertEqual(got, [None if k in gone else f"{last}:{j}" for j, k in enumerate(keys)])


# --------------------------------------------------------------------------------------------
# The same comparisons through a real client library
# --------------------------------------------------------------------------------------------


class ClientLibraryTest(DiffTestCase):
    """python3-redis against both sides: pipelines, transactions with WATCH, pub/sub."""

    def clients(self) -> tuple[redis.Redis, redis.Redis]:
        p, r = self.proxy.client(decode=True), self.ref.client(decode=True)
        self.addCleanup(p.close)
        self.addCleanup(r.close)
        return p, r

    def test_pipeline_results_match(self) -> None:
        keys = self.spread_keys("lib", 6)
        results = []
        for c in self.clients():
            pipe = c.pipeline(transaction=False)
            for i, k in enumerate(keys):
                pipe.set(k, i).incr(k).get(k)
            pipe.mget(keys).delete(*keys).exists(*keys).get("lib:none")
            pipe.hset("lib:h", mapping={"a": 1, "b": 2}).hgetall("lib:h").lpush(keys[0], 1)
            results.append(pipe.execute(raise_on_error=False))
        self.assertEqual(len(results[0]), len(results[1]))
        for got, want in zip(*results):
            if isinstance(want, Exception):
                self.assertEqual(str(got), str(want))
            else:
                self.assertEqual(got, want)

    def test_transaction_with_watch(self) -> None:
        out = []
        for c in self.clients():
            c.set("{lib}counter", 0)
            with c.pipeline(transaction=True) as pipe:
                pipe.watch("{lib}counter")
                n = int(pipe.get("{lib}counter"))
                pipe.multi()
                pipe.set("{lib}counter", n + 1).incr("{lib}counter").get("{lib}counter")
                out.append(pipe.execute())
            with c.pipeline(transaction=True) as pipe:  # WATCH broken by another client
                pipe.watch("{lib}counter")
                c.set("{lib}counter", 100)
                pipe.multi()
                pipe.incr("{lib}counter")
                with self.assertRaises(redis.WatchError):
                    pipe.execute()
            out.append(c.get("{lib}counter"))
        self.assertEqual(out[:2], out[2:])
        self.assertEqual(out[0], [True, 2, "2"])

    def test_pubsub(self) -> None:
        received = []
        for c in self.clients():
            ps = c.pubsub()
            ps.subscribe("lib:ch")
            ps.psubscribe("lib:p*")
            msgs = []
            deadline = time.monotonic() + 5
            while len(msgs) < 2 and time.monotonic() < deadline:  # subscription confirmations
                m = ps.get_message(timeout=0.5)
                if m:
                    msgs.append(m)
            c.publish("lib:ch", "one")
            c.publish("lib:pq", "two")
            while len(msgs) < 4 and time.monotonic() < deadline:
                m = ps.get_message(timeout=0.5)
                if m:
                    msgs.append(m)
            ps.close()
            received.append(msgs)
        self.assertEqual(received[0], received[1])
        self.assertEqual([m["type"] for m in received[0]],
                         ["subscribe", "psubscribe", "message", "pmessage"])


if __name__ == "__main__":
    unittest.main()
