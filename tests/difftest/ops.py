"""What a client stream is made of, as plain data: commands, steps on numbered connections of one
logical client, and ops (one generated unit of a family). Executing them is execute.py's job.

Connection numbers: 0 is the client's main connection, 1 a second one (the other client of a
WATCH conflict, a blocked waiter), 2 a subscriber, 9 one that vanishes.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional, Sequence, Union

from normalise import EXACT
from resp import encode, to_bytes

MAIN, SECOND, SUBSCRIBER, VANISHING = 0, 1, 2, 9


@dataclasses.dataclass(frozen=True)
class Command:
    """One command and how its replies are compared.

    replies: how many replies it produces (SUBSCRIBE of n channels: n).
    norm / inner: the normaliser of its replies (inner: per element of EXEC's array).
    proxy_expect: for a documented difference, the proxy's exact reply; the reference's reply
      is then not compared.
    wait: seconds its reply may take beyond the request bound (a blocking command's timeout).
    inline: sent as an inline (telnet-style) command instead of a RESP array.
    """

    args: tuple[bytes, ...]
    norm: str = EXACT
    inner: tuple[str, ...] = ()
    replies: int = 1
    proxy_expect: Optional[bytes] = None
    wait: float = 0.0
    inline: bool = False

    @property
    def name(self) -> str:
        return self.args[0].decode(errors="replace").upper() if self.args else ""

    def wire(self) -> bytes:
        if self.inline:
            return b" ".join(self.args) + b"\r\n"
        return encode(self.args)

    def renamed(self, old: bytes, new: bytes) -> Command:
        return dataclasses.replace(self, args=tuple(a.replace(old, new) for a in self.args))


def cmd(*args: Any, **options: Any) -> Command:
    return Command(tuple(to_bytes(a) for a in args), **options)


@dataclasses.dataclass(frozen=True)
class Call:
    """Sends the commands on `conn` as one pipeline and compares every reply."""

    conn: int
    commands: tuple[Command, ...]


@dataclasses.dataclass(frozen=True)
class Send:
    """Sends the commands without reading; a later Read on the same conn collects the replies
    (a blocked waiter while another connection pushes)."""

    conn: int
    commands: tuple[Command, ...]


@dataclasses.dataclass(frozen=True)
class Read:
    """Reads and compares the replies of every command sent by earlier Sends on `conn`."""

    conn: int


@dataclasses.dataclass(frozen=True)
class Receive:
    """Reads and compares `count` unsolicited replies (pub/sub messages) on `conn`."""

    conn: int
    count: int


@dataclasses.dataclass(frozen=True)
class Sleep:
    seconds: float


@dataclasses.dataclass(frozen=True)
class Vanish:
    """Sends raw bytes on `conn` and closes it without reading: never compared."""

    conn: int
    data: bytes


@dataclasses.dataclass(frozen=True)
class Close:
    conn: int


@dataclasses.dataclass(frozen=True)
class ScanAll:
    """Iterates a cursor command (SCAN, HSCAN, SSCAN, ZSCAN) to the end on `conn`; the sets of
    elements returned over the whole iteration are compared, not the batches or cursors."""

    conn: int
    args: tuple[bytes, ...]  # with the cursor at index `cursor_at`
    cursor_at: int
    pairs: bool = False  # HSCAN / ZSCAN: field, value pairs

    def with_cursor(self, cursor: bytes) -> tuple[bytes, ...]:
        return self.args[:self.cursor_at] + (cursor,) + self.args[self.cursor_at + 1:]


Step = Union[Call, Send, Read, Receive, Sleep, Vanish, Close, ScanAll]


@dataclasses.dataclass(frozen=True)
class Op:
    """One generated unit of work of a family, run as a whole on both sides."""

    family: str
    steps: tuple[Step, ...]

    def renamed(self, old: bytes, new: bytes) -> Op:
        return dataclasses.replace(self, steps=tuple(_renamed(s, old, new) for s in self.steps))

    def command_count(self) -> int:
        return sum(len(s.commands) if isinstance(s, (Call, Send)) else 1 for s in self.steps)


def _renamed(step: Step, old: bytes, new: bytes) -> Step:
    if isinstance(step, (Call, Send)):
        return dataclasses.replace(step, commands=tuple(c.renamed(old, new) for c in step.commands))
    if isinstance(step, Vanish):
        return dataclasses.replace(step, data=step.data.replace(old, new))
    if isinstance(step, ScanAll):
        return dataclasses.replace(step, args=tuple(a.replace(old, new) for a in step.args))
    return step


# --------------------------------------------------------------------------------------------
# redis-cli lines
# --------------------------------------------------------------------------------------------

_PLAIN = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                   b"-_:.,{}*+$#@/=<>()[]!?%&^~|")
_ESCAPES = {ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t", ord('"'): '\\"',
            ord("\\"): "\\\\"}


def cli_arg(arg: bytes) -> str:
    """One argument as redis-cli reads it back (sdssplitargs): bare when plain, otherwise in
    double quotes with \\xHH for bytes outside printable ASCII."""
    if arg and all(b in _PLAIN for b in arg):
        return arg.decode()
    out = []
    for b in arg:
        if b in _ESCAPES:
            out.append(_ESCAPES[b])
        elif 32 <= b < 127:
            out.append(chr(b))
        else:
            out.append(f"\\x{b:02x}")
    return '"' + "".join(out) + '"'


def cli_line(command: Command) -> str:
    return " ".join(cli_arg(a) for a in command.args)


def step_lines(step: Step) -> list[str]:
    """A step as redis-cli lines; steps on connections other than the main one, and what
    redis-cli cannot express, are said in comments."""
    if isinstance(step, (Call, Send)):
        lines = [cli_line(c) for c in step.commands]
        if step.conn != MAIN or isinstance(step, Send):
            how = "send without reading" if isinstance(step, Send) else "run"
            lines = [f"# on connection {step.conn}, {how}:"] + lines
        return lines
    if isinstance(step, Read):
        return [f"# read the pending replies on connection {step.conn}"]
    if isinstance(step, Receive):
        return [f"# read {step.count} pub/sub messages on connection {step.conn}"]
    if isinstance(step, Sleep):
        return [f"# sleep {step.seconds:g} s"]
    if isinstance(step, Vanish):
        return [f"# on connection {step.conn}: send {len(step.data)} raw bytes "
                f"{step.data[:60]!r}... and close without reading"]
    if isinstance(step, Close):
        return [f"# close connection {step.conn}"]
    if isinstance(step, ScanAll):
        return [f"# iterate to cursor 0 on connection {step.conn}:",
                " ".join(cli_arg(a) for a in step.args)]
    raise TypeError(step)


def program_lines(ops: Sequence[Op]) -> list[str]:
    return [line for op in ops for step in op.steps for line in step_lines(step)]
