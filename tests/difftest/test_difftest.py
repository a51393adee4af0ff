"""Tests of the differential tester's own pieces, without a proxy: the RESP framing and the
connection's deadlines (against a tiny fake server), the normalisers, the comparison's failure
kinds, the stream generator's invariants, and the shrinker on a synthetic failure.

Run: cd tests/difftest && /usr/bin/python3 -m unittest -v test_difftest
"""

from __future__ import annotations

import fnmatch
import hashlib
import socket
import threading
import time
import unittest
from typing import Callable, Optional

from execute import Failure, Pair
from families import CROSSSLOT, FAMILIES, SCRIPTS, script_body, take
from gen import MASTER_PARTS, Space, tag_for_slot
from integration_harness import harness
from killcheck import kill_check
from normalise import same, same_group
from ops import SUBSCRIBER, Call, Close, Command, Op, Receive, cli_arg, cmd
from resp import CLOSED, HANG, Conn, ProtocolError, encode, frame_end, parse
from shrink import Budget, Shrinker, ddmin, realign_exec, shortest_prefix

REPLIES = [b"+OK\r\n", b"-ERR no\r\n", b":-42\r\n", b"$-1\r\n", b"*-1\r\n", b"$0\r\n\r\n",
           b"$4\r\na\r\nb\r\n", b"*3\r\n:1\r\n*2\r\n$1\r\nx\r\n*0\r\n$-1\r\n", b"*0\r\n"]


class RespTest(unittest.TestCase):
    def test_every_reply_frames_exactly_and_no_prefix_does(self) -> None:
        for reply in REPLIES:
            self.assertEqual(frame_end(reply), len(reply), reply)
            for cut in range(len(reply)):
                self.assertEqual(frame_end(reply[:cut]), -1, (reply, cut))

    def test_replies_back_to_back_frame_one_at_a_time(self) -> None:
        buf = b"".join(REPLIES)
        pos, seen = 0, []
        while pos < len(buf):
            end = frame_end(buf, pos)
            seen.append(buf[pos:end])
            pos = end
        self.assertEqual(seen, REPLIES)

    def test_parse_values(self) -> None:
        self.assertEqual([parse(r) for r in REPLIES],
                         [("+", b"OK"), ("-", b"ERR no"), -42, None, None, b"", b"a\r\nb",
                          [1, [b"x", []], None], []])

    def test_garbage_is_a_protocol_error(self) -> None:
        with self.assertRaises(ProtocolError):
            frame_end(b"hello\r\n")
        with self.assertRaises(ProtocolError):
            frame_end(b"$abc\r\n")

    def test_encode_keeps_binary_arguments(self) -> None:
        data = encode([b"SET", b"k\r\n", b"\x00\xff", 12])
        self.assertEqual(data, b"*4\r\n$3\r\nSET\r\n$3\r\nk\r\n\r\n$2\r\n\x00\xff\r\n$2\r\n12\r\n")
        self.assertEqual(frame_end(data), len(data))  # requests are RESP arrays too


class FakeServer:
    """Accepts one connection on a reserved loopback port and answers each complete request
    with `reply(request_index)`, or None to stay silent, or b'' to close."""

    def __init__(self, reply: Callable[[int], Optional[bytes]]) -> None:
        self._ports = harness.free_port_block(1, bus=False)
        self.port = self._ports.ports[0]
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._reply = reply
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        conn, _ = self._listener.accept()
        buf, pos, index = b"", 0, 0
        with conn:
            while True:
                chunk = conn.recv(1 << 16)
                if not chunk:
                    return
                buf += chunk
                while (end := frame_end(buf, pos)) >= 0:
                    pos, answer = end, self._reply(index)
                    index += 1
                    if answer == b"":
                        return
                    if answer is not None:
                        conn.sendall(answer)

    def close(self) -> None:
        self._listener.close()
        self._ports.release()


