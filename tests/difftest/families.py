"""Command families: generators of valid (and deliberately invalid) traffic.

Data-type generators make one command on keys of one hash tag (one slot), so transactions and
scripts can use them too. Op generators make one Op of a family. Replies must be deterministic
on a single server, so: no relative expiry short enough to fire during a run, explicit stream
IDs (XADD '*' only on keys nothing reads IDs from), no random sampling (SPOP/SRANDMEMBER with a
count, RANDOMKEY), no commands that read the clock (TIME) or server-wide state (DBSIZE, INFO,
CLIENT LIST) outside the solo phase.
"""

from __future__ import annotations

import fnmatch
import hashlib
from typing import Callable, Iterator, Sequence

from gen import Gen, Space, as_args
from normalise import EXACT
from ops import (MAIN, SECOND, SUBSCRIBER, VANISHING, Call, Close, Command, Op, Read, Receive,
                 ScanAll, Send, Sleep, Step, Vanish, cmd)
from resp import to_bytes

CROSSSLOT = b"-CROSSSLOT Keys in request don't hash to the same slot\r\n"
EXECABORT = b"-EXECABORT Transaction discarded because of previous errors.\r\n"
FAR = 4102444800  # 2100-01-01: absolute expiry times are then exact on both sides
WAKE_TIMEOUT_S = 5  # a woken waiter's timeout: long enough that the push always comes first
BLOCK_TIMEOUTS = ("0.05", "0.1", "0.08")  # seconds, for waits that must time out

DataMaker = Callable[[Gen, str], Command]


def _long_ttl(g: Gen) -> int:
    """A relative expiry (seconds) that never fires during a run: the two sides set it a few
    milliseconds apart, so a key expiring mid-run could exist on one side only."""
    return g.rng.randint(10**5, 10**8)


# --------------------------------------------------------------------------------------------
# Data types: one command on keys of `tag`
# --------------------------------------------------------------------------------------------


def strings(g: Gen, tag: str) -> Command:
    k, k2, n = g.key("str", tag), g.key("str", tag), g.key("int", tag)
    lcs = [g.space.key(tag, "lcs0"), g.space.key(tag, "lcs1")]  # kept short: LCS is O(n*m)
    set_options = [["NX"], ["XX"], ["GET"], ["KEEPTTL"], ["EX", _long_ttl(g)],
                   ["PX", _long_ttl(g) * 1000], ["NX", "GET"], ["XX", "KEEPTTL", "GET"],
                   ["EXAT", FAR], ["EX", "0"], ["EX", "abc"], ["NX", "XX"], ["PXAT", FAR * 1000]]
    return g.run_one([
        lambda: cmd("SET", k, g.value()),
        lambda: cmd("SET", k, g.value(), *g.pick(set_options)),
        lambda: cmd("GET", k),
        lambda: cmd("GETRANGE", k, g.rng.randint(-300, 300), g.rng.randint(-300, 70000)),
        lambda: cmd("SETRANGE", k, g.count(0, 70000), g.value()),
        lambda: cmd("APPEND", k, g.value()),
        lambda: cmd("STRLEN", k),
        lambda: cmd("GETDEL", k),
        lambda: cmd("GETEX", k, *g.pick([[], ["PERSIST"], ["EX", _long_ttl(g)]])),
        lambda: cmd("SETNX", k, g.value()),
        lambda: cmd("GETSET", k, g.value()),
        lambda: cmd("SETEX", k, _long_ttl(g), g.value()),
        lambda: cmd("PSETEX", k, _long_ttl(g) * 1000, g.value()),
        lambda: cmd("SET", n, g.pick([g.integer(), "1.5", " 1", "", "9223372036854775808"])),
        lambda: cmd(g.pick(["INCR", "DECR"]), n),
        lambda: cmd(g.pick(["INCRBY", "DECRBY"]), n, g.integer()),
        lambda: cmd("INCRBYFLOAT", n, g.number()),
        lambda: cmd("MSETNX", k, g.value(), k2, g.value()),
        lambda: cmd("MSET", k, g.value(), k2, g.value()),
        lambda: cmd("MGET", k, k2, n, k),
        lambda: cmd("SET", g.pick(lcs), bytes(g.rng.choices(b"abcd", k=g.rng.randint(0, 40)))),
        lambda: cmd("LCS", *lcs, *g.pick([[], ["LEN"], ["IDX", "MINMATCHLEN", g.rng.randint(0, 4),
                                                        "WITHMATCHLEN"]])),
        lambda: cmd("SUBSTR", k, g.rng.randint(-10, 10), g.rng.randint(-10, 100)),
        lambda: cmd(g.pick(["TYPE", "EXISTS", "STRLEN"]), g.pick([k, n])),
        lambda: cmd("OBJECT", "ENCODING", g.pick([k, n])),
        lambda: cmd("COPY", k, k2, *g.pick([[], ["REPLACE"]])),
        lambda: cmd(g.pick(["RENAME", "RENAMENX"]), k, k2),
        lambda: cmd(g.pick(["DEL", "UNLINK"]), k),
    ])


def hashes(g: Gen, tag: str) -> Command:
    h = g.key("hash", tag)

    def fields(n: int) -> list:
        return as_args(*[[g.field(), g.value()] for _ in range(n)])

    counter = f"n{g.rng.randrange(5)}"
    return g.run_one([
        lambda: cmd("HSET", h, *fields(g.count(1, 300))),
        lambda: cmd("HMSET", h, *fields(g.count(1, 10))),
        lambda: cmd("HSETNX", h, g.field(), g.value()),
        lambda: cmd("HGET", h, g.field()),
        lambda: cmd("HMGET", h, *[g.field() for _ in range(g.count(1, 20))]),
        lambda: cmd("HGETALL", h, norm="pairs"),
        lambda: cmd(g.pick(["HKEYS", "HVALS"]), h, norm="sorted"),
        lambda: cmd("HLEN", h),
        lambda: cmd(g.pick(["HSTRLEN", "HEXISTS"]), h, g.field()),
        lambda: cmd("HDEL", h, *[g.field() for _ in range(g.count(1, 40))]),
        lambda: cmd("HINCRBY", h, counter, g.integer()),
        lambda: cmd("HINCRBYFLOAT", h, counter, g.number()),
        lambda: cmd("HRANDFIELD", g.space.key(tag, "void0")),  # no key: deterministic nil
        lambda: cmd("OBJECT", "ENCODING", h),
        lambda: cmd("DEL", h),
    ])


def lists(g: Gen, tag: str) -> Command:
    l1, l2 = g.key("list", tag), g.key("list", tag)

    def values(n: int) -> list:
        return [g.member() if g.chance(0.7) else g.value() for _ in range(n)]

    side = lambda: g.pick(["LEFT", "RIGHT"])  # noqa: E731
    return g.run_one([
        lambda: cmd(g.pick(["LPUSH", "RPUSH"]), l1, *values(g.count(1, 300))),
        lambda: cmd(g.pick(["LPUSHX", "RPUSHX"]), l1, *values(g.count(1, 3))),
        lambda: cmd(g.pick(["LPOP", "RPOP"]), l1, *g.pick([[], [g.count(0, 300)]])),
        lambda: cmd("LRANGE", l1, g.rng.randint(-50, 50), g.rng.randint(-50, 400)),
        lambda: cmd("LLEN", l1),
        lambda: cmd("LINDEX", l1, g.rng.randint(-50, 50)),
        lambda: cmd("LSET", l1, g.rng.randint(-20, 20), g.value()),
        lambda: cmd("LINSERT", l1, g.pick(["BEFORE", "AFTER"]), g.member(), g.value()),
        lambda: cmd("LREM", l1, g.rng.randint(-3, 3), g.member()),
        lambda: cmd("LTRIM", l1, g.rng.randint(-50, 50), g.rng.randint(-50, 200)),
        lambda: cmd("LPOS", l1, g.member(), *g.pick([[], ["RANK", g.rng.randint(-3, 3)],
                                                      ["COUNT", g.rng.randint(0, 5)],
                                                      ["MAXLEN", g.rng.randint(0, 50)]])),
        lambda: cmd("LMOVE", l1, l2, side(), side()),
        lambda: cmd("RPOPLPUSH", l1, l2),
        lambda: cmd("LMPOP", 2, l1, l2, side(), *g.pick([[], ["COUNT", g.count(1, 50)]])),
        lambda: cmd(g.pick(["SORT", "SORT_RO"]), l1, *g.pick([[], ["ALPHA"], ["ALPHA", "DESC"],
                                                              ["ALPHA", "LIMIT", 0, 10]])),
        lambda: cmd("OBJECT", "ENCODING", l1),
        lambda: cmd("DEL", l1),
    ])


