"""Runs ops on both sides in lockstep (each step on the proxy, then on the reference) and compares
the replies. A logical client is a Pair: the same numbered connections to each server.

A Failure says what went wrong first: a reply that differs, a documented-difference reply that is
not the documented one, a reply that never came (hang), a connection the proxy closed (or lost
by dying: crash), a SCAN cursor too large for JavaScript clients, or the reference failing.
"""

from __future__ import annotations

import dataclasses
import time
from collections import defaultdict
from typing import Callable, Optional, Sequence

from normalise import GROUP_NORMALISERS, same, same_group
from ops import Call, Close, Command, Op, Read, Receive, ScanAll, Send, Sleep, Step, Vanish
from resp import CLOSED, Conn, NoReply, ProtocolError, Reply, parse

MAX_SAFE_CURSOR = 2**53 - 1   # the largest integer a JavaScript number holds exactly
MAX_SCAN_ROUNDS = 20000       # a full SCAN of the whole test keyspace takes a few thousand
CRASH_WAIT_S = 5.0            # how long a closed connection may wait for the proxy to exit
NO_ANSWER = ("hang", "closed", "crash")


def messages(count: int) -> Command:
    """What a Receive compares: the messages of one PUBLISH as a group (normalise.py)."""
    return Command((b"<pub/sub messages>",), replies=count, norm="messages")


@dataclasses.dataclass
class Failure:
    """The first thing that went wrong in one client's stream."""

    kind: str  # mismatch | unexpected | hang | closed | crash | cursor | reference
    command: Optional[Command]
    proxy: Reply | str
    reference: Reply | str
    detail: str = ""
    client: int = -1
    op_index: int = -1
    step_index: int = -1
    family: str = ""
    when: float = dataclasses.field(default_factory=time.monotonic)

    def signature(self) -> tuple[str, ...]:
        """What a shrunk reproduction must still show: for a differing reply its kind and the
        command's name; a hang, a closed connection and a crash are one class (no answer):
        one bug often shows as any of them, e.g. depending on a count modulo 256 or on when
        a freed request is touched again."""
        if self.kind in NO_ANSWER:
            return ("no-answer",)
        if self.kind in ("mismatch", "unexpected") and self.command is not None:
            return (self.kind, self.command.name)
        return (self.kind,)


class Side:
    """One logical client's numbered connections to one server."""

    def __init__(self, port: int, bound: float) -> None:
        self.port = port
        self.bound = bound
        self._conns: dict[int, Conn] = {}
        self._pending: dict[int, list[Command]] = defaultdict(list)

    def _conn(self, n: int) -> Optional[Conn]:
        conn = self._conns.get(n)
        if conn is None or conn.dead:
            self._pending.pop(n, None)
            try:
                conn = self._conns[n] = Conn(self.port, self.bound)
            except OSError:
                return None
        return conn

    def call(self, n: int, commands: Sequence[Command]) -> list[list[Reply]]:
        """Sends the commands as one pipeline; their replies, grouped per command."""
        conn = self._conn(n)
        waits = [c.wait for c in commands for _ in range(c.replies)]
        data = b"".join(c.wire() for c in commands)
        flat = conn.exchange(data, waits, self.bound) if conn else [CLOSED] * len(waits)
        grouped, pos = [], 0
        for c in commands:
            grouped.append(flat[pos:pos + c.replies])
            pos += c.replies
        return grouped

    def send(self, n: int, commands: Sequence[Command]) -> None:
        conn = self._conn(n)
        if conn is not None:
            conn.exchange(b"".join(c.wire() for c in commands), [], self.bound)
        self._pending[n].extend(commands)

    def read(self, n: int) -> tuple[list[Command], list[list[Reply]]]:
        """The replies of what earlier sends on `n` left unread."""
        commands = self._pending.pop(n, [])
        conn = self._conns.get(n)
        if conn is None or conn.dead:
            return commands, [[CLOSED] * c.replies for c in commands]
        waits = [c.wait for c in commands for _ in range(c.replies)]
        flat = conn.exchange(b"", waits, self.bound)
        grouped, pos = [], 0
        for c in commands:
            grouped.append(flat[pos:pos + c.replies])
            pos += c.replies
        return commands, grouped

    def receive(self, n: int, count: int) -> list[Reply]:
        conn = self._conns.get(n)
        if conn is None or conn.dead:
            return [CLOSED] * count
        return conn.exchange(b"", [0.0] * count, self.bound)

    def vanish(self, n: int, data: bytes) -> None:
        self.close(n)
        try:
            Conn(self.port, self.bound).send_and_close(data)
        except OSError:
            pass  # the proxy being gone shows on the next compared reply

    def close(self, n: int) -> None:
        conn = self._conns.pop(n, None)
        self._pending.pop(n, None)
        if conn is not None and not conn.dead:
            conn.close()

    def close_all(self) -> None:
        for n in list(self._conns):
            self.close(n)


@dataclasses.dataclass
class ScanResult:
    elements: frozenset
    max_cursor: int = 0
    early: Optional[Reply] = None  # an error, a non-reply or a malformed reply ended it


