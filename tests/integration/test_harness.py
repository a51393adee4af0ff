"""Tests of the integration harness itself, against real redis-server processes.

Run: cd tests/integration && /usr/bin/python3 -m unittest -v test_harness
(CTest runs it as integration.test_harness with SLOTPILOT_BIN set to the built binary.)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import unittest
from typing import Optional

import redis

import harness
from harness import HarnessTimeout, Node, Proxy, RedisCluster

SLOT = 1234


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


class ClusterTestCase(unittest.TestCase):
    """Prints the tails of the node logs when a test fails (set `cluster` before the test)."""

    cluster: Optional[RedisCluster] = None

    def _failed(self) -> bool:
        # Python >= 3.11 reports errors to the result as they happen, so tearDown can see them.
        result = getattr(getattr(self, "_outcome", None), "result", None)
        problems = getattr(result, "errors", []) + getattr(result, "failures", [])
        return any(test is self for test, _ in problems)

    def tearDown(self) -> None:
        if self.cluster is not None and self._failed():
            print(f"\n{self.cluster!r} node logs:\n{self.cluster.logs_tail()}", file=sys.stderr)


class PortBlockTest(unittest.TestCase):
    def test_block_is_consecutive_bindable_and_below_the_ephemeral_range(self) -> None:
        with harness.free_port_block(6) as block:
            self.assertEqual(block.ports, list(range(block.base, block.base + 6)))
            self.assertGreaterEqual(block.ports[0], 12000)
            self.assertLess(block.ports[-1], 22700)
            self.assertLess(block.ports[-1] + 10000, 32768)

    def test_reserved_ports_are_exclusive_across_processes(self) -> None:
        probe = ("import fcntl, sys\n"
                 "f = open(sys.argv[1], 'a')\n"
                 "try:\n    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
                 "except BlockingIOError:\n    sys.exit(3)\n")

        def other_process_can_lock(port: int) -> bool:
            lock = harness.PORT_LOCK_DIR / f"{port}.lock"
            done = subprocess.run([sys.executable, "-c", probe, str(lock)], timeout=30)
            return done.returncode == 0

        block = harness.free_port_block(2)
        try:
            for port in block.ports + [p + harness.BUS_OFFSET for p in block.ports]:
                self.assertFalse(other_process_can_lock(port), port)
        finally:
            block.release()
        self.assertTrue(other_process_can_lock(block.ports[0]))

    def test_proxy_blocks_skip_the_bus_port(self) -> None:
        with harness.free_port_block(2, bus=False) as block:
            self.assertEqual(len(block.ports), 2)


class HelpersTest(unittest.TestCase):
    def test_key_slot_follows_hashtag_rules(self) -> None:
        self.assertEqual(harness.key_slot("foo"), 12182)
        self.assertEqual(harness.key_slot("{user1000}.following"), harness.key_slot("user1000"))
        self.assertEqual(harness.key_slot("foo{}{bar}"), harness.key_slot("foo{}{bar}"))
        self.assertNotEqual(harness.key_slot("foo{}{bar}"), harness.key_slot("bar"))
        self.assertEqual(harness.key_slot(b"{\xff}x"), harness.key_slot(b"\xff"))

    def test_keys_for_slot_land_in_the_slot(self) -> None:
        keys = harness.keys_for_slot(SLOT, 50)
        self.assertEqual(len(set(keys)), 50)
        self.assertTrue(all(harness.key_slot(k) == SLOT for k in keys))

    def test_wait_for_returns_the_value_or_times_out_naming_what(self) -> None:
        self.assertEqual(harness.wait_for(lambda: 42, 1, "a number"), 42)
        start = time.monotonic()
        with self.assertRaisesRegex(HarnessTimeout, "waiting for godot"):
            harness.wait_for(lambda: False, 0.3, "godot")
        self.assertLess(time.monotonic() - start, 2)

    def test_cluster_nodes_parser_reads_open_slot_markers(self) -> None:
        line = ("c84b 127.0.0.1:31001@41001,host myself,master - 0 0 1 connected 0-5460 "
                "7000 [490->-7978] [7001-<-abcd]")
        info = harness.parse_cluster_nodes(line)[0]
        self.assertEqual((info.port, info.bus_port, info.config_epoch), (31001, 41001, 1))
        self.assertEqual(info.slots, ((0, 5460), (7000, 7000)))
        self.assertEqual(info.migrating, {490: "7978"})
        self.assertEqual(info.importing, {7001: "abcd"})
        self.assertTrue(info.is_myself and info.is_master and info.owns(7000))


class SharedClusterTest(ClusterTestCase):
    """3 masters + 3 replicas, shared by the tests of this class; each test leaves it as found."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.cluster = RedisCluster(masters=3, replicas=1).start()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.cluster.stop()

    def test_full_coverage_and_one_replica_per_master(self) -> None:
        c = self.cluster
        masters = c.masters()
        self.assertEqual(len(masters), 3)
        self.assertEqual(len(c.nodes), 6)
        for master in masters:
            self.assertEqual(len(c.replicas_of(master)), 1, master)
        covered = sum(hi - lo + 1 for m in masters for lo, hi in c.slots_of(m))
        self.assertEqual(covered, harness.SLOT_COUNT)
        self.assertEqual(len({c.cluster_slots(n) for n in c.nodes}), 1)
        code, output = c.check()
        self.assertEqual(code, 0, output)
        self.assertIn("[OK] All 16384 slots covered", output)

    def test_key_slot_matches_the_server(self) -> None:
        for key in ["foo", "{user1000}.following", "a{}b", "{}{x}", "\u00e9t\u00e9", "x" * 300]:
            self.assertEqual(harness.key_slot(key),
                             self.cluster.execute(self.cluster.nodes[0], "CLUSTER", "KEYSLOT", key))

    def test_client_decodes_on_request(self) -> None:
        c = self.cluster
        owner = c.node_for_slot(SLOT)
        key = harness.keys_for_slot(SLOT, 1, "decode")[0]
        with c.client(owner) as text, c.client(owner, decode=False) as raw:
            text.set(key, "\u00e9")
            self.assertEqual(text.get(key), "\u00e9")
            self.assertEqual(raw.get(key), "\u00e9".encode())
            text.delete(key)

    def test_slot_migration_by_hand(self) -> None:
        c = self.cluster
        src = c.node_for_slot(SLOT)
        dst = next(m for m in c.masters() if m != src)
        keys = c.fill_slot(SLOT, 30)
        try:
            self._open_and_see_markers(src, dst)
            self._migrate_and_see_keys_move(src, dst, keys)
            c.finish_slot(SLOT, dst)
            self._see_slot_closed_at(dst)
        finally:
            self._move_slot_back(src)
            c.execute(src, "DEL", *keys)

    def _open_and_see_markers(self, src: Node, dst: Node) -> None:
        c = self.cluster
        c.open_slot(SLOT, src, dst)
        src_id, dst_id = c.node_id(src), c.node_id(dst)
        self.assertIn(f"[{SLOT}->-{dst_id}]", c.cluster_nodes_text(src))
        self.assertIn(f"[{SLOT}-<-{src_id}]", c.cluster_nodes_text(dst))
        self.assertEqual(c.myself(src).migrating, {SLOT: dst_id})
        self.assertEqual(c.myself(dst).importing, {SLOT: src_id})
        for other in c.nodes:
            if other not in (src, dst):
                self.assertNotIn(f"[{SLOT}-", c.cluster_nodes_text(other), other)
        code, output = c.check()
        self.assertNotEqual(code, 0, output)
        self.assertIn(f"The following slots are open: {SLOT}", output)

    def _migrate_and_see_keys_move(self, src: Node, dst: Node, keys: list[str]) -> None:
        c = self.cluster
        moved = c.migrate_keys(src, dst, SLOT, 10, batch=4)
        self.assertEqual(len(moved), 10)
        self.assertEqual(c.count_keys_in_slot(SLOT, src), 20)
        self.assertEqual(sorted(c.keys_in_slot(SLOT, dst)), sorted(moved))
        with c.client(src) as at_src:
            with self.assertRaisesRegex(redis.ResponseError, f"^ASK {SLOT} {dst.address}$"):
                at_src.get(moved[0])
        rest = c.migrate_keys(src, dst, SLOT, 1000)
        self.assertEqual(len(rest), 20)
        self.assertEqual(sorted(moved + rest), sorted(keys))
        self.assertEqual(c.count_keys_in_slot(SLOT, src), 0)

    def _see_slot_closed_at(self, dst: Node) -> None:
        c = self.cluster
        self.assertEqual(set(c.slot_owner_views(SLOT).values()), {dst})
        self.assertEqual(c.node_for_slot(SLOT), dst)
        for master in c.masters():
            me = c.myself(master)
            self.assertNotIn(SLOT, me.migrating)
            self.assertNotIn(SLOT, me.importing)
        c.wait_stable(10)
        code, output = c.check()
        self.assertEqual(code, 0, output)

    def _move_slot_back(self, home: Node) -> None:
        c = self.cluster
        for master in c.masters():  # whatever state a failure left behind
            c.set_stable(SLOT, master)
        owner = c.node_for_slot(SLOT)
        if owner != home:
            c.open_slot(SLOT, owner, home)
            c.migrate_keys(owner, home, SLOT, 1000)
            c.finish_slot(SLOT, home)
        c.wait_stable(10)

    def test_pause_and_resume(self) -> None:
        c = self.cluster
        replica = c.replicas()[0]
        c.pause(replica)
        try:
            self.assertNotIn(replica, c.live_nodes())
            with c.client(replica, socket_timeout=0.3) as paused:
                with self.assertRaises(redis.TimeoutError):
                    paused.ping()
        finally:
            c.resume(replica)
        c.wait_for(lambda: c.execute(replica, "PING"), 5, f"{replica} to answer after SIGCONT")
        c.wait_stable(10)


