"""
The programs in examples/ run and do what they say, against a real memcached.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest_twisted
import treq
from twisted.internet import reactor
from twisted.web.client import HTTPConnectionPool

from txconnpool.memcache import MemCachePool
from txconnpool.memcache.testing import MemcachedProcess

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

sys.path.insert(0, str(EXAMPLES))
from webapp import makeSite  # noqa: E402


def runExample(*args: str) -> str:
    """
    Run an example program to completion and return its output, failing on a non-zero exit.
    """
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / args[0]), *args[1:]],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_legacyReadmeExample(memcached: MemcachedProcess) -> None:
    """
    The txconnpool 0.1.1 README example misses, stores, hits, and exits when the reactor stops.
    """
    out = runExample("legacy_readme.py", str(memcached.port))
    assert out.splitlines() == ["Boo, it was a cache miss", "Yay, we got a cache hit"]


def test_modernAsyncExample(memcachedUnix: MemcachedProcess) -> None:
    """
    The async/await example runs over a unix socket and prints its results and statistics.
    """
    out = runExample("modern_async.py", memcachedUnix.endpoint)
    assert "user:9 = 81" in out
    assert "visits = 3" in out
    assert "PoolStats(busy=0, idle=1, connecting=0, waiting=0, maxClients=4" in out


def test_demo(memcached: MemcachedProcess) -> None:
    """
    The demonstration serves every request through the web app and prints the pool's
    statistics.
    """
    out = runExample("demo.py", "--requests", "300", "--concurrency", "20", "--keys", "30")
    assert "HTTP statuses: {200: 300}; cache hits 270, misses 30" in out
    assert "failedRequests: 0" in out


@pytest_twisted.ensureDeferred
async def test_webApp(memcached: MemcachedProcess) -> None:
    """
    The web app computes on a miss, answers from memcached on a hit, and reports statistics.
    """
    pool = MemCachePool(memcached.endpoint, maxClients=2)
    await pool.delete("compute:7")
    listening = reactor.listenTCP(0, makeSite(pool), interface="127.0.0.1")
    http = HTTPConnectionPool(reactor, persistent=False)
    base = f"http://127.0.0.1:{listening.getHost().port}"
    try:
        first = await treq.get(f"{base}/compute?n=7", pool=http)
        body = await treq.content(first)
        second = await treq.get(f"{base}/compute?n=7", pool=http)
        assert await treq.content(second) == body
        assert first.headers.getRawHeaders(b"x-cache") == [b"miss"]
        assert second.headers.getRawHeaders(b"x-cache") == [b"hit"]
        bad = await treq.get(f"{base}/compute?n=x", pool=http)
        assert bad.code == 400
        await treq.content(bad)
        stats = await treq.json_content(await treq.get(f"{base}/stats", pool=http))
        assert stats["cache"] == {"hits": 1, "misses": 1}
        assert stats["pool"]["failedRequests"] == 0
    finally:
        await http.closeCachedConnections()
        await listening.stopListening()
        await pool.close()
