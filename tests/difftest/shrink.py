"""Delta debugging of a failing stream down to a minimal reproduction.

The program is a list of ops. Shrinking runs ddmin (Zeller) at four levels, each keeping the
failure's signature (its kind, and the command name of a differing reply): whole ops, then the
steps of the remaining ops, then the commands of each multi-command step (pipelines,
transactions), then the keys of variadic commands (MGET/MSET/DEL/...). Bugs that depend on a
count (a transaction of 255+ commands, an MGET of 256+ keys) would cost ddmin one trial per
element, so the last two levels first bisect the shortest failing prefix and then run ddmin
with coarse chunks only. Every trial is bounded by a shared budget of trials and seconds.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, Optional, Sequence, TypeVar

from execute import Failure
from normalise import EXACT
from ops import Call, Close, Command, Op, Send, Step, Vanish, cmd

T = TypeVar("T")

# Commands whose arguments after the name are keys (or key/value pairs for MSET) that can be
# dropped one by one without making the command invalid.
VARIADIC_KEYS = {b"MGET": 1, b"DEL": 1, b"UNLINK": 1, b"EXISTS": 1, b"TOUCH": 1, b"MSET": 2}
COARSE_CHUNKS = 16
# A hang or crash often depends on timing (a use-after-free that ASan sees only when the freed
# memory is touched again): such a trial counts as failing if any of this many runs fails.
NO_ANSWER_ATTEMPTS = 3
PING = cmd("PING")


class Budget:
    """At most `trials` trials and `seconds` of wall time, over all levels."""

    def __init__(self, trials: int, seconds: float) -> None:
        self.trials_left = trials
        self.deadline = time.monotonic() + seconds

    def spend(self) -> bool:
        if self.trials_left <= 0 or time.monotonic() >= self.deadline:
            return False
        self.trials_left -= 1
        return True


def ddmin(items: Sequence[T], fails: Callable[[list[T]], bool], budget: Budget,
          max_chunks: Optional[int] = None) -> list[T]:
    """A 1-minimal failing subsequence of `items` (which fails), as far as the budget allows:
    tries each of n chunks, then each complement, refining n when neither fails. With
    max_chunks, stops instead of refining beyond that many chunks."""
    items = list(items)
    n = 2
    while len(items) >= 2 and (max_chunks is None or n <= max_chunks):
        chunks = _split(items, n)
        candidates = [(c, 2) for c in chunks]  # a failing chunk: start over with halves
        if len(chunks) > 2:  # (with two chunks the complements are the chunks)
            candidates += [(_without(chunks, i), max(n - 1, 2)) for i in range(len(chunks))]
        for candidate, next_n in candidates:
            if not budget.spend():
                return items
            if fails(candidate):
                items, n = candidate, next_n
                break
        else:
            if n >= len(items):
                return items
            n = min(2 * n, len(items))
    return items


def shortest_prefix(items: Sequence[T], fails: Callable[[list[T]], bool], budget: Budget,
                    keep_last: bool) -> list[T]:
    """Bisects the shortest prefix of `items` (which fails) that still fails, assuming longer
    prefixes fail too. keep_last: every candidate also ends with the last item (EXEC)."""
    items = list(items)

    def candidate(k: int) -> list[T]:
        return items[:k] + (items[-1:] if keep_last and k < len(items) else [])

    lo, hi = 0, len(items)  # candidate(hi) fails; candidate(lo) is not known to
    while hi - lo > 1 and budget.spend():
        mid = (lo + hi) // 2
        if fails(candidate(mid)):
            hi = mid
        else:
            lo = mid
    return candidate(hi)


def _split(items: list[T], n: int) -> list[list[T]]:
    size, extra = divmod(len(items), n)
    chunks, start = [], 0
    for i in range(n):
        end = start + size + (1 if i < extra else 0)
        chunks.append(items[start:end])
        start = end
    return [c for c in chunks if c]


def _without(chunks: list[list[T]], i: int) -> list[T]:
    return [x for j, c in enumerate(chunks) if j != i for x in c]


# --------------------------------------------------------------------------------------------
# The levels
# --------------------------------------------------------------------------------------------

RunTrial = Callable[[list[Op]], Optional[Failure]]


@dataclasses.dataclass
class Shrunk:
    program: list[Op]
    failure: Optional[Failure]  # what the minimal program produces; None: it no longer fails
    trials: int


class Shrinker:
    """Shrinks `program` while run_trial(program) still fails with `signature`."""

    def __init__(self, run_trial: RunTrial, signature: tuple[str, ...], budget: Budget) -> None:
        self._run_trial = run_trial
        self._signature = signature
        self._budget = budget
        self._attempts = NO_ANSWER_ATTEMPTS if signature == ("no-answer",) else 1
        self._trials = 0
        self.last_failure: Optional[Failure] = None

    def fails(self, program: list[Op]) -> bool:
        self._trials += 1
        program = realign_exec(program)
        for _ in range(self._attempts):
            failure = self._run_trial(program)
            if failure is not None and failure.signature() == self._signature:
                self.last_failure = failure
                return True
        return False

    def shrink(self, program: list[Op]) -> Optional[Shrunk]:
        """None if the program does not fail with the signature in the first place."""
        if not self._budget.spend() or not self.fails(program):
            return None
        program = ddmin(program, self.fails, self._budget)
        program = self._shrink_steps(program)
        program = self._shrink_commands(program)
        program = self._plain_middles(program)
        program = self._shrink_arguments(program)
        # The report shows what the final program does, and whether it still fails by itself.
        self.last_failure = None
        reproduces = self.fails(program)
        return Shrunk(realign_exec(program), self.last_failure if reproduces else None,
                      self._trials)

    def _shrink_steps(self, program: list[Op]) -> list[Op]:
        units = [(i, step) for i, op in enumerate(program) for step in op.steps]

        def rebuild(kept: list[tuple[int, Step]]) -> list[Op]:
            return [dataclasses.replace(op, steps=tuple(s for j, s in kept if j == i))
                    for i, op in enumerate(program) if any(j == i for j, _ in kept)]

        return rebuild(ddmin(units, lambda kept: self.fails(rebuild(kept)), self._budget))

    def _shrink_commands(self, program: list[Op]) -> list[Op]:
        for i, op in enumerate(program):
            for j, step in enumerate(op.steps):
                if isinstance(step, (Call, Send)) and len(step.commands) > 1:
                    def with_commands(commands: list[Command], i=i, j=j) -> list[Op]:
                        return _replace_step(program, i, j, dataclasses.replace(
                            program[i].steps[j], commands=tuple(commands)))
                    program = with_commands(self._reduce(
                        step.commands, lambda c: self.fails(with_commands(c)), keep_last=True))
        return program

    def _plain_middles(self, program: list[Op]) -> list[Op]:
        """When only the number of commands in a step matters (a transaction of 255 commands),
        PING for every command but the first and the last says so more clearly: one trial per
        step of more than two commands."""
        for i, op in enumerate(program):
            for j, step in enumerate(op.steps):
                if not isinstance(step, (Call, Send)) or len(step.commands) <= 2:
                    continue
                if not self._budget.spend():
                    return program
                first, last = step.commands[0], step.commands[-1]
                middle = [PING] * (len(step.commands) - 2)
                plain = dataclasses.replace(step, commands=(first, *middle, last))
                candidate = _replace_step(program, i, j, plain)
                if self.fails(candidate):
                    program = candidate
        return program

    def _reduce(self, items: Sequence[T], fails: Callable[[list[T]], bool],
                keep_last: bool) -> list[T]:
        """Prefix bisection, then ddmin with at most COARSE_CHUNKS chunks."""
        items = shortest_prefix(items, fails, self._budget, keep_last)
        return ddmin(items, fails, self._budget, max_chunks=COARSE_CHUNKS)

    def _shrink_arguments(self, program: list[Op]) -> list[Op]:
        for i, op in enumerate(program):
            for j, step in enumerate(op.steps):
                if not isinstance(step, (Call, Send)):
                    continue
                for k, command in enumerate(step.commands):
                    group = VARIADIC_KEYS.get(command.args[0].upper())
                    if group is None or len(command.args) <= 1 + group:
                        continue
                    units = [command.args[p:p + group] for p in range(1, len(command.args), group)]

                    def with_units(kept: list, i=i, j=j, k=k, command=command) -> list[Op]:
                        args = (command.args[0],) + tuple(a for unit in kept for a in unit)
                        current = program[i].steps[j]
                        commands = list(current.commands)
                        commands[k] = dataclasses.replace(command, args=args)
                        return _replace_step(program, i, j,
                                             dataclasses.replace(current, commands=tuple(commands)))

                    program = with_units(self._reduce(
                        units, lambda u: self.fails(with_units(u)), keep_last=False))
        return program


_NOT_QUEUED = (b"MULTI", b"WATCH", b"EXEC", b"DISCARD")  # inside MULTI: no element of EXEC


def realign_exec(program: list[Op]) -> list[Op]:
    """EXEC compares element i of its array by the normaliser of the i-th command queued since
    MULTI on its connection (Command.inner). Once ops, steps or queued commands were dropped,
    inner is recomputed from the commands still queued (queued commands keep their norm), so
    that an element is not compared by another command's normaliser. Generated programs are
    returned unchanged."""
    queued: dict[int, Optional[list[str]]] = {}
    out: list[Op] = []
    for op in program:
        steps: list[Step] = []
        for step in op.steps:
            if isinstance(step, (Close, Vanish)):
                queued.pop(step.conn, None)
            elif isinstance(step, (Call, Send)):
                commands = []
                for command in step.commands:
                    name = command.args[0].upper() if command.args else b""
                    current = queued.get(step.conn)
                    if current is None:
                        if name == b"MULTI":
                            queued[step.conn] = []
                    elif name == b"EXEC":
                        if _effective(command.inner) != _effective(current):
                            command = dataclasses.replace(command, inner=_effective(current))
                        queued[step.conn] = None
                    elif name == b"DISCARD":
                        queued[step.conn] = None
                    elif name not in _NOT_QUEUED:
                        current.append(command.norm)
                    commands.append(command)
                step = dataclasses.replace(step, commands=tuple(commands))
            steps.append(step)
        out.append(dataclasses.replace(op, steps=tuple(steps)))
    return out


def _effective(inner: Sequence[str]) -> tuple[str, ...]:
    """Per-element normalisers that are all exact are no normalisers at all."""
    return tuple(inner) if any(n != EXACT for n in inner) else ()


def _replace_step(program: list[Op], i: int, j: int, step: Step) -> list[Op]:
    op = program[i]
    steps = op.steps[:j] + (step,) + op.steps[j + 1:]
    return program[:i] + [dataclasses.replace(op, steps=steps)] + program[i + 1:]