class FailoverTest(ClusterTestCase):
    """A fresh 3 masters + 3 replicas for each test: these tests change roles."""

    def setUp(self) -> None:
        self.cluster = RedisCluster(masters=3, replicas=1).start()
        self.addCleanup(self.cluster.stop)

    def _master_with_key(self) -> tuple[Node, Node, str]:
        c = self.cluster
        master = c.node_for_slot(SLOT)
        replica = c.replicas_of(master)[0]
        key = harness.keys_for_slot(SLOT, 1)[0]
        with c.client(master) as client:
            client.set(key, "value")
            client.wait(1, 5000)
        return master, replica, key

    def test_manual_failover_promotes_the_replica_everywhere(self) -> None:
        c = self.cluster
        master, replica, key = self._master_with_key()
        c.failover(replica)
        self.assertEqual(c.role(replica), "master")
        c.wait_for(lambda: c.master_of(master) == replica, 10, f"{master} to follow {replica}")
        for view in c.live_nodes():
            self.assertEqual(c.node_for_slot(SLOT, view=view), replica, view)
        with c.client(replica) as client:
            self.assertEqual(client.get(key), "value")

    def test_killed_master_is_replaced_and_rejoins_as_replica_after_restart(self) -> None:
        c = self.cluster
        master, replica, key = self._master_with_key()
        old_pid = c.pid(master)
        self.assertEqual(c.kill(master), -signal.SIGKILL)
        self.assertTrue(_process_gone(old_pid))
        self.assertNotIn(master, c.live_nodes())
        c.wait_for(lambda: c.role(replica) == "master", 20, f"{replica} to be promoted")
        c.wait_stable(20)
        self.assertEqual(c.node_for_slot(SLOT), replica)
        c.restart(master)
        self.assertNotEqual(c.pid(master), old_pid)
        c.wait_for(lambda: c.master_of(master) == replica, 20, f"{master} to follow {replica}")
        c.wait_stable(20, replicas=1)
        with c.client(replica) as client:
            self.assertEqual(client.get(key), "value")


