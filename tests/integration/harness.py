"""Integration-test harness: a real Redis Cluster and the slotpilot binary on loopback ports.

Only the standard library and redis-py (Debian's python3-redis, run it with /usr/bin/python3).

Typical use::

    with RedisCluster(masters=3, replicas=1) as cluster:       # started, converged
        src = cluster.node_for_slot(1234)
        dst = next(m for m in cluster.masters() if m != src)
        cluster.open_slot(1234, src, dst)                      # IMPORTING, then MIGRATING
        cluster.migrate_keys(src, dst, 1234, count=10)
        cluster.finish_slot(1234, dst)                         # SETSLOT NODE on every master
        with Proxy(cluster) as proxy:
            proxy.client().set("foo", "bar")

Ground rules, all of which the harness enforces:
  * Every port P it uses, and P + 10000 (a cluster node's bus port), lies below 32768, where the
    kernel's ephemeral range starts, so outgoing connections never steal them.
  * Tests run in parallel processes. A port is reserved by an flock on /tmp/slotpilot-ports/<P>.lock
    held by the owning process for as long as it uses the port; the kernel drops the lock when the
    process dies, however it dies. Lock files are never deleted (deleting races with flock).
  * Every wait is bounded in time and raises HarnessTimeout naming what it waited for.
  * Processes are stopped by PID only. Children get PR_SET_PDEATHSIG=SIGKILL, so a test process
    killed with SIGKILL (e.g. a CTest timeout) does not leave servers behind; stop() is also
    registered with atexit, and SIGTERM is turned into SystemExit so atexit handlers run.
    (PDEATHSIG fires when the *thread* that started the child exits: start clusters from the main
    thread or from a thread that outlives them.)
  * Node logs stay in the cluster's temp dir until stop(); log_tail(node) shows them. Set
    SLOTPILOT_KEEP_TMP=1 to keep the directories after stop() for a post-mortem.

Bytes and text: redis-py returns bytes unless decode_responses=True. client(...) methods take
`decode` (default True: str replies, UTF-8). Pass decode=False for binary keys or exact bytes.
The harness's own queries are decoded, except key listings and MIGRATE, which work on raw bytes
so binary key names survive.
"""

from __future__ import annotations

import atexit
import ctypes
import dataclasses
import fcntl
import functools
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence, TypeVar

import redis

HOST = "127.0.0.1"
PORT_LOW = 12000  # [PORT_LOW, PORT_HIGH) for service ports; bus ports are port + BUS_OFFSET
PORT_HIGH = 22700  # 22699 + 10000 < 32768, the first ephemeral port
BUS_OFFSET = 10000
PORT_LOCK_DIR = Path("/tmp/slotpilot-ports")
SLOT_COUNT = 16384
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BINARY = REPO_ROOT / "build" / "debug" / "proxy" / "slotpilot"

_KEEP_TMP = os.environ.get("SLOTPILOT_KEEP_TMP", "") not in ("", "0")
_STOP_GRACE_S = 10.0  # SIGTERM -> SIGKILL
_ADMIN_SOCKET_TIMEOUT_S = 5.0  # bounds every harness query, e.g. to a node that hangs

T = TypeVar("T")


class HarnessError(RuntimeError):
    """Something in the environment did not behave as the harness needs."""


class HarnessTimeout(HarnessError, TimeoutError):
    """A bounded wait ran out."""


# --------------------------------------------------------------------------------------------
# Waiting, processes
# --------------------------------------------------------------------------------------------

# Errors that mean "not ready yet" while polling: connection refused/reset, timeouts, LOADING,
# CLUSTERDOWN, and so on.
_TRANSIENT_ERRORS = (redis.exceptions.RedisError, OSError)


