"""The migration watcher across sidecars, through the slotpilot binary, on real 3-master clusters:

  * three proxies in finish mode on one cluster: exactly one acts on each stuck slot (its audit
    trail, its metrics; the others see it as the lease holder or find nothing left to do);
  * the acting proxy is killed (SIGKILL) mid-repair: a proxy restarted with the same sidecar id
    takes the dead one's lease over at once, resumes the journaled intent and finishes; no key
    is lost or left on two nodes;
  * a live, slow reshard that makes progress is never touched by a watcher in finish mode, and
    client traffic through the proxy sees no error meanwhile.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
import unittest

import harness
from harness import RedisCluster
from watcher_support import (Traffic, admin, assert_clean, evicted, finisher_steps, metric,
                             migrations, repair_ends, slot_of, wait_repaired, watcher_proxy,
                             write_keys)


def slot_settled(cluster: RedisCluster, slot: int, owner: harness.Node) -> bool:
    """Every master says `owner` owns slot and shows no open marker for it."""
    for m in cluster.masters():
        me = cluster.myself(m)
        if slot in me.migrating or slot in me.importing or cluster.node_for_slot(slot, m) != owner:
            return False
    return True


def sidecar(proxy: harness.Proxy) -> str:
    return next(a for a in proxy.argv if a.startswith("--sidecar-id=")).split("=", 1)[1]


class WatcherFleetTest(unittest.TestCase):
    def setUp(self) -> None:
        self.cluster = RedisCluster(masters=3).start()
        self.addCleanup(self.cluster.stop)
        self.a, self.b, self.c = self.cluster.masters()

    def interrupted(self, src: harness.Node, dst: harness.Node, index: int, count: int,
                    moved: int, value: str = "v") -> tuple[int, dict[str, str]]:
        """An interrupted reshard src -> dst of a slot of src with `count` keys, `moved` moved."""
        slot = slot_of(self.cluster, src, index)
        keys = harness.keys_for_slot(slot, count, "k")
        values: dict[str, str] = {}
        for i in range(0, count, 1000):  # pipelined by write_keys' single connection
            values.update(write_keys(self.cluster, src, keys[i:i + 1000], value))
        self.cluster.open_slot(slot, src, dst)
        self.cluster.migrate_keys(src, dst, slot, moved, batch=500)
        return slot, values

    def test_three_finishing_proxies_act_exactly_once_per_slot(self) -> None:
        stuck = [self.interrupted(self.a, self.b, 1, 3000, 300),
                 self.interrupted(self.b, self.c, 2, 3000, 300),
                 self.interrupted(self.c, self.a, 3, 3000, 300)]
        owners = [self.b, self.c, self.a]
        evicted_before = evicted(self.cluster)
        proxies = []
        for i in range(3):  # from the main thread: children die with the thread that spawned them
            proxies.append(watcher_proxy(self.cluster, "finish", f"fleet-{i}"))
            self.addCleanup(proxies[-1].stop)
        holders: dict[int, set[str]] = {slot: set() for slot, _ in stuck}

        def all_done() -> bool:
            for p in proxies:  # record whom every proxy names as the lease holder meanwhile
                for slot, entry in migrations(p).items():
                    if slot in holders and entry["lease_holder"]:
                        holders[slot].add(entry["lease_holder"])
            return all(slot_settled(self.cluster, slot, owner)
                       for (slot, _), owner in zip(stuck, owners))

        harness.wait_for(all_done, 90.0, "every stuck slot repaired", interval=0.2)
        for (slot, values), owner in zip(stuck, owners):
            with self.subTest(slot=slot):
                actors = [p for p in proxies if finisher_steps(p, slot)]
                self.assertEqual(len(actors), 1, f"slot {slot}: proxies that mutated: "
                                 f"{[sidecar(p) for p in actors]}")
                actor = actors[0]
                actor_id = sidecar(actor)
                done = [e for p in proxies for e in repair_ends(p, slot)
                        if "result=done" in e and "mutated=true" in e]
                self.assertEqual(len(done), 1, done)
                # "preferred:<id>" names the sidecar others defer to by rendezvous hashing
                # before anyone holds the lease. A real holder is a proxy that started a repair
                # of the slot (one may take the lease, find the state changed under it -- e.g. an
                # epoch bumped by another slot's commit -- and hand it back without a step).
                real = {h for h in holders[slot] if not h.startswith("preferred:")}
                starters = {sidecar(p) for p in proxies
                            if f"event=repair_start slot={slot} " in p.log()}
                self.assertIn(actor_id, starters)
                self.assertEqual(real - starters, set(),
                                 f"slot {slot}: lease holders seen {holders[slot]}")
                assert_clean(self, self.cluster, slot, owner, values)
        succeeded = sum(metric(p, "slotpilot_watcher_actions_total", outcome="succeeded")
                        for p in proxies)
        moved = sum(metric(p, "slotpilot_watcher_keys_moved_total") for p in proxies)
        self.assertEqual(succeeded, 3)
        self.assertEqual(moved, 3 * 2700)
        self.assertEqual(evicted(self.cluster), evicted_before)

    def test_killed_mid_repair_a_restarted_proxy_resumes_and_finishes(self) -> None:
        slot, values = self.interrupted(self.a, self.b, 4, 40000, 500)
        first = watcher_proxy(self.cluster, "finish", "phoenix")
        self.addCleanup(first.stop)

        def moving() -> bool:
            return "move-keys" in finisher_steps(first, slot)

        harness.wait_for(moving, 30.0, "the repair to start moving keys", interval=0.02)
        first.kill9()
        left = self.cluster.count_keys_in_slot(slot, self.a)
        on_target = self.cluster.count_keys_in_slot(slot, self.b)
        self.assertGreater(left, 0, "the repair finished before the kill: make it longer")
        self.assertGreater(on_target, 500)
        self.assertEqual(left + on_target, len(values), "keys lost or doubled by the kill")
        self.assertFalse(slot_settled(self.cluster, slot, self.b))

        second = watcher_proxy(self.cluster, "finish", "phoenix")
        self.addCleanup(second.stop)
        load = Traffic(second, list(values)[:50] + harness.keys_for_slot(slot, 10, "new")).start()
        try:
            entry = wait_repaired(second, slot, timeout=90.0)
        finally:
            load.stop()
        self.assertEqual(load.errors, [])
        self.assertEqual(load.stale_reads, [])
        self.assertIn("forward", entry["action"])
        end = re.search(rf"component=finisher event=end slot={slot} .*result=done.*", second.log())
        self.assertIsNotNone(end, second.log()[-3000:])
        self.assertIn("resumed=true", end.group(0))
        assert_clean(self, self.cluster, slot, self.b, {**values, **load.written}, second)

    def test_an_interrupted_reshard_under_steady_new_key_writes_is_finished(self) -> None:
        """Clients keep creating keys in the slot (each goes to the target by ASK, so the
        target's key count rises every poll). That is traffic, not a migration making progress:
        the slot is still stuck and must be finished, every key kept."""
        slot, values = self.interrupted(self.a, self.b, 6, 60, 20)
        proxy = watcher_proxy(self.cluster, "finish", "churn")
        self.addCleanup(proxy.stop)
        fresh = harness.keys_for_slot(slot, 1000, "fresh")
        load = Traffic(proxy, fresh, pause=0.05).start()  # a new key every ~0.1 s
        try:
            wait_repaired(proxy, slot, timeout=40.0)
            time.sleep(0.5)  # a few writes after the repair, on the new owner
        finally:
            load.stop()
        self.assertEqual(load.errors, [])
        self.assertEqual(load.stale_reads, [])
        self.assertGreater(len(load.written), 20)
        assert_clean(self, self.cluster, slot, self.b, {**values, **load.written}, proxy)

    def test_a_live_redis_cli_reshard_is_never_touched(self) -> None:
        """`redis-cli --cluster reshard` of one slot of 40k keys, one key per MIGRATE (several
        stall timeouts long), under a watcher in finish mode: it never acts."""
        slot = self.cluster.slots_of(self.a)[0][0]  # reshard takes the source's first slot
        values: dict[str, str] = {}
        keys = harness.keys_for_slot(slot, 40000, "r")
        for i in range(0, len(keys), 5000):
            values.update(write_keys(self.cluster, self.a, keys[i:i + 5000], "v"))
        proxy = watcher_proxy(self.cluster, "finish", "bystander-cli")
        self.addCleanup(proxy.stop)
        started = time.monotonic()
        reshard = subprocess.Popen(
            ["redis-cli", "--cluster", "reshard", self.a.address,
             "--cluster-from", self.cluster.node_id(self.a),
             "--cluster-to", self.cluster.node_id(self.b), "--cluster-slots", "1",
             "--cluster-yes", "--cluster-pipeline", "1"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        verdicts: set[str] = set()
        polls_seen_open: set[str] = set()  # watcher polls (updated_at) that saw the slot open
        try:
            while reshard.poll() is None and time.monotonic() - started < 120:
                status, body = admin(proxy, "GET", "/v1/migrations")
                self.assertEqual(status, 200, body)
                entry = {m["slot"]: m for m in body["migrations"]}.get(slot)
                if entry is not None:
                    verdicts.add(entry["verdict"])
                    polls_seen_open.add(body["updated_at"])
                time.sleep(0.2)
        finally:
            if reshard.poll() is None:
                reshard.kill()
            output = reshard.communicate(timeout=10)[0]
        took = time.monotonic() - started
        self.assertEqual(reshard.returncode, 0, output[-3000:])
        self.assertNotIn("stuck", verdicts)
        if len(polls_seen_open) >= 3:  # a baseline poll, then MIGRATE activity between polls
            self.assertIn("progressing", verdicts)
        self.assertEqual(finisher_steps(proxy, slot), [], "the watcher acted on a live reshard")
        self.assertEqual(metric(proxy, "slotpilot_watcher_actions_total", outcome="started"), 0)
        assert_clean(self, self.cluster, slot, self.b, values, proxy)
        if len(polls_seen_open) < 3:  # not a failure, but then the test proved less than it says
            print(f"note: the reshard took only {took:.1f} s ({len(polls_seen_open)} polls saw "
                  "it open)", file=sys.stderr)

    def test_a_live_slow_reshard_is_never_touched(self) -> None:
        slot = slot_of(self.cluster, self.a, 5)
        values = write_keys(self.cluster, self.a, harness.keys_for_slot(slot, 30, "k"), "v")
        proxy = watcher_proxy(self.cluster, "finish", "bystander")
        self.addCleanup(proxy.stop)
        load = Traffic(proxy, list(values)[:10] + harness.keys_for_slot(slot, 5, "new")).start()
        verdicts: set[str] = set()
        try:
            self.cluster.open_slot(slot, self.a, self.b)
            deadline = time.monotonic() + 60
            # One key every 0.4 s: ~15 s of migration, 5 stall timeouts long, always progressing.
            while self.cluster.count_keys_in_slot(slot, self.a) and time.monotonic() < deadline:
                self.cluster.migrate_keys(self.a, self.b, slot, 1)
                entry = migrations(proxy).get(slot)
                if entry is not None:
                    verdicts.add(entry["verdict"])
                    self.assertNotEqual(entry["verdict"], "stuck", entry)
                time.sleep(0.4)
            self.assertEqual(self.cluster.count_keys_in_slot(slot, self.a), 0)
            self.cluster.finish_slot(slot, self.b)
        finally:
            load.stop()
        self.assertIn("progressing", verdicts)
        self.assertEqual(finisher_steps(proxy, slot), [], "the watcher acted on a live reshard")
        self.assertEqual(metric(proxy, "slotpilot_watcher_actions_total", outcome="started"), 0)
        self.assertEqual(load.errors, [])
        self.assertEqual(load.stale_reads, [])
        assert_clean(self, self.cluster, slot, self.b, {**values, **load.written}, proxy)


if __name__ == "__main__":
    unittest.main()