class ConnTest(unittest.TestCase):
    def server(self, reply: Callable[[int], Optional[bytes]]) -> FakeServer:
        server = FakeServer(reply)
        self.addCleanup(server.close)
        return server

    def connect(self, server: FakeServer) -> Conn:
        conn = Conn(server.port, 2.0)
        self.addCleanup(conn.close)
        return conn

    def test_a_deep_pipeline_with_big_replies_does_not_deadlock(self) -> None:
        big = b"$1024\r\n" + b"v" * 1024 + b"\r\n"  # 20 MiB of replies: more than any buffer
        server = self.server(lambda i: big)
        conn = self.connect(server)
        n = 20000
        replies = conn.exchange(encode(["GET", "k"]) * n, [0.0] * n, 5.0)
        self.assertEqual(len(replies), n)
        self.assertTrue(all(r == big for r in replies))

    def test_a_missing_reply_is_a_hang_after_the_bound(self) -> None:
        server = self.server(lambda i: b"+OK\r\n" if i == 0 else None)
        conn = self.connect(server)
        started = time.monotonic()
        replies = conn.exchange(encode(["PING"]) * 2, [0.0, 0.3], 0.2)
        self.assertEqual(replies, [b"+OK\r\n", HANG])
        self.assertGreaterEqual(time.monotonic() - started, 0.5)  # bound + the reply's wait
        self.assertTrue(conn.dead)

    def test_a_closed_connection_is_closed(self) -> None:
        server = self.server(lambda i: b":1\r\n" if i == 0 else b"")
        conn = self.connect(server)
        self.assertEqual(conn.exchange(encode(["INCR", "k"]) * 3, [0.0] * 3, 2.0),
                         [b":1\r\n", CLOSED, CLOSED])


