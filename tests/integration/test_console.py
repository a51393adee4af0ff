"""The operator console (issue 15): GET / on the admin port, in headless Chromium against a real
3-master cluster with a half-open migration (source MIGRATING, target not importing), whose
absent keys loop ASK -> MOVED through the proxy.

  * Serving: the page, its style and scripts come from the binary with the right types; every
    admin answer (the page's, the API's, a 404) carries the strict Content-Security-Policy and
    nosniff; the page has no inline script or style.
  * Read-only (no --admin-token-file): the page loads with no CSP violation or script error,
    says it is read-only, and its finish/rollback buttons are disabled with the reason. With
    the watcher off it still shows owners, reachability (from /metrics) and loops.
  * With a token: the grid shows the three owners (legend colours = canvas pixels), the open
    slot split into source and target colours, the loop table and the hover names the slot; a
    wrong token is refused and forgotten; finish with the right token (typed into the dialog)
    repairs the slot, and the page then shows it stable. The token never reaches a URL, a
    cookie or storage.

Screenshots of the normal and the stuck page go to $SLOTPILOT_SCREENSHOT_DIR when it is set
(docs/ holds the committed ones: `SLOTPILOT_SCREENSHOT_DIR=$PWD/docs ctest -R integration.test_console`),
else to a temporary folder.

Run: cd tests/integration && SLOTPILOT_BIN=... /usr/bin/python3 -m unittest -v test_console
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
import threading
import time
import unittest
from http.client import HTTPConnection
from pathlib import Path
from typing import Optional

import redis

import console_browser
import harness
import watcher_support
from harness import Proxy, RedisCluster

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
       "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
TOKEN = watcher_support.TOKEN
NO_TOKEN_REASON = "admin actions are disabled: start slotpilot with --admin-token-file"
COLUMNS, CELL = 128, 4
SCREENSHOTS = Path(os.environ.get("SLOTPILOT_SCREENSHOT_DIR") or
                   tempfile.mkdtemp(prefix="slotpilot-console-shots-"))
CLUSTER: Optional[RedisCluster] = None


def setUpModule() -> None:
    global CLUSTER
    CLUSTER = RedisCluster(masters=3).start()


def tearDownModule() -> None:
    if CLUSTER is not None:
        CLUSTER.stop()


def get(proxy: Proxy, path: str) -> tuple[int, dict[str, str], str]:
    conn = HTTPConnection(harness.HOST, proxy.admin_port, timeout=5)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read().decode()
    finally:
        conn.close()


def console_proxy(*, token: bool, sidecar: str, watcher: str = "observe") -> Proxy:
    """A proxy watching in observe mode (a short stall timeout, so a half-open slot turns stuck
    within seconds); loop-policy error, so a looping request fails at once."""
    args = [f"--watcher={watcher}", f"--stall-timeout={watcher_support.STALL_TIMEOUT}",
            f"--sidecar-id={sidecar}", "--topology-refresh-interval=1s"]
    if token:
        args.append(f"--admin-token-file={watcher_support.token_file()}")
    return Proxy(CLUSTER, extra_args=args, log_level="info").start()


def make_loops(proxy: Proxy, slot: int, count: int = 20) -> int:
    """GETs of absent keys of a half-open slot through the proxy: each one loops ASK -> MOVED
    and is answered with an error. Returns how many errors the client saw."""
    errors = 0
    with proxy.client() as c:
        for key in harness.keys_for_slot(slot, count, "loop"):
            try:
                c.get(key)
            except redis.exceptions.ResponseError:
                errors += 1
    return errors


class Traffic:
    """Steady GET/SET through the proxy on keys of every master, in a thread, so the charts have
    something to show: bounded by max_seconds and stop()."""

    def __init__(self, proxy: Proxy, max_seconds: float = 120.0) -> None:
        self.proxy = proxy
        self.max_seconds = max_seconds
        self.ops = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Traffic:
        self._thread.start()
        return self

    def _run(self) -> None:
        keys = [f"traffic:{i}" for i in range(64)]
        deadline = time.monotonic() + self.max_seconds
        with self.proxy.client() as c:
            while not self._stop.is_set() and time.monotonic() < deadline:
                key = keys[self.ops % len(keys)]
                try:
                    c.set(key, self.ops) if self.ops % 3 == 0 else c.get(key)
                except redis.exceptions.RedisError:
                    pass
                self.ops += 1
                time.sleep(0.004)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


class ConsoleCase(unittest.TestCase):
    """A proxy and a browser per test; a failed test prints the proxy's log and the browser's
    console."""

    def setUp(self) -> None:
        self.proxy: Optional[Proxy] = None
        self.browser: Optional[console_browser.Browser] = None

    def start(self, *, token: bool, sidecar: str, watcher: str = "observe") -> None:
        """A proxy and a browser (the test is skipped where no browser is installed)."""
        why = console_browser.missing()
        if why:
            self.skipTest(why)
        self.proxy = console_proxy(token=token, sidecar=sidecar, watcher=watcher)
        self.addCleanup(self.proxy.stop)
        self.browser = console_browser.Browser()
        self.addCleanup(self.browser.quit)

    def tearDown(self) -> None:
        result = getattr(getattr(self, "_outcome", None), "result", None)
        problems = getattr(result, "errors", []) + getattr(result, "failures", [])
        if any(test is self for test, _ in problems):
            if self.proxy is not None:
                print(f"\n==== slotpilot log ====\n{self.proxy.log()[-5000:]}", file=sys.stderr)
            if self.browser is not None:
                print("\n==== browser console ====\n" + "\n".join(self.browser.console_messages()),
                      file=sys.stderr)

    # ---- helpers ---------------------------------------------------------------------------

    def half_open(self, index: int) -> int:
        """A slot of the first master left MIGRATING to the second, the second not importing;
        set stable again when the test ends."""
        a, b, _ = CLUSTER.masters()
        slot = watcher_support.slot_of(CLUSTER, a, index)
        CLUSTER.set_migrating(slot, a, b)
        self.addCleanup(CLUSTER.set_stable, slot, a)
        return slot

    def open_console(self) -> None:
        self.browser.driver.get(f"http://{self.proxy.admin_address}/")
        self.browser.wait(lambda: self.browser.js(
            "return document.querySelectorAll('#legend li[data-address]').length") == 3,
            20, "the legend to list three masters")

    def text(self, selector: str) -> str:
        return self.browser.js("const e = document.querySelector(arguments[0]);"
                               "return e ? e.textContent : null;", selector) or ""

    def migration_row(self, slot: int) -> Optional[dict]:
        return self.browser.js(
            "const r = document.querySelector(`#migrations tbody tr[data-slot='${arguments[0]}']`);"
            "if (!r) return null;"
            "const b = (a) => r.querySelector(`button[data-action='${a}']`);"
            "return {verdict: r.dataset.verdict, text: r.textContent,"
            " finish: b('finish') && {disabled: b('finish').disabled, title: b('finish').title},"
            " rollback: b('rollback') && {disabled: b('rollback').disabled, title: b('rollback').title}};",
            slot)

    def wait_verdict(self, slot: int, verdict: str, timeout: float = 30.0) -> dict:
        return self.browser.wait(
            lambda: (lambda r: r if r and r["verdict"] == verdict else None)(self.migration_row(slot)),
            timeout, f"the page to show slot {slot} as {verdict}")

    def assert_clean_console(self) -> None:
        """No CSP violation and no script error in the browser's console."""
        bad = [m for m in self.browser.console_messages()
               if "Content Security Policy" in m or "Uncaught" in m or "TypeError" in m]
        self.assertEqual(bad, [], "browser console")

    def legend(self) -> dict[str, str]:
        """address -> colour of each master in the legend."""
        return self.browser.js(
            "const out = {};"
            "for (const li of document.querySelectorAll('#legend li[data-address]'))"
            " out[li.dataset.address] = li.dataset.colour;"
            "return out;")

    def cell(self, slot: int) -> tuple[int, int]:
        """Top-left corner of the slot's cell on the canvas (CSS pixels)."""
        margin = int(self.browser.js("return document.getElementById('slot-map').dataset.margin;"))
        return margin + (slot % COLUMNS) * CELL, margin + (slot // COLUMNS) * CELL

    def cell_pixel(self, slot: int, dx: int, dy: int = 1) -> tuple[int, int, int]:
        x, y = self.cell(slot)
        return self.browser.pixel("slot-map", x + dx + 0.5, y + dy + 0.5)


class ServingTest(ConsoleCase):
    def test_files_types_and_security_headers(self) -> None:
        self.proxy = console_proxy(token=False, sidecar="console-serve")
        self.addCleanup(self.proxy.stop)
        types = {"/": "text/html", "/console.css": "text/css", "/console.js": "text/javascript",
                 "/draw.js": "text/javascript"}
        bodies = {}
        for path, kind in types.items():
            status, headers, body = get(self.proxy, path)
            self.assertEqual(status, 200, path)
            self.assertTrue(headers["content-type"].startswith(kind), (path, headers))
            bodies[path] = body
        for path in list(types) + ["/v1/slots", "/metrics", "/healthz", "/no-such-page"]:
            status, headers, _ = get(self.proxy, path)
            self.assertEqual(headers.get("content-security-policy"), CSP, path)
            self.assertEqual(headers.get("x-content-type-options"), "nosniff", path)
            self.assertEqual(headers.get("x-frame-options"), "DENY", path)
        html = bodies["/"]
        self.assertEqual(re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html), [], "inline script")
        self.assertNotRegex(html, r"<style|\sstyle=|\son[a-z]+=", "inline style or handler")
        self.assertNotRegex(html + bodies["/console.js"] + bodies["/draw.js"],
                            r"https?://(?!\$\{)", "no external URL")
        self.assertIn('src="/console.js"', html)
        self.assertIn('import {', bodies["/console.js"])