def sets(g: Gen, tag: str) -> Command:
    s1, s2, dst = g.key("set", tag), g.key("set", tag), g.key("set", tag)

    def members(n: int) -> list:
        ints = g.chance(0.4)  # intset encoding until 512 entries
        return [str(g.rng.randrange(1000)) if ints else g.member() for _ in range(n)]

    return g.run_one([
        lambda: cmd("SADD", s1, *members(g.count(1, 600))),
        lambda: cmd("SREM", s1, *members(g.count(1, 40))),
        lambda: cmd("SCARD", s1),
        lambda: cmd("SISMEMBER", s1, g.member()),
        lambda: cmd("SMISMEMBER", s1, *members(g.count(1, 10))),
        lambda: cmd("SMEMBERS", s1, norm="sorted"),
        lambda: cmd(g.pick(["SINTER", "SUNION", "SDIFF"]), s1, s2, norm="sorted"),
        lambda: cmd(g.pick(["SINTERSTORE", "SUNIONSTORE", "SDIFFSTORE"]), dst, s1, s2),
        lambda: cmd("SINTERCARD", 2, s1, s2, *g.pick([[], ["LIMIT", g.rng.randint(0, 5)]])),
        lambda: cmd("SMOVE", s1, s2, g.member()),
        lambda: cmd(g.pick(["SPOP", "SRANDMEMBER"]), g.space.key(tag, "void1")),
        lambda: cmd("OBJECT", "ENCODING", s1),
        lambda: cmd("DEL", s1),
    ])


def zsets(g: Gen, tag: str) -> Command:
    z1, z2, dst = g.key("zset", tag), g.key("zset", tag), g.key("zset", tag)
    # Lex ranges are defined only when every score is equal: on mixed scores the skiplist walk
    # (with its random levels) gives different answers on two servers. So lex commands use
    # zlex keys, whose members all have score 0.
    lex = g.key("zlex", tag)
    score_bound = lambda: g.pick(["-inf", "+inf", f"({g.rng.randint(-5, 5)}",  # noqa: E731
                                  str(g.rng.randint(-5, 5))])
    lex_bound = lambda: g.pick(["-", "+", f"[{g.member()}", f"({g.member()}"])  # noqa: E731
    limit = lambda: g.pick([[], ["LIMIT", g.rng.randint(0, 5), g.rng.randint(-1, 10)]])  # noqa: E731
    scores = lambda: g.pick([[], ["WITHSCORES"]])  # noqa: E731

    def pairs(n: int) -> list:
        return as_args(*[[g.number(), g.member()] for _ in range(n)])

    flags = [[], ["NX"], ["XX"], ["GT"], ["LT"], ["CH"], ["XX", "GT", "CH"], ["NX", "LT"], ["NX", "XX"]]
    return g.run_one([
        lambda: cmd("ZADD", z1, *g.pick(flags), *pairs(g.count(1, 300))),
        lambda: cmd("ZADD", z1, *g.pick(flags), "INCR", g.number(), g.member()),
        lambda: cmd("ZINCRBY", z1, g.number(), g.member()),
        lambda: cmd(g.pick(["ZSCORE", "ZRANK", "ZREVRANK"]), z1, g.member()),
        lambda: cmd("ZMSCORE", z1, *[g.member() for _ in range(g.count(1, 10))]),
        lambda: cmd("ZCARD", z1),
        lambda: cmd("ZRANGE", z1, g.rng.randint(-20, 20), g.rng.randint(-20, 300), *scores()),
        lambda: cmd("ZRANGE", z1, score_bound(), score_bound(), "BYSCORE", *g.pick([[], ["REV"]]),
                    *limit(), *scores()),
        lambda: cmd("ZADD", lex, *g.pick([[], ["NX"], ["XX", "CH"]]),
                    *as_args(*[[0, g.member()] for _ in range(g.count(1, 300))])),
        lambda: cmd("ZRANGE", lex, lex_bound(), lex_bound(), "BYLEX", *g.pick([[], ["REV"]]), *limit()),
        lambda: cmd(g.pick(["ZRANGEBYSCORE", "ZREVRANGEBYSCORE"]), z1, score_bound(), score_bound(),
                    *scores(), *limit()),
        lambda: cmd(g.pick(["ZRANGEBYLEX", "ZREVRANGEBYLEX"]), lex, lex_bound(), lex_bound()),
        lambda: cmd("ZCOUNT", z1, score_bound(), score_bound()),
        lambda: cmd("ZLEXCOUNT", lex, lex_bound(), lex_bound()),
        lambda: cmd("ZREM", z1, *[g.member() for _ in range(g.count(1, 20))]),
        lambda: cmd("ZREMRANGEBYRANK", z1, g.rng.randint(-10, 10), g.rng.randint(-10, 10)),
        lambda: cmd("ZREMRANGEBYSCORE", z1, score_bound(), score_bound()),
        lambda: cmd("ZREMRANGEBYLEX", lex, lex_bound(), lex_bound()),
        lambda: cmd(g.pick(["ZPOPMIN", "ZPOPMAX"]), z1, *g.pick([[], [g.count(0, 50)]])),
        lambda: cmd(g.pick(["ZUNIONSTORE", "ZINTERSTORE"]), dst, 2, z1, z2,
                    *g.pick([[], ["WEIGHTS", g.number(), g.number()]]),
                    *g.pick([[], ["AGGREGATE", g.pick(["SUM", "MIN", "MAX"])]])),
        lambda: cmd("ZDIFFSTORE", dst, 2, z1, z2),
        lambda: cmd(g.pick(["ZUNION", "ZINTER", "ZDIFF"]), 2, z1, z2, *scores()),
        lambda: cmd("ZINTERCARD", 2, z1, z2),
        lambda: cmd("ZRANGESTORE", dst, z1, 0, g.rng.randint(-1, 20)),
        lambda: cmd("ZMPOP", 2, z1, z2, g.pick(["MIN", "MAX"]),
                    *g.pick([[], ["COUNT", g.count(1, 20)]])),
        lambda: cmd("OBJECT", "ENCODING", z1),
        lambda: cmd("DEL", g.pick([z1, lex])),
    ])