class NormaliseTest(unittest.TestCase):
    def test_exact_by_default(self) -> None:
        self.assertTrue(same("exact", b":1\r\n", b":1\r\n"))
        self.assertFalse(same("exact", b"*2\r\n:1\r\n:2\r\n", b"*2\r\n:2\r\n:1\r\n"))

    def test_sorted_ignores_order_only(self) -> None:
        ab, ba, aa = (b"*2\r\n$1\r\na\r\n$1\r\nb\r\n", b"*2\r\n$1\r\nb\r\n$1\r\na\r\n",
                      b"*2\r\n$1\r\na\r\n$1\r\na\r\n")
        self.assertTrue(same("sorted", ab, ba))
        self.assertFalse(same("sorted", ab, aa))

    def test_pairs_keep_fields_with_their_values(self) -> None:
        ab = b"*4\r\n$1\r\nf\r\n$1\r\n1\r\n$1\r\ng\r\n$1\r\n2\r\n"
        ba = b"*4\r\n$1\r\ng\r\n$1\r\n2\r\n$1\r\nf\r\n$1\r\n1\r\n"
        swapped = b"*4\r\n$1\r\nf\r\n$1\r\n2\r\n$1\r\ng\r\n$1\r\n1\r\n"
        self.assertTrue(same("pairs", ab, ba))
        self.assertFalse(same("pairs", ab, swapped))

    def test_ttl_buckets_positive_values_only(self) -> None:
        self.assertTrue(same("ttl", b":1000\r\n", b":999\r\n"))
        self.assertFalse(same("ttl", b":-1\r\n", b":999\r\n"))
        self.assertFalse(same("ttl", b":-2\r\n", b":-1\r\n"))

    def test_errors_are_never_normalised_away(self) -> None:
        self.assertFalse(same("sorted", b"-ERR a\r\n", b"-ERR b\r\n"))
        self.assertFalse(same("stream-id", b"-ERR a\r\n", b"$3\r\n1-1\r\n"))

    def test_stream_id_compares_shape(self) -> None:
        self.assertTrue(same("stream-id", b"$15\r\n1796477250147-0\r\n", b"$15\r\n1796477250157-3\r\n"))
        self.assertFalse(same("stream-id", b"$15\r\n1796477250147-0\r\n", b"$-1\r\n"))

    def test_exec_normalises_each_element_by_its_command(self) -> None:
        got = b"*2\r\n:5\r\n*2\r\n$1\r\na\r\n$1\r\nb\r\n"
        want = b"*2\r\n:7\r\n*2\r\n$1\r\nb\r\n$1\r\na\r\n"
        self.assertTrue(same("exact", got, want, inner=("ttl", "sorted")))
        self.assertFalse(same("exact", got, want, inner=("exact", "sorted")))

    def test_clock_ids_relax_only_streams_that_have_them(self) -> None:
        def info(nodes: int, last_id: bytes) -> bytes:
            return b"*4\r\n$16\r\nradix-tree-nodes\r\n:%d\r\n$4\r\nlast\r\n$%d\r\n%s\r\n" % (
                nodes, len(last_id), last_id)
        self.assertTrue(same("clock-ids", info(9, b"1796477699873-0"), info(10, b"1796477701321-0")))
        self.assertFalse(same("clock-ids", info(9, b"5-1"), info(10, b"5-1")))
        self.assertFalse(same("clock-ids", info(9, b"5-1"), info(9, b"5-2")))

    def test_no_times_drops_idle_fields(self) -> None:
        one = b"*1\r\n*4\r\n$4\r\nname\r\n$1\r\nc\r\n$4\r\nidle\r\n:17\r\n"
        two = b"*1\r\n*4\r\n$4\r\nname\r\n$1\r\nc\r\n$4\r\nidle\r\n:4\r\n"
        self.assertTrue(same("no-times", one, two))

    def test_unsubscribe_all_compares_channels_as_a_set_and_counts_in_order(self) -> None:
        def reply(channel: bytes, count: int) -> bytes:
            return b"*3\r\n$11\r\nunsubscribe\r\n$%d\r\n%s\r\n:%d\r\n" % (len(channel), channel, count)
        self.assertTrue(same_group("unsubscribed", [reply(b"a", 1), reply(b"b", 0)],
                                   [reply(b"b", 1), reply(b"a", 0)]))
        self.assertFalse(same_group("unsubscribed", [reply(b"a", 1), reply(b"b", 0)],
                                    [reply(b"a", 0), reply(b"b", 1)]))


    def test_messages_of_one_publish_keep_the_channel_message_first_and_pmessages_as_a_set(self) -> None:
        message = b"*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nm\r\n"

        def pmessage(pattern: bytes) -> bytes:
            return b"*4\r\n$8\r\npmessage\r\n$%d\r\n%s\r\n$1\r\nc\r\n$1\r\nm\r\n" % (
                len(pattern), pattern)
        self.assertTrue(same_group("messages", [message, pmessage(b"*"), pmessage(b"?")],
                                   [message, pmessage(b"?"), pmessage(b"*")]))
        self.assertFalse(same_group("messages", [message, pmessage(b"*"), pmessage(b"*")],
                                    [message, pmessage(b"?"), pmessage(b"*")]))
        self.assertFalse(same_group("messages", [message, message], [message, pmessage(b"*")]))


class CompareTest(unittest.TestCase):
    """The failure kinds of a comparison (no connection is made)."""

    def pair(self, proxy_alive: bool = True) -> Pair:
        return Pair(1, 2, 1.0, lambda: proxy_alive)

    def compare(self, command: Command, got, want, proxy_alive: bool = True) -> Optional[Failure]:
        return self.pair(proxy_alive)._compare([command], [[got]], [[want]])

    def test_hang_closed_and_crash_are_one_class_for_shrinking(self) -> None:
        get = cmd("GET", "k")
        signatures = {Failure(kind, get, "", "").signature() for kind in ("hang", "closed", "crash")}
        self.assertEqual(signatures, {("no-answer",)})
        self.assertEqual(Failure("mismatch", get, "", "").signature(), ("mismatch", "GET"))

    def test_kinds(self) -> None:
        get = cmd("GET", "k")
        self.assertIsNone(self.compare(get, b"$1\r\nv\r\n", b"$1\r\nv\r\n"))
        self.assertEqual(self.compare(get, b"$1\r\nv\r\n", b"$-1\r\n").kind, "mismatch")
        self.assertEqual(self.compare(get, HANG, b"$-1\r\n").kind, "hang")
        self.assertEqual(self.compare(get, CLOSED, b"$-1\r\n", proxy_alive=False).kind, "crash")
        self.assertEqual(self.compare(get, b"$-1\r\n", CLOSED).kind, "reference")

    def test_a_documented_difference_checks_the_proxy_reply_only(self) -> None:
        sinter = cmd("SINTER", "a", "b", proxy_expect=CROSSSLOT)
        self.assertIsNone(self.compare(sinter, CROSSSLOT, b"*0\r\n"))
        self.assertEqual(self.compare(sinter, b"*0\r\n", b"*0\r\n").kind, "unexpected")