class ReadOnlyConsoleTest(ConsoleCase):
    def test_without_a_token_the_page_is_read_only_with_the_reason(self) -> None:
        slot = self.half_open(1)
        self.start(token=False, sidecar="console-ro")
        self.assertEqual(make_loops(self.proxy, slot), 20)
        watcher_support.wait_stuck(self.proxy, slot, "half-open-source", "close")
        self.open_console()
        row = self.wait_verdict(slot, "stuck")
        for action in ("finish", "rollback"):
            self.assertTrue(row[action]["disabled"], row)
            self.assertEqual(row[action]["title"], NO_TOKEN_REASON)
        self.assertIn(NO_TOKEN_REASON, self.text("#actions-note"))
        self.assertEqual(self.text("#pill-admin"), "read-only: no admin token")
        self.assertTrue(self.browser.js("return document.querySelector(`#loops tbody tr[data-slot='${arguments[0]}']`) !== null;", slot))
        self.assert_clean_console()

    def test_with_the_watcher_off_the_page_still_shows_the_map_masters_and_loops(self) -> None:
        """No /v1/cluster and no migrations: owners from /v1/slots, reachability from this
        proxy's own PINGs (/metrics), the loop from /v1/loops; actions say the watcher is off."""
        slot = self.half_open(3)
        self.start(token=True, sidecar="console-off", watcher="off")
        self.assertEqual(make_loops(self.proxy, slot), 20)
        self.open_console()
        self.assertEqual(self.text("#pill-watcher"), "watcher off")
        reachable = self.browser.wait(lambda: self.browser.js(
            "return [...document.querySelectorAll('#masters tbody tr')].map(r => r.cells[4].textContent);"),
            10, "the masters table")
        self.assertEqual(reachable, ["yes", "yes", "yes"])
        self.browser.wait(lambda: self.text(f"#loops tbody tr[data-slot='{slot}']"), 20, "the loop row")
        self.assertIn("the migration watcher is off", self.text("#actions-note"))
        self.assertFalse(self.text("#open-slots li[data-slot='%d']" % slot).count("\u2192"),
                         "without the watcher no slot is known to be open")
        self.assert_clean_console()


