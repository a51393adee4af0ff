#!/usr/bin/python3
"""python3-redis (Debian's redis-py) against one target: the client-conformance scenarios of the
node suites, with redis-py's own APIs (pipelines, transactions with WATCH, PubSub, scan_iter,
Script objects, thread-shared connection pools).

Run: REDIS_HOST=127.0.0.1 REDIS_PORT=6379 /usr/bin/python3 python/test_redis_py.py [--results FILE]
With --results, every test's outcome and summary of what it read back is written as JSON lines
(the format of node/reporter.mjs) for run_clients.py, which compares them between targets.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import json
import os
import sys
import threading
import time
import unittest
from typing import Any, Callable, Iterable, Optional

import redis

HOST = os.environ.get("REDIS_HOST", "127.0.0.1")
PORT = int(os.environ.get("REDIS_PORT", "6379"))
RUN_ID = os.environ.get("CLIENTS_RUN_ID") or f"{int(time.time()):x}-{os.getpid()}"
BASE = f"cc:{RUN_ID}:redis-py"
SOCKET_TIMEOUT_S = 30.0  # bounds every reply: a hung one fails the test instead of stalling
MiB = 1024 * 1024
SLOT_COUNT = 16384

SUMMARIES: dict[str, Any] = {}  # test name -> summary, for --results


# ---- keys and slots -----------------------------------------------------------------------------

def key(name: str) -> str:
    return f"{BASE}:{name}"


def many(name: str, n: int) -> list[str]:
    """n keys spread over many slots."""
    return [f"{BASE}:{name}:{i}" for i in range(n)]


def tagged(tag: str, name: str) -> str:
    """A key in the slot of hash tag {<base>:<tag>}."""
    return f"{{{BASE}:{tag}}}:{name}"


def channel(name: str) -> str:
    return f"{BASE}:ch:{name}"


def _crc16(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
        crc &= 0xFFFF
    return crc


def key_slot(name: str) -> int:
    data = name.encode()
    start = data.find(b"{")
    if start != -1:
        end = data.find(b"}", start + 1)
        if end > start + 1:
            data = data[start + 1:end]
    return _crc16(data) % SLOT_COUNT


def distinct_slots(names: Iterable[str]) -> int:
    return len({key_slot(n) for n in names})


def digest(value: Any) -> str:
    data = value if isinstance(value, bytes) else json.dumps(value).encode()
    return hashlib.sha1(data).hexdigest()[:16]


def big_text(size: int, seed: str) -> str:
    """Deterministic printable text of `size` bytes."""
    import base64
    chunk = base64.b64encode(hashlib.sha256(seed.encode()).digest()).decode()
    return (chunk * (size // len(chunk) + 1))[:size]


def binary_value(size: int, seed: int) -> bytes:
    """Deterministic bytes with every byte value (\\r, \\n and 0 included)."""
    return bytes((i * 131 + seed * 17 + (i >> 8)) & 0xFF for i in range(size))


def wait_for(pred: Callable[[], Any], timeout: float, what: str, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def spin_lua(seconds: str) -> str:
    """Lua that spins, read-only, for `seconds` (an argument expression), then returns
    'finished': the long-running script an operator stops with SCRIPT KILL / FUNCTION KILL."""
    return ("local start = redis.call('TIME')\nwhile true do\n"
            f"  if redis.call('TIME')[1] - start[1] >= tonumber({seconds}) then return 'finished' end\nend")


def spin_library(name: str) -> str:
    """A FUNCTION library with one function <name>_spin (1 key, the seconds as argument)."""
    return (f"#!lua name={name}\nredis.register_function{{function_name='{name}_spin', "
            f"callback=function(keys, args)\n{spin_lua('args[1]')}\nend, flags={{'no-writes'}}}}")


LIBRARY = "".join(ch if ch.isalnum() else "_" for ch in BASE)  # unique per run and suite


# ---- the tests ----------------------------------------------------------------------------------

class RedisPyConformance(unittest.TestCase):
    """Each test's docstring is its name in the results (the same names as the node suites)."""

    def client(self, decode: bool = True, **kwargs: Any) -> redis.Redis:
        """A new client, closed (with its pool) when the test ends."""
        kwargs.setdefault("socket_timeout", SOCKET_TIMEOUT_S)
        c = redis.Redis(host=HOST, port=PORT, decode_responses=decode, socket_connect_timeout=5,
                        **kwargs)
        self.addCleanup(c.connection_pool.disconnect)
        return c

    def record(self, summary: Any) -> None:
        SUMMARIES[self.shortDescription()] = summary

    def assert_list_equal(self, actual: list, expected: list, what: str) -> None:
        """Reports the first difference only (a full diff of 10k items is noise)."""
        for i in range(max(len(actual), len(expected))):
            got = actual[i] if i < len(actual) else "<missing>"
            want = expected[i] if i < len(expected) else "<missing>"
            if got != want:
                self.fail(f"{what}: item {i} of {len(actual)} (expected {len(expected)}) is "
                          f"{str(got)[:200]}, expected {str(want)[:200]}")

    def wait_until_blocked(self, observer: redis.Redis) -> None:
        wait_for(lambda: observer.info("clients")["blocked_clients"] >= 1, 5.0,
                 "the blocking command to be blocked on the server")

    def block_then_wake(self, blocking_call: Callable[[redis.Redis], Any],
                        wake: Callable[[redis.Redis], Any]) -> Any:
        """Runs blocking_call on its own client in a thread, waits until the server reports it
        blocked, runs wake on another client, returns the blocking call's reply."""
        blocker, other = self.client(), self.client()
        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            reply = pool.submit(blocking_call, blocker)
            self.wait_until_blocked(other)
            wake(other)
            value = reply.result(timeout=10)
        self.assertLess(time.monotonic() - started, 9.0, "woken by the push, not by its timeout")
        return value

    # ---- connecting ---------------------------------------------------------------------------

    def test_connection_options(self) -> None:
        """connection options: client name and database 0"""
        c = self.client(client_name="cc-redis-py", db=0)
        self.assertEqual(c.client_getname(), "cc-redis-py")
        self.assertTrue(c.set(key("connect"), "named"))
        self.assertEqual(c.get(key("connect")), "named")
        self.record({"name": "cc-redis-py"})

    # ---- pipelines and multi-key commands -----------------------------------------------------

    def test_pipeline(self) -> None:
        """pipeline of 12000 commands across slots"""
        c = self.client()
        keys = many("pipe", 5000)
        counter = key("pipe:counter")
        pipe = c.pipeline(transaction=False)
        for i, k in enumerate(keys):
            pipe.set(k, f"value-{i}")
        for k in keys:
            pipe.get(k)
        for i in range(2000):
            pipe.incrby(counter, i % 7)
        values = pipe.execute()
        self.assertEqual(len(values), 12000)
        self.assertTrue(all(v is True for v in values[:5000]))
        self.assert_list_equal(values[5000:10000], [f"value-{i}" for i in range(5000)], "GET replies")
        expected_counter = sum(i % 7 for i in range(2000))
        self.assertEqual(values[-1], expected_counter)
        self.record({"commands": len(values), "slots": distinct_slots(keys) > 3000,
                     "counter": expected_counter, "reads": digest(values[5000:10000])})

    def check_multi_key(self, count: int) -> None:
        c = self.client()
        keys = many(f"multi{count}", count)
        missing = key(f"multi{count}:missing")
        self.assertGreater(distinct_slots(keys), count / 2, "keys must spread over many slots")
        self.assertTrue(c.mset({k: f"v{i}" for i, k in enumerate(keys)}))
        half = count // 2  # a missing key in the middle reads as None
        probe = keys[:half] + [missing] + keys[half:]
        expected = [f"v{i}" for i in range(half)] + [None] + [f"v{i}" for i in range(half, count)]
        self.assert_list_equal(c.mget(probe), expected, "MGET")
        self.assertEqual(c.exists(*probe), count)
        self.assertEqual(c.delete(*probe), count)
        self.assert_list_equal(c.mget(keys), [None] * count, "MGET after DEL")
        self.record({"count": count, "read": digest(expected), "deleted": count})

    def test_multi_key_255(self) -> None:
        """MSET/MGET/EXISTS/DEL of 255 keys across slots"""
        self.check_multi_key(255)

    def test_multi_key_256(self) -> None:
        """MSET/MGET/EXISTS/DEL of 256 keys across slots"""
        self.check_multi_key(256)

    def test_multi_key_3000(self) -> None:
        """MSET/MGET/EXISTS/DEL of 3000 keys across slots"""
        self.check_multi_key(3000)

    def test_threads_sharing_a_pool(self) -> None:
        """threads sharing a connection pool: 8 x 1000 calls"""
        c = self.client()
        counter = key("threads:counter")

        def work(thread: int) -> list:
            names = [key(f"threads:{thread}:{i}") for i in range(500)]
            for i, name in enumerate(names):
                c.set(name, f"{thread}-{i}")
                c.incr(counter)
            return c.mget(names)

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            results = list(pool.map(work, range(8)))
        for thread, values in enumerate(results):
            self.assert_list_equal(values, [f"{thread}-{i}" for i in range(500)], f"thread {thread}")
        self.assertEqual(c.get(counter), "4000")
        self.record({"threads": 8, "counter": 4000, "reads": digest(results)})

    # ---- transactions -------------------------------------------------------------------------

    def test_multi_exec(self) -> None:
        """MULTI/EXEC: replies in order, a failing command does not abort the rest"""
        c = self.client()
        counter, text, lst = (tagged("tx", n) for n in ("counter", "text", "list"))
        pipe = c.pipeline(transaction=True)
        pipe.set(counter, "1").incr(counter).set(text, "abc").incr(text)
        pipe.lpush(lst, "a", "b").lrange(lst, 0, -1).get(counter)
        replies = pipe.execute(raise_on_error=False)
        self.assertEqual(len(replies), 7)
        self.assertIsInstance(replies[3], redis.ResponseError)
        self.assertIn("not an integer", str(replies[3]))
        plain = [("error" if isinstance(r, Exception) else r) for r in replies]
        self.assertEqual(plain, [True, 2, True, "error", 2, ["b", "a"], "2"])
        self.record({"replies": plain})

    def check_xadd_transaction(self, count: int) -> None:
        c = self.client()
        stream = tagged(f"xtx{count}", "stream")
        pipe = c.pipeline(transaction=True)
        for i in range(count):
            pipe.xadd(stream, {"i": str(i)})
        ids = pipe.execute()
        self.assertEqual(len(ids), count)
        self.assertEqual(len(set(ids)), count, "every XADD got its own id")
        self.assertEqual(c.xlen(stream), count)
        entries = c.xrange(stream)
        self.assert_list_equal([i for i, _ in entries], ids, "XRANGE ids")
        self.assert_list_equal([f["i"] for _, f in entries], [str(i) for i in range(count)],
                               "XRANGE fields")
        self.record({"count": count, "xlen": count})

    def test_xadd_transaction_255(self) -> None:
        """MULTI/EXEC with 255 XADDs"""
        self.check_xadd_transaction(255)

    def test_xadd_transaction_256(self) -> None:
        """MULTI/EXEC with 256 XADDs"""
        self.check_xadd_transaction(256)

    def test_xadd_transaction_300(self) -> None:
        """MULTI/EXEC with 300 XADDs"""
        self.check_xadd_transaction(300)

    def test_xadd_transaction_1000(self) -> None:
        """MULTI/EXEC with 1000 XADDs"""
        self.check_xadd_transaction(1000)

    def test_watch_conflict(self) -> None:
        """WATCH: a concurrent write makes EXEC fail with WatchError"""
        c, other = self.client(), self.client()
        k = key("watched")
        c.set(k, "initial")
        with c.pipeline() as pipe:
            pipe.watch(k)
            self.assertEqual(pipe.get(k), "initial")  # immediate mode after WATCH
            other.set(k, "from-other")
            pipe.multi()
            pipe.set(k, "from-tx")
            with self.assertRaises(redis.WatchError):
                pipe.execute()
        self.assertEqual(c.get(k), "from-other")

        def update(pipe: redis.client.Pipeline) -> None:  # no conflict: EXEC runs
            pipe.get(k)
            pipe.multi()
            pipe.set(k, "from-tx")
            pipe.get(k)

        self.assertEqual(c.transaction(update, k), [True, "from-tx"])
        self.assertEqual(other.get(k), "from-tx")
        self.record({"conflict": "WatchError", "afterConflict": "from-other", "final": "from-tx"})

    # ---- pub/sub ------------------------------------------------------------------------------

    def read_messages(self, pubsub: redis.client.PubSub, count: int) -> list:
        """Reads `count` messages (bounded in time), as (channel, data) pairs."""
        received: list = []
        deadline = time.monotonic() + 10.0
        while len(received) < count and time.monotonic() < deadline:
            message = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
            if message:
                received.append((message["channel"], message["data"]))
        self.assertEqual(len(received), count, f"received {len(received)} of {count} messages")
        return received

    def expect_confirmation(self, pubsub: redis.client.PubSub, kind: str, count: int) -> None:
        message = wait_for(lambda: pubsub.get_message(timeout=0.5), 5.0, f"{kind} confirmation")
        self.assertEqual((message["type"], message["data"]), (kind, count))

    def test_pubsub(self) -> None:
        """pub/sub: SUBSCRIBE and PSUBSCRIBE receive every message in order"""
        subscriber, publisher = self.client(), self.client()
        plain, pattern = channel("plain"), channel("pattern:*")
        pattern_channels = [channel("pattern:a"), channel("pattern:b")]
        pubsub = subscriber.pubsub()
        self.addCleanup(pubsub.close)
        pubsub.subscribe(plain)
        self.expect_confirmation(pubsub, "subscribe", 1)
        pubsub.psubscribe(pattern)
        self.expect_confirmation(pubsub, "psubscribe", 2)

        expected = []
        for i in range(300):
            self.assertEqual(publisher.publish(plain, f"m{i}"), 1)
            expected.append((plain, f"m{i}"))
            self.assertEqual(publisher.publish(pattern_channels[i % 2], f"p{i}"), 1)
            expected.append((pattern_channels[i % 2], f"p{i}"))
        self.assert_list_equal(self.read_messages(pubsub, 600), expected, "messages")

        pubsub.unsubscribe(plain)
        pubsub.punsubscribe(pattern)
        self.expect_confirmation(pubsub, "unsubscribe", 1)
        self.expect_confirmation(pubsub, "punsubscribe", 0)
        self.assertEqual(publisher.publish(plain, "after"), 0)
        self.record({"messages": 300, "pmessages": 300, "afterUnsubscribe": 0})

    def test_sharded_pubsub(self) -> None:
        """sharded pub/sub: SSUBSCRIBE to channels of several slots"""
        # python3-redis 4.3 has no ssubscribe(): use its connection API, as an application would.
        publisher = self.client()
        conn = redis.Connection(host=HOST, port=PORT, socket_timeout=10.0, decode_responses=True)
        self.addCleanup(conn.disconnect)
        channels = [channel(s) for s in ("s1", "s2", "s3")]
        self.assertEqual(distinct_slots(channels), 3)
        confirmations = []
        for ch in channels:
            conn.send_command("SSUBSCRIBE", ch)
            confirmations.append(conn.read_response())
        sent = []
        for i in range(150):
            ch = channels[i % 3]
            self.assertEqual(publisher.execute_command("SPUBLISH", ch, f"s{i}"), 1)
            sent.append(["smessage", ch, f"s{i}"])
        received = [conn.read_response() for _ in range(150)]
        for ch in channels:
            self.assertEqual([m for m in received if m[1] == ch], [m for m in sent if m[1] == ch])
        # Like a single server: each confirmation counts every shard channel of the connection.
        self.assertEqual(confirmations, [["ssubscribe", ch, i + 1] for i, ch in enumerate(channels)])
        self.record({"smessages": len(received)})

    def test_pipelined_subscribe(self) -> None:
        """pub/sub: commands pipelined behind SUBSCRIBE and UNSUBSCRIBE are answered in order"""
        c = self.client()
        k, ch = key("pipesub"), channel("pipesub")
        shard_channels = [channel(f"pipesub:{s}") for s in ("s1", "s2", "s3")]
        c.set(k, "value")
        # redis-py's connection API: send everything first, then read the replies in order.
        conn = redis.Connection(host=HOST, port=PORT, socket_timeout=10.0, decode_responses=True)
        self.addCleanup(conn.disconnect)
        commands = [("SUBSCRIBE", ch), ("UNSUBSCRIBE", ch), ("GET", k), ("PING",),
                    *(("SSUBSCRIBE", s) for s in shard_channels), ("SUNSUBSCRIBE",), ("GET", k)]
        conn.send_packed_command(conn.pack_commands(commands))
        replies = [conn.read_response() for _ in range(4 + 3 + 3 + 1)]
        self.assertEqual(replies[:4], [["subscribe", ch, 1], ["unsubscribe", ch, 0], "value", "PONG"])
        self.assertEqual(replies[4:7], [["ssubscribe", s, i + 1] for i, s in enumerate(shard_channels)])
        self.assertEqual(sorted(r[1] for r in replies[7:10]), sorted(shard_channels))
        self.assertEqual([r[0] for r in replies[7:10]], ["sunsubscribe"] * 3)
        self.assertEqual(replies[10], "value")
        self.record({"replies": len(replies)})

    # ---- blocking commands --------------------------------------------------------------------

    def test_blpop(self) -> None:
        """BLPOP woken by another client"""
        lst = key("blpop")
        reply = self.block_then_wake(lambda c: c.blpop(lst, 10), lambda c: c.rpush(lst, "x", "y"))
        self.assertEqual(reply, (lst, "x"))
        self.record({"popped": reply[1]})

    def test_brpop(self) -> None:
        """BRPOP woken by another client"""
        lst = key("brpop")
        reply = self.block_then_wake(lambda c: c.brpop(lst, 10), lambda c: c.rpush(lst, "x", "y"))
        self.assertEqual(reply, (lst, "y"))
        self.record({"popped": reply[1]})

    def test_blmove(self) -> None:
        """BLMOVE woken by another client"""
        src, dst = tagged("blmove", "src"), tagged("blmove", "dst")
        moved = self.block_then_wake(lambda c: c.blmove(src, dst, 10, "LEFT", "RIGHT"),
                                     lambda c: c.rpush(src, "m1", "m2"))
        self.assertEqual(moved, "m1")
        c = self.client()
        self.assertEqual(c.lrange(dst, 0, -1), ["m1"])
        self.assertEqual(c.lrange(src, 0, -1), ["m2"])
        self.record({"moved": moved})

    def test_blpop_timeout(self) -> None:
        """BLPOP on an empty list times out with null"""
        c = self.client()
        started = time.monotonic()
        self.assertIsNone(c.blpop(key("blpop:empty"), 1))
        self.assertGreaterEqual(time.monotonic() - started, 0.9, "waited for its timeout")
        self.record({"reply": None})

    # ---- Lua ----------------------------------------------------------------------------------

    def test_eval_evalsha(self) -> None:
        """EVAL, SCRIPT LOAD and EVALSHA"""
        c = self.client()
        name, counter = tagged("lua", "name"), tagged("lua", "counter")
        # The key base (run id and suite) in a comment makes the script new to the server.
        script = (f"-- {BASE}\nredis.call('SET', KEYS[1], ARGV[1])\n"
                  "return {KEYS[1], redis.call('GET', KEYS[1]), redis.call('INCRBY', KEYS[2], ARGV[2])}")
        self.assertEqual(c.eval(script, 2, name, counter, "hello", 5), [name, "hello", 5])
        sha = c.script_load(script)
        self.assertEqual(sha, hashlib.sha1(script.encode()).hexdigest())
        self.assertEqual(c.script_exists(sha, "0" * 40), [True, False])
        self.assertEqual(c.evalsha(sha, 2, name, counter, "again", 7), [name, "again", 12])
        with self.assertRaises(redis.exceptions.NoScriptError):
            c.evalsha("0" * 40, 0)
        self.record({"eval": 5, "evalsha": 12})

    def test_evalsha_after_eval(self) -> None:
        """EVALSHA after EVAL (no SCRIPT LOAD) for keys of many slots"""
        c = self.client()
        # EVAL caches the script on the server; a new script per run and suite so no earlier load helps.
        script = f"-- {BASE} evalsha-after-eval\nreturn redis.call('INCR', KEYS[1])"
        sha = hashlib.sha1(script.encode()).hexdigest()
        keys = many("evalsha", 12)
        self.assertGreaterEqual(distinct_slots(keys), 10)
        self.assertEqual(c.eval(script, 1, keys[0]), 1)
        replies = [c.evalsha(sha, 1, k) for k in keys]
        self.assertEqual(replies, [2] + [1] * 11)
        self.record({"replies": replies})

    def test_registered_script(self) -> None:
        """defined script (EVALSHA, EVAL on NOSCRIPT): 500 calls over 10 hash tags"""
        c = self.client()
        # A new script per run and suite: redis-py's Script gets NOSCRIPT once, then SCRIPT LOADs it.
        transfer = c.register_script(
            f"-- {BASE}\nlocal from = redis.call('DECRBY', KEYS[1], ARGV[1])\n"
            "local to = redis.call('INCRBY', KEYS[2], ARGV[1])\nreturn {from, to}")
        tags = [f"acct{i}" for i in range(10)]
        self.assertGreaterEqual(distinct_slots(tagged(t, "x") for t in tags), 8)
        replies = [transfer(keys=[tagged(t, "from"), tagged(t, "to")], args=[2])
                   for _ in range(40) for t in tags]
        # ... and inside a pipeline (redis-py loads the script before the pipeline runs).
        pipe = c.pipeline(transaction=False)
        for t in tags * 10:
            transfer(keys=[tagged(t, "from"), tagged(t, "to")], args=[2], client=pipe)
        replies += pipe.execute()
        self.assertEqual(len(replies), 500)
        self.assertTrue(all(f == -t and 0 < t <= 100 for f, t in replies))
        balances = c.mget([k for t in tags for k in (tagged(t, "from"), tagged(t, "to"))])
        self.assertEqual(balances, ["-100", "100"] * 10)
        self.record({"calls": 500, "balances": balances})

    # ---- stopping long-running scripts (the servers run with busy-reply-threshold 1000 ms) ------

    def run_and_kill(self, start: Callable[[], Any], kill: Callable[[], Any], what: str) -> Exception:
        """Runs start() (a long script) in a thread, sends kill() from this one until the server
        has a script to kill (NOTBUSY: not started yet), returns the error start() got."""
        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            running = pool.submit(start)

            def killed() -> Any:
                try:
                    return kill()
                except redis.ResponseError as e:
                    if "NOTBUSY" in str(e):
                        return None
                    raise

            self.assertTrue(wait_for(killed, 8.0, f"{what} to find the running script", 0.05))
            error = running.exception(timeout=10)
        if error is None:
            self.fail(f"{what}: the script was not killed: {running.result()}")
        self.assertLess(time.monotonic() - started, 9.0, f"{what}: stopped by the kill, not by finishing")
        return error

    def test_script_kill(self) -> None:
        """SCRIPT KILL stops a long-running read-only script"""
        runner, killer = self.client(), self.client()
        spin_key = key("spin:script")
        error = self.run_and_kill(lambda: runner.eval(f"-- {BASE}\n{spin_lua('ARGV[1]')}", 1, spin_key, 10),
                                  killer.script_kill, "SCRIPT KILL")
        self.assertRegex(str(error), "(?i)killed by user")
        self.assertIsNone(runner.get(spin_key))  # the node serves commands again
        self.record({"killed": True})

    def test_function_kill(self) -> None:
        """FUNCTION KILL stops a long-running function"""
        runner, killer = self.client(), self.client()
        self.assertEqual(killer.function_load(spin_library(LIBRARY), replace=True), LIBRARY)
        spin_key = key("spin:function")
        error = self.run_and_kill(lambda: runner.fcall(f"{LIBRARY}_spin", 1, spin_key, 10),
                                  killer.function_kill, "FUNCTION KILL")
        self.assertRegex(str(error), "(?i)killed by user")
        self.assertIsNone(runner.get(spin_key))
        self.assertTrue(killer.function_delete(LIBRARY))
        self.record({"killed": True})

    # ---- SCAN ---------------------------------------------------------------------------------

    def test_scan_iter(self) -> None:
        """scan_iter iterates to the end and returns exactly the keys written"""
        c = self.client()
        keys = many("scan", 2500)
        pipe = c.pipeline(transaction=False)
        for k in keys:
            pipe.set(k, "1")
        pipe.execute()
        count = 200
        max_calls = -(-c.dbsize() // count) * 8 + 100
        calls = 0
        scan = c.scan

        def bounded_scan(*args: Any, **kwargs: Any) -> Any:  # scan_iter calls self.scan
            nonlocal calls
            calls += 1
            if calls > max_calls:
                raise AssertionError(f"scan_iter did not terminate after {max_calls} SCAN calls")
            return scan(*args, **kwargs)

        c.scan = bounded_scan  # type: ignore[method-assign]
        found = list(c.scan_iter(match=f"{BASE}:scan:*", count=count))
        self.assertLessEqual(len(found), 2 * len(keys))
        missing, extra = set(keys) - set(found), set(found) - set(keys)
        self.assertEqual((sorted(missing)[:5], sorted(extra)[:5]), ([], []), "scan_iter key set")
        self.record({"keys": len(set(found))})

    # ---- streams ------------------------------------------------------------------------------

    def test_streams(self) -> None:
        """streams: consumer groups with XREADGROUP, XPENDING, XACK and a blocked reader"""
        c, reader = self.client(), self.client()
        stream = key("stream")
        self.assertTrue(c.xgroup_create(stream, "group", "0", mkstream=True))
        pipe = c.pipeline(transaction=False)
        for i in range(50):
            pipe.xadd(stream, {"n": str(i)})
        ids = pipe.execute()

        def read(consumer: str, count: int) -> list:
            [(name, entries)] = c.xreadgroup("group", consumer, {stream: ">"}, count=count)
            self.assertEqual(name, stream)
            return entries

        first, second = read("c1", 30), read("c2", 30)
        self.assertEqual([i for i, _ in first], ids[:30])
        self.assertEqual([i for i, _ in second], ids[30:])
        self.assertEqual(second[0][1], {"n": "30"})
        self.assertEqual(c.xpending(stream, "group"), {
            "pending": 50, "min": ids[0], "max": ids[49],
            "consumers": [{"name": "c1", "pending": 30}, {"name": "c2", "pending": 20}]})
        self.assertEqual(c.xack(stream, "group", *ids[:30]), 30)
        self.assertEqual(c.xpending(stream, "group")["pending"], 20)
        detail = c.xpending_range(stream, "group", "-", "+", 100, consumername="c2")
        self.assertEqual([(d["message_id"], d["consumer"]) for d in detail],
                         [(i, "c2") for i in ids[30:]])

        # A reader blocked on the group is woken by a new entry.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            blocked = pool.submit(reader.xreadgroup, "group", "c3", {stream: ">"}, block=10000)
            self.wait_until_blocked(c)
            new_id = c.xadd(stream, {"n": "late"})
            self.assertEqual(blocked.result(timeout=10), [[stream, [(new_id, {"n": "late"})]]])
        self.record({"delivered": [30, 20, 1], "pendingAfterAck": 20})

    # ---- big values ---------------------------------------------------------------------------

    def test_big_values(self) -> None:
        """values of 1 MiB and more (strings and binary, single, MSET and pipelined)"""
        c = self.client(decode=False)
        text = big_text(MiB + 1, "text").encode()
        binary = binary_value(5 * MiB, 7)
        c.set(key("big:text"), text)
        c.set(key("big:binary"), binary)
        self.assertEqual(c.get(key("big:text")), text)
        self.assertEqual(c.get(key("big:binary")), binary)
        self.assertEqual(c.strlen(key("big:binary")), 5 * MiB)

        keys = many("big:multi", 6)
        values = [big_text(MiB, f"multi{i}").encode() for i in range(6)]
        self.assertTrue(c.mset(dict(zip(keys, values))))
        self.assertEqual(c.mget(keys), values)
        pipe = c.pipeline(transaction=False)
        for k in keys:
            pipe.append(k, b"x").get(k)
        replies = pipe.execute()
        self.assertEqual(replies[1::2], [v + b"x" for v in values])
        self.record({"text": digest(text), "binary": digest(binary),
                     "multi": digest([v.decode() for v in values])})

    # ---- hash tags ----------------------------------------------------------------------------

    def test_hash_tags(self) -> None:
        """hash-tagged keys: multi-key commands within one slot"""
        c = self.client()
        tags = [f"user{i}" for i in range(10)]
        self.assertGreaterEqual(distinct_slots(tagged(t, "x") for t in tags), 8)
        results = []
        for tag in tags:
            def k(name: str) -> str:
                return tagged(tag, name)
            self.assertTrue(c.msetnx({k("a"): f"{tag}-a", k("b"): f"{tag}-b"}))
            self.assertFalse(c.msetnx({k("a"): "again", k("c"): "c"}))
            self.assertTrue(c.rename(k("a"), k("renamed")))
            c.sadd(k("s1"), "x", "y", "z")
            c.sadd(k("s2"), "y", "z", "w")
            self.assertEqual(c.sinterstore(k("both"), [k("s1"), k("s2")]), 2)
            self.assertEqual(c.smembers(k("both")), {"y", "z"})
            c.rpush(k("l1"), "1", "2")
            self.assertEqual(c.lmove(k("l1"), k("l2"), "LEFT", "LEFT"), "1")
            results.append(c.mget(k("renamed"), k("b"), k("a"), k("c")))
        self.assertEqual(results, [[f"{t}-a", f"{t}-b", None, None] for t in tags])
        self.record({"tags": len(tags), "results": digest(results)})


# ---- running with --results -------------------------------------------------------------------

class RecordingResult(unittest.TextTestResult):
    """Keeps each test's outcome, named by its docstring."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.outcomes: list[dict] = []
        self._started = 0.0

    def startTest(self, test: unittest.TestCase) -> None:
        self._started = time.monotonic()
        super().startTest(test)

    def _add(self, test: unittest.TestCase, outcome: str, error: Optional[str] = None) -> None:
        self.outcomes.append({"kind": "result", "name": test.shortDescription() or test.id(),
                              "outcome": outcome, "error": error,
                              "ms": round((time.monotonic() - self._started) * 1000)})

    def addSuccess(self, test: unittest.TestCase) -> None:
        super().addSuccess(test)
        self._add(test, "pass")

    def addFailure(self, test: unittest.TestCase, err: Any) -> None:
        super().addFailure(test, err)
        self._add(test, "fail", str(err[1]).splitlines()[0] if str(err[1]) else repr(err[1]))

    def addError(self, test: unittest.TestCase, err: Any) -> None:
        super().addError(test, err)
        self._add(test, "fail", f"{type(err[1]).__name__}: {err[1]}")

    def addSkip(self, test: unittest.TestCase, reason: str) -> None:
        super().addSkip(test, reason)
        self._add(test, "skip", reason)


def write_results(path: str, outcomes: list[dict]) -> None:
    with open(path, "w") as out:
        for entry in outcomes:
            out.write(json.dumps(entry) + "\n")
            if entry["outcome"] == "pass" and entry["name"] in SUMMARIES:
                out.write(json.dumps({"kind": "summary", "name": entry["name"],
                                      "summary": SUMMARIES[entry["name"]]}) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--results", help="write outcomes and summaries here (JSON lines)")
    parser.add_argument("-k", dest="pattern", help="only tests whose method name contains this")
    args = parser.parse_args()
    loader = unittest.TestLoader()
    if args.pattern:
        loader.testNamePatterns = [f"*{args.pattern}*"]
    suite = loader.loadTestsFromTestCase(RedisPyConformance)
    print(f"redis-py {redis.__version__} against {HOST}:{PORT}", flush=True)
    result = unittest.TextTestRunner(verbosity=2, resultclass=RecordingResult, stream=sys.stdout).run(suite)
    if args.results:
        write_results(args.results, result.outcomes)
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
