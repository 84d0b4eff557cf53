"""
A smoke run of the sharded memcached benchmark (benchmarks/cluster.py): it runs end to end
against three real memcached servers and writes its report. It asserts nothing about
performance.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quickRunWritesTheReport(tmp_path: Path) -> None:
    """
    A quick run for the cluster and pylibmc measures every workload for both without errors
    and writes a markdown table and the raw results.
    """
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [
            sys.executable, "-m", "benchmarks.cluster", "--quick", "--rounds", "1",
            "--duration", "0.2", "--warmup", "0.05", "--concurrency", "10",
            "--multi-concurrency", "2", "--clients", "cluster", "pylibmc", "--seed", "1",
            "--output-dir", str(tmp_path),
        ],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    table = (tmp_path / "cluster.md").read_text()
    assert table in done.stdout
    for workload, callers in (("get", 10), ("mix", 10), ("multi", 2)):
        assert f"| {workload} | {callers} | MemCacheCluster (Twisted) | " in table
    results = json.loads((tmp_path / "cluster.json").read_text())["results"]
    assert sorted((r["client"], r["workload"]) for r in results) == [
        ("cluster", "get"), ("cluster", "mix"), ("cluster", "multi"),
        ("pylibmc", "get"), ("pylibmc", "mix"), ("pylibmc", "multi"),
    ]
    assert all(r["ops"] > 0 and r["errors"] == 0 for r in results)