class OperatorConsoleTest(ConsoleCase):
    def test_normal_then_stuck_then_finished_from_the_page(self) -> None:
        self.start(token=True, sidecar="console-op")
        a, b, c = CLUSTER.masters()
        traffic = Traffic(self.proxy).start()
        self.addCleanup(traffic.stop)
        self.open_console()
        self.check_owners()
        self.assertEqual(self.text("#pill-admin"), "admin actions enabled")
        self.browser.wait(lambda: self.browser.js(
            "return document.getElementById('stat-rps').textContent !== '\u2013';"), 20,
            "a requests/s figure")
        time.sleep(45)  # chart points over a good part of the window
        self.browser.screenshot(SCREENSHOTS / "console-normal.png")

        slot = self.half_open(2)
        self.assertEqual(make_loops(self.proxy, slot), 20)
        row = self.wait_verdict(slot, "stuck", timeout=40)
        self.assertFalse(row["finish"]["disabled"], row)
        self.assertIn("half-open-source", row["text"])
        self.check_marked(slot, a, b)
        self.check_loop_row(slot, a, b)
        self.hover(slot)
        self.browser.screenshot(SCREENSHOTS / "console-stuck.png")

        self.request(slot, "finish", "wrong-token", "HTTP 401")
        self.assertEqual(self.browser.js("return document.getElementById('action-token').value;"), "")
        self.request(slot, "finish", TOKEN, "HTTP 202")
        self.wait_verdict(slot, "healthy-again", timeout=40)
        self.browser.wait(lambda: self.cell_pixel(slot, 3) == console_browser.hex_rgb(self.legend()[a.address]),
                          20, "the slot's cell to be the owner's colour only")
        self.assertNotIn("\u2192", self.text(f"#open-slots li[data-slot='{slot}']"))
        self.assertEqual(self.migration_row(slot)["finish"], None, "no actions on a stable slot")
        self.assertEqual(CLUSTER.myself(a).migrating.get(slot), None, "the cluster was repaired")
        self.check_token_kept_in_memory_only()
        traffic.stop()
        self.assertGreater(traffic.ops, 100)
        self.assert_clean_console()

    # ---- checks ----------------------------------------------------------------------------

    def check_owners(self) -> None:
        """Three masters in the legend with distinct colours, each the colour of the middle of
        its own slots on the canvas."""
        legend = self.legend()
        self.assertEqual(set(legend), {m.address for m in CLUSTER.masters()})
        self.assertEqual(len(set(legend.values())), 3, legend)
        for master in CLUSTER.masters():
            lo, hi = CLUSTER.slots_of(master)[0]
            middle = (lo + hi) // 2
            self.assertEqual(self.cell_pixel(middle, 2), console_browser.hex_rgb(legend[master.address]),
                             f"slot {middle} of {master}")

    def check_marked(self, slot: int, source: harness.Node, target: harness.Node) -> None:
        """The open slot's cell is split: source colour left, target colour right; the list under
        the map names it with its direction and verdict."""
        legend = self.legend()
        self.browser.wait(lambda: self.cell_pixel(slot, 3) == console_browser.hex_rgb(legend[target.address]),
                          20, f"slot {slot}'s right half in the target's colour")
        self.assertEqual(self.cell_pixel(slot, 0), console_browser.hex_rgb(legend[source.address]))
        item = self.text(f"#open-slots li[data-slot='{slot}']")
        self.assertIn("A \u2192 B", item)
        self.assertIn("stuck (half-open-source)", item)

    def check_loop_row(self, slot: int, source: harness.Node, target: harness.Node) -> None:
        row = self.browser.wait(lambda: self.text(f"#loops tbody tr[data-slot='{slot}']"), 20,
                                f"a loop row for slot {slot}")
        self.assertIn("ask-moved", row)
        self.assertIn(source.address, row)
        self.assertIn(target.address, row)

    def hover(self, slot: int) -> None:
        """Moves the mouse over the slot; the tooltip names it, its owner and its verdict."""
        x, y = self.cell(slot)
        x, y = x + 2, y + 2
        self.browser.js(
            "const c = document.getElementById('slot-map'); const b = c.getBoundingClientRect();"
            "c.dispatchEvent(new MouseEvent('mousemove', {clientX: b.left + arguments[0],"
            " clientY: b.top + arguments[1], bubbles: true}));", x, y)
        tip = self.text("#tooltip")
        self.assertIn(f"Slot {slot}", tip)
        self.assertIn("stuck (half-open-source)", tip)
        self.assertIn("loops", tip)

    def request(self, slot: int, action: str, token: str, expect: str) -> None:
        """Finish/rollback through the page: the button, the token typed into the dialog,
        confirm; waits for the API's answer to show."""
        driver = self.browser.driver
        self.browser.js("document.getElementById('action-result').hidden = true;")
        button = driver.find_element("css selector", f"button[data-action='{action}'][data-slot='{slot}']")
        button.click()
        self.browser.wait(lambda: self.browser.js("return document.getElementById('action-dialog').open;"),
                          5, "the dialog to open")
        field = driver.find_element("id", "action-token")
        field.clear()
        field.send_keys(token)
        driver.find_element("id", "action-confirm").click()
        shown = self.browser.wait(lambda: (lambda t: t if expect in t else None)(self.text("#action-result")),
                                  15, f"the answer {expect}")
        self.assertIn(f"/v1/migrations/{slot}/{action}", shown)

    def check_token_kept_in_memory_only(self) -> None:
        """No URL the page loaded, no cookie and no storage holds the token."""
        urls = self.browser.js("return performance.getEntriesByType('resource').map(e => e.name)"
                               ".concat([location.href]);")
        self.assertTrue(urls)
        self.assertFalse([u for u in urls if TOKEN in u])
        self.assertEqual(self.browser.js("return document.cookie;"), "")
        self.assertEqual(self.browser.js("return localStorage.length + sessionStorage.length;"), 0)


if __name__ == "__main__":
    unittest.main()
