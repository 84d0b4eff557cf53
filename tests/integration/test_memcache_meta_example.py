"""
The meta-protocol example, examples/stampede_web.py, runs and does what it says against a real
memcached: 100 concurrent requests for a cold report cause one computation.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest_twisted
import treq
from twisted.internet import reactor
from twisted.web.client import HTTPConnectionPool

from txconnpool.memcache import MetaMemCachePool
from txconnpool.memcache.testing import MemcachedProcess

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"

sys.path.insert(0, str(EXAMPLES))
from stampede_web import Reports, makeSite  # noqa: E402


def test_stampedeDemo(memcached: MemcachedProcess) -> None:
    """
    The demonstration answers 100 concurrent requests for a cold report with one
    computation, and 100 after invalidating it with one more, stale reports served meanwhile.
    """
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "stampede_web.py"), "--memcached", memcached.endpoint,
         "--demo"],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "cold report: 100 responses, 1 computation"
    match = re.fullmatch(
        r"after invalidate: 100 responses \((\d+) of them stale\), 1 computation more", lines[1]
    )
    assert match is not None, lines[1]
    assert 1 <= int(match.group(1)) <= 99
    assert lines[2] == 'stats: {"computations": 2}'


@pytest_twisted.ensureDeferred
async def test_stampedeSite(memcached: MemcachedProcess) -> None:
    """
    The example's site serves a report, computing it once for repeated requests, refuses a
    bad id, and invalidates on request.
    """
    pool = MetaMemCachePool(memcached.endpoint, maxClients=2)
    await pool.delete("report:3")
    reports = Reports(reactor, delay=0.0)
    listening = reactor.listenTCP(0, makeSite(pool, reports), interface="127.0.0.1")
    http = HTTPConnectionPool(reactor, persistent=False)
    base = f"http://127.0.0.1:{listening.getHost().port}"
    try:
        for _ in range(2):
            response = await treq.get(f"{base}/report?id=3", pool=http)
            assert await treq.content(response) == b"report 3 (computation 1)\n"
        bad = await treq.get(f"{base}/report?id=x", pool=http)
        assert bad.code == 400
        await treq.content(bad)
        invalidated = await treq.get(f"{base}/invalidate?id=3", pool=http)
        assert await treq.content(invalidated) == b"stale\n"
        missing = await treq.get(f"{base}/invalidate?id=4", pool=http)
        assert await treq.content(missing) == b"not cached\n"
        stats = await treq.json_content(await treq.get(f"{base}/stats", pool=http))
        assert stats == {"computations": 1}
    finally:
        await http.closeCachedConnections()
        await listening.stopListening()
        await pool.close()
