"""Headless Chromium for the console's browser test (test_console.py): Debian's chromium and
chromium-driver driven by Debian's python3-selenium, started with the flags this machine needs
(root, no sandbox, no network beyond loopback) and a fresh profile, stopped by PID.

Only the standard library and selenium. Every wait is bounded.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WIDTH = 1480
T = TypeVar("T")

# Without the background-networking flags Chromium phones home at start, and this machine's
# closed network refuses those connections; as root it needs --no-sandbox.
_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
          "--disable-background-networking", "--disable-component-update", "--disable-sync",
          "--disable-dev-shm-usage", "--hide-scrollbars", "--force-device-scale-factor=1",
          f"--window-size={WIDTH},1200"]


def missing() -> Optional[str]:
    """Why no browser test can run here (None when it can)."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not path.exists():
            return f"{path} not installed (deploy/install-deps.sh installs chromium chromium-driver)"
    return None


class Browser:
    """One headless Chromium with a new empty profile; quit() ends it and removes the profile."""

    def __init__(self) -> None:
        self.profile = Path(tempfile.mkdtemp(prefix="slotpilot-chromium-"))
        options = Options()
        options.binary_location = str(CHROMIUM)
        for flag in _FLAGS + [f"--user-data-dir={self.profile}"]:
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.service = Service(executable_path=str(CHROMEDRIVER),
                               log_path=str(self.profile / "chromedriver.log"))
        atexit.register(self.quit)
        self.driver = webdriver.Chrome(service=self.service, options=options)
        self.driver.set_page_load_timeout(30)
        self.driver.set_script_timeout(30)

    def quit(self) -> None:
        atexit.unregister(self.quit)
        try:
            self.driver.quit()
        except (WebDriverException, AttributeError, OSError):
            pass
        process = getattr(self.service, "process", None)
        if process is not None and process.poll() is None:  # quit failed: stop it by PID
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        shutil.rmtree(self.profile, ignore_errors=True)

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def wait(self, pred: Callable[[], T], timeout: float, what: str, interval: float = 0.2) -> T:
        """Polls pred until it returns something truthy; AssertionError naming `what` after
        `timeout` seconds."""
        deadline = time.monotonic() + timeout
        last_error: Optional[BaseException] = None
        while time.monotonic() < deadline:
            try:
                value = pred()
                if value:
                    return value
            except (WebDriverException, LookupError, ValueError) as e:  # page still rendering
                last_error = e
            time.sleep(interval)
        raise AssertionError(f"timed out after {timeout:g} s waiting for {what}"
                             + (f" (last error: {last_error})" if last_error else ""))

    def pixel(self, canvas_id: str, x: float, y: float) -> tuple[int, int, int]:
        """The RGB of a canvas pixel at CSS coordinates (x, y)."""
        return tuple(self.js(
            "const c = document.getElementById(arguments[0]);"
            "const r = c.width / c.clientWidth;"
            "const d = c.getContext('2d').getImageData(Math.floor(arguments[1] * r),"
            " Math.floor(arguments[2] * r), 1, 1).data;"
            "return [d[0], d[1], d[2]];", canvas_id, x, y))

    def console_messages(self) -> list[str]:
        """Browser console lines since the last call."""
        return [f"{e.get('level')}: {e.get('message')}" for e in self.driver.get_log("browser")]

    def screenshot(self, path: Path) -> None:
        """The whole page: the window is resized to the document's height first."""
        self.driver.set_window_size(WIDTH, 600)  # from short, so the page sets the height
        for _ in range(3):  # the window is a little taller than its viewport: converge
            missing = self.js("return document.documentElement.scrollHeight - window.innerHeight;")
            if missing == 0:
                break
            size = self.driver.get_window_size()
            self.driver.set_window_size(WIDTH, max(600, min(size["height"] + int(missing), 4000)))
            time.sleep(0.3)  # a frame to lay out at the new size
        path.parent.mkdir(parents=True, exist_ok=True)
        if not self.driver.save_screenshot(str(path)):
            raise AssertionError(f"no screenshot written to {path}")


def hex_rgb(colour: str) -> tuple[int, int, int]:
    """'#4e79a7' -> (78, 121, 167)."""
    colour = colour.lstrip("#")
    return tuple(int(colour[i:i + 2], 16) for i in (0, 2, 4))