class ThreeMastersTest(ClusterTestCase):
    """3 masters, no replicas (the default shape)."""

    def setUp(self) -> None:
        self.cluster = RedisCluster().start()
        self.addCleanup(self.cluster.stop)

    def test_kill_and_restart_a_master(self) -> None:
        c = self.cluster
        victim = c.node_for_slot(SLOT)
        witness = next(m for m in c.masters() if m != victim)
        c.kill(victim, signal.SIGTERM)
        c.wait_for(lambda: c.cluster_info(witness)["cluster_state"] == "fail", 20,
                   f"{witness} to see the cluster down")
        c.restart(victim)
        self.assertEqual(c.node_for_slot(SLOT), victim)
        self.assertEqual(c.cluster_info(witness)["cluster_state"], "ok")

    def test_stop_leaves_no_process_and_no_directory(self) -> None:
        c = self.cluster
        pids = list(c.pids().values())
        directory = c.dir
        c.pause(c.nodes[1])  # a stopped process must be stopped too
        c.stop()
        c.stop()  # idempotent
        for pid in pids:
            self.assertTrue(_process_gone(pid), pid)
        self.assertFalse(directory.exists())
        fds = [harness._lock_port(n.port) for n in c.nodes]  # the ports were released
        for fd in fds:
            self.assertIsNotNone(fd)
            os.close(fd)


def _binary_missing_reason() -> Optional[str]:
    binary = harness.slotpilot_binary()
    if binary.is_file():
        return None
    return f"slotpilot binary not built: {binary} does not exist (set SLOTPILOT_BIN or build it)"


@unittest.skipIf(_binary_missing_reason() is not None, _binary_missing_reason() or "")
class ProxyTest(ClusterTestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.cluster = RedisCluster().start()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.cluster.stop()

    def _start_proxy(self) -> Proxy:
        proxy = Proxy(self.cluster, log_level="info")
        self.addCleanup(proxy.stop)
        return proxy.start()

    def test_serves_commands_and_reports_resources(self) -> None:
        proxy = self._start_proxy()
        key = harness.keys_for_slot(SLOT, 1, "proxy")[0]
        with proxy.client() as client:
            self.assertTrue(client.ping())
            self.assertTrue(client.set(key, "\u00e9"))
            self.assertEqual(client.get(key), "\u00e9")
        with self.cluster.client(self.cluster.node_for_slot(SLOT), decode=False) as owner:
            self.assertEqual(owner.get(key), "\u00e9".encode())
        self.assertGreater(proxy.rss_kib(), 0)
        self.assertGreaterEqual(proxy.cpu_seconds(), 0.0)
        pid = proxy.pid
        self.assertEqual(proxy.stop(), 0, proxy.log())
        self.assertTrue(_process_gone(pid))
        self.assertIsInstance(proxy.log(), str)

    def test_kill9(self) -> None:
        proxy = self._start_proxy()
        self.assertEqual(proxy.kill9(), -signal.SIGKILL)
        self.assertFalse(proxy.running())


if __name__ == "__main__":
    unittest.main()