class GenerationTest(unittest.TestCase):
    FAMILIES = tuple(FAMILIES)

    def test_a_stream_is_a_function_of_seed_and_client(self) -> None:
        self.assertEqual(take(7, 3, self.FAMILIES, 40), take(7, 3, self.FAMILIES, 40))
        self.assertNotEqual(take(7, 3, self.FAMILIES, 40), take(7, 4, self.FAMILIES, 40))
        self.assertNotEqual(take(7, 3, self.FAMILIES, 40), take(8, 3, self.FAMILIES, 40))

    def test_families_subset(self) -> None:
        ops = take(7, 0, ("multi", "scan"), 60)
        self.assertEqual({op.family for op in ops}, {"multi", "scan"})

    def test_every_name_is_in_the_clients_namespace_and_renames(self) -> None:
        token = Space(7, 2).token.encode()
        fresh = Space(7, 2, 5).token.encode()
        for op in take(7, 2, self.FAMILIES, 200):
            renamed = op.renamed(token, fresh)
            self.assertEqual(op.renamed(token, token), op)
            self.assertNotIn(token, repr(renamed).encode())
            self.assertNotIn(Space(7, 3).token.encode(), repr(op).encode())

    def test_transactions_stay_in_one_slot_unless_asserting_crossslot(self) -> None:
        prefix = Space(11, 0).key_prefix.encode()
        for op in take(11, 0, ("multi",), 150):
            for step in op.steps:
                commands = [c for c in step.commands if c.proxy_expect is None] \
                    if isinstance(step, Call) else []
                slots = {harness.key_slot(a) for c in commands for a in c.args[1:]
                         if a.startswith(prefix) and c.args[0] != b"FUNCTION"}
                self.assertLessEqual(len(slots), 1, step)

    def test_evalsha_follows_an_eval_of_the_body_on_keys_of_every_master(self) -> None:
        """EVALSHA is mostly of a script the stream sent before (EVAL, EVAL_RO, SCRIPT LOAD),
        on keys of all three masters, inside transactions too; rarely of one never sent."""
        seed = 5
        for client in range(2):
            shas = {hashlib.sha1(script_body(seed, client, i).encode()).hexdigest().encode(): i
                    for i in range(len(SCRIPTS))}
            sent: set[int] = set()
            after_eval, before_eval, parts, in_multi = 0, 0, set(), 0
            for op in take(seed, client, ("scripting", "multi"), 400):
                for step in op.steps:
                    commands = getattr(step, "commands", ())
                    multi = any(c.args[0] == b"MULTI" for c in commands)
                    for c in commands:
                        if c.args[0] in (b"EVAL", b"EVAL_RO"):
                            sent.update(i for sha, i in shas.items()
                                        if hashlib.sha1(c.args[1]).hexdigest().encode() == sha)
                        elif c.args[:2] == (b"SCRIPT", b"LOAD"):
                            sent.add(shas[hashlib.sha1(c.args[2]).hexdigest().encode()])
                        elif c.args[0] in (b"EVALSHA", b"EVALSHA_RO"):
                            index = shas[c.args[1]]
                            if c.args[0] == b"EVALSHA_RO":
                                self.assertTrue(SCRIPTS[index][2], "EVALSHA_RO of a write script")
                            if index in sent:
                                after_eval += 1
                            else:
                                before_eval += 1
                            in_multi += multi
                            for key in c.args[3:3 + int(c.args[2])]:
                                slot = harness.key_slot(key)
                                parts.update(i for i, (lo, hi) in enumerate(MASTER_PARTS)
                                             if lo <= slot <= hi)
            self.assertGreater(after_eval, 20 * max(1, before_eval), client)
            self.assertEqual(parts, {0, 1, 2}, client)
            self.assertGreater(in_multi, 5, client)

    def test_tag_for_slot(self) -> None:
        for slot in (0, 6000, 12000, 16383):
            self.assertEqual(harness.key_slot(f"{{{tag_for_slot(slot)}}}"), slot)

    def test_pubsub_reply_counts_follow_redis_and_every_op_ends_unsubscribed(self) -> None:
        """An independent model of one Redis's subscriptions: every subscriber command carries
        the number of replies Redis gives, every Receive the number of messages the PUBLISH
        before it delivers, and each op leaves the connection unsubscribed (or closed)."""
        seen: set[str] = set()
        multi_command, shard_parts = 0, set()
        for op in take(9, 3, ("pubsub",), 300):
            channels: set[bytes] = set()
            patterns: set[bytes] = set()
            shard: set[bytes] = set()
            expect_messages = 0
            for step in op.steps:
                if isinstance(step, Receive):
                    self.assertEqual(step.count, expect_messages)
                    expect_messages = 0
                    continue
                self.assertEqual(expect_messages, 0, "a PUBLISH's messages were not read")
                if isinstance(step, Close):
                    channels, patterns, shard = set(), set(), set()
                    continue
                if step.conn != SUBSCRIBER:
                    [publish] = step.commands
                    channel = publish.args[1]
                    if publish.args[0] == b"PUBLISH":
                        expect_messages = (channel in channels) + sum(
                            fnmatch.fnmatchcase(channel.decode(), p.decode()) for p in patterns)
                    else:
                        expect_messages = int(channel in shard)
                    continue
                multi_command += len(step.commands) > 1
                for c in step.commands:
                    name, names = c.name, set(c.args[1:])
                    seen.add(name)
                    held = {"SUBSCRIBE": channels, "UNSUBSCRIBE": channels,
                            "PSUBSCRIBE": patterns, "PUNSUBSCRIBE": patterns,
                            "SSUBSCRIBE": shard, "SUNSUBSCRIBE": shard}.get(name)
                    if name == "RESET":
                        channels.clear(), patterns.clear(), shard.clear()
                        want = 1
                    elif held is None or (name.endswith("SUBSCRIBE") and not names
                                          and "UNSUB" not in name):
                        want = 1
                    elif "UNSUB" in name and not names:
                        want = max(1, len(held))
                        self.assertEqual(c.norm, "unsubscribed" if want > 1 else "exact")
                        held.clear()
                    else:
                        want = len(c.args) - 1
                        (held.difference_update if "UNSUB" in name else held.update)(names)
                    self.assertEqual(c.replies, want, c)
                    if name in ("SSUBSCRIBE", "SUNSUBSCRIBE") and names:
                        slots = {harness.key_slot(n) for n in names}
                        self.assertEqual(len(slots), 1, c)  # several slots: CROSSSLOT
                        slot = slots.pop()
                        shard_parts.update(i for i, (lo, hi) in enumerate(MASTER_PARTS)
                                           if lo <= slot <= hi)
            self.assertFalse(channels or patterns or shard, f"op ends subscribed: {op}")
        self.assertGreaterEqual(seen, {"SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "UNSUBSCRIBE",
                                       "PUNSUBSCRIBE", "SUNSUBSCRIBE", "PING", "RESET", "GET"})
        self.assertEqual(shard_parts, {0, 1, 2})
        self.assertGreater(multi_command, 100)


