"""
The limited web server example runs its demonstration and reports what the limiter did.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_limitedWebServerDemo() -> None:
    """
    The example's demonstration serves what fits in the slots and queue, refuses the rest
    with 503, and prints statistics that agree with what the clients saw.
    """
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "limited_web_server.py"), "--demo"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    match = re.search(r"(\d+) requests served \(200\), (\d+) refused \(503\)", done.stdout)
    assert match is not None, done.stdout
    ok, refused = int(match.group(1)), int(match.group(2))
    assert ok + refused == 50
    assert ok >= 30 and refused >= 1
    assert f"served={ok}," in done.stdout
    assert f"overflowed={refused}," in done.stdout
    assert "active=0, queued=0" in done.stdout
