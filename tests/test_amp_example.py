"""
The AMP example (examples/amp_pool.py) runs against its own AMP server on a loopback port:
answers really arrive out of order on one pooled connection, and a request cancelled or timed
out in flight leaves the connection in service.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ampExample() -> None:
    """
    The example's five requests on one connection are answered last first, and after a
    cancellation and a timeout in flight no connection was closed or opened.
    """
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "amp_pool.py")],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines() == [
        "sent in order: a b c d e",
        "answered in order: e d c b a",
        "cancelled in flight: CancelledError",
        "answers after the cancel: ['kept-1', 'kept-2']",
        "connections opened: 1, closed: 0",
        "timed out in flight: RequestTimeoutError",
        "answer after the timeout: after-timeout",
        "connections opened: 1, closed: 0",
    ]