class ShrinkTest(unittest.TestCase):
    def test_ddmin_finds_the_two_needed_items(self) -> None:
        self.assertEqual(ddmin(list(range(100)), lambda x: 3 in x and 77 in x, Budget(1000, 10)),
                         [3, 77])

    def test_shortest_prefix_finds_a_count_threshold(self) -> None:
        calls = []
        found = shortest_prefix(list(range(1000)), lambda x: calls.append(1) or len(x) >= 257,
                                Budget(100, 10), keep_last=True)
        self.assertEqual(len(found), 257)
        self.assertEqual(found[-1], 999)
        self.assertLess(len(calls), 15)

    def test_a_synthetic_mismatch_shrinks_to_the_two_commands_that_matter(self) -> None:
        """A fake proxy hangs on an MGET of 256+ keys, but only once key K was set: the
        reproduction must be SET K and one MGET of exactly 256 keys."""
        key = b"dt:s1c0e0:{t}:K"
        mget = cmd("MGET", *[f"dt:s1c0e0:{{m{i}}}:mk{i}" for i in range(900)])

        def fake_proxy(program: list[Op]) -> Optional[Failure]:
            armed = False
            for op in program:
                for step in op.steps:
                    for c in step.commands:
                        armed = armed or c.args[:2] == (b"SET", key)
                        if armed and c.args[0] == b"MGET" and len(c.args) > 256:
                            return Failure("hang", c, HANG, b"*256\r\n")
            return None

        noise = [Op("strings", (Call(0, (cmd("SET", f"n{i}", "v"), cmd("GET", f"n{i}"))),))
                 for i in range(30)]
        program = noise[:10] + [Op("strings", (Call(0, (cmd("SET", key, "v"),)),))] + noise[10:] \
            + [Op("multikey", (Call(0, (cmd("PING"), mget, cmd("PING"))),))]
        shrunk = Shrinker(fake_proxy, ("no-answer",), Budget(500, 60)).shrink(program)
        self.assertIsNotNone(shrunk)
        commands = [c for op in shrunk.program for s in op.steps for c in s.commands]
        self.assertEqual([c.args[0] for c in commands], [b"SET", b"MGET"])
        self.assertEqual(len(commands[1].args), 257)
        self.assertEqual(shrunk.failure.kind, "hang")

    def test_a_transaction_that_fails_by_its_length_shrinks_to_pings(self) -> None:
        """A fake proxy crashes on EXEC after 254+ queued commands, whatever they are."""
        def fake_proxy(program: list[Op]) -> Optional[Failure]:
            for op in program:
                for step in op.steps:
                    if step.commands[-1].args == (b"EXEC",) and len(step.commands) >= 256:
                        return Failure("crash", step.commands[-1], CLOSED, b"*254\r\n")
            return None

        body = tuple(cmd("SET", f"{{t}}k{i}", i) for i in range(1000))
        program = [Op("multi", (Call(0, (cmd("MULTI"), *body, cmd("EXEC"))),))]
        shrunk = Shrinker(fake_proxy, ("no-answer",), Budget(500, 60)).shrink(program)
        self.assertIsNotNone(shrunk)
        [[step]] = [op.steps for op in shrunk.program]
        self.assertEqual([c.args[0] for c in step.commands],
                         [b"MULTI"] + [b"PING"] * 254 + [b"EXEC"])

    def test_exec_normalisers_follow_the_commands_still_queued(self) -> None:
        ops = take(13, 2, ("multi", "scripting", "pubsub", "blocking", "vanish"), 300)
        self.assertEqual(realign_exec(ops), ops)  # generated programs are left alone
        multi, smembers, get = cmd("MULTI"), cmd("SMEMBERS", "{t}s", norm="sorted"), cmd("GET", "{t}k")
        exec_ = Command((b"EXEC",), inner=("exact", "sorted"))
        program = [Op("multi", (Call(0, (multi, smembers, exec_)),))]  # the GET was dropped
        [[step]] = [op.steps for op in realign_exec(program)]
        self.assertEqual(step.commands[-1].inner, ("sorted",))
        one_by_one = [Op("multi", (Call(0, (multi,)), Call(0, (get,)), Call(0, (exec_,))))]
        [steps] = [op.steps for op in realign_exec(one_by_one)]
        self.assertEqual(steps[-1].commands[-1].inner, ())

    def test_a_program_that_does_not_fail_is_not_shrunk(self) -> None:
        program = [Op("strings", (Call(0, (cmd("PING"),)),))]
        self.assertIsNone(Shrinker(lambda p: None, ("no-answer",), Budget(10, 10)).shrink(program))