def streams(g: Gen, tag: str) -> Command:
    x = g.key("stream", tag)
    auto = g.space.key(tag, "xauto")  # XADD '*' only: nothing reads its (clock-based) IDs
    group, consumer = f"g{g.rng.randrange(3)}", f"c{g.rng.randrange(3)}"
    old = lambda: g.old_stream_id(x)  # noqa: E731
    count = lambda: g.pick([[], ["COUNT", g.count(0, 50)]])  # noqa: E731
    trim = lambda: g.pick([[], ["MAXLEN", g.pick(["=", "~"]), g.count(0, 300)],  # noqa: E731
                           ["MINID", old()]])

    def entry() -> list:
        return as_args(*[[g.field(), g.value()] for _ in range(g.count(1, 5))])

    return g.run_one([
        lambda: cmd("XADD", x, *trim(), g.next_stream_id(x), *entry()),
        lambda: cmd("XADD", x, "NOMKSTREAM", g.next_stream_id(x), *entry()),
        lambda: cmd("XADD", x, old(), *entry()),  # at or below the top: an error
        lambda: cmd("XADD", auto, "*", *entry(), norm="stream-id"),
        lambda: cmd("XLEN", g.pick([x, auto])),
        lambda: cmd("XRANGE", x, g.pick(["-", old()]), g.pick(["+", old()]), *count()),
        lambda: cmd("XREVRANGE", x, g.pick(["+", old()]), g.pick(["-", old()]), *count()),
        lambda: cmd("XDEL", x, *[old() for _ in range(g.count(1, 5))]),
        lambda: cmd("XTRIM", x, *g.pick([["MAXLEN", g.count(0, 300)], ["MINID", old()]])),
        lambda: cmd("XGROUP", "CREATE", x, group, g.pick(["0", "$", old()]),
                    *g.pick([[], ["MKSTREAM"], ["ENTRIESREAD", g.count(0, 10)]])),
        lambda: cmd("XGROUP", g.pick(["CREATECONSUMER", "DELCONSUMER"]), x, group, consumer),
        lambda: cmd("XGROUP", "SETID", x, group, g.pick(["0", "$", old()])),
        lambda: cmd("XGROUP", "DESTROY", x, group),
        lambda: cmd("XREADGROUP", "GROUP", group, consumer, *count(), *g.pick([[], ["NOACK"]]),
                    "STREAMS", x, g.pick([">", ">", "0"])),
        lambda: cmd("XACK", x, group, *[old() for _ in range(g.count(1, 5))]),
        lambda: cmd("XPENDING", x, group),
        lambda: cmd("XPENDING", x, group, "-", "+", g.count(0, 50), *g.pick([[], [consumer]]),
                    norm="xpending"),
        lambda: cmd("XCLAIM", x, group, consumer, 0, *[old() for _ in range(g.count(1, 5))],
                    *g.pick([[], ["JUSTID"]])),
        lambda: cmd("XAUTOCLAIM", x, group, consumer, 0, "0-0", *count(), *g.pick([[], ["JUSTID"]])),
        lambda: cmd("XINFO", "STREAM", x),
        lambda: cmd("XINFO", "STREAM", x, "FULL", *count(), norm="no-times"),
        lambda: cmd("XINFO", "GROUPS", x),
        lambda: cmd("XINFO", "CONSUMERS", x, group, norm="no-times"),
        lambda: cmd("XREAD", *count(), "STREAMS", x, g.pick(["0", old()])),
        lambda: cmd("DEL", g.pick([x, auto])),
    ])


def bitmaps(g: Gen, tag: str) -> Command:
    b1, b2, dst = g.key("bits", tag), g.key("bits", tag), g.key("bits", tag)
    offset = lambda: g.pick([g.rng.randint(0, 64), g.rng.randint(0, 4096),  # noqa: E731
                             g.pick([0, 7, 8, 255, 256, 65535, 65536, 2**20, 2**23 - 1])])
    unit = lambda: g.pick([[], ["BYTE"], ["BIT"]])  # noqa: E731
    kind = lambda: g.pick(["i", "u"]) + str(g.rng.randint(1, 64))  # u64 is an error  # noqa: E731
    field_offset = lambda: g.pick([str(g.rng.randint(0, 200)),  # noqa: E731
                                   f"#{g.rng.randint(0, 20)}"])

    def bitfield_ops() -> list:
        ops: list = []
        for _ in range(g.count(1, 6)):
            ops += g.pick([["GET", kind(), field_offset()],
                           ["SET", kind(), field_offset(), g.integer()],
                           ["INCRBY", kind(), field_offset(), g.integer()],
                           ["OVERFLOW", g.pick(["WRAP", "SAT", "FAIL"])]])
        return ops

    return g.run_one([
        lambda: cmd("SETBIT", b1, offset(), g.pick([0, 1, 1, 2])),
        lambda: cmd("GETBIT", b1, offset()),
        lambda: cmd("BITCOUNT", b1, *g.pick([[], [g.rng.randint(-10, 10), g.rng.randint(-10, 100),
                                                  *unit()]])),
        lambda: cmd("BITPOS", b1, g.pick([0, 1]),
                    *g.pick([[], [g.rng.randint(-5, 5)],
                             [g.rng.randint(-5, 5), g.rng.randint(-5, 50), *unit()]])),
        lambda: cmd("BITOP", g.pick(["AND", "OR", "XOR"]), dst, b1, b2),
        lambda: cmd("BITOP", "NOT", dst, b1),
        lambda: cmd("BITFIELD", b1, *bitfield_ops()),
        lambda: cmd("BITFIELD_RO", b1, "GET", kind(), field_offset()),
        lambda: cmd(g.pick(["GET", "STRLEN"]), b1),
        lambda: cmd("DEL", b1),
    ])


def hyperloglogs(g: Gen, tag: str) -> Command:
    h1, h2, dst = g.key("hll", tag), g.key("hll", tag), g.key("hll", tag)
    return g.run_one([
        lambda: cmd("PFADD", h1, *[g.member() if g.chance(0.5) else g.rng.randrange(10**6)
                                   for _ in range(g.count(0, 5000))]),
        lambda: cmd("PFCOUNT", h1),
        lambda: cmd("PFCOUNT", h1, h2),
        lambda: cmd("PFMERGE", dst, h1, h2),
        lambda: cmd("GET", h1),
        lambda: cmd("DEL", h1),
    ])


def expiry(g: Gen, tag: str) -> Command:
    k = g.key(g.pick(["str", "int", "hash", "list", "set", "zset", "stream"]), tag)
    s = g.key("str", tag)
    seconds = lambda: g.pick([_long_ttl(g), 0, -1, -5])  # noqa: E731  (<= 0 deletes at once)
    at = lambda: g.pick([FAR + g.rng.randint(0, 10**6), 1, 10**9])  # noqa: E731  (past: deletes)
    return g.run_one([
        lambda: cmd("EXPIRE", k, seconds(), *g.pick([[], ["NX"], ["XX"]])),
        lambda: cmd("PEXPIRE", k, seconds() * 1000, *g.pick([[], ["NX"], ["XX"]])),
        # GT/LT only against absolute times: a relative one depends on the millisecond it ran
        lambda: cmd("EXPIREAT", k, at(), *g.pick([[], ["NX"], ["XX"], ["GT"], ["LT"]])),
        lambda: cmd("PEXPIREAT", k, at() * 1000, *g.pick([[], ["GT"], ["LT"]])),
        lambda: cmd(g.pick(["TTL", "PTTL", "EXPIRETIME", "PEXPIRETIME"]), k, norm="ttl"),
        lambda: cmd("PERSIST", k),
        lambda: cmd("SET", s, g.value(), "EX", _long_ttl(g)),
        lambda: cmd("GETEX", s, *g.pick([["EX", _long_ttl(g)], ["PERSIST"], ["EXAT", FAR]])),
        lambda: cmd("TOUCH", k),
        lambda: cmd("EXPIRE", k, "abc"),
    ])


WRONG_ARITY = (("GET",), ("SET", "k"), ("HSET", "h", "f"), ("LPUSH", "l"), ("ZADD", "z", "1"),
               ("XADD", "x"), ("EXPIRE", "k"), ("MSET", "a"), ("MGET",), ("DEL",), ("EXISTS",),
               ("PING", "a", "b"), ("ECHO",), ("EVAL",), ("SCAN",), ("SELECT",))


def _unsupported_help(name: str) -> Command:
    """Keyless subcommands the proxy does not relay yet get its documented error naming them
    (README: "not supported by the proxy yet")."""
    error = f"-ERR slotpilot: '{name} HELP' is not supported by the proxy yet\r\n".encode()
    return cmd(name, "help", proxy_expect=error)