def wait_for(pred: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Calls pred() until it returns something truthy and returns that value.

    Redis and OS errors raised by pred count as "not yet"; the last one is quoted if the wait
    times out. Raises HarnessTimeout after `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    last_error: Optional[BaseException] = None
    while True:
        try:
            value = pred()
            if value:
                return value
        except _TRANSIENT_ERRORS as e:  # noqa: PERF203 - polling loop
            last_error = e
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            raise HarnessTimeout(f"timed out after {timeout:g} s waiting for {what}{detail}")
        time.sleep(interval)


_LIBC = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int) -> Callable[[], None]:
    """A preexec_fn: the child gets SIGKILL when its parent dies (even by SIGKILL)."""

    def preexec() -> None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def _spawn(argv: Sequence[str], log_path: Path, cwd: Path) -> subprocess.Popen:
    """Starts argv in its own session with stdout+stderr appended to log_path."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            list(argv), cwd=cwd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=_die_with_parent(os.getpid()))


def _terminate_all(procs: Sequence[subprocess.Popen], sig: int = signal.SIGTERM,
                   grace: float = _STOP_GRACE_S) -> list[int]:
    """Sends sig to every process by PID at once, SIGKILLs those still alive `grace` seconds
    later, reaps them all and returns their exit codes (negative: killed by that signal)."""
    for proc in procs:
        _signal(proc, sig)
        _signal(proc, signal.SIGCONT)  # a SIGSTOPped process acts on nothing until continued
    deadline = time.monotonic() + grace
    for proc in procs:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal(proc, signal.SIGKILL)
    return [proc.wait(timeout=grace) for proc in procs]


def _terminate(proc: subprocess.Popen, sig: int = signal.SIGTERM,
               grace: float = _STOP_GRACE_S) -> int:
    """_terminate_all for one process."""
    return _terminate_all([proc], sig, grace)[0]


def _signal(proc: subprocess.Popen, sig: int) -> None:
    """Signals proc by PID unless it has already been reaped (so the PID cannot be reused)."""
    if proc.returncode is None:
        try:
            os.kill(proc.pid, sig)
        except ProcessLookupError:
            pass


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _sigterm_exits() -> None:
    """Makes SIGTERM raise SystemExit, so that atexit handlers stop our servers, unless the
    program installed its own handler. Only the main thread may set handlers."""
    if (threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL):
        signal.signal(signal.SIGTERM, _exit_on_signal)


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"<{path} is gone>"
    return "\n".join(text.splitlines()[-lines:])


# --------------------------------------------------------------------------------------------
# Ports
# --------------------------------------------------------------------------------------------


def _can_bind(port: int) -> bool:
    """True if a listener could bind 127.0.0.1:port now (SO_REUSEADDR, as redis-server does)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def _lock_port(port: int) -> Optional[int]:
    """Takes this process's exclusive flock on the port's lock file; returns the fd or None."""
    PORT_LOCK_DIR.mkdir(mode=0o1777, parents=True, exist_ok=True)
    fd = os.open(PORT_LOCK_DIR / f"{port}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


class PortBlock:
    """Consecutive loopback ports reserved for this process until release() (or exit).

    `ports` are the service ports; with `bus` the lock also covers each port + 10000.
    """

    def __init__(self, base: int, count: int, lock_fds: list[int]) -> None:
        self.base = base
        self.ports = list(range(base, base + count))
        self._lock_fds = lock_fds

    def release(self) -> None:
        """Drops the reservation. Idempotent."""
        for fd in self._lock_fds:
            os.close(fd)
        self._lock_fds = []

    def __enter__(self) -> PortBlock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"PortBlock({self.ports[0]}..{self.ports[-1]})"


def _try_reserve(base: int, count: int, bus: bool) -> Optional[PortBlock]:
    """Locks then probes every port of the block; all or nothing."""
    wanted = list(range(base, base + count))
    if bus:
        wanted += [p + BUS_OFFSET for p in wanted]
    fds: list[int] = []
    for port in wanted:
        fd = _lock_port(port)
        if fd is None or not _can_bind(port):
            if fd is not None:
                os.close(fd)
            for held in fds:
                os.close(held)
            return None
        fds.append(fd)
    return PortBlock(base, count, fds)


def free_port_block(n: int, *, bus: bool = True, attempts: int = 200) -> PortBlock:
    """Reserves n consecutive ports P..P+n-1 in [12000, 22700) that can be bound on 127.0.0.1
    now, together with P+10000.. when `bus` is set (cluster nodes). The start is random and the
    search is bounded by `attempts`. Keep the returned block until the ports are no longer used.
    """
    if not 0 < n <= PORT_HIGH - PORT_LOW:
        raise ValueError(f"cannot reserve {n} ports")
    rng = random.Random(os.getpid() ^ time.monotonic_ns())
    for _ in range(attempts):
        block = _try_reserve(rng.randrange(PORT_LOW, PORT_HIGH - n + 1), n, bus)
        if block is not None:
            return block
    raise HarnessError(f"no block of {n} free loopback ports after {attempts} attempts")


# --------------------------------------------------------------------------------------------
# Slots and keys
# --------------------------------------------------------------------------------------------


def _crc16_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return table


_CRC16 = _crc16_table()


def crc16(data: bytes) -> int:
    """CRC16-CCITT (XMODEM), the checksum Redis Cluster hashes keys with."""
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC16[((crc >> 8) ^ byte) & 0xFF]
    return crc


def key_slot(key: str | bytes) -> int:
    """The cluster slot of a key, with Redis's {hashtag} rule (see keyHashSlot in cluster.c)."""
    data = key.encode() if isinstance(key, str) else key
    start = data.find(b"{")
    if start != -1:
        end = data.find(b"}", start + 1)
        if end > start + 1:
            data = data[start + 1:end]
    return crc16(data) % SLOT_COUNT


@functools.lru_cache(maxsize=1)
def _hashtag_table() -> tuple[str, ...]:
    """For every slot, the first hex string (0, 1, 2, ...) that hashes there. One pass over the
    candidates until every slot has one (about 170k tries), not one search per slot."""
    table: list[Optional[str]] = [None] * SLOT_COUNT
    missing = SLOT_COUNT
    for i in range(64 * SLOT_COUNT):
        tag = format(i, "x")
        slot = crc16(tag.encode()) % SLOT_COUNT
        if table[slot] is None:
            table[slot] = tag
            missing -= 1
            if missing == 0:
                return tuple(table)  # type: ignore[arg-type]
    raise HarnessError(f"{missing} slots without a hashtag")


def hashtag_for_slot(slot: int) -> str:
    """A short string whose {hashtag} keys all land in `slot`."""
    if not 0 <= slot < SLOT_COUNT:
        raise ValueError(f"slot {slot} out of range")
    return _hashtag_table()[slot]


def keys_for_slot(slot: int, count: int, prefix: str = "key") -> list[str]:
    """count distinct key names that hash to `slot`: '{tag}:prefix:0', '{tag}:prefix:1', ..."""
    tag = hashtag_for_slot(slot)
    return [f"{{{tag}}}:{prefix}:{i}" for i in range(count)]


def _decode_keys(keys: Iterable[bytes], decode: bool) -> list:
    """Raw key names, or str with undecodable bytes kept as surrogates (reversible)."""
    return [k.decode("utf-8", "surrogateescape") if decode else k for k in keys]


# --------------------------------------------------------------------------------------------
# CLUSTER NODES
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class NodeInfo:
    """One line of CLUSTER NODES, as the node that was asked sees it.

    migrating/importing map slot -> peer node id and appear only on the `myself` line.
    """

    id: str
    host: str
    port: int
    bus_port: int
    flags: frozenset[str]
    master_id: Optional[str]
    config_epoch: int
    link_state: str
    slots: tuple[tuple[int, int], ...]
    migrating: Mapping[int, str]
    importing: Mapping[int, str]

    @property
    def is_master(self) -> bool:
        return "master" in self.flags

    @property
    def is_myself(self) -> bool:
        return "myself" in self.flags

    @property
    def failing(self) -> bool:
        return bool({"fail", "fail?"} & self.flags)

    def owns(self, slot: int) -> bool:
        return any(lo <= slot <= hi for lo, hi in self.slots)


def parse_cluster_nodes(text: str) -> list[NodeInfo]:
    """Parses CLUSTER NODES output, including [slot->-id] and [slot-<-id] markers."""
    return [_parse_node_line(line) for line in text.splitlines() if line.strip()]


def _parse_node_line(line: str) -> NodeInfo:
    fields = line.split()
    address = fields[1].split(",")[0]  # ip:port@cport[,hostname]
    host, _, ports = address.rpartition(":")
    port, _, bus = ports.partition("@")
    slots, migrating, importing = [], {}, {}
    for token in fields[8:]:
        if token.startswith("[") and "->-" in token:
            slot, peer = token[1:-1].split("->-")
            migrating[int(slot)] = peer
        elif token.startswith("[") and "-<-" in token:
            slot, peer = token[1:-1].split("-<-")
            importing[int(slot)] = peer
        else:
            lo, _, hi = token.partition("-")
            slots.append((int(lo), int(hi or lo)))
    return NodeInfo(
        id=fields[0], host=host, port=int(port), bus_port=int(bus or 0),
        flags=frozenset(fields[2].split(",")), master_id=None if fields[3] == "-" else fields[3],
        config_epoch=int(fields[6]), link_state=fields[7], slots=tuple(slots),
        migrating=migrating, importing=importing)


def _normalise_cluster_slots(reply: list) -> tuple:
    """CLUSTER SLOTS as a comparable value: ranges sorted, replicas sorted, metadata dropped."""
    entries = []
    for entry in reply:
        master, replicas = entry[2], entry[3:]
        entries.append((int(entry[0]), int(entry[1]), (master[0], int(master[1]), master[2]),
                        tuple(sorted((r[0], int(r[1]), r[2]) for r in replicas))))
    return tuple(sorted(entries))


# --------------------------------------------------------------------------------------------
# RedisCluster
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, repr=False)
class Node:
    """One redis-server of a RedisCluster. Identity only; the cluster tracks its process.

    `index` is the creation order: masters first, then replicas (redis-cli --cluster create picks
    the first `masters` nodes as masters). Roles change with failovers; ask the cluster.
    """

    index: int
    host: str
    port: int
    dir: Path

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def bus_port(self) -> int:
        return self.port + BUS_OFFSET

    @property
    def log_path(self) -> Path:
        return self.dir / "redis.log"

    def __str__(self) -> str:
        return f"node{self.index}@{self.address}"

    __repr__ = __str__


class RedisCluster:
    """M masters with R replicas each, run by Debian's redis-server in a temp dir.

    start() (or `with`) creates the cluster with `redis-cli --cluster create` and waits until every
    node reports cluster_state:ok, all nodes return the same CLUSTER SLOTS, and every replica's
    link to its master is up. Queries go to live nodes only (not killed, not paused).
    Not thread-safe: use it from one thread.
    """

    def __init__(self, masters: int = 3, replicas: int = 0, *, node_timeout_ms: int = 2000,
                 allow_replica_migration: bool = True, enable_debug_command: bool = False,
                 extra_args: Sequence[str] = (),
                 per_node_args: Mapping[int, Sequence[str]] | None = None,
                 start_timeout: float = 30.0) -> None:
        """per_node_args maps a node index to extra redis-server arguments for that node only."""
        if masters < 3:
            raise ValueError("redis-cli --cluster create needs at least 3 masters")
        self.masters_count = masters
        self.replicas_per_master = replicas
        self.node_timeout_ms = node_timeout_ms
        self.start_timeout = start_timeout
        self._common_args = [
            "--cluster-node-timeout", str(node_timeout_ms),
            "--cluster-allow-replica-migration", "yes" if allow_replica_migration else "no",
            "--enable-debug-command", "local" if enable_debug_command else "no",
            # Replicas sync at once instead of after the default 5 s wait for more replicas.
            "--repl-diskless-sync-delay", "0",
            *extra_args]
        self._per_node_args = dict(per_node_args or {})
        self.nodes: list[Node] = []
        self.dir: Optional[Path] = None
        self._ports: Optional[PortBlock] = None
        self._procs: dict[int, subprocess.Popen] = {}  # by port
        self._paused: set[int] = set()
        self._admins: dict[tuple[int, bool], redis.Redis] = {}
        self._ids: dict[int, str] = {}
        self._stopped = False

    # ---- lifecycle ---------------------------------------------------------------------------

    def start(self) -> RedisCluster:
        """Starts the servers, creates the cluster and waits until it converged."""
        if self.nodes:
            raise HarnessError("cluster already started")
        _sigterm_exits()
        atexit.register(self.stop)
        try:
            self._start_servers()
            self._create_cluster()
            self._bump_replication_offsets()
            self.wait_stable(self.start_timeout, replicas=self.replicas_per_master)
        except BaseException:
            self._dump_logs_on_failure()
            self.stop()
            raise
        return self

    def _start_servers(self) -> None:
        count = self.masters_count * (1 + self.replicas_per_master)
        self._ports = free_port_block(count)
        self.dir = Path(tempfile.mkdtemp(prefix="slotpilot-cluster-"))
        for index, port in enumerate(self._ports.ports):
            node = Node(index, HOST, port, self.dir / f"node-{port}")
            node.dir.mkdir()
            self.nodes.append(node)
            self._spawn(node)
        for node in self.nodes:
            self._wait_ping(node)

    def _argv(self, node: Node) -> list[str]:
        return ["redis-server", "--port", str(node.port), "--bind", HOST, "--dir", str(node.dir),
                "--daemonize", "no", "--logfile", "", "--save", "", "--appendonly", "no",
                "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                *self._common_args, *self._per_node_args.get(node.index, ())]

    def _spawn(self, node: Node) -> None:
        self._procs[node.port] = _spawn(self._argv(node), node.log_path, node.dir)
        self._paused.discard(node.port)

    def _wait_ping(self, node: Node, timeout: float = 10.0) -> None:
        def up() -> bool:
            if self._procs[node.port].poll() is not None:
                raise HarnessError(f"{node} exited with {self._procs[node.port].returncode}:\n"
                                   f"{self.log_tail(node)}")
            return self._admin(node).ping()

        wait_for(up, timeout, f"{node} to answer PING")

    def _create_cluster(self) -> None:
        argv = ["redis-cli", "--cluster", "create", *(n.address for n in self.nodes),
                "--cluster-replicas", str(self.replicas_per_master), "--cluster-yes"]
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=self.start_timeout)
        if done.returncode != 0 or "[OK] All 16384 slots covered" not in done.stdout:
            raise HarnessError(f"redis-cli --cluster create failed ({done.returncode}):\n"
                               f"{done.stdout}{done.stderr}")

    def _bump_replication_offsets(self) -> None:
        """CLUSTER SLOTS lists a replica only once its replication offset is non-zero, which
        otherwise takes until the master's first replication PING (repl-ping-replica-period,
        10 s). FLUSHALL on the still empty masters is always propagated, so the offsets move."""
        if self.replicas_per_master:
            for node in self.nodes[:self.masters_count]:
                self.execute(node, "FLUSHALL")

    def stop(self) -> None:
        """Stops every server by PID (SIGTERM, SIGKILL after a bound), removes the temp dir
        (unless SLOTPILOT_KEEP_TMP is set) and releases the ports. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        atexit.unregister(self.stop)
        self._close_admins()
        _terminate_all(list(self._procs.values()))
        if self.dir is not None and not _KEEP_TMP:
            shutil.rmtree(self.dir, ignore_errors=True)
        if self._ports is not None:
            self._ports.release()

    def __enter__(self) -> RedisCluster:
        return self if self.nodes else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- clients -----------------------------------------------------------------------------

    def client(self, node: Node, *, decode: bool = True, **kwargs: Any) -> redis.Redis:
        """A new redis.Redis connected to one node (not cluster-aware). The caller closes it."""
        kwargs.setdefault("socket_timeout", _ADMIN_SOCKET_TIMEOUT_S)
        kwargs.setdefault("socket_connect_timeout", 2.0)
        return redis.Redis(host=node.host, port=node.port, decode_responses=decode, **kwargs)

    def _admin(self, node: Node, decode: bool = True) -> redis.Redis:
        key = (node.port, decode)
        if key not in self._admins:
            self._admins[key] = self.client(node, decode=decode)
        return self._admins[key]

    def _close_admins(self, node: Optional[Node] = None) -> None:
        for key in [k for k in self._admins if node is None or k[0] == node.port]:
            self._admins.pop(key).close()

    def execute(self, node: Node, *args: Any) -> Any:
        """Runs one command on one node with the harness's decoded client, without redis-py's
        reply callbacks (pass multi-word commands split: execute(n, "CLUSTER", "NODES"))."""
        return self._admin(node).execute_command(*args)

    # ---- nodes, roles, views -----------------------------------------------------------------

    def pid(self, node: Node) -> int:
        return self._procs[node.port].pid

    def pids(self) -> dict[Node, int]:
        return {n: self.pid(n) for n in self.nodes}

    def is_running(self, node: Node) -> bool:
        """Process alive (paused or not)."""
        return self._procs[node.port].poll() is None

    def live_nodes(self) -> list[Node]:
        """Nodes that are running and not paused, in index order."""
        return [n for n in self.nodes if self.is_running(n) and n.port not in self._paused]

    def node_by_port(self, port: int) -> Node:
        for node in self.nodes:
            if node.port == port:
                return node
        raise KeyError(f"no node on port {port}")

    def node_by_id(self, node_id: str) -> Node:
        for node in self.nodes:
            if self.node_id(node) == node_id:
                return node
        raise KeyError(f"no node with id {node_id}")

    def node_id(self, node: Node) -> str:
        """The node's cluster id (CLUSTER MYID). Stable across restart (nodes.conf is kept)."""
        if node.port not in self._ids:
            self._ids[node.port] = self.execute(node, "CLUSTER", "MYID")
        return self._ids[node.port]

    def role(self, node: Node) -> str:
        """'master' or 'slave', from the node's own ROLE."""
        return self.execute(node, "ROLE")[0]

    def masters(self) -> list[Node]:
        """Live nodes that say they are masters."""
        return [n for n in self.live_nodes() if self.role(n) == "master"]

    def replicas(self) -> list[Node]:
        """Live nodes that say they are replicas."""
        return [n for n in self.live_nodes() if self.role(n) == "slave"]

    def master_of(self, replica: Node) -> Optional[Node]:
        """The master a live replica replicates from (its own ROLE), or None for a master."""
        role = self.execute(replica, "ROLE")
        return self.node_by_port(int(role[2])) if role[0] == "slave" else None

    def replicas_of(self, master: Node) -> list[Node]:
        """Live nodes replicating from `master`, by their own ROLE."""
        return [n for n in self.replicas() if self.master_of(n) == master]

    def cluster_nodes_text(self, view: Node) -> str:
        """Raw CLUSTER NODES of one node (open-slot markers appear only on its `myself` line)."""
        return self.execute(view, "CLUSTER", "NODES")

    def cluster_nodes(self, view: Node) -> list[NodeInfo]:
        return parse_cluster_nodes(self.cluster_nodes_text(view))

    def myself(self, node: Node) -> NodeInfo:
        """The node's own line of CLUSTER NODES (with its MIGRATING/IMPORTING markers)."""
        return next(i for i in self.cluster_nodes(node) if i.is_myself)

    def cluster_info(self, node: Node) -> dict[str, str]:
        text = self.execute(node, "CLUSTER", "INFO")
        return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)

    def cluster_slots(self, view: Node) -> tuple:
        """CLUSTER SLOTS of one node, normalised so that views can be compared with ==."""
        return _normalise_cluster_slots(self.execute(view, "CLUSTER", "SLOTS"))

    def node_for_slot(self, slot: int, view: Optional[Node] = None) -> Optional[Node]:
        """The master that owns `slot` (None if unassigned).

        With `view`, in that node's view; otherwise every live master must agree, else
        HarnessError (use slot_owner_views to see the disagreement).
        """
        if view is not None:
            return self._owner_in_view(slot, view)
        views = self.slot_owner_views(slot)
        owners = set(views.values())
        if len(owners) != 1:
            raise HarnessError(f"masters disagree on slot {slot}: "
                               + ", ".join(f"{v} says {o}" for v, o in views.items()))
        return owners.pop()

    def slot_owner_views(self, slot: int) -> dict[Node, Optional[Node]]:
        """Each live master's idea of who owns `slot`."""
        return {m: self._owner_in_view(slot, m) for m in self.masters()}

    def _owner_in_view(self, slot: int, view: Node) -> Optional[Node]:
        for lo, hi, (_, port, _), _ in self.cluster_slots(view):
            if lo <= slot <= hi:
                return self.node_by_port(port)
        return None

    def slots_of(self, master: Node, view: Optional[Node] = None) -> list[tuple[int, int]]:
        """Slot ranges owned by `master`, in `view`'s CLUSTER SLOTS (default: its own)."""
        return [(lo, hi) for lo, hi, (_, port, _), _ in self.cluster_slots(view or master)
                if port == master.port]

    # ---- convergence -------------------------------------------------------------------------

    def converged(self, replicas: Optional[int] = None) -> bool:
        """True when every live node says cluster_state:ok, flags no live node as failing, and
        all live nodes return the same CLUSTER SLOTS covering all slots. With `replicas`, each
        slot range must also list that many replicas and every live replica's link must be up.
        """
        live = self.live_nodes()
        live_ids = {self.node_id(n) for n in live}
        for node in live:
            if self.cluster_info(node).get("cluster_state") != "ok":
                return False
            if any(i.failing and i.id in live_ids for i in self.cluster_nodes(node)):
                return False
        views = {self.cluster_slots(n) for n in live}
        if len(views) != 1:
            return False
        view = views.pop()
        if sum(hi - lo + 1 for lo, hi, _, _ in view) != SLOT_COUNT:
            return False
        if replicas is None:
            return True
        return (all(len(entry[3]) == replicas for entry in view)
                and all(self.execute(r, "ROLE")[3] == "connected" for r in self.replicas()))

    def wait_for(self, pred: Callable[[], T], timeout: float, what: str,
                 interval: float = 0.05) -> T:
        """Module-level wait_for, for convenience."""
        return wait_for(pred, timeout, what, interval)

    def wait_stable(self, timeout: float = 30.0, replicas: Optional[int] = None) -> None:
        """Waits (bounded) until converged(replicas)."""
        wait_for(lambda: self.converged(replicas), timeout,
                 "every live node to report cluster_state:ok and the same CLUSTER SLOTS"
                 + (f" with {replicas} replica(s) per master" if replicas is not None else ""),
                 interval=0.1)

    # ---- slots and keys ----------------------------------------------------------------------

    def keys_in_slot(self, slot: int, node: Optional[Node] = None, count: int = 1000,
                     decode: bool = True) -> list:
        """Up to `count` keys present in `slot` on `node` (default: the slot's owner)."""
        node = node or self.node_for_slot(slot)
        if node is None:
            raise HarnessError(f"slot {slot} is not assigned")
        raw = self._admin(node, decode=False).execute_command(
            "CLUSTER", "GETKEYSINSLOT", slot, count)
        return _decode_keys(raw, decode)

    def count_keys_in_slot(self, slot: int, node: Node) -> int:
        return int(self.execute(node, "CLUSTER", "COUNTKEYSINSLOT", slot))

    def fill_slot(self, slot: int, count: int, prefix: str = "key", value: str = "v") -> list[str]:
        """Writes `count` string keys (keys_for_slot) to the slot's owner; returns their names."""
        keys = keys_for_slot(slot, count, prefix)
        owner = self.node_for_slot(slot)
        if owner is None:
            raise HarnessError(f"slot {slot} is not assigned")
        with self._admin(owner).pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.set(key, value)
            pipe.execute()
        return keys

    def set_importing(self, slot: int, dst: Node, src: Node) -> None:
        """On dst: CLUSTER SETSLOT slot IMPORTING <src id>."""
        self.execute(dst, "CLUSTER", "SETSLOT", slot, "IMPORTING", self.node_id(src))

    def set_migrating(self, slot: int, src: Node, dst: Node) -> None:
        """On src: CLUSTER SETSLOT slot MIGRATING <dst id>."""
        self.execute(src, "CLUSTER", "SETSLOT", slot, "MIGRATING", self.node_id(dst))

    def set_stable(self, slot: int, node: Node) -> None:
        """On node: CLUSTER SETSLOT slot STABLE (clears MIGRATING/IMPORTING)."""
        self.execute(node, "CLUSTER", "SETSLOT", slot, "STABLE")

    def open_slot(self, slot: int, src: Node, dst: Node) -> None:
        """A healthy migration: IMPORTING on dst first, then MIGRATING on src (redis-cli's
        order, so there is no window where src sends ASKs that dst would refuse)."""
        self.set_importing(slot, dst, src)
        self.set_migrating(slot, src, dst)

    def migrate_keys(self, src: Node, dst: Node, slot: int, count: int, *, batch: int = 100,
                     timeout_ms: int = 5000, decode: bool = True) -> list:
        """Moves up to `count` keys of `slot` from src to dst with MIGRATE ... KEYS, in batches.
        Returns the keys moved (fewer if src ran out). The slot should be open (open_slot)."""
        moved: list[bytes] = []
        raw = self._admin(src, decode=False)
        for _ in range(count // max(batch, 1) + 1):  # bounded: each pass moves >= 1 key or stops
            want = min(batch, count - len(moved))
            keys = raw.execute_command("CLUSTER", "GETKEYSINSLOT", slot, want) if want else []
            if not keys:
                break
            reply = raw.execute_command("MIGRATE", dst.host, dst.port, "", 0, timeout_ms,
                                        "KEYS", *keys)
            if reply == b"OK":
                moved.extend(keys)
            elif reply != b"NOKEY":  # NOKEY: they all expired meanwhile
                raise HarnessError(f"MIGRATE {src} -> {dst} replied {reply!r}")
        return _decode_keys(moved, decode)

    def finish_slot(self, slot: int, dst: Node, timeout: float = 10.0) -> None:
        """CLUSTER SETSLOT slot NODE <dst id> on every live master (dst first, then the current
        owner, then the rest), then waits until every live master says dst owns the slot."""
        dst_id = self.node_id(dst)
        masters = self.masters()
        owners = set(self.slot_owner_views(slot).values())
        order = [dst] + [m for m in masters if m in owners and m != dst]
        order += [m for m in masters if m not in order]
        for master in order:
            self.execute(master, "CLUSTER", "SETSLOT", slot, "NODE", dst_id)
        wait_for(lambda: all(o == dst for o in self.slot_owner_views(slot).values()), timeout,
                 f"every master to agree that {dst} owns slot {slot}")

    # ---- faults ------------------------------------------------------------------------------

    def kill(self, node: Node, sig: int = signal.SIGKILL, timeout: float = _STOP_GRACE_S) -> int:
        """Sends sig to the node by PID and waits (bounded) until it exited; returns its exit
        code (negative: killed by that signal). For signals that do not end redis-server, use
        signal_node()."""
        proc = self._procs[node.port]
        _signal(proc, sig)
        _signal(proc, signal.SIGCONT)
        self._paused.discard(node.port)
        self._close_admins(node)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise HarnessError(f"{node} (pid {proc.pid}) still alive {timeout:g} s after "
                               f"signal {sig}") from None

    def signal_node(self, node: Node, sig: int) -> None:
        """Sends any signal to the node by PID without waiting."""
        _signal(self._procs[node.port], sig)

    def pause(self, node: Node) -> None:
        """SIGSTOP: the node stops answering (and gossiping) until resume()."""
        _signal(self._procs[node.port], signal.SIGSTOP)
        self._paused.add(node.port)
        self._close_admins(node)

    def resume(self, node: Node) -> None:
        """SIGCONT after pause()."""
        _signal(self._procs[node.port], signal.SIGCONT)
        self._paused.discard(node.port)

    def restart(self, node: Node, timeout: float = 30.0, wait: bool = True) -> None:
        """Stops the node if it runs (SIGTERM), starts it again with the same arguments and data
        dir (nodes.conf keeps its id), and waits until it answers PING and, with `wait`, until
        the cluster is stable again (wait_stable). Nothing is persisted (save "", no AOF): a
        restarted master comes back empty unless it rejoins as a replica and resyncs."""
        if self.is_running(node):
            _terminate(self._procs[node.port])
        self._close_admins(node)
        self._spawn(node)
        self._wait_ping(node)
        if wait:
            self.wait_stable(timeout)

    def failover(self, replica: Node, mode: Optional[str] = None, timeout: float = 30.0) -> None:
        """CLUSTER FAILOVER [FORCE|TAKEOVER] on a replica, then waits until it is a master in
        every live node's view and the cluster is stable."""
        self.execute(replica, "CLUSTER", "FAILOVER", *([mode] if mode else []))
        replica_id = self.node_id(replica)

        def promoted() -> bool:
            if self.role(replica) != "master":
                return False
            return all(i.is_master for n in self.live_nodes() for i in self.cluster_nodes(n)
                       if i.id == replica_id)

        wait_for(promoted, timeout, f"{replica} to be a master in every node's view")
        self.wait_stable(timeout)

    # ---- diagnostics -------------------------------------------------------------------------

    def check(self, node: Optional[Node] = None, timeout: float = 60.0) -> tuple[int, str]:
        """Runs `redis-cli --cluster check` against node (default: first live master);
        returns (exit code, stdout+stderr)."""
        node = node or self.masters()[0]
        done = subprocess.run(["redis-cli", "--cluster", "check", node.address],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout)
        return done.returncode, done.stdout + done.stderr

    def log_tail(self, node: Node, lines: int = 40) -> str:
        """The last lines of the node's redis-server log."""
        return _tail(node.log_path, lines)

    def logs_tail(self, lines: int = 20) -> str:
        """log_tail of every node, with headers: print it when a test fails."""
        return "\n".join(f"==== {n} (pid {self.pid(n)}) ====\n{self.log_tail(n, lines)}"
                         for n in self.nodes if n.port in self._procs)

    def _dump_logs_on_failure(self) -> None:
        if self.nodes:
            print(f"RedisCluster failed to start; node logs:\n{self.logs_tail()}",
                  file=sys.stderr, flush=True)

    def seeds(self) -> list[str]:
        """host:port of every live master, for slotpilot --seeds."""
        return [m.address for m in self.masters()]

    def __repr__(self) -> str:
        return (f"RedisCluster({self.masters_count}+{self.replicas_per_master}x, "
                f"nodes={[n.port for n in self.nodes]}, dir={self.dir})")


# --------------------------------------------------------------------------------------------
# Proxy
# --------------------------------------------------------------------------------------------


def slotpilot_binary() -> Path:
    """$SLOTPILOT_BIN, else build/debug/proxy/slotpilot in the repo."""
    return Path(os.environ.get("SLOTPILOT_BIN") or DEFAULT_BINARY)


class ProxyExited(HarnessError):
    """slotpilot exited before it answered PING."""

    def __init__(self, returncode: int, output: str) -> None:
        super().__init__(f"slotpilot exited with {returncode} before answering PING; "
                         f"output:\n{output}")
        self.returncode = returncode
        self.output = output


class Proxy:
    """The slotpilot binary on a free listen port and a free admin port, output captured.

    seeds: a RedisCluster (its live masters) or a list of "host:port".
    """

    def __init__(self, seeds: RedisCluster | Sequence[str], *, extra_args: Sequence[str] = (),
                 threads: Optional[int] = None, log_level: Optional[str] = None,
                 binary: Optional[str | Path] = None, start_timeout: float = 20.0) -> None:
        self.seeds = seeds.seeds() if isinstance(seeds, RedisCluster) else list(seeds)
        self.binary = Path(binary) if binary else slotpilot_binary()
        self.extra_args = list(extra_args)
        self.threads = threads
        self.log_level = log_level
        self.start_timeout = start_timeout
        self.port = self.admin_port = 0
        self.argv: list[str] = []
        self._ports: Optional[PortBlock] = None
        self._proc: Optional[subprocess.Popen] = None
        self._dir: Optional[Path] = None
        self._final_log: Optional[str] = None

    def start(self) -> Proxy:
        """Starts slotpilot and waits (bounded) until it answers PING on --listen and its admin
        port accepts connections (the admin server starts on its own thread, a moment later)."""
        if not self.binary.is_file():
            raise HarnessError(f"slotpilot binary not found at {self.binary} (set SLOTPILOT_BIN)")
        _sigterm_exits()
        atexit.register(self.stop)
        self._ports = free_port_block(2, bus=False)
        self.port, self.admin_port = self._ports.ports
        self._dir = Path(tempfile.mkdtemp(prefix="slotpilot-proxy-"))
        self.argv = self._build_argv()
        self._proc = _spawn(self.argv, self._log_path, self._dir)
        try:
            wait_for(self._answers_ping, self.start_timeout,
                     f"slotpilot on {HOST}:{self.port} to answer PING", interval=0.1)
            wait_for(self._admin_accepts, self.start_timeout,
                     f"slotpilot's admin port {HOST}:{self.admin_port}", interval=0.05)
        except BaseException:
            self.stop(signal.SIGKILL)
            raise
        return self

    def _build_argv(self) -> list[str]:
        argv = [str(self.binary), f"--seeds={','.join(self.seeds)}",
                f"--listen={HOST}:{self.port}", f"--admin-listen={HOST}:{self.admin_port}"]
        if self.threads is not None:
            argv.append(f"--threads={self.threads}")
        if self.log_level is not None:
            argv.append(f"--log-level={self.log_level}")
        return argv + self.extra_args

    def _admin_accepts(self) -> bool:
        try:
            socket.create_connection((HOST, self.admin_port), timeout=1.0).close()
            return True
        except OSError:
            return False

    def _answers_ping(self) -> bool:
        assert self._proc is not None
        if self._proc.poll() is not None:
            raise ProxyExited(self._proc.returncode, self.log())
        with self.client(socket_timeout=1.0) as c:
            return c.ping()

    @property
    def _log_path(self) -> Path:
        assert self._dir is not None
        return self._dir / "slotpilot.log"

    @property
    def pid(self) -> int:
        assert self._proc is not None, "not started"
        return self._proc.pid

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def admin_address(self) -> str:
        return f"{HOST}:{self.admin_port}"

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def client(self, *, decode: bool = True, **kwargs: Any) -> redis.Redis:
        """A new redis.Redis pointed at the proxy's listen port. The caller closes it."""
        kwargs.setdefault("socket_timeout", _ADMIN_SOCKET_TIMEOUT_S)
        kwargs.setdefault("socket_connect_timeout", 2.0)
        return redis.Redis(host=HOST, port=self.port, decode_responses=decode, **kwargs)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = _STOP_GRACE_S) -> Optional[int]:
        """Signals slotpilot by PID, SIGKILL after `timeout`; returns its exit code (negative:
        killed by a signal; None if it never started). Keeps log() readable; idempotent."""
        atexit.unregister(self.stop)
        code = _terminate(self._proc, sig, timeout) if self._proc is not None else None
        if self._dir is not None:
            self._final_log = self.log()
            if not _KEEP_TMP:
                shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        if self._ports is not None:
            self._ports.release()
            self._ports = None
        return code

    def kill9(self) -> Optional[int]:
        """SIGKILL, then stop()'s cleanup."""
        return self.stop(signal.SIGKILL)

    def rss_kib(self) -> int:
        """Resident set size (VmRSS) from /proc/<pid>/status, in KiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise HarnessError(f"no VmRSS for pid {self.pid}")

    def cpu_seconds(self) -> float:
        """User + system CPU time so far, from /proc/<pid>/stat."""
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2:].split()  # fields after "pid (comm)", from state on
        utime, stime = int(fields[11]), int(fields[12])  # stat fields 14 and 15
        return (utime + stime) / os.sysconf("SC_CLK_TCK")

    def log(self) -> str:
        """Everything slotpilot wrote to stdout and stderr so far (also after stop())."""
        if self._dir is None:
            return self._final_log or ""
        return self._log_path.read_text(errors="replace") if self._log_path.exists() else ""

    def __enter__(self) -> Proxy:
        return self if self._proc is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------------------------
# Standalone server (the reference side of differential tests)
# --------------------------------------------------------------------------------------------


class StandaloneRedis:
    """One plain (non-cluster) redis-server on a free loopback port, in a temp dir, stopped by
    PID. The same Debian binary the clusters run, so replies can be compared byte for byte."""

    def __init__(self, *, extra_args: Sequence[str] = ()) -> None:
        self.extra_args = list(extra_args)
        self.port = 0
        self.dir: Optional[Path] = None
        self._ports: Optional[PortBlock] = None
        self._proc: Optional[subprocess.Popen] = None

    def start(self) -> StandaloneRedis:
        _sigterm_exits()
        atexit.register(self.stop)
        self._ports = free_port_block(1, bus=False)
        self.port = self._ports.ports[0]
        self.dir = Path(tempfile.mkdtemp(prefix="slotpilot-standalone-"))
        argv = ["redis-server", "--port", str(self.port), "--bind", HOST, "--dir", str(self.dir),
                "--daemonize", "no", "--logfile", "", "--save", "", "--appendonly", "no",
                *self.extra_args]
        self._proc = _spawn(argv, self.dir / "redis.log", self.dir)

        def up() -> bool:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise HarnessError(f"standalone redis-server exited: {_tail(self.dir / 'redis.log', 20)}")
            with self.client(socket_timeout=1.0) as c:
                return c.ping()

        try:
            wait_for(up, 10.0, f"standalone redis-server on {HOST}:{self.port} to answer PING")
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def client(self, *, decode: bool = True, **kwargs: Any) -> redis.Redis:
        """A new redis.Redis pointed at the server. The caller closes it."""
        kwargs.setdefault("socket_timeout", _ADMIN_SOCKET_TIMEOUT_S)
        kwargs.setdefault("socket_connect_timeout", 2.0)
        return redis.Redis(host=HOST, port=self.port, decode_responses=decode, **kwargs)

    def stop(self) -> None:
        """Stops the server by PID, removes its dir (unless SLOTPILOT_KEEP_TMP), frees the port."""
        atexit.unregister(self.stop)
        if self._proc is not None:
            _terminate(self._proc)
            self._proc = None
        if self.dir is not None and not _KEEP_TMP:
            shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None
        if self._ports is not None:
            self._ports.release()
            self._ports = None

    def __enter__(self) -> StandaloneRedis:
        return self if self._proc is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