def scan_all(side: Side, step: ScanAll, max_rounds: int = MAX_SCAN_ROUNDS) -> ScanResult:
    """Iterates to cursor 0 (bounded); the union of all elements and the largest cursor."""
    cursor, elements, max_cursor = b"0", set(), 0
    for _ in range(max_rounds):
        [reply] = side.call(step.conn, [Command(step.with_cursor(cursor))])[0]
        try:
            cursor, batch = parse(reply) if isinstance(reply, bytes) else (None, None)
            max_cursor = max(max_cursor, int(cursor))
        except (ProtocolError, TypeError, ValueError):
            return ScanResult(frozenset(elements), max_cursor, early=reply)
        if step.pairs:
            elements.update(zip(batch[0::2], batch[1::2]))
        else:
            elements.update(batch)
        if cursor == b"0":
            return ScanResult(frozenset(elements), max_cursor)
    return ScanResult(frozenset(elements), max_cursor,
                      early=f"<no cursor 0 after {max_rounds} rounds>".encode())


class Pair:
    """One logical client: its connections through the proxy and to the reference."""

    def __init__(self, proxy_port: int, ref_port: int, bound: float,
                 proxy_alive: Callable[[], bool]) -> None:
        self.proxy = Side(proxy_port, bound)
        self.ref = Side(ref_port, bound)
        self._proxy_alive = proxy_alive

    def close(self) -> None:
        self.proxy.close_all()
        self.ref.close_all()

    def run_op(self, op: Op) -> Optional[Failure]:
        for index, step in enumerate(op.steps):
            failure = self.run_step(step)
            if failure is not None:
                failure.step_index, failure.family = index, op.family
                return failure
        return None

    def run_step(self, step: Step) -> Optional[Failure]:
        if isinstance(step, Call):
            got = self.proxy.call(step.conn, step.commands)
            want = self.ref.call(step.conn, step.commands)
            return self._compare(step.commands, got, want)
        if isinstance(step, Send):
            self.proxy.send(step.conn, step.commands)
            self.ref.send(step.conn, step.commands)
            return None
        if isinstance(step, Read):
            commands, got = self.proxy.read(step.conn)
            _, want = self.ref.read(step.conn)
            return self._compare(commands, got, want)
        if isinstance(step, Receive):
            got = self.proxy.receive(step.conn, step.count)
            want = self.ref.receive(step.conn, step.count)
            return self._compare([messages(step.count)], [got], [want])
        if isinstance(step, Sleep):
            time.sleep(step.seconds)
            return None
        if isinstance(step, Vanish):
            self.proxy.vanish(step.conn, step.data)
            self.ref.vanish(step.conn, step.data)
            return None
        if isinstance(step, Close):
            self.proxy.close(step.conn)
            self.ref.close(step.conn)
            return None
        if isinstance(step, ScanAll):
            return self._scan(step)
        raise TypeError(step)

    def _compare(self, commands: Sequence[Command], got: Sequence[Sequence[Reply]],
                 want: Sequence[Sequence[Reply]]) -> Optional[Failure]:
        for command, got_replies, want_replies in zip(commands, got, want):
            if command.norm in GROUP_NORMALISERS and not any(
                    isinstance(r, NoReply) for r in [*got_replies, *want_replies]):
                if not same_group(command.norm, got_replies, want_replies):
                    return Failure("mismatch", command, b"".join(got_replies), b"".join(want_replies))
                continue
            for g, w in zip(got_replies, want_replies):
                failure = self._compare_one(command, g, w)
                if failure is not None:
                    return failure
        return None

    def _compare_one(self, command: Command, got: Reply, want: Reply) -> Optional[Failure]:
        if isinstance(got, NoReply):
            return Failure(self._no_reply_kind(got), command, got, want)
        if isinstance(want, NoReply):
            return Failure("reference", command, got, want, "the reference server did not answer")
        if command.proxy_expect is not None:
            if got != command.proxy_expect:
                return Failure("unexpected", command, got, want,
                               f"documented proxy reply: {command.proxy_expect!r}")
            return None
        if not same(command.norm, got, want, command.inner):
            return Failure("mismatch", command, got, want)
        return None

    def _no_reply_kind(self, got: NoReply) -> str:
        if got.why != "closed":
            return got.why
        deadline = time.monotonic() + CRASH_WAIT_S
        while time.monotonic() < deadline:
            if not self._proxy_alive():
                return "crash"
            time.sleep(0.1)
        return "closed"

    def _scan(self, step: ScanAll) -> Optional[Failure]:
        command = Command(step.args)
        got, want = scan_all(self.proxy, step), scan_all(self.ref, step)
        if got.early is not None or want.early is not None:
            if isinstance(want.early, NoReply):
                return Failure("reference", command, str(got.early), want.early)
            if got.early != want.early:
                return self._compare_one(command, got.early or b"<full iteration>",
                                         want.early or b"<full iteration>")
            return None
        if got.elements != want.elements:
            return Failure("mismatch", command, _describe(got.elements - want.elements),
                           _describe(want.elements - got.elements),
                           "the full iterations returned different elements (shown: only on "
                           "this side)")
        if got.max_cursor > MAX_SAFE_CURSOR:
            return Failure("cursor", command, str(got.max_cursor), str(want.max_cursor),
                           f"a cursor above 2**53-1 ({MAX_SAFE_CURSOR}): JavaScript clients "
                           "round it and lose their place")
        return None


def _describe(elements: frozenset) -> str:
    shown = sorted(elements, key=repr)[:10]
    return f"{len(elements)} elements: {shown}"