def misc(g: Gen, tag: str) -> Command:
    """Keyless and connection commands, argument errors, odd spellings, inline commands."""
    k = g.key("str", tag)
    word = lambda: g.pick(["a", "b", "hello", "x1", "42"])  # noqa: E731
    return g.run_one([
        lambda: cmd("PING"),
        lambda: cmd("PING", g.value()),
        lambda: cmd("ECHO", g.value()),
        lambda: cmd("SELECT", g.pick(["0", "abc"])),
        lambda: cmd("CLIENT", "SETNAME",
                    g.pick(["", "dt-client", f"n{g.rng.randrange(100)}", "bad name"])),
        lambda: cmd("CLIENT", "GETNAME"),
        lambda: cmd("COMMAND", "COUNT"),
        lambda: cmd("COMMAND", "INFO", *g.pick([["get"], ["mset", "nosuch"], ["blpop", "XADD"]])),
        lambda: cmd("COMMAND", "GETKEYS", *g.pick([["SET", k, "v"], ["MSET", k, "1", "b", "2"],
                                                   ["EVAL", "return 1", "1", k], ["GET"]])),
        lambda: cmd(*g.pick(WRONG_ARITY)),
        lambda: cmd(g.pick(["NOSUCH", "nosuch", "GETT", ""]),
                    *[g.value() for _ in range(g.count(0, 4))]),
        lambda: cmd(g.pick(["gEt", "Get", "get", "sEt"]), k, *g.pick([[], ["v"]])),
        lambda: cmd(g.pick(["OBJECT", "CONFIG", "CLIENT", "XINFO", "SCRIPT", "FUNCTION"]), "NOSUCH"),
        lambda: _unsupported_help(g.pick(["OBJECT", "CONFIG", "CLIENT", "SCRIPT", "FUNCTION"])),
        lambda: cmd(g.pick(["PING", "ECHO"]), *([word()] if g.chance(0.5) else []), inline=True),
        lambda: cmd(g.pick(["GET", "EXISTS"]), k, inline=True),
        lambda: cmd("SET", k, word(), inline=True),
        lambda: cmd("WAIT", 0, 0),
        lambda: cmd(g.pick(["TYPE", "EXISTS"]), g.space.key(tag, "void2")),
        lambda: cmd("SET", k, "v", "EX", g.pick(["abc", "-1", "9223372036854775807"])),
        lambda: cmd("INCRBY", k, g.pick(["1.5", "abc", "99999999999999999999"])),
    ])


DATA: dict[str, DataMaker] = {
    "strings": strings, "hashes": hashes, "lists": lists, "sets": sets, "zsets": zsets,
    "streams": streams, "bitmaps": bitmaps, "hll": hyperloglogs, "expiry": expiry, "misc": misc,
}


def any_data(g: Gen, tag: str) -> Command:
    return DATA[g.pick(sorted(DATA))](g, tag)


SLOT_DATA = sorted(set(DATA) - {"misc"})  # misc names keys of other slots and has proxy_expect


def slot_data(g: Gen, tag: str) -> Command:
    """A command whose keys all lie in `tag`'s slot (or a keyless PING/ECHO)."""
    if g.chance(0.03):
        return cmd(g.pick(["PING", "ECHO"]), g.value())
    return DATA[g.pick(SLOT_DATA)](g, tag)


# --------------------------------------------------------------------------------------------
# Ops
# --------------------------------------------------------------------------------------------


def data_op(family: str) -> Callable[[Gen], Op]:
    """One command, or a short pipeline, of one data family."""
    maker = DATA[family]

    def make(g: Gen) -> Op:
        depth = 1 if g.chance(0.7) else g.count(2, 20)
        tag = g.tag()
        return Op(family, (Call(MAIN, tuple(maker(g, tag if g.chance(0.5) else g.tag())
                                            for _ in range(depth))),))
    return make


def pipeline_op(g: Gen) -> Op:
    """A pipeline of random depth over every data family and many slots."""
    depth = g.count(1, 30000)
    return Op("pipeline", (Call(MAIN, tuple(any_data(g, g.tag()) for _ in range(depth))),))


def _queued(command: Command) -> Command:
    """A command inside MULTI: its reply is +QUEUED, which every normaliser leaves exact; it
    keeps its norm so that EXEC's per-element normalisers can be recomputed (shrink.py)."""
    return Command(command.args, norm=command.norm, replies=command.replies, inline=command.inline)


def _transaction_body(g: Gen, tag: str, n: int) -> list[Command]:
    body = []
    for _ in range(n):
        r = g.rng.random()
        if r < 0.03:  # a blocking command runs without blocking inside MULTI
            body.append(cmd("BLPOP", g.space.key(tag, "void3"), g.pick(BLOCK_TIMEOUTS)))
        elif r < 0.06:
            body.append(_script_command(g, tag))
        else:
            body.append(slot_data(g, tag))
    return body


def multi_op(g: Gen) -> Op:
    """MULTI ... EXEC on one slot: plain, DISCARD, queue-time errors (EXECABORT), exec-time
    errors, WATCH with and without a conflicting write from a second connection, nesting, and
    a transaction leaving its slot (the proxy's documented CROSSSLOT)."""
    tag = g.tag()
    variant = g.pick(["exec", "exec", "exec", "discard", "queue-error", "exec-error", "watch",
                      "conflict", "unwatch", "nested", "crossslot", "no-multi", "scripts"])
    if variant == "crossslot":
        return _crossslot_transaction(g, tag)
    if variant == "no-multi":
        return Op("multi", (Call(MAIN, (cmd(g.pick(["EXEC", "DISCARD"])),)),))
    if variant == "scripts":  # EVAL and EVALSHA of scripts first sent on other masters' keys
        body = [_script_command(g, tag) if g.chance(0.8) else slot_data(g, tag)
                for _ in range(g.count(1, 10))]
    else:
        body = _transaction_body(g, tag, g.count(0, 5000))
    key = g.key("str", tag)
    refused = (b"MULTI", b"WATCH")  # inside MULTI: an error, but the transaction goes on
    if variant == "queue-error":
        bad = g.pick([cmd("NOSUCHCMD", key), cmd("SET", key), cmd("GET")])
        body.insert(g.rng.randint(0, len(body)), bad)
    elif variant == "exec-error":
        body.insert(g.rng.randint(0, len(body)), cmd("LPUSH", key, "x"))
        body.insert(0, cmd("SET", key, "string"))
    elif variant == "nested":
        body.insert(g.rng.randint(0, len(body)), g.pick([cmd("MULTI"), cmd("WATCH", key)]))
    queued = [c if c.args[0] in refused or variant == "queue-error" else _queued(c) for c in body]
    inner = tuple(c.norm for c in body if c.args[0] not in refused)
    end = cmd("DISCARD") if variant == "discard" else Command((b"EXEC",), inner=inner)
    transaction = [cmd("MULTI"), *queued, end]
    steps: list[Step] = []
    if variant in ("watch", "conflict", "unwatch"):
        watched = [g.key(g.pick(["str", "int", "hash", "list"]), tag) for _ in range(g.count(1, 3))]
        steps.append(Call(MAIN, (cmd("WATCH", *watched),)))
        if variant in ("conflict", "unwatch"):  # the other client of the conflict
            steps.append(Call(SECOND, (g.pick([cmd("SET", watched[0], "theirs"), cmd("DEL", watched[0]),
                                               cmd("INCR", watched[0])]),)))
        if variant == "unwatch":
            steps.append(Call(MAIN, (cmd("UNWATCH"),)))
    if len(transaction) <= 50 and g.chance(0.3):  # one round trip per command
        steps += [Call(MAIN, (c,)) for c in transaction]
    else:
        steps.append(Call(MAIN, tuple(transaction)))
    return Op("multi", tuple(steps))


def _crossslot_transaction(g: Gen, tag: str) -> Op:
    """Reads on a second slot inside a transaction: the reference runs them (no state
    changes); the proxy answers CROSSSLOT and then EXECABORT, as a cluster node does."""
    first, second = g.key("str", tag), g.key("str", g.other_tag(tag))
    steps: list[Step] = []
    if g.chance(0.3):
        steps.append(Call(MAIN, (cmd("WATCH", first),)))
    steps.append(Call(MAIN, (cmd("MULTI"), cmd("GET", first),
                             cmd(g.pick(["GET", "STRLEN", "EXISTS"]), second, proxy_expect=CROSSSLOT),
                             cmd("EXEC", proxy_expect=EXECABORT))))
    return Op("multi", tuple(steps))


SPLIT_COMMANDS = ("MGET", "MSET", "DEL", "UNLINK", "EXISTS", "TOUCH")
DATA_KINDS = ("str", "int", "hash", "list", "set", "zset", "stream", "bits", "hll")


def _split_command(g: Gen) -> Command:
    name = g.pick(SPLIT_COMMANDS)
    n = g.count(1, 10000)
    if name == "MSET":
        return cmd("MSET", *as_args(*[[g.multikey(), g.small()] for _ in range(n)]))
    keys = [g.multikey() if g.chance(0.9) else g.key(g.pick(DATA_KINDS)) for _ in range(n)]
    if g.chance(0.2) and keys:  # repeated keys count (EXISTS) and repeat (MGET)
        keys += keys[:g.count(1, len(keys))]
    return cmd(name, *keys)