class FakeKillProxy:
    """Many connections, one shared state: EVAL / FCALL_RO of the runaway call is answered
    only once a KILL arrived that said +OK; the first `notbusy` KILLs after it say NOTBUSY. SET/GET/DEL
    and FUNCTION LOAD/DELETE answer as Redis does. `killed_reply` is what the runaway gets."""

    def __init__(self, notbusy: int, killed_reply: bytes) -> None:
        self._ports = harness.free_port_block(1, bus=False)
        self.port = self._ports.ports[0]
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._lock = threading.Lock()
        self._runaway: Optional[socket.socket] = None
        self._notbusy = notbusy
        self._killed_reply = killed_reply
        self._values: dict[bytes, bytes] = {}
        self._kills_since_start = 0
        self.kills = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket, args: list) -> Optional[bytes]:
        name = args[0].upper()
        with self._lock:
            if name in (b"EVAL", b"FCALL_RO"):
                self._runaway, self._kills_since_start = conn, 0
                return None
            if name in (b"SCRIPT", b"FUNCTION") and args[1].upper() == b"KILL":
                self.kills += 1
                self._kills_since_start += 1
                if self._runaway is None or self._kills_since_start <= self._notbusy:
                    return b"-NOTBUSY No scripts in execution right now.\r\n"
                self._runaway.sendall(self._killed_reply)
                self._runaway = None
                return b"+OK\r\n"
            if name == b"FUNCTION" and args[1].upper() == b"LOAD":
                lib = args[-1].split(b"name=")[1].split(b"\n")[0]
                return b"$%d\r\n%s\r\n" % (len(lib), lib)
            if name == b"SET":
                self._values[args[1]] = args[2]
                return b"+OK\r\n"
            if name == b"GET":
                v = self._values.get(args[1])
                return b"$-1\r\n" if v is None else b"$%d\r\n%s\r\n" % (len(v), v)
            if name == b"DEL":
                return b":%d\r\n" % (self._values.pop(args[1], None) is not None)
            return b"+OK\r\n"

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        with conn:
            while True:
                try:
                    chunk = conn.recv(1 << 16)
                except OSError:
                    return
                if not chunk:
                    return
                buf += chunk
                while (end := frame_end(buf)) >= 0:
                    request, buf = parse(buf[:end]), buf[end:]
                    answer = self._answer(conn, request)
                    if answer is not None:
                        conn.sendall(answer)

    def close(self) -> None:
        self._listener.close()
        self._ports.release()


