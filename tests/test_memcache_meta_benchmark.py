"""
A smoke run of the memcached benchmark's meta client (benchmarks/memcache): MetaMemCachePool
and MemCachePool measured side by side, with ratios to MemCachePool. It asserts nothing about
performance.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_metaClientAgainstThePool(tmp_path: Path) -> None:
    """
    A quick run of the meta client and the pool on the get and 50/50 workloads writes a row
    for each, relative to the pool, with every operation answered.
    """
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [
            sys.executable, "-m", "benchmarks.memcache", "--quick",
            "--workloads", "get", "mix50", "--concurrency", "1", "10",
            "--clients", "pool", "meta", "--reference", "pool",
            "--duration", "0.2", "--warmup", "0.05", "--seed", "1",
            "--output-dir", str(tmp_path),
        ],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=90,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    table = (tmp_path / "memcache.md").read_text()
    assert "### 50% get / 50% set, 100-byte values" in table
    for concurrency in (1, 10):
        assert f"| {concurrency} | MemCachePool | " in table
        assert f"| {concurrency} | MetaMemCachePool | " in table
    results = json.loads((tmp_path / "memcache.json").read_text())["results"]
    assert sorted({(r["client"], r["workload"]) for r in results}) == [
        ("meta", "get"), ("meta", "mix50"), ("pool", "get"), ("pool", "mix50")
    ]
    assert all(r["ops"] > 0 and r["errors"] == 0 and r["misses"] == 0 for r in results)