ATOMIC_READS = ("SINTER", "SUNION", "SDIFF", "SINTERCARD", "ZINTER", "ZUNION", "ZDIFF",
                "PFCOUNT", "XREAD", "EVAL_RO", "LCS")


def _crossslot_read(g: Gen) -> Command:
    """An atomic read of two slots, on keys that never exist (nothing changes on the
    reference): the proxy's documented answer is CROSSSLOT."""
    tag = g.tag()
    a, b = g.space.key(tag, "void4"), g.space.key(g.other_tag(tag), "void4")
    name = g.pick(ATOMIC_READS)
    args = {"SINTERCARD": [2, a, b], "ZINTER": [2, a, b], "ZUNION": [2, a, b], "ZDIFF": [2, a, b],
            "XREAD": ["STREAMS", a, b, "0", "0"], "EVAL_RO": ["return 1", 2, a, b]}.get(name, [a, b])
    return cmd(name, *args, proxy_expect=CROSSSLOT)


def multikey_op(g: Gen) -> Op:
    """MGET/MSET/DEL/UNLINK/EXISTS/TOUCH over up to 10000 keys in as many slots (split per
    slot by the proxy, merged in key order), sometimes several in one pipeline; and atomic
    multi-key reads across slots (CROSSSLOT)."""
    if g.chance(0.1):
        return Op("multikey", (Call(MAIN, (_crossslot_read(g),)),))
    depth = 1 if g.chance(0.7) else g.count(2, 5)
    return Op("multikey", (Call(MAIN, tuple(_split_command(g) for _ in range(depth))),))


# ---- scripts and functions ------------------------------------------------------------------

# (body, number of keys, read-only, key kind, argument maker)
SCRIPTS: tuple = (
    ("return redis.call('get', KEYS[1])", 1, True, "str", lambda g: []),
    ("return redis.call('set', KEYS[1], ARGV[1])", 1, False, "str", lambda g: [g.value()]),
    ("return redis.call('incrby', KEYS[1], ARGV[1])", 1, False, "int", lambda g: [g.integer()]),
    ("return redis.call('mget', unpack(KEYS))", 3, True, "str", lambda g: []),
    ("return {KEYS[1], ARGV[1], 3, {4, 'five', {}}, false, true, 2.9}", 1, True, "str",
     lambda g: [g.value()]),
    ("return redis.error_reply('boom ' .. ARGV[1])", 0, True, "str", lambda g: [g.pick(["a", "b"])]),
    ("return redis.status_reply('fine')", 0, True, "str", lambda g: []),
    ("return redis.pcall('nosuch', KEYS[1])", 1, True, "str", lambda g: []),
    ("return redis.call('lpush', KEYS[1])", 1, False, "list", lambda g: []),
    ("local n = 0 for _, k in ipairs(KEYS) do n = n + redis.call('exists', k) end return n", 2,
     True, "str", lambda g: []),
    ("redis.call('rpush', KEYS[1], unpack(ARGV)) return redis.call('lrange', KEYS[1], 0, 9)", 1,
     False, "list", lambda g: [g.member() for _ in range(g.count(1, 50))]),
    ("return redis.call('get', KEYS[1]) .. ARGV[1]", 1, True, "str", lambda g: ["x"]),
    ("return (", 0, True, "str", lambda g: []),
)


def script_body(seed: int, client: int, index: int) -> str:
    """Script bodies name the client (not the epoch): per-client SHAs that stay the same when
    the shrinker renames the keyspace."""
    return f"-- difftest s{seed} c{client}\n{SCRIPTS[index][0]}"


def _script_body(g: Gen, index: int) -> str:
    return script_body(g.seed, g.client, index)


def _script_sha(g: Gen, index: int) -> str:
    return hashlib.sha1(_script_body(g, index).encode()).hexdigest()


def _script_command(g: Gen, tag: str, index: int | None = None,
                    by_sha: bool | None = None) -> Command:
    """EVAL / EVAL_RO of one of SCRIPTS on keys of `tag`, or EVALSHA / EVALSHA_RO: mostly of a
    script the stream sent before (in EVAL or SCRIPT LOAD, on keys of any master, inside or
    outside a transaction, whatever became of it), sometimes of one it never sent (NOSCRIPT).

    A single server caches every script EVAL compiled, so EVALSHA then works on every key; the
    proxy gives the same answers by remembering the bodies it saw (README "Differences").
    """
    if by_sha is None:
        by_sha = g.chance(0.5 if g.sent_scripts else 0.04)
    if index is None:
        sent = sorted(g.sent_scripts)
        if by_sha and sent and g.chance(0.95):
            index = g.pick(sent)
        else:  # also EVALSHA of a script never sent yet: NOSCRIPT (its EVAL may follow)
            index = g.rng.randrange(len(SCRIPTS))
    _, numkeys, read_only, kind, make_args = SCRIPTS[index]
    keys = [g.key(kind, tag) for _ in range(numkeys)]
    if by_sha:
        name = "EVALSHA_RO" if read_only and g.chance(0.4) else "EVALSHA"
        return cmd(name, _script_sha(g, index), numkeys, *keys, *make_args(g))
    g.sent_scripts.add(index)
    name = "EVAL_RO" if read_only and g.chance(0.4) else "EVAL"
    return cmd(name, _script_body(g, index), numkeys, *keys, *make_args(g))


def _scripts_everywhere(g: Gen) -> list[Step]:
    """One script by EVAL (or SCRIPT LOAD) on a key of one master, then by EVALSHA (and
    EVALSHA_RO when read-only) on keys of every master: pipelined, one by one, or queued in
    transactions on another master's slot."""
    index = g.rng.randrange(len(SCRIPTS))
    first = g.tag_on_master(g.rng.randrange(3))
    if g.chance(0.2):
        g.sent_scripts.add(index)
        start = cmd("SCRIPT", "LOAD", _script_body(g, index))
    else:
        start = _script_command(g, first, index=index, by_sha=False)
    parts = [0, 1, 2]
    g.rng.shuffle(parts)
    shas = [_script_command(g, g.tag_on_master(part), index=index, by_sha=True)
            for part in parts for _ in range(g.rng.randint(1, 2))]
    steps: list[Step] = [Call(MAIN, (start,))]
    if g.chance(0.3):  # one server: 1 once EVAL compiled it (the proxy: every master's answer)
        steps.append(Call(MAIN, (cmd("SCRIPT", "EXISTS", _script_sha(g, index),
                                     _script_sha(g, g.rng.randrange(len(SCRIPTS)))),)))
    how = g.pick(["pipeline", "one-by-one", "multi"])
    if how == "pipeline":
        steps = [Call(MAIN, (start, *shas))] + steps[1:]
    elif how == "one-by-one":
        steps += [Call(MAIN, (c,)) for c in shas]
    else:  # queued in a transaction on one master's slot (the proxy queues them as EVAL)
        tag = g.tag_on_master(parts[0])
        body = [_script_command(g, tag, index=index, by_sha=True)
                for _ in range(g.rng.randint(1, 3))]
        if g.chance(0.5):
            body.insert(g.rng.randint(0, len(body)), slot_data(g, tag))
        steps.append(Call(MAIN, (cmd("MULTI"), *[_queued(c) for c in body],
                                 Command((b"EXEC",), inner=tuple(c.norm for c in body)))))
    return steps


def _library(g: Gen, lib: str, version: int) -> str:
    return "\n".join([
        f"#!lua name={lib}",
        f"redis.register_function('{lib}_get', function(keys, args) "
        f"return redis.call('get', keys[1]) end)",
        f"redis.register_function('{lib}_set', function(keys, args) "
        f"return redis.call('set', keys[1], args[1]) end)",
        f"redis.register_function{{function_name='{lib}_keys', callback=function(keys, args) "
        f"return #keys end, flags={{'no-writes'}}}}",
        f"redis.register_function{{function_name='{lib}_ver', callback=function(keys, args) "
        f"return {version} end, flags={{'no-writes'}}}}",
    ])


