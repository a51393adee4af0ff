"""What ordinary applications sent that the proxy could not take (issue 11), at the sizes they
send it: each case at the size that broke, just below and above it, and ten times past it.

  * transactions of 254..5000 queued commands (255 crashed the proxy: a one-byte reference count
    on the EXEC request overflowed with one reference per queued command);
  * MGET / MSET / DEL / UNLINK / EXISTS / TOUCH across hundreds to 16384 slots (256 slots hung:
    the same count, one reference per sub-request);
  * SCAN cursors, which must stay at or below 2**53 - 1 so JavaScript clients keep them exact;
  * SCRIPT KILL and FUNCTION KILL, which must reach the master a runaway script blocks.

Run: cd tests/integration && SLOTPILOT_BIN=... /usr/bin/python3 -m unittest -v test_real_sizes
"""

from __future__ import annotations

import threading
import time
import unittest
from typing import Optional

import redis

import harness
from harness import Proxy, RedisCluster
from test_data_path import ClusterTestCase, binary_missing_reason, stop_proxy_checked

MAX_SAFE_INTEGER = 2**53 - 1  # the largest integer a JavaScript Number holds exactly
REQUEST_TIMEOUT_S = 3         # the proxy's, for the runaway-script tests
SOCKET_TIMEOUT_S = 30.0       # well above the proxy's request timeout: a hang shows as a timeout


def keys_over_slots(count: int, prefix: str) -> list[str]:
    """`count` keys; the first min(count, 16384) of them in distinct slots."""
    keys = [f"{{{harness.hashtag_for_slot(i % harness.SLOT_COUNT)}}}{prefix}{i}" for i in range(count)]
    assert len({harness.key_slot(k) for k in keys}) == min(count, harness.SLOT_COUNT)
    return keys