class KillCheckTest(unittest.TestCase):
    KILLED = b"-ERR Script killed by user with SCRIPT KILL... script: x, on @user_script:1.\r\n"

    def fake(self, notbusy: int, killed_reply: bytes) -> FakeKillProxy:
        server = FakeKillProxy(notbusy, killed_reply)
        self.addCleanup(server.close)
        return server

    def test_kills_after_notbusy_and_checks_every_master(self) -> None:
        server = self.fake(3, self.KILLED)
        self.assertIsNone(kill_check(server.port, 1, 2.0))
        self.assertGreaterEqual(server.kills, 8)  # 3 NOTBUSY + OK, for SCRIPT and for FUNCTION

    def test_a_runaway_that_was_not_killed_by_user_fails(self) -> None:
        server = self.fake(0, b"-ERR something else\r\n")
        problem = kill_check(server.port, 1, 2.0)
        self.assertIn("SCRIPT KILL of a runaway EVAL", problem)
        self.assertIn("killed by user", problem)

    def test_the_proxy_timeout_counts_as_an_answer(self) -> None:
        server = self.fake(1, b"-ERR slotpilot: request timed out after 5000 ms\r\n")
        self.assertIsNone(kill_check(server.port, 1, 2.0))


class CliLineTest(unittest.TestCase):
    def test_quoting(self) -> None:
        self.assertEqual(cli_arg(b"dt:s1c0e0:{t}:k"), "dt:s1c0e0:{t}:k")
        self.assertEqual(cli_arg(b""), '""')
        self.assertEqual(cli_arg(b"a b"), '"a b"')
        self.assertEqual(cli_arg(b'q"\\\r\n\x00\xff'), '"q\\"\\\\\\r\\n\\x00\\xff"')


if __name__ == "__main__":
    unittest.main()
