"""
A smoke run of the memcached client benchmark (benchmarks/memcache): it runs end to end and
writes its report and plot. It asserts nothing about performance.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quickRunWritesTableAndPlot(tmp_path: Path) -> None:
    """
    A quick run for the pool and the raw Twisted connection at concurrency 1 and 10 writes a
    markdown table with a row for each, raw results for each, and a PNG plot.
    """
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [
            sys.executable, "-m", "benchmarks.memcache", "--quick",
            "--workloads", "get", "--concurrency", "1", "10",
            "--clients", "pool", "twisted",
            "--duration", "0.2", "--warmup", "0.05", "--seed", "1",
            "--output-dir", str(tmp_path),
        ],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]

    table = (tmp_path / "memcache.md").read_text()
    assert table in done.stdout
    for concurrency in (1, 10):
        for label in ("MemCachePool", "Twisted MemCacheProtocol"):
            assert f"| {concurrency} | {label} | " in table

    results = json.loads((tmp_path / "memcache.json").read_text())["results"]
    assert sorted((r["client"], r["concurrency"]) for r in results) == [
        ("pool", 1), ("pool", 10), ("twisted", 1), ("twisted", 10)
    ]
    assert all(r["ops"] > 0 and r["errors"] == 0 and r["misses"] == 0 for r in results)

    assert (tmp_path / "memcache.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
