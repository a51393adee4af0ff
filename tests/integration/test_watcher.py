"""The migration watcher end to end, through the slotpilot binary, on a real 3-master cluster:
the half-open and interrupted scenario classes of shared/MIGRATION.md (S1, S1b, S2, S2b, S3, S4a),
each built by hand with CLUSTER SETSLOT and MIGRATE. For each:
  1. a proxy in observe mode reports the right verdict, signature and plan in GET /v1/migrations
     and changes nothing;
  2. a proxy in finish mode repairs it while a client reads and writes keys of the slot through
     it (loop-policy hold: no client sees an error);
  3. afterwards `redis-cli --cluster check` is clean, every key written before and during the
     repair reads back with its latest value, no key of the slot is on two nodes, nothing was
     evicted.
test_watcher_conflicts.py has the rest (conflicting copies, big keys, unassigned slots, memory);
test_watcher_fleet.py several sidecars, a kill mid-repair and a live reshard.
One cluster serves the whole class (every test leaves it clean and uses its own slot).
"""

from __future__ import annotations

import unittest

import watcher_support
from watcher_support import write_keys


class WatcherScenarioTest(watcher_support.ScenarioCase):
    def test_s1_half_open_source_is_closed(self) -> None:
        """A MIGRATING -> B, B not importing, no keys on B: absent keys loop ASK -> MOVED."""
        values = self.fill(30)
        self.cluster.set_migrating(self.slot, self.a, self.b)
        entry = self.observe("half-open-source", "close")
        self.assertEqual((entry["keys_source"], entry["keys_target"]), (30, 0))
        # New keys loop until the close: the held requests must go through after it.
        self.finish(self.a, values, live_keys=self.keys(10, "new"))

    def test_s1b_half_closed_target_is_forwarded(self) -> None:
        """A MIGRATING -> B, B closed its side while it already holds keys: forward to B."""
        values = self.fill(30)
        self.cluster.open_slot(self.slot, self.a, self.b)
        self.cluster.migrate_keys(self.a, self.b, self.slot, 12)
        self.cluster.set_stable(self.slot, self.b)
        entry = self.observe("half-closed-target", "import-then-forward")
        self.assertEqual((entry["keys_source"], entry["keys_target"]), (18, 12))
        self.finish(self.b, values, live_keys=self.keys(5, "new"))

    def test_s2_half_open_target_is_closed(self) -> None:
        """B IMPORTING <- A, A not migrating, no keys on B."""
        values = self.fill(20)
        self.cluster.set_importing(self.slot, self.b, self.a)
        self.observe("half-open-target", "close")
        self.finish(self.a, values, live_keys=self.keys(5, "new"))

    def test_s2b_stray_writes_on_target_are_drained_back(self) -> None:
        """B IMPORTING <- A with keys written on B by ASKING clients; one of them also exists on
        A with the value every client was served (A's copy wins)."""
        values = self.fill(20)
        self.cluster.set_importing(self.slot, self.b, self.a)
        stray = write_keys(self.cluster, self.b, self.keys(6, "stray"), "stray", asking=True)
        dup = self.keys(1)[0]
        write_keys(self.cluster, self.b, [dup], "stale-on-target", asking=True)
        entry = self.observe("stray-writes-on-target", "drain-then-stable")
        self.assertEqual((entry["keys_source"], entry["keys_target"]), (20, 7))
        self.finish(self.a, {**values, **stray})

    def test_s3_interrupted_reshard_is_forwarded_by_intent(self) -> None:
        """Half the keys moved (more on the target than left on the source: redis-cli's fix would
        roll it back by key count); the watcher forwards to the MIGRATING destination."""
        values = self.fill(40)
        self.cluster.open_slot(self.slot, self.a, self.b)
        self.cluster.migrate_keys(self.a, self.b, self.slot, 25)
        entry = self.observe("interrupted-reshard", "forward")
        self.assertEqual((entry["keys_source"], entry["keys_target"]), (15, 25))
        self.assertEqual(entry["target"], self.b.address)
        self.finish(self.b, values, live_keys=self.keys(5, "new"))

    def test_s4a_unclaimed_after_partial_finish_is_committed(self) -> None:
        """Every key moved, SETSLOT NODE B sent to A only: A says B owns it, B (still
        importing) says A: a MOVED ping-pong for every key until B commits."""
        values = self.fill(20)
        self.cluster.open_slot(self.slot, self.a, self.b)
        self.cluster.migrate_keys(self.a, self.b, self.slot, 20)
        self.cluster.execute(self.a, "CLUSTER", "SETSLOT", self.slot, "NODE",
                             self.cluster.node_id(self.b))
        self.observe("unclaimed-after-partial-finish", "commit")
        self.finish(self.b, values, live_keys=self.keys(5, "new"))


if __name__ == "__main__":
    unittest.main()
