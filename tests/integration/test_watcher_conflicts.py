"""The migration watcher end to end (see test_watcher.py for the method): the scenario classes
of shared/MIGRATION.md where data could be lost -- a stale copy on the target next to a newer
value on the source (S5), a big key left on both sides by a too-small MIGRATE timeout (S6),
unassigned slots with and without keys (S8), and a target short of memory under an eviction
policy, which must be refused until an operator frees memory and asks for the finish.
"""

from __future__ import annotations

import unittest

import harness
import watcher_support
from watcher_support import admin, assert_clean, evicted, metric, wait_entry, wait_repaired, \
    watcher_proxy, write_keys


class WatcherConflictTest(watcher_support.ScenarioCase):
    def test_s5_newer_value_on_the_source_wins_over_a_stale_copy(self) -> None:
        """Interrupted reshard where three keys were copied to B, then updated on A (which served
        every write to them): the finish must keep A's newer values (BUSYKEY -> REPLACE from the
        source), never the target's stale copies."""
        values = self.fill(30)
        self.cluster.open_slot(self.slot, self.a, self.b)
        self.cluster.migrate_keys(self.a, self.b, self.slot, 10)
        on_a = self.cluster.keys_in_slot(self.slot, self.a, count=3)
        src = self.cluster.client(self.a)
        try:
            for k in on_a:
                src.execute_command("MIGRATE", self.b.host, self.b.port, k, 0, 5000, "COPY")
                src.set(k, f"newer:{k}")
                values[k] = f"newer:{k}"
        finally:
            src.close()
        dst = self.cluster.client(self.b)
        try:
            for k in on_a:  # the stale copy really is on the (importing) target
                dst.execute_command("ASKING")
                self.assertEqual(dst.get(k), f"v:{k}")
        finally:
            dst.close()
        entry = self.observe("interrupted-reshard", "forward")
        self.assertEqual((entry["keys_source"], entry["keys_target"]), (20, 13))
        self.finish(self.b, values)

    def test_s6_big_key_after_a_too_small_migrate_timeout(self) -> None:
        """A reshard tool moved a 30 MB value with a 1 ms MIGRATE timeout: IOERR, outcome unknown
        (usually the value is then on both nodes). The finish must end with one copy, the
        source's, and every small key moved."""
        values = self.fill(20)
        big = self.keys(1, "big")[0]
        values.update(write_keys(self.cluster, self.a, [big], "B" * (30 << 20)))
        self.cluster.open_slot(self.slot, self.a, self.b)
        src = self.cluster.client(self.a)
        try:
            self.assertEqual(src.execute_command("MIGRATE", self.b.host, self.b.port, "", 0, 5000,
                                                 "KEYS", *self.keys(5)), "OK")
            with self.assertRaises(harness.redis.exceptions.ResponseError) as err:
                src.execute_command("MIGRATE", self.b.host, self.b.port, big, 0, 1)
            self.assertIn("IOERR", str(err.exception))
        finally:
            src.close()
        self.observe("interrupted-reshard", "forward")
        self.finish(self.b, values, live_keys=self.keys(5, "new"))

    def test_s8_unassigned_slot_with_keys_goes_to_the_node_holding_them(self) -> None:
        """No master claims the slot; A still holds its keys (the whole cluster is down while
        full coverage is required): ASSIGN to A, never to a random master."""
        values = self.fill(10)
        for m in self.cluster.masters():
            self.cluster.execute(m, "CLUSTER", "DELSLOTS", self.slot)
        self.observe("unassigned", "assign")
        self.finish(self.a, values, traffic=False)

    def test_s8_unassigned_empty_slot_goes_back_to_its_previous_owner(self) -> None:
        """No master claims the slot and none holds keys: the proxy's last good map names the
        previous owner, which gets the slot back."""
        proxy = watcher_proxy(self.cluster, "finish", f"fin-{self.slot}")
        try:
            harness.wait_for(lambda: metric(proxy, "slotpilot_watcher_polls_total") >= 1, 10.0,
                             "a first watcher poll")
            for m in self.cluster.masters():
                self.cluster.execute(m, "CLUSTER", "DELSLOTS", self.slot)
            entry = wait_repaired(proxy, self.slot)
            self.assertIn("assign", entry["action"])
            assert_clean(self, self.cluster, self.slot, self.a, {}, proxy)
        finally:
            proxy.stop()

    def test_target_short_of_memory_with_eviction_policy_is_refused(self) -> None:
        """An interrupted reshard whose remaining keys would push the target near maxmemory
        under allkeys-lru: the finish refuses (eviction would destroy data silently) and moves
        nothing; once the operator lifts the limit, POST /v1/migrations/{slot}/finish repairs."""
        big = "x" * 100_000
        values = write_keys(self.cluster, self.a, self.keys(40), big)
        self.cluster.open_slot(self.slot, self.a, self.b)
        self.cluster.migrate_keys(self.a, self.b, self.slot, 5)
        used = int(self.cluster.execute(self.b, "INFO", "memory")["used_memory"])
        self.cluster.execute(self.b, "CONFIG", "SET", "maxmemory-policy", "allkeys-lru")
        self.cluster.execute(self.b, "CONFIG", "SET", "maxmemory", used + 2_000_000)
        try:
            self.observe("interrupted-reshard", "forward")
            before = self.state()
            proxy = watcher_proxy(self.cluster, "finish", f"fin-{self.slot}")
            try:
                entry = wait_entry(proxy, self.slot, lambda e: "refused" in e["action"], 20.0,
                                   "the finish to be refused")
                self.assertIn("memory", entry["action"])
                self.assertEqual(self.state(), before, "a refused finish changed the cluster")
                self.assertEqual(evicted(self.cluster), self.evicted_before)
                self.cluster.execute(self.b, "CONFIG", "SET", "maxmemory", 0)
                status, body = admin(proxy, "POST", f"/v1/migrations/{self.slot}/finish",
                                     token=True)
                self.assertIn(status, (200, 202), body)
                wait_repaired(proxy, self.slot)
                assert_clean(self, self.cluster, self.slot, self.b, values, proxy)
            finally:
                proxy.stop()
        finally:
            self.cluster.execute(self.b, "CONFIG", "SET", "maxmemory", 0)
            self.cluster.execute(self.b, "CONFIG", "SET", "maxmemory-policy", "noeviction")
        self.assertEqual(evicted(self.cluster), self.evicted_before)


if __name__ == "__main__":
    unittest.main()
