"""Normalisers: what of a reply must be equal on both sides when the bytes legitimately differ.

Each maps a parsed reply value to a comparable value. Commands name theirs (Command.norm) so a
generated stream stays plain data. Only what is nondeterministic on one single server is
normalised: hash-table order (depends on each server's random hash seed), time (TTL countdowns,
idle and delivery times) and the clock-based IDs of XADD '*'. Everything else is compared byte
for byte.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Sequence

from resp import NoReply, Reply, parse, unparse

EXACT = "exact"


def _sorted(value: Any) -> Any:
    """Set members, hash fields, KEYS: one array in hash-table order."""
    return sorted(value, key=unparse) if isinstance(value, list) else value


def _sorted_pairs(value: Any) -> Any:
    """HGETALL-like flat field/value arrays in hash-table order."""
    if not isinstance(value, list):
        return value
    pairs = [(unparse(value[i]), unparse(value[i + 1])) for i in range(0, len(value) - 1, 2)]
    return sorted(pairs)


def _ttl(value: Any) -> Any:
    """TTL/PTTL/EXPIRETIME count down (or depend on when the expiry was set): any positive
    value is 'positive'; -1 (no expiry) and -2 (no key) stay exact."""
    return "positive" if isinstance(value, int) and value > 0 else value


_STREAM_ID = re.compile(rb"\d+-\d+")


def _stream_id(value: Any) -> Any:
    """XADD with '*': the ID comes from each server's clock; only its shape is compared."""
    return "<ms-seq>" if isinstance(value, bytes) and _STREAM_ID.fullmatch(value) else value


_TIME_FIELDS = {b"idle", b"inactive", b"seen-time", b"active-time", b"delivery-time"}


def _no_times(value: Any) -> Any:
    """XINFO CONSUMERS / XINFO STREAM FULL: field/value lists with idle and delivery times
    (and, in FULL's pending entries, delivery timestamps in ms since the epoch)."""
    return _epoch_ms(_drop_fields(value, _TIME_FIELDS))


def _epoch_ms(value: Any) -> Any:
    if isinstance(value, list):
        return [_epoch_ms(v) for v in value]
    return "<time>" if isinstance(value, int) and value > 10**12 else value


_CLOCK_ID = re.compile(rb"\d{13,}-\d+")
_RADIX_FIELDS = {b"radix-tree-keys", b"radix-tree-nodes"}


def _clock_ids(value: Any) -> Any:
    """Whole-stream reads (XRANGE, XINFO STREAM FULL) in the solo phase: IDs that XADD '*'
    took from the clock (13+ digits of milliseconds; explicit IDs stay far below) are
    compared by shape, and so is the radix tree those IDs shape; time fields are dropped as
    in no-times. Streams with explicit IDs only stay exact."""
    marked = _mark_clock_ids(value)
    if marked == value:
        return _no_times(value)
    return _no_times(_drop_fields(marked, _RADIX_FIELDS))


def _mark_clock_ids(value: Any) -> Any:
    if isinstance(value, list):
        return [_mark_clock_ids(v) for v in value]
    return "<clock-id>" if isinstance(value, bytes) and _CLOCK_ID.fullmatch(value) else value


def _drop_fields(value: Any, names: set[bytes]) -> Any:
    """Removes name/value pairs from flat field lists, at any depth."""
    if not isinstance(value, list):
        return value
    if value and len(value) % 2 == 0 and all(isinstance(k, bytes) for k in value[0::2]):
        return [x for i in range(0, len(value), 2) if value[i] not in names
                for x in (value[i], _drop_fields(value[i + 1], names))]
    return [_drop_fields(v, names) for v in value]


def _xpending(value: Any) -> Any:
    """XPENDING's extended form: [id, consumer, idle ms, deliveries] per entry, idle dropped."""
    if isinstance(value, list):
        return [[e[0], e[1], e[3]] if isinstance(e, list) and len(e) == 4 else e for e in value]
    return value


NORMALISERS: dict[str, Callable[[Any], Any]] = {
    "sorted": _sorted,
    "pairs": _sorted_pairs,
    "ttl": _ttl,
    "stream-id": _stream_id,
    "no-times": _no_times,
    "clock-ids": _clock_ids,
    "xpending": _xpending,
}


def _unsubscribed(values: list[Any]) -> Any:
    """(P|S)UNSUBSCRIBE without arguments: one reply per subscription dropped, in the order of
    the server's hash table (through the proxy, SUNSUBSCRIBE's frames come from every master as
    they arrive). The channels as a multiset, the remaining-counts as a sequence."""
    if not all(isinstance(v, list) and len(v) == 3 for v in values):
        return values
    return sorted(unparse(v[:2]) for v in values), [v[2] for v in values]


def _messages(values: list[Any]) -> Any:
    """The messages one PUBLISH delivered to one subscriber: the channel's own message first,
    exact and in order; then one pmessage per matching pattern, in the order the server walks
    its table of every client's patterns (hash order): compared as a multiset."""
    def is_pmessage(v: Any) -> bool:
        return isinstance(v, list) and len(v) == 4 and v[0] == b"pmessage"
    return ([v for v in values if not is_pmessage(v)],
            sorted(unparse(v) for v in values if is_pmessage(v)))


# Normalisers of all the replies of one command together (commands with several replies).
GROUP_NORMALISERS: dict[str, Callable[[list[Any]], Any]] = {
    "unsubscribed": _unsubscribed,
    "messages": _messages,
}


def same_group(norm: str, got: Sequence[Reply], want: Sequence[Reply]) -> bool:
    """True when the replies of one multi-reply command are the same as a group."""
    if list(got) == list(want):
        return True
    if any(isinstance(r, NoReply) for r in [*got, *want]):
        return False
    normalise = GROUP_NORMALISERS[norm]
    return normalise([parse(r) for r in got]) == normalise([parse(r) for r in want])


def normalised(norm: str, reply: bytes, inner: Sequence[str] = ()) -> Any:
    """The comparable form of `reply`. With `inner` (EXEC), element i of the array is
    normalised by inner[i], the normaliser of the i-th queued command."""
    value = parse(reply)
    if inner and isinstance(value, list) and len(value) == len(inner):
        return [_apply(n, v) for n, v in zip(inner, value)]
    return _apply(norm, value)


def _apply(norm: str, value: Any) -> Any:
    if norm == EXACT or isinstance(value, tuple):  # errors and status lines stay exact
        return value
    return NORMALISERS[norm](value)


def same(norm: str, got: Reply, want: Reply, inner: Sequence[str] = ()) -> bool:
    """True when the two replies are equal bytes, or equal after normalisation."""
    if got == want:
        return True
    if isinstance(got, NoReply) or isinstance(want, NoReply):
        return False
    if norm == EXACT and not any(n != EXACT for n in inner):
        return False
    return normalised(norm, got, inner) == normalised(norm, want, inner)
