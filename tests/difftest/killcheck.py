"""The end-of-run kill check, through the proxy only (a single server needs no check of this):
a runaway read-only script and a runaway no-writes function must be stoppable with SCRIPT KILL
and FUNCTION KILL sent through the proxy, their callers must get Redis's "killed by user" error,
and every master must answer again afterwards.

For each of the two:
  1. a background connection sends the runaway call and does not read (EVAL of an endless loop
     with no keys; FCALL_RO of a function FUNCTION LOAD'ed through the proxy, flagged no-writes);
  2. a control connection sends SCRIPT KILL (FUNCTION KILL) until it answers +OK: -NOTBUSY is
     the answer while the call has not started yet, anything else is a failure; bounded by
     KILL_DEADLINE_S;
  3. the background call must have been answered with an error containing "killed by user" (or
     the proxy's request-timeout error, if that came first);
  4. a key on each master (hash tags of slots 0, 6000 and 12000) must answer SET, GET and DEL.

Redis takes SCRIPT KILL only once the script ran past busy-reply-threshold: before that the
node runs nothing else at all. Its default, 5000 ms, equals the proxy's request timeout, so the
kill would race the proxy's timeout of the very SCRIPT KILL; the difftest cluster runs with
busy-reply-threshold 200 ms (CLUSTER_ARGS in difftest.py).
"""

from __future__ import annotations

import select
import time
from typing import Optional, Sequence

from gen import tag_for_slot
from resp import Conn, NoReply, Reply, encode

KILL_DEADLINE_S = 20.0   # for the kill to be accepted (NOTBUSY until the call started)
KILL_RETRY_S = 0.05      # between two NOTBUSY answers
CHECK_SLOTS = (0, 6000, 12000)  # one slot of each master of the 3-master cluster
SPIN_SCRIPT = "local i = 0 while true do i = i + 1 end"
KILLED = b"killed by user"
TIMED_OUT = b"-ERR slotpilot: request timed out"


def _library(name: str) -> str:
    return (f"#!lua name={name}\n"
            f"redis.register_function{{function_name='{name}_spin', callback=function(keys, args) "
            f"local i = 0 while true do i = i + 1 end end, flags={{'no-writes'}}}}")


def _show(reply: Reply) -> str:
    return str(reply) if isinstance(reply, NoReply) else repr(reply[:300])


def _call(port: int, bound: float, *commands: list) -> list[Reply]:
    """Commands as one pipeline on a fresh connection; their replies."""
    try:
        conn = Conn(port, bound)
    except OSError as e:
        return [NoReply(f"connect: {e}")] * len(commands)
    try:
        return conn.exchange(b"".join(encode(c) for c in commands), [0.0] * len(commands), bound)
    finally:
        if not conn.dead:
            conn.close()


def _kill_runaway(port: int, bound: float, runaway: list, kill: str) -> Optional[str]:
    """Steps 1 to 3 for one runaway call; None when they held, else what went wrong."""
    background = Conn(port, bound)
    control = Conn(port, bound)
    try:
        background.exchange(encode(runaway), [], bound)  # sent, not read
        started = time.monotonic()
        tries, notbusy = 0, 0
        while True:
            tries += 1
            readable, _, _ = select.select([background.sock], [], [], 0)
            if readable:
                [early] = background.exchange(b"", [0.0], bound)
                return (f"the runaway {runaway[0]} was answered before {kill} KILL took: "
                        f"{_show(early)}")
            [reply] = control.exchange(encode([kill, "KILL"]), [0.0], bound)
            if reply == b"+OK\r\n":
                break
            if not (isinstance(reply, bytes) and reply.startswith(b"-NOTBUSY")):
                return f"{kill} KILL answered {_show(reply)} (after {notbusy} NOTBUSY)"
            notbusy += 1
            if time.monotonic() - started > KILL_DEADLINE_S:
                return (f"{kill} KILL still answered NOTBUSY after {KILL_DEADLINE_S:g} s "
                        f"({tries} tries): the runaway {runaway[0]} never ran, or the proxy "
                        "did not send the kill to its master")
            time.sleep(KILL_RETRY_S)
        [answer] = background.exchange(b"", [0.0], bound)
        if not (isinstance(answer, bytes) and answer.startswith(b"-")
                and (KILLED in answer or answer.startswith(TIMED_OUT))):
            return (f"{kill} KILL answered +OK, but the runaway {runaway[0]} got "
                    f"{_show(answer)}, not an error saying 'killed by user'")
        return None
    finally:
        for conn in (background, control):
            if not conn.dead:
                conn.close()


def _masters_answer(port: int, bound: float, token: str) -> Optional[str]:
    """Step 4: SET, GET and DEL of a key on each master."""
    for slot in CHECK_SLOTS:
        key = f"dt:{token}:{{{tag_for_slot(slot)}}}:killcheck"
        got = _call(port, bound, ["SET", key, "alive"], ["GET", key], ["DEL", key])
        if got != [b"+OK\r\n", b"$5\r\nalive\r\n", b":1\r\n"]:
            return (f"afterwards, SET/GET/DEL of {key} (slot {slot}) answered "
                    f"{[_show(r) for r in got]}")
    return None


def kill_check(port: int, seed: int, bound: float) -> Optional[str]:
    """The whole check against the proxy on `port`; None when it held, else what went wrong.
    `bound`: how long any one reply may take (the proxy's request timeout plus grace)."""
    try:
        return _kill_check(port, seed, bound)
    except OSError as e:  # a connection refused: the proxy is gone
        return f"could not connect to the proxy: {e}"


def _kill_check(port: int, seed: int, bound: float) -> Optional[str]:
    token = f"killcheck-s{seed}"
    problem = _kill_runaway(port, bound, ["EVAL", SPIN_SCRIPT, "0"], "SCRIPT") \
        or _masters_answer(port, bound, token)
    if problem:
        return f"SCRIPT KILL of a runaway EVAL: {problem}"
    lib = f"dt_killcheck_s{seed}"
    [loaded] = _call(port, bound, ["FUNCTION", "LOAD", "REPLACE", _library(lib)])
    if loaded != b"$%d\r\n%s\r\n" % (len(lib), lib.encode()):
        return f"FUNCTION LOAD of the spinning function answered {_show(loaded)}"
    try:
        problem = _kill_runaway(port, bound, ["FCALL_RO", f"{lib}_spin", "0"], "FUNCTION") \
            or _masters_answer(port, bound, token)
    finally:
        [deleted] = _call(port, bound, ["FUNCTION", "DELETE", lib])
    if problem:
        return f"FUNCTION KILL of a runaway FCALL_RO: {problem}"
    if deleted != b"+OK\r\n":
        return f"FUNCTION DELETE {lib} after the kill answered {_show(deleted)}"
    return None


def stop_runaways(node_ports: Sequence[int], bound: float) -> None:
    """After a failed check: SCRIPT KILL and FUNCTION KILL straight to every node, so that a
    runaway left behind does not keep a master busy while failures are shrunk."""
    for port in node_ports:
        for kill in ("SCRIPT", "FUNCTION"):
            try:
                _call(port, bound, [kill, "KILL"])
            except OSError:
                pass
