"""
A smoke run of the server benchmark (benchmarks/server/bench.py) with wrk: it runs end to end
and writes its report. It asserts nothing about performance.
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path

from txconnpool.server import LimitConnectionsFactory

ROOT = Path(__file__).resolve().parents[2]
MIN_TURN = inspect.signature(LimitConnectionsFactory).parameters["minTurn"].default
DEFAULTS = f"defaults (minTurn={MIN_TURN:g})"


def test_quickRunWritesTurnsTable(tmp_path: Path) -> None:
    """
    A one-round run of the turns scenario writes a table with a row for the bare site and one
    for the default limiter, with wrk's socket errors and the connections the limiter served.
    """
    output = tmp_path / "server.md"
    done = subprocess.run(
        [
            sys.executable, str(ROOT / "benchmarks" / "server" / "bench.py"),
            "--scenarios", "turns", "--rounds", "1", "--seconds", "1",
            "--turns", "--output", str(output),
        ],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    table = output.read_text()
    assert table in done.stdout
    rows = {line.split("|")[1].strip(): line for line in table.splitlines() if line[:2] == "| "}
    assert set(rows) == {"variant", "bare", DEFAULTS}
    cells = [cell.strip() for cell in rows[DEFAULTS].split("|")[1:-1]]
    assert len(cells[5].split("/")) == 4
    assert int(cells[6]) >= 5
