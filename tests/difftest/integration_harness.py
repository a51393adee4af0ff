"""tests/integration/harness.py (Redis clusters, the slotpilot process, a standalone server,
loopback port reservation), importable from this folder: `from integration_harness import harness`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

import harness  # noqa: E402

__all__ = ["harness"]
