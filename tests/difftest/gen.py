"""The generation context of one client stream: its namespace and its random choices.

Everything a stream contains is drawn from one random.Random seeded by (seed, client), so a
stream is replayable from the seed alone. Generation never looks at replies.

Names: every key is dt:<token>:{<tag>}:<name>, every channel and library name contains the
token s<seed>c<client>e<epoch>. Tags do not contain the token, so a key keeps its slot when the
shrinker replays the stream under another epoch (a fresh keyspace): it renames the token only.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import random
import string
from typing import Any, Callable, Sequence, TypeVar

from integration_harness import harness

T = TypeVar("T")

TAGS_PER_CLIENT = 48      # slots a client's data keys live in
KEYS_PER_KIND = 4         # names per (kind, tag): keys get reused, so they grow and shrink
MULTIKEY_POOL = 12000     # mk<i> keys, each in its own slot (tag m<i>), for split commands
MEMBERS = 300             # distinct member / field names (collisions make updates)

# Sizes where encodings or buffers switch: listpack/intset limits (128, 512 entries; 64-byte
# values), 16 KiB and 64 KiB reply and I/O buffers, 1 MiB chunks, the proxy's 1024 pending
# requests per client, 255/256 (one byte), 2^16.
COUNT_EDGES = (0, 1, 2, 3, 15, 16, 17, 63, 64, 65, 127, 128, 129, 254, 255, 256, 257, 511, 512,
               513, 1023, 1024, 1025, 2047, 2048, 2049, 4095, 4096, 4097, 8191, 8192, 8193,
               10000, 16383, 16384, 16385, 32767, 32768, 32769, 65535, 65536, 65537)
SIZE_EDGES = (0, 1, 2, 63, 64, 65, 255, 256, 257, 1023, 1024, 1025, 4095, 4096, 4097, 16383,
              16384, 16385, 65535, 65536, 65537)
BIG_SIZE_EDGES = (1 << 20, (1 << 20) - 1, (1 << 20) + 1, 2 << 20, (4 << 20) - 1, 4 << 20,
                  (4 << 20) + 1, 6 << 20)
INT_EDGES = (0, 1, -1, 2**31 - 1, -2**31, 2**32, 2**53, 2**53 + 1, 2**63 - 1, -2**63)
# The slot ranges of the three masters `redis-cli --cluster create` makes (0-5460, 5461-10922,
# 10923-16383): a tag in each part reaches each master of the test cluster.
MASTER_PARTS = ((0, 5460), (5461, 10922), (10923, 16383))


@functools.lru_cache(maxsize=None)
def tag_for_slot(slot: int) -> str:
    """The shortest tag (letters and digits) whose {tag} hashes to `slot`: found by search,
    bounded by the candidates of up to 4 characters (every slot has one of 3 or fewer)."""
    alphabet = string.ascii_letters + string.digits
    for length in range(1, 5):
        for chars in itertools.product(alphabet, repeat=length):
            tag = "".join(chars)
            if harness.key_slot(f"{{{tag}}}") == slot:
                return tag
    raise ValueError(f"no tag of up to 4 characters for slot {slot}")


@dataclasses.dataclass(frozen=True)
class Space:
    """The names of one client stream under one epoch."""

    seed: int
    client: int
    epoch: int = 0

    @property
    def token(self) -> str:
        return f"s{self.seed}c{self.client}e{self.epoch}"

    @property
    def key_prefix(self) -> str:
        return f"dt:{self.token}:"

    def key(self, tag: str, name: str) -> str:
        return f"{self.key_prefix}{{{tag}}}:{name}"

    def channel(self, name: str) -> str:
        return f"{self.key_prefix}ch:{name}"

    def lua_name(self, name: str) -> str:
        """A library or function name: letters, digits and underscores only."""
        return f"dt_{self.token}_{name}"

    def at_epoch(self, epoch: int) -> Space:
        return dataclasses.replace(self, epoch=epoch)


class Gen:
    """Random choices for one stream, biased toward the boundaries that break things."""

    def __init__(self, seed: int, client: int, space: Space) -> None:
        self.rng = random.Random(f"difftest:{seed}:{client}")
        self.space = space
        self.seed = seed
        self.client = client
        self.tags = [f"t{self.rng.getrandbits(32):x}" for _ in range(TAGS_PER_CLIENT)]
        self._fresh = 0
        self.stream_ids: dict[str, list[int]] = {}  # stream key -> [ms, seq] of its last XADD
        # Scripts (indexes into families.SCRIPTS) this stream sent in EVAL, EVAL_RO or SCRIPT
        # LOAD, whatever became of them: EVALSHA is mostly generated for these.
        self.sent_scripts: set[int] = set()

    # ---- choices ---------------------------------------------------------------------------

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def pick(self, items: Sequence[T]) -> T:
        return items[self.rng.randrange(len(items))]

    def run_one(self, makers: Sequence[Callable[[], T]]) -> T:
        """Calls one of the makers, uniformly."""
        return self.pick(makers)()

    def count(self, lo: int, hi: int) -> int:
        """An int in [lo, hi]: often a boundary, mostly small, sometimes anything."""
        r = self.rng.random()
        if r < 0.3:
            edges = [e for e in COUNT_EDGES if lo <= e <= hi] + [hi]
            return self.pick(edges)
        if r < 0.85:
            return min(hi, lo + int(self.rng.expovariate(0.25)))
        return self.rng.randint(lo, hi)

    def size(self, big: bool = False) -> int:
        """A value size: mostly short, often a buffer or encoding boundary; `big`: MiB."""
        if big:
            return self.pick(BIG_SIZE_EDGES) if self.chance(0.6) else self.rng.randint(1 << 20, 6 << 20)
        r = self.rng.random()
        if r < 0.12:
            return self.pick(SIZE_EDGES)
        if r < 0.9:
            return int(self.rng.expovariate(1 / 12))
        return self.rng.randint(0, 2000)

    def value(self, big: bool = False) -> bytes:
        """Bytes of a random size: text, binary (with CR LF and NUL) or digits."""
        n = self.size(big)
        kind = self.rng.random()
        if kind < 0.5:
            return bytes(self.rng.choices(b"abcdefghijklmnopqrstuvwxyz0123456789 ", k=n)) if n < 4096 \
                else self.rng.randbytes(n).hex().encode()[:n]
        if kind < 0.85:
            return self.rng.randbytes(n)
        return str(self.rng.randint(-10**6, 10**6)).encode()

    def small(self) -> bytes:
        """A short value (split commands with thousands of keys)."""
        return self.rng.randbytes(self.rng.randint(0, 12))

    def integer(self) -> int:
        if self.chance(0.2):
            return self.pick(INT_EDGES)
        return self.rng.randint(-1000, 1000)

    def number(self) -> str:
        """A float argument as clients send it."""
        return self.pick(["0", "1", "-1", "1.5", "-0.25", "3.0e3", "1e-7", "+inf", "-inf",
                          str(self.rng.randint(-100, 100)), f"{self.rng.uniform(-1e6, 1e6):.6f}"])

    def member(self) -> str:
        n = self.rng.randrange(MEMBERS)
        return f"m{n}" if self.chance(0.7) else str(n)

    def field(self) -> str:
        return f"f{self.rng.randrange(MEMBERS)}"

    # ---- names -----------------------------------------------------------------------------

    def tag(self) -> str:
        return self.pick(self.tags)

    def other_tag(self, tag: str) -> str:
        """A tag of this client's whose slot differs from `tag`'s."""
        slot = harness.key_slot(f"{{{tag}}}")
        others = [t for t in self.tags if harness.key_slot(f"{{{t}}}") != slot]
        return self.pick(others)

    def tag_on_master(self, part: int) -> str:
        """A tag of this client's whose slot lies in MASTER_PARTS[part] (any tag if none does)."""
        lo, hi = MASTER_PARTS[part]
        tags = [t for t in self.tags if lo <= harness.key_slot(f"{{{t}}}") <= hi]
        return self.pick(tags or self.tags)

    def key(self, kind: str, tag: str | None = None) -> str:
        """One of the reused keys of a kind (str, int, hash, list, set, zset, stream, ...)."""
        return self.space.key(tag or self.tag(), f"{kind}{self.rng.randrange(KEYS_PER_KIND)}")

    def fresh(self, kind: str, tag: str | None = None) -> str:
        """A key no other op of this stream uses."""
        self._fresh += 1
        return self.space.key(tag or self.tag(), f"{kind}.{self._fresh}")

    def fresh_name(self, what: str) -> str:
        self._fresh += 1
        return f"{what}{self._fresh}"

    def multikey(self) -> str:
        i = self.rng.randrange(MULTIKEY_POOL)
        return self.space.key(f"m{i}", f"mk{i}")

    # ---- stream IDs ------------------------------------------------------------------------

    def next_stream_id(self, key: str) -> str:
        """An explicit ID above the last one this stream gave the key (so XADD succeeds unless
        the key was deleted and re-created meanwhile, which is compared as well)."""
        last = self.stream_ids.setdefault(key, [0, 0])
        if self.chance(0.5):
            last[1] += self.rng.randint(1, 3)
        else:
            last[0] += self.rng.randint(1, 1000)
            last[1] = self.rng.randint(0, 2)
        return f"{last[0]}-{last[1]}"

    def old_stream_id(self, key: str) -> str:
        """An ID at or below the key's last one (for XRANGE bounds, XDEL, XACK, ...)."""
        ms, seq = self.stream_ids.get(key, [0, 0])
        return f"{self.rng.randint(0, ms)}-{self.rng.randint(0, max(seq, 3))}"


def as_args(*parts: Any) -> list[Any]:
    """Flattens nested lists of arguments (field/value lists and the like)."""
    out: list[Any] = []
    for p in parts:
        if isinstance(p, (list, tuple)):
            out.extend(p)
        else:
            out.append(p)
    return out