def _function_commands(g: Gen, tag: str) -> list[Command]:
    lib = g.space.lua_name(f"lib{g.rng.randrange(3)}")
    keys = [g.key("str", tag) for _ in range(g.count(1, 3))]
    return [g.run_one([
        lambda: cmd("FUNCTION", "LOAD", "REPLACE", _library(g, lib, g.rng.randrange(5))),
        lambda: cmd("FUNCTION", "LOAD", _library(g, lib, g.rng.randrange(5))),
        lambda: cmd("FCALL", f"{lib}_set", 1, keys[0], g.value()),
        lambda: cmd(g.pick(["FCALL", "FCALL_RO"]), f"{lib}_get", 1, keys[0]),
        lambda: cmd("FCALL_RO", f"{lib}_keys", len(keys), *keys),
        lambda: cmd("FCALL_RO", f"{lib}_set", 1, keys[0], "x"),
        lambda: cmd("FCALL", f"{lib}_ver", 0),
        lambda: cmd("FUNCTION", "DELETE", lib),
        lambda: cmd("FCALL", g.space.lua_name("nosuch"), 0),
    ]) for _ in range(g.count(1, 6))]


def scripting_op(g: Gen) -> Op:
    """EVAL/EVALSHA (and _RO) on keys of one slot each, of any master, SCRIPT LOAD/EXISTS,
    FUNCTION LOAD REPLACE, FCALL/FCALL_RO, FUNCTION DELETE, SCRIPT KILL and FUNCTION KILL
    (NOTBUSY: no script of ours runs long enough to be killable; the end-of-run kill check in
    killcheck.py kills a runaway one)."""
    tag = g.tag()
    variant = g.pick(["eval", "eval", "everywhere", "load", "functions", "functions", "kill"])
    if variant == "everywhere":
        return Op("scripting", tuple(_scripts_everywhere(g)))
    if variant == "eval":  # each command on a key of its own slot, often another master's
        commands = [_script_command(g, g.tag() if g.chance(0.5) else tag)
                    for _ in range(g.count(1, 8))]
    elif variant == "load":
        indexes = [g.rng.randrange(len(SCRIPTS)) for _ in range(g.count(1, 3))]
        never = hashlib.sha1(f"never {g.fresh_name('x')}".encode()).hexdigest()
        commands = [cmd("SCRIPT", "LOAD", _script_body(g, i)) for i in indexes]
        g.sent_scripts.update(indexes)
        commands.append(cmd("SCRIPT", "EXISTS", *[_script_sha(g, i) for i in indexes], never))
        commands += [_script_command(g, g.tag()) for _ in range(g.count(0, 3))]
    elif variant == "functions":
        commands = _function_commands(g, tag)
    else:
        commands = [cmd(g.pick(["SCRIPT", "FUNCTION"]), "KILL")]
    return Op("scripting", (Call(MAIN, tuple(commands)),))


# ---- blocking ---------------------------------------------------------------------------------


def _blocking_timeout(g: Gen) -> Command:
    """A blocking command on keys nothing ever writes: it times out on both sides."""
    tag = g.tag()
    void = [g.space.key(tag, f"void{i}") for i in range(3)]
    t = g.pick(BLOCK_TIMEOUTS)
    ms = str(int(float(t) * 1000))
    return g.run_one([
        lambda: cmd(g.pick(["BLPOP", "BRPOP"]), *void[:g.rng.randint(1, 3)], t, wait=float(t)),
        lambda: cmd("BLMOVE", void[0], void[1], "LEFT", "RIGHT", t, wait=float(t)),
        lambda: cmd("BRPOPLPUSH", void[0], void[1], t, wait=float(t)),
        lambda: cmd("BLMPOP", t, 2, void[0], void[1], "LEFT", "COUNT", 3, wait=float(t)),
        lambda: cmd(g.pick(["BZPOPMIN", "BZPOPMAX"]), void[0], t, wait=float(t)),
        lambda: cmd("BZMPOP", t, 1, void[0], "MIN", wait=float(t)),
        lambda: cmd("XREAD", "COUNT", 2, "BLOCK", ms, "STREAMS", void[0], g.pick(["$", "0-0"]),
                    wait=float(t)),
        lambda: cmd("XREADGROUP", "GROUP", "g", "c", "BLOCK", ms, "STREAMS", void[0], ">",
                    wait=float(t)),  # NOGROUP at once
        lambda: cmd("BLPOP", g.key("list", tag), t, wait=float(t)),  # may have data: no wait
        lambda: cmd("BLPOP", void[0], g.pick(["-1", "abc"])),
    ])


def _woken(g: Gen) -> list[Step]:
    """A waiter blocks on connection 1 (5 s timeout) until the main connection pushes. The
    proxy may forward the push before the waiter (they travel on different connections), so
    every variant gives the same reply in either order."""
    tag = g.tag()
    key, dst = g.fresh("wake", tag), g.fresh("wake", tag)
    t, w = WAKE_TIMEOUT_S, float(WAKE_TIMEOUT_S)
    variant = g.pick(["list", "list", "move", "mpop", "zset", "xread", "xreadgroup"])
    setup: list[Command] = []
    if variant == "list":
        wait = cmd(g.pick(["BLPOP", "BRPOP"]), key, g.space.key(tag, "void0"), t, wait=w)
        push = cmd(g.pick(["LPUSH", "RPUSH"]), key, *[g.member() for _ in range(g.count(1, 3))])
    elif variant == "move":
        wait = cmd("BLMOVE", key, dst, g.pick(["LEFT", "RIGHT"]), g.pick(["LEFT", "RIGHT"]), t, wait=w)
        push = cmd("RPUSH", key, g.member(), g.member())
    elif variant == "mpop":
        wait = cmd("BLMPOP", t, 1, key, g.pick(["LEFT", "RIGHT"]), "COUNT", g.count(1, 3), wait=w)
        push = cmd("RPUSH", key, *[g.member() for _ in range(g.count(1, 4))])
    elif variant == "zset":
        wait = cmd(g.pick(["BZPOPMIN", "BZPOPMAX"]), key, t, wait=w)
        push = cmd("ZADD", key, *as_args(*[[g.rng.randint(0, 9), g.member()]
                                           for _ in range(g.count(1, 3))]))
    elif variant == "xread":  # 0-0, not $: the push may reach the server first
        wait = cmd("XREAD", "BLOCK", t * 1000, "STREAMS", key, "0-0", wait=w)
        push = cmd("XADD", key, g.next_stream_id(key), "f", g.value())
    else:
        setup = [cmd("XGROUP", "CREATE", key, "g", "$", "MKSTREAM")]
        wait = cmd("XREADGROUP", "GROUP", "g", "c", "BLOCK", t * 1000, "STREAMS", key, ">", wait=w)
        push = cmd("XADD", key, g.next_stream_id(key), "f", g.value())
    steps: list[Step] = [Call(MAIN, tuple(setup))] if setup else []
    steps += [Send(SECOND, (wait,)), Sleep(0.1), Call(MAIN, (push,)), Read(SECOND),
              Call(MAIN, (cmd("LRANGE", dst, 0, -1), cmd("DEL", key, dst)))]
    return steps


def blocking_op(g: Gen) -> Op:
    if g.chance(0.5):
        return Op("blocking", (Call(MAIN, (_blocking_timeout(g),)),))
    return Op("blocking", tuple(_woken(g)))


# ---- pub/sub ----------------------------------------------------------------------------------


