"""RESP2 on raw sockets: encoding, framing and parsing of replies, and a connection that sends a
pipeline while it reads the replies, with a bound on how long any reply may take.

Replies stay bytes (compared byte for byte); parse() turns one into a value only where a
normaliser needs it. A reply that never came is a NoReply.
"""

from __future__ import annotations

import dataclasses
import select
import socket
import time
from typing import Any, Sequence, Union

HOST = "127.0.0.1"
RECV_CHUNK = 1 << 20
SEND_CHUNK = 1 << 20
COMPACT_AT = 4 << 20  # drop consumed bytes from the read buffer past this offset


class ProtocolError(ValueError):
    """The peer sent something that is not RESP2."""


@dataclasses.dataclass(frozen=True)
class NoReply:
    """A reply that did not come: `why` is 'closed' (the connection ended) or 'hang' (nothing
    within the bound)."""

    why: str

    def __str__(self) -> str:
        return f"<no reply: {self.why}>"


Reply = Union[bytes, NoReply]
CLOSED = NoReply("closed")
HANG = NoReply("hang")


def to_bytes(arg: Any) -> bytes:
    return arg if isinstance(arg, bytes) else str(arg).encode()


def encode(args: Sequence[Any]) -> bytes:
    """One command as a RESP array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = to_bytes(arg)
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def frame_end(buf: bytes | bytearray, pos: int = 0) -> int:
    """The offset just past the one complete reply that starts at buf[pos], or -1 if the buffer
    does not hold all of it yet. Iterative: nesting depth costs nothing."""
    pending = 1  # replies still to skip (array elements add to it)
    size = len(buf)
    while pending:
        nl = buf.find(b"\r\n", pos)
        if nl < 0:
            return -1
        kind = buf[pos]
        if kind in b"+-:":
            pos = nl + 2
        elif kind == ord("$"):
            n = _length(buf, pos, nl)
            pos = nl + 2 + (n + 2 if n >= 0 else 0)
            if pos > size:
                return -1
        elif kind == ord("*"):
            pending += max(_length(buf, pos, nl), 0)
            pos = nl + 2
        else:
            raise ProtocolError(f"not RESP2 at offset {pos}: {bytes(buf[pos:pos + 40])!r}")
        pending -= 1
    return pos


def _length(buf: bytes | bytearray, pos: int, nl: int) -> int:
    try:
        return int(buf[pos + 1:nl])
    except ValueError:
        raise ProtocolError(f"bad length {bytes(buf[pos:nl])!r}") from None


def parse(reply: bytes) -> Any:
    """One complete reply as a value: ('+', bytes) / ('-', bytes) for status and error lines,
    int, bytes or None (bulk), list or None (array)."""
    value, end = _parse_at(reply, 0)
    if end != len(reply):
        raise ProtocolError(f"{len(reply) - end} bytes after the reply")
    return value


def _parse_at(buf: bytes, pos: int) -> tuple[Any, int]:
    nl = buf.find(b"\r\n", pos)
    if nl < 0:
        raise ProtocolError("incomplete reply")
    kind, line = buf[pos:pos + 1], buf[pos + 1:nl]
    if kind in (b"+", b"-"):
        return (kind.decode(), line), nl + 2
    if kind == b":":
        return int(line), nl + 2
    if kind == b"$":
        n = int(line)
        if n < 0:
            return None, nl + 2
        return buf[nl + 2:nl + 2 + n], nl + 4 + n
    if kind == b"*":
        n = int(line)
        if n < 0:
            return None, nl + 2
        items, pos = [], nl + 2
        for _ in range(n):
            item, pos = _parse_at(buf, pos)
            items.append(item)
        return items, pos
    raise ProtocolError(f"not RESP2: {buf[pos:pos + 40]!r}")


def unparse(value: Any) -> bytes:
    """The RESP2 bytes of a parsed value: a total order for sorting mixed values."""
    if isinstance(value, tuple):
        return value[0].encode() + value[1] + b"\r\n"
    if isinstance(value, int):
        return b":%d\r\n" % value
    if isinstance(value, bytes):
        return b"$%d\r\n%s\r\n" % (len(value), value)
    if value is None:
        return b"$-1\r\n"
    if isinstance(value, list):
        return b"*%d\r\n" % len(value) + b"".join(unparse(v) for v in value)
    return repr(value).encode()  # a normaliser's marker, e.g. 'positive'


class Conn:
    """A client connection with explicit deadlines. exchange() sends a pipeline and reads its
    replies at the same time (poll), so neither side can stall the other on full buffers."""

    def __init__(self, port: int, connect_timeout: float) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=connect_timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        self._poll = select.poll()
        self._poll.register(self.sock, select.POLLIN)
        self._buf = bytearray()
        self._pos = 0
        self.dead = False

    def exchange(self, data: bytes, waits: Sequence[float], bound: float) -> list[Reply]:
        """Sends `data`, then returns len(waits) replies. Reply i may take `bound + waits[i]`
        seconds counted from the last progress (a reply completed, or bytes sent). After a
        failure the remaining replies are NoReply and the connection is dead."""
        replies: list[Reply] = []
        view, sent = memoryview(data), 0
        progress = time.monotonic()
        while True:
            if self._take_replies(replies, len(waits)):
                progress = time.monotonic()
            if sent == len(view) and len(replies) == len(waits):
                return replies
            wait = waits[len(replies)] if len(replies) < len(waits) else 0.0
            remaining = progress + bound + wait - time.monotonic()
            if remaining <= 0:
                return self._fail(replies, len(waits), HANG)
            self._poll.modify(self.sock, select.POLLIN | (select.POLLOUT if sent < len(view) else 0))
            events = dict(self._poll.poll(min(remaining, 1.0) * 1000))
            ready = events.get(self.sock.fileno(), 0)
            try:
                if ready & (select.POLLIN | select.POLLHUP | select.POLLERR) and not self._recv():
                    return self._fail(replies, len(waits), CLOSED)
                if ready & select.POLLOUT and sent < len(view):
                    sent += self.sock.send(view[sent:sent + SEND_CHUNK])
                    progress = time.monotonic()
            except BlockingIOError:
                continue
            except OSError:  # reset, broken pipe
                return self._fail(replies, len(waits), CLOSED)

    def _take_replies(self, replies: list[Reply], wanted: int) -> bool:
        """Moves complete replies from the buffer to `replies`; True if there was one."""
        before = len(replies)
        while len(replies) < wanted:
            end = frame_end(self._buf, self._pos)
            if end < 0:
                break
            replies.append(bytes(self._buf[self._pos:end]))
            self._pos = end
        if self._pos > COMPACT_AT or self._pos == len(self._buf):
            del self._buf[:self._pos]
            self._pos = 0
        return len(replies) > before

    def _recv(self) -> bool:
        chunk = self.sock.recv(RECV_CHUNK)
        if not chunk:
            return False
        self._buf += chunk
        return True

    def _fail(self, replies: list[Reply], wanted: int, why: NoReply) -> list[Reply]:
        self.close()
        return replies + [why] * (wanted - len(replies))

    def send_and_close(self, data: bytes) -> None:
        """Sends what the socket takes at once, then closes: a client vanishing mid-request or
        before reading its reply."""
        try:
            self.sock.send(data)
        except OSError:
            pass
        self.close()

    def close(self) -> None:
        self.dead = True
        self.sock.close()