@unittest.skipIf(binary_missing_reason(), binary_missing_reason())
class RealSizesTest(ClusterTestCase):
    """One cluster and one proxy for the whole class; every test checks the proxy is still up."""

    cluster_: Optional[RedisCluster] = None
    proxy_: Optional[Proxy] = None

    @classmethod
    def setUpClass(cls) -> None:
        cls.cluster_ = RedisCluster(masters=3).start()
        cls.proxy_ = Proxy(cls.cluster_, extra_args=["--request-timeout=10s"]).start()

    @classmethod
    def tearDownClass(cls) -> None:
        try:
            if cls.proxy_ is not None:
                stop_proxy_checked(cls.proxy_)
        finally:
            if cls.cluster_ is not None:
                cls.cluster_.stop()

    def setUp(self) -> None:
        self.cluster, self.proxy = self.cluster_, self.proxy_
        self.client = self.proxy.client(socket_timeout=SOCKET_TIMEOUT_S)
        self.addCleanup(self.client.close)

    def tearDown(self) -> None:
        super().tearDown()
        self.assertTrue(self.proxy.running(), "the proxy died:\n" + self.proxy.log()[-3000:])

    # ---- transactions --------------------------------------------------------------------------

    def test_transactions_of_every_size_around_256_and_far_past_it(self) -> None:
        for n in (0, 1, 254, 255, 256, 257, 2560, 5000):
            with self.subTest(commands=n):
                stream = f"{{tx}}stream{n}"
                pipe = self.client.pipeline(transaction=True)
                for i in range(n):
                    pipe.xadd(stream, {"item": str(i)})
                ids = pipe.execute()
                self.assertEqual(len(ids), n)
                self.assertEqual(self.client.xlen(stream), n)
                if n:
                    self.assertEqual(self.client.xrange(stream, count=1)[0][0], ids[0])

    def test_big_transaction_result_is_exact(self) -> None:
        pipe = self.client.pipeline(transaction=True)
        for i in range(3000):
            pipe.incrby("{tx}counter", i)
        results = pipe.execute()
        self.assertEqual(results[-1], sum(range(3000)))
        self.assertEqual(results[255], sum(range(256)))

    def test_a_crashing_size_never_affects_another_client(self) -> None:
        other = self.proxy.client()
        self.addCleanup(other.close)
        other.set("bystander", "still here")
        pipe = self.client.pipeline(transaction=True)
        for i in range(255):
            pipe.xadd("{tx}bystander-stream", {"item": str(i)})
        pipe.execute()
        self.assertEqual(other.get("bystander"), "still here")

    # ---- commands split per slot ---------------------------------------------------------------

    def test_split_commands_around_256_slots_and_up_to_every_slot(self) -> None:
        for n in (1, 255, 256, 257, 2560, 10000, 16384, 20000):
            with self.subTest(keys=n):
                keys = keys_over_slots(n, f"split{n}:")
                values = {k: f"v{i}" for i, k in enumerate(keys)}
                self.assertTrue(self.client.mset(values))
                self.assertEqual(self.client.mget(keys), [values[k] for k in keys])
                self.assertEqual(self.client.exists(*keys), n)
                self.assertEqual(self.client.touch(*keys), n)
                half = keys[: (n + 1) // 2]
                self.assertEqual(self.client.unlink(*half), len(half))
                self.assertEqual(self.client.delete(*keys), n - len(half))
                self.assertEqual(self.client.mget(keys[:3]), [None] * min(n, 3))

    def test_mget_with_duplicate_and_missing_keys_keeps_the_order_asked(self) -> None:
        keys = keys_over_slots(600, "dup:")
        self.client.mset({k: k for k in keys[::2]})
        asked = keys + keys[::-1]
        expected = [k if i % 2 == 0 else None for i, k in enumerate(keys)]
        self.assertEqual(self.client.mget(asked), expected + expected[::-1])

    def test_many_clients_with_wide_commands_at_once(self) -> None:
        errors: list[BaseException] = []

        def worker(index: int) -> None:
            try:
                with self.proxy.client(socket_timeout=SOCKET_TIMEOUT_S) as c:
                    keys = keys_over_slots(1000, f"wide{index}:")
                    for round_ in range(5):
                        c.mset({k: f"{round_}" for k in keys})
                        if c.mget(keys) != [f"{round_}"] * len(keys):
                            raise AssertionError(f"client {index}: wrong MGET in round {round_}")
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        self.assertFalse(any(t.is_alive() for t in threads), "a client hung")
        self.assertEqual(errors, [])

    # ---- SCAN ----------------------------------------------------------------------------------

    def test_scan_cursors_fit_a_javascript_number_and_the_scan_ends(self) -> None:
        keys = set(keys_over_slots(5000, "scan:"))
        self.client.mset({k: "1" for k in keys})
        for count in (1, 10, 1000):
            with self.subTest(count=count):
                seen: set[str] = set()
                cursor, steps = 0, 0
                while True:
                    cursor, batch = self.client.scan(cursor, match="*scan:*", count=count)
                    self.assertLessEqual(cursor, MAX_SAFE_INTEGER)
                    # What a JavaScript client does with it: a double, back to an integer.
                    self.assertEqual(int(float(cursor)), cursor)
                    seen.update(batch)
                    steps += 1
                    self.assertLess(steps, 50000, "SCAN never ended")
                    if cursor == 0:
                        break
                self.assertEqual(seen, keys)


@unittest.skipIf(binary_missing_reason(), binary_missing_reason())
class KillRunawayScriptTest(ClusterTestCase):
    """A read-only script that never ends blocks its master: every other client of that master
    gets -BUSY. SCRIPT KILL and FUNCTION KILL through the proxy, without --allow-admin-commands,
    must stop it. busy-reply-threshold (lua-time-limit) is lowered so the test need not wait 5 s
    before Redis starts answering during the script."""

    SPIN = "local i = 0 while true do i = i + 1 end"
    LIBRARY = ("#!lua name=spinlib\n"
               "redis.register_function{function_name='spin', flags={'no-writes'},"
               " callback=function() local i = 0 while true do i = i + 1 end end}")

    def setUp(self) -> None:
        self.cluster = RedisCluster(masters=3, extra_args=["--busy-reply-threshold", "200"]).start()
        self.addCleanup(self.cluster.stop)
        self.proxy = Proxy(self.cluster,
                           extra_args=[f"--request-timeout={REQUEST_TIMEOUT_S}s"]).start()
        self.addCleanup(stop_proxy_checked, self.proxy)

    def run_in_background(self, *command: str) -> tuple[threading.Thread, list]:
        outcome: list = []

        def call() -> None:
            with self.proxy.client(socket_timeout=SOCKET_TIMEOUT_S) as c:
                try:
                    outcome.append(c.execute_command(*command))
                except redis.RedisError as e:
                    outcome.append(e)

        thread = threading.Thread(target=call)
        thread.start()
        return thread, outcome

    def kill_until_ok(self, kill: tuple[str, ...]) -> None:
        """Sends the kill until a master reports a killed script (the script may not run yet)."""
        deadline = time.monotonic() + 20
        with self.proxy.client(socket_timeout=SOCKET_TIMEOUT_S) as c:
            while True:
                try:
                    self.assertTrue(c.execute_command(*kill))
                    return
                except redis.ResponseError as e:
                    self.assertTrue(str(e).startswith("NOTBUSY"), str(e))
                self.assertLess(time.monotonic(), deadline, f"{kill} never found the script")
                time.sleep(0.05)

    def assert_killed(self, thread: threading.Thread, outcome: list, what: str) -> None:
        thread.join(timeout=SOCKET_TIMEOUT_S)
        self.assertFalse(thread.is_alive(), f"the {what} never returned")
        self.assertIsInstance(outcome[0], redis.ResponseError)
        self.assertIn("killed by user", str(outcome[0]))

    def test_script_kill_stops_a_runaway_eval(self) -> None:
        thread, outcome = self.run_in_background("EVAL", self.SPIN, "0")
        self.kill_until_ok(("SCRIPT", "KILL"))
        self.assert_killed(thread, outcome, "EVAL")
        with self.proxy.client() as c:
            self.assertTrue(c.set("after", "1"))  # every master serves again
            with self.assertRaisesRegex(redis.ResponseError, r"^NOTBUSY No scripts in execution right now\.$"):
                c.execute_command("SCRIPT", "KILL")

    def test_function_kill_stops_a_runaway_function(self) -> None:
        with self.proxy.client() as c:
            self.assertEqual(c.execute_command("FUNCTION", "LOAD", self.LIBRARY), "spinlib")
        thread, outcome = self.run_in_background("FCALL_RO", "spin", "0")
        self.kill_until_ok(("FUNCTION", "KILL"))
        self.assert_killed(thread, outcome, "FCALL_RO")
        with self.proxy.client() as c:
            with self.assertRaisesRegex(redis.ResponseError, r"^NOTBUSY No scripts in execution right now\.$"):
                c.execute_command("FUNCTION", "KILL")

    def test_a_runaway_script_holds_only_its_master_and_only_until_the_kill(self) -> None:
        """Requests to the blocked master share the proxy's connection with the script, so they
        wait behind it and end at the proxy's request timeout (or get -BUSY on a connection of
        their own); the other masters keep serving; after the kill every master serves."""
        thread, outcome = self.run_in_background("EVAL", self.SPIN, "0")
        self.kill_until_ok(("SCRIPT", "KILL"))  # waits until the script surely runs
        self.assert_killed(thread, outcome, "EVAL")
        thread, outcome = self.run_in_background("EVAL", self.SPIN, "0")
        time.sleep(0.5)
        held, served = [], []
        with self.proxy.client(socket_timeout=SOCKET_TIMEOUT_S) as c:
            for slot in (0, 6000, 12000):  # one on each master of a fresh 3-master cluster
                key = "{%s}k" % harness.hashtag_for_slot(slot)
                started = time.monotonic()
                try:
                    c.get(key)
                    served.append(slot)
                except redis.ResponseError as e:
                    self.assertRegex(str(e), r"^(BUSY |slotpilot: request timed out)")
                    self.assertLess(time.monotonic() - started, REQUEST_TIMEOUT_S + 2)
                    held.append(slot)
        self.assertEqual(len(held), 1, f"held {held}, served {served}")
        self.kill_until_ok(("SCRIPT", "KILL"))
        thread.join(timeout=SOCKET_TIMEOUT_S)
        self.assertFalse(thread.is_alive(), "the EVAL never returned")
        # The proxy may have answered the EVAL at its request timeout before the kill.
        self.assertRegex(str(outcome[0]), r"killed by user|slotpilot: request timed out")
        with self.proxy.client(socket_timeout=SOCKET_TIMEOUT_S) as c:
            for slot in (0, 6000, 12000):
                self.assertIsNone(c.get("{%s}k" % harness.hashtag_for_slot(slot)))


if __name__ == "__main__":
    unittest.main()