class _Subscriptions:
    """What the subscriber connection is subscribed to after the commands generated so far, as
    one Redis has it: to know how many replies each command produces and how many messages a
    PUBLISH delivers."""

    def __init__(self) -> None:
        self.channels: set[str] = set()
        self.patterns: set[str] = set()
        self.shard: set[str] = set()

    def subscribed(self) -> bool:
        return bool(self.channels or self.patterns or self.shard)

    def receivers(self, channel: str) -> int:
        """PUBLISH's count: the channel subscription plus every matching pattern (generated
        patterns use only *, ? and [..], where fnmatch and Redis's glob agree)."""
        return (channel in self.channels) + sum(fnmatch.fnmatchcase(channel, p)
                                                for p in self.patterns)

    def command(self, name: str, *names: str) -> Command:
        """A subscriber command, its reply count from the state, which it then updates.
        (P|S)UNSUBSCRIBE without arguments answer one frame per subscription dropped (in the
        server's hash order: compared as a multiset of channels with the counts in order), or
        one frame with a nil channel when there was none. Redis stays in subscribed mode while
        any of the three kinds is left, which only decides what PING and data commands answer,
        not how many replies they give."""
        upper = name.upper()
        if upper == "RESET":
            self.channels, self.patterns, self.shard = set(), set(), set()
            return cmd(name)
        current = {"SUBSCRIBE": self.channels, "UNSUBSCRIBE": self.channels,
                   "PSUBSCRIBE": self.patterns, "PUNSUBSCRIBE": self.patterns,
                   "SSUBSCRIBE": self.shard, "SUNSUBSCRIBE": self.shard}.get(upper)
        if current is None:  # PING, a data command: one reply whatever the mode
            return cmd(name, *names)
        if upper.endswith("UNSUBSCRIBE"):
            if not names:
                replies = max(1, len(current))
                current.clear()
                return cmd(name, replies=replies, norm="unsubscribed" if replies > 1 else EXACT)
            current.difference_update(names)
            return cmd(name, *names, replies=len(names))
        if not names:  # wrong number of arguments: one error
            return cmd(name)
        current.update(names)
        return cmd(name, *names, replies=len(names))


class _PubSubNames:
    """The channels, patterns and shard channels of one pub/sub op. After a RESET the op moves
    on to new names: the proxy closes the reset subscriber's node connections afterwards, and a
    node that has not yet seen that close still counts those subscriptions in PUBLISH's reply."""

    def __init__(self, g: Gen) -> None:
        self.g = g
        self.op_name = g.fresh_name("p")
        self.generation = 0
        self.channel_count = g.rng.randint(1, 4)
        # Shard channels on every master (a tag in each third of the slots), a few per tag.
        self.shard_tags = [g.tag_on_master(part) for part in range(3)]
        self.shard_per_tag = g.rng.randint(1, 3)

    @property
    def prefix(self) -> str:
        return self.op_name if self.generation == 0 else f"{self.op_name}r{self.generation}"

    def renew(self) -> None:
        self.generation += 1

    def channels(self) -> list[str]:
        return [self.g.space.channel(f"{self.prefix}:{i}") for i in range(self.channel_count)]

    def unused_channel(self) -> str:
        return self.g.space.channel(f"{self.prefix}:none")

    def pattern(self) -> str:
        return self.g.space.channel(f"{self.prefix}:" + self.g.pick(["*", "?", "1*", "[02]", "x*"]))

    def shard_channels(self, tag: str) -> list[str]:
        return [self.g.space.key(tag, f"{self.prefix}:s{i}") for i in range(self.shard_per_tag)]

    def all_shard_channels(self) -> list[str]:
        return [c for tag in self.shard_tags for c in self.shard_channels(tag)]


def _some(g: Gen, items: Sequence[str], most: int) -> list[str]:
    """1 to `most` of `items`, in random order, sometimes with a repeat."""
    picked = g.rng.sample(list(items), min(len(items), g.rng.randint(1, most)))
    if g.chance(0.15):
        picked.append(g.pick(picked))
    return picked


def _subscriber_command(g: Gen, subs: _Subscriptions, names: _PubSubNames) -> Command:
    tag = g.pick(names.shard_tags)
    held = lambda current: sorted(current) or names.channels()  # noqa: E731
    return g.run_one([
        lambda: subs.command("SUBSCRIBE", *_some(g, names.channels(), 3)),
        lambda: subs.command("SUBSCRIBE", *_some(g, names.channels(), 3)),
        lambda: subs.command("PSUBSCRIBE", *[names.pattern() for _ in range(g.rng.randint(1, 2))]),
        lambda: subs.command("SSUBSCRIBE", *_some(g, names.shard_channels(tag), 3)),
        lambda: subs.command("SSUBSCRIBE", *_some(g, names.shard_channels(tag), 3)),
        lambda: subs.command("UNSUBSCRIBE", *_some(g, held(subs.channels), 2)),
        lambda: subs.command("UNSUBSCRIBE"),
        lambda: subs.command("PUNSUBSCRIBE",
                             *g.pick([[], sorted(subs.patterns)[:1] or [names.pattern()]])),
        lambda: subs.command("SUNSUBSCRIBE", *_some(g, names.shard_channels(tag), 2)),
        lambda: subs.command("SUNSUBSCRIBE"),
        lambda: subs.command(g.pick(["PING", "ping"]), *g.pick([[], [g.value()]])),
        lambda: _normal_command(g),
        lambda: subs.command(g.pick(["SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE"])),  # arity error
        lambda: subs.command("RESET") if g.chance(0.3) else subs.command("PING"),
    ])


def _normal_command(g: Gen) -> Command:
    """A command that is refused in subscribed mode and runs normally otherwise."""
    tag = g.tag()
    return g.run_one([
        lambda: cmd("GET", g.key("str", tag)),
        lambda: cmd("INCR", g.space.key(tag, "psub-n")),
        lambda: cmd("ECHO", g.value()),
        lambda: cmd("EXISTS", g.key("str", tag), g.key("str", tag)),
    ])


def _publish(g: Gen, subs: _Subscriptions, names: _PubSubNames) -> list[Step]:
    """One PUBLISH or SPUBLISH from the main connection, then the messages it delivered are
    read on the subscriber before anything else is sent there (a message relayed by the proxy
    must not race the subscriber's next reply)."""
    if g.chance(0.65):
        channel = g.pick(names.channels() + [names.unused_channel()])
        publish, count = cmd("PUBLISH", channel, g.value()), subs.receivers(channel)
    else:
        channel = g.pick(names.all_shard_channels())
        publish, count = cmd("SPUBLISH", channel, g.value()), int(channel in subs.shard)
    return [Call(MAIN, (publish,))] + ([Receive(SUBSCRIBER, count)] if count else [])


def pubsub_op(g: Gen) -> Op:
    """The subscriber (connection 2) sends pipelines of SUBSCRIBE / PSUBSCRIBE / SSUBSCRIBE (shard
    channels on every master), their unsubscribes with and without arguments, PING, a data
    command (refused while subscribed, run normally right after the last unsubscribe) and
    RESET; between pipelines the main connection publishes and the messages are compared. It
    ends unsubscribed: everything unsubscribed in one pipeline with a command right behind,
    RESET, or a close."""
    names = _PubSubNames(g)
    subs = _Subscriptions()
    steps: list[Step] = []
    for _ in range(g.rng.randint(1, 5)):
        pipeline: list[Command] = []
        for _ in range(g.count(1, 8) if g.chance(0.7) else 1):
            command = _subscriber_command(g, subs, names)
            pipeline.append(command)
            if command.name == "RESET":
                names.renew()
            if "UNSUBSCRIBE" in command.name and not subs.subscribed() and g.chance(0.6):
                pipeline.append(g.pick([cmd("PING"), _normal_command(g)]))  # back in normal mode
        steps.append(Call(SUBSCRIBER, tuple(pipeline)))
        for _ in range(g.count(0, 4)):
            steps += _publish(g, subs, names)
    ending = g.pick(["unsubscribe", "unsubscribe", "unsubscribe", "reset", "close"])
    if ending == "close":
        steps.append(Close(SUBSCRIBER))
        return Op("pubsub", tuple(steps))
    if ending == "reset":
        last = [subs.command("RESET")]
    else:
        last = _unsubscribe_all(g, subs)
    last += g.pick([[cmd("PING")], [_normal_command(g)], [cmd("PING"), _normal_command(g)],
                    [cmd("PING", g.value())]])
    assert not subs.subscribed()
    if g.chance(0.8):
        steps.append(Call(SUBSCRIBER, tuple(last)))
    else:  # one by one
        steps += [Call(SUBSCRIBER, (c,)) for c in last]
    return Op("pubsub", tuple(steps))


def _unsubscribe_all(g: Gen, subs: _Subscriptions) -> list[Command]:
    """The unsubscribes that leave nothing subscribed, in random order: each kind without
    arguments (also when there is nothing of that kind), or with the exact list held."""
    kinds = [("UNSUBSCRIBE", subs.channels), ("PUNSUBSCRIBE", subs.patterns),
             ("SUNSUBSCRIBE", subs.shard)]
    g.rng.shuffle(kinds)
    commands: list[Command] = []
    for name, current in kinds:
        if not current and g.chance(0.5):
            continue
        if name == "SUNSUBSCRIBE" and current and g.chance(0.4):
            # with arguments: one command per slot (several slots in one is CROSSSLOT)
            by_tag: dict[str, list[str]] = {}
            for channel in sorted(current):
                by_tag.setdefault(channel[channel.index("{"):channel.index("}")], []).append(channel)
            commands += [subs.command(name, *channels) for channels in by_tag.values()]
        elif name != "SUNSUBSCRIBE" and current and g.chance(0.3):
            commands.append(subs.command(name, *sorted(current)))
        else:
            commands.append(subs.command(name))
    return commands


# ---- SCAN ---------------------------------------------------------------------------------------


def _scan(*args: object, cursor_at: int, pairs: bool = False) -> ScanAll:
    return ScanAll(MAIN, tuple(to_bytes(a) for a in args), cursor_at, pairs)


def scan_op(g: Gen) -> Op:
    """Full SCAN iterations over the client's own prefix (random COUNT, sometimes TYPE), KEYS on
    the prefix, and full HSCAN/SSCAN/ZSCAN iterations of one key."""
    prefix = g.space.key_prefix
    tag = g.tag()
    count = g.pick([50, 100, 255, 256, 257, 1000, 1024, g.rng.randint(50, 2000)])
    small_count = g.count(1, 300)
    match = g.pick([prefix + "*", f"{prefix}{{{tag}}}:*", prefix + "*str*"])
    kind = g.pick([[], ["TYPE", g.pick(["string", "hash", "list", "set", "zset", "stream"])]])
    step = g.run_one([
        lambda: _scan("SCAN", 0, "MATCH", match, "COUNT", count, *kind, cursor_at=1),
        lambda: Call(MAIN, (cmd("KEYS", match, norm="sorted"),)),
        lambda: _scan("HSCAN", g.key("hash", tag), 0, "COUNT", small_count, cursor_at=2, pairs=True),
        lambda: _scan("SSCAN", g.key("set", tag), 0, "COUNT", small_count,
                      "MATCH", g.pick(["*", "m1*", "*5"]), cursor_at=2),
        lambda: _scan("ZSCAN", g.key("zset", tag), 0, "COUNT", small_count, cursor_at=2, pairs=True),
    ])
    return Op("scan", (step,))


# ---- big values -------------------------------------------------------------------------------

BIG_KEYS = 4


def bigvalues_op(g: Gen) -> Op:
    """Values of 1 to 6 MiB (and empty ones) on a few fixed keys per client, so memory stays
    bounded: SET/GET/APPEND/GETRANGE/SETRANGE, a big hash field, a two-element list of big
    values, MGET of all big keys across slots, pipelines of them."""
    big = [g.space.key(g.tags[i], f"big{i}") for i in range(BIG_KEYS)]
    k = g.pick(big)
    hbig, lbig = g.space.key(g.tags[0], "hbig"), g.space.key(g.tags[1], "lbig")
    commands = g.run_one([
        lambda: [cmd("SET", k, g.value(big=True)), cmd("STRLEN", k)],
        lambda: [cmd("GET", k)],
        lambda: [cmd("SET", k, b""), cmd("GET", k), cmd("STRLEN", k)],
        lambda: [cmd("GETRANGE", k, *g.pick([(0, 100), (-100, -1), (1 << 20, (1 << 20) + 100),
                                              (0, -1)]))],
        lambda: [cmd("APPEND", k, g.value(big=g.chance(0.3))), cmd("STRLEN", k)],
        lambda: [cmd("SETRANGE", k, g.rng.randint(0, 6 << 20), g.value())],
        lambda: [cmd("HSET", hbig, f"f{g.rng.randrange(3)}", g.value(big=True)),
                 cmd("HSTRLEN", hbig, "f0"), cmd("HGET", hbig, f"f{g.rng.randrange(3)}")],
        lambda: [cmd("RPUSH", lbig, g.value(big=True)), cmd("LTRIM", lbig, -2, -1),
                 cmd("LRANGE", lbig, 0, -1)],
        lambda: [cmd("MGET", *big)],
        lambda: [cmd("GET", g.pick(big)) for _ in range(g.count(2, 8))],
        lambda: [cmd("DEL", k)],
    ])
    if any(c.args[0] == b"APPEND" for c in commands):  # keep APPEND from growing without bound
        commands.append(cmd("EVAL", "if redis.call('strlen', KEYS[1]) > 8388608 then "
                            "return redis.call('del', KEYS[1]) end return 0", 1, k))
    return Op("bigvalues", (Call(MAIN, tuple(commands)),))


# ---- clients that vanish ----------------------------------------------------------------------


def vanish_op(g: Gen) -> Op:
    """A client that goes away mid-request (half a command), mid-reply (a huge MGET or a
    pipeline of big GETs it never reads), inside MULTI, blocked, subscribed, watching, or by
    QUIT. Never compared; the main connection's next command must still be answered."""
    tag = g.tag()
    half = lambda c: c.wire()[:g.rng.randint(1, len(c.wire()) - 1)]  # noqa: E731
    data = g.run_one([
        lambda: half(cmd("SET", g.key("str", tag), g.value(big=g.chance(0.3)))),
        lambda: half(cmd("MSET", *as_args(*[[g.multikey(), g.small()]
                                            for _ in range(g.count(2, 2000))]))),
        lambda: cmd("MGET", *[g.multikey() for _ in range(g.count(1000, 10000))]).wire(),
        lambda: b"".join(cmd("GET", g.space.key(g.tags[i % BIG_KEYS], f"big{i % BIG_KEYS}")).wire()
                         for i in range(g.count(1, 16))),
        lambda: cmd("MULTI").wire() + b"".join(slot_data(g, tag).wire()
                                               for _ in range(g.count(0, 300))),
        lambda: cmd("BLPOP", g.space.key(tag, "void0"), WAKE_TIMEOUT_S).wire(),
        lambda: cmd("SUBSCRIBE", g.space.channel(g.fresh_name("gone"))).wire(),
        lambda: cmd("WATCH", g.key("str", tag)).wire(),
    ])
    steps: list[Step] = [Vanish(VANISHING, data)]
    if g.chance(0.2):
        steps = [Call(VANISHING, (cmd("QUIT"),)), Close(VANISHING)]
    steps.append(Call(MAIN, (cmd("PING"),)))
    return Op("vanish", tuple(steps))


# --------------------------------------------------------------------------------------------
# Families and streams
# --------------------------------------------------------------------------------------------

OpMaker = Callable[[Gen], Op]

# name -> (maker, weight). Weights balance coverage against cost (big values, deep pipelines,
# full scans and 5000-command transactions are slow on two cores).
FAMILIES: dict[str, tuple[OpMaker, float]] = {
    **{name: (data_op(name), w) for name, w in (("strings", 6), ("hashes", 4), ("lists", 4),
                                                 ("sets", 4), ("zsets", 4), ("streams", 4),
                                                 ("bitmaps", 2), ("hll", 2), ("expiry", 3),
                                                 ("misc", 3))},
    "pipeline": (pipeline_op, 2),
    "multi": (multi_op, 4),
    "multikey": (multikey_op, 4),
    "scripting": (scripting_op, 3),
    "blocking": (blocking_op, 3),
    "pubsub": (pubsub_op, 2),
    "scan": (scan_op, 0.7),
    "bigvalues": (bigvalues_op, 0.7),
    "vanish": (vanish_op, 1),
}
SOLO_FAMILY = "global"  # the solo phase at the end (runner.py), not part of client streams
ALL_FAMILIES = (*sorted(FAMILIES), SOLO_FAMILY)


def stream(seed: int, client: int, families: Sequence[str]) -> Iterator[Op]:
    """The endless op stream of one client: a function of (seed, client, families) only."""
    g = Gen(seed, client, Space(seed, client))
    names = sorted(f for f in families if f in FAMILIES)
    weights = [FAMILIES[f][1] for f in names]
    while True:
        yield FAMILIES[g.rng.choices(names, weights)[0]][0](g)


def take(seed: int, client: int, families: Sequence[str], count: int) -> list[Op]:
    """The first `count` ops of a stream."""
    ops = stream(seed, client, families)
    return [next(ops) for _ in range(count)]
