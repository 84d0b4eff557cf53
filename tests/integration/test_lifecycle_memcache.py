"""
The connection lifecycle against a real memcached: a server that closes idle connections, a
stopped server under keepalive, the Prometheus output scraped over HTTP, and PoolService in
a real Application and under twistd.

Nothing sleeps: the tests wait on Deferreds, or poll the pool on the reactor with a deadline.
"""

from __future__ import annotations

import inspect
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import treq
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.twisted import MetricsResource
from twisted.application.service import Application, IService, IServiceCollection
from twisted.internet import defer, reactor, task
from twisted.web.server import Site

from txconnpool.memcache import MemCachePool
from txconnpool.memcache.testing import MemcachedProcess, freePort
from txconnpool.prometheus import PoolCollector
from txconnpool.service import PoolService

from ..test_prometheus import expectedSamples, samples


async def until(predicate: Callable[[], object], what: str, deadline: float = 20.0) -> None:
    """
    Poll C{predicate} (which may return an awaitable) on the reactor every 20ms until it is
    true; fail after C{deadline} seconds, saying what was awaited.
    """
    giveUpAt = reactor.seconds() + deadline
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if reactor.seconds() > giveUpAt:
            raise AssertionError(f"still waiting after {deadline}s for {what}")
        await task.deferLater(reactor, 0.02, lambda: None)


async def serverStats(server: MemcachedProcess) -> dict[bytes, bytes]:
    """
    Ask memcached for its statistics, over a connection of its own.
    """
    pool = MemCachePool(server.endpoint, maxClients=1)
    try:
        stats: dict[bytes, bytes] = await pool.stats()
    finally:
        await pool.close()
    return stats


class CountingPool(MemCachePool):
    """
    A MemCachePool that counts its pings.
    """

    pings = 0

    def pingConnection(self, protocol: Any) -> defer.Deferred[object]:
        self.pings += 1
        return MemCachePool.pingConnection(self, protocol)


@pytest.fixture
def idleKickingMemcached(tmp_path: Path) -> Iterator[MemcachedProcess]:
    """
    A memcached of the test's own that closes connections idle for a second.
    """
    server = MemcachedProcess(tmp_path / "memcached.log", extraArgs=("-o", "idle_timeout=1"))
    server.start()
    yield server
    server.stop()


@pytest_twisted.ensureDeferred
async def test_validationHidesConnectionsClosedByTheServer(
    idleKickingMemcached: MemcachedProcess,
) -> None:
    """
    Connections memcached closed for being idle never reach callers: requests made after the
    closes, and non-idempotent ones spaced across the server's idle timeout, all succeed.
    """
    server = idleKickingMemcached
    pool = CountingPool(
        server.endpoint,
        maxClients=3,
        validateAfterIdle=0.5,
        idleTimeout=None,
        maxRequestsPerClient=1,
    )
    try:
        assert await defer.gatherResults([pool.set(f"k{i}", b"v") for i in range(3)]) == [
            True
        ] * 3
        assert pool.poolStats().created == 3
        await until(lambda: pool.poolStats().discarded.lost == 3, "memcached to close all 3")
        assert int((await serverStats(server))[b"idle_kicks"]) >= 3
        burst = await defer.gatherResults([pool.set(f"b{i}", b"v") for i in range(30)])
        assert burst == [True] * 30
        gaps = (0.6, 1.3, 2.1)
        for gap in gaps:
            await task.deferLater(reactor, gap, lambda: None)
            assert await pool.set(f"gap{gap}", b"v") is True
            assert await pool.get(f"gap{gap}") == (0, b"v")
        stats = pool.poolStats()
        assert (stats.failedRequests, stats.requests) == (0, 3 + 30 + 2 * len(gaps))
        assert pool.pings >= 1
        assert int((await serverStats(server))[b"idle_kicks"]) > 3
    finally:
        await pool.close()


@pytest_twisted.ensureDeferred
async def test_keepaliveReplacesConnectionsToAStoppedServer(
    freshMemcached: MemcachedProcess,
) -> None:
    """
    Keepalive pings to a SIGSTOPped memcached time out, the pool replaces those connections,
    and after SIGCONT requests succeed.
    """
    pool = MemCachePool(
        freshMemcached.endpoint,
        maxClients=2,
        minClients=2,
        keepaliveInterval=0.2,
        pingTimeout=0.3,
        idleTimeout=None,
    )
    try:
        await pool.whenReady(10)
        assert await pool.set(b"kept", b"before") is True
        freshMemcached.signal(signal.SIGSTOP)
        try:
            await until(lambda: pool.poolStats().discarded.keepalive >= 2, "failed pings")
            await until(lambda: pool.poolStats().connectsAttempted > 2, "replacements")
        finally:
            freshMemcached.signal(signal.SIGCONT)
        results = await defer.gatherResults([pool.get(b"kept") for _ in range(20)])
        assert results == [(0, b"before")] * 20
        assert await pool.set(b"kept", b"after") is True
        await until(lambda: pool.poolStats().idle == 2, "two healthy connections")
        stats = pool.poolStats()
        assert stats.failedRequests == 0
        assert stats.discarded.keepalive >= 2 and stats.created > 2
    finally:
        await pool.close()
    assert pool.poolStats().busy + pool.poolStats().idle == 0


@pytest_twisted.ensureDeferred
async def test_prometheusScrapedOverHTTP(memcached: MemcachedProcess) -> None:
    """
    The metrics served by prometheus_client's Twisted resource parse back to the pool's
    statistics.
    """
    pool = MemCachePool(memcached.endpoint, maxClients=3, minClients=1)
    registry = CollectorRegistry()
    registry.register(PoolCollector(pool, name="cache"))
    port = reactor.listenTCP(0, Site(MetricsResource(registry)), interface="127.0.0.1")
    try:
        await pool.whenReady(10)
        await defer.gatherResults([pool.set(f"scrape{i}", b"v") for i in range(50)])
        assert await pool.get(b"absent-key") == (0, None)
        url = f"http://127.0.0.1:{port.getHost().port}/metrics"
        response = await treq.get(url, persistent=False)
        assert response.code == 200
        assert response.headers.getRawHeaders("content-type")[0].startswith("text/plain")
        text = await response.text()
        stats = pool.poolStats()
        families = {f.name: f for f in text_string_to_metric_families(text)}
        expected = expectedSamples(stats, "cache")
        assert {name: samples(families[name]) for name in expected} == expected
        assert stats.requests == 51 and stats.created >= 1 and stats.requestTime.count == 51
    finally:
        await port.stopListening()
        await pool.close()


@pytest_twisted.ensureDeferred
async def test_poolServiceInAnApplication(memcached: MemcachedProcess) -> None:
    """
    A PoolService in an Application opens minClients connections when started, is ready,
    and its stop closes every connection, on the server's side too.
    """
    before = int((await serverStats(memcached))[b"curr_connections"])
    application = Application("lifecycle")
    pool = MemCachePool(memcached.endpoint, maxClients=4, minClients=2)
    poolService = PoolService(pool, name="cache", whenReadyTimeout=10)
    poolService.setServiceParent(application)
    assert IServiceCollection(application).getServiceNamed("cache") is poolService
    IService(application).startService()
    try:
        await poolService.ready
        assert (pool.poolStats().idle, pool.poolStats().created) == (2, 2)
        assert await pool.set(b"service", b"up") is True

        async def serverSeesTwoMore() -> bool:
            return int((await serverStats(memcached))[b"curr_connections"]) == before + 2

        await until(serverSeesTwoMore, "memcached to count the pool's 2 connections")
    finally:
        await IService(application).stopService()
    stats = pool.poolStats()
    assert (stats.busy, stats.idle, stats.connecting) == (0, 0, 0)
    assert stats.closed == stats.created == stats.discarded.closed == 2
    assert not poolService.running

    async def serverBackToBefore() -> bool:
        return int((await serverStats(memcached))[b"curr_connections"]) == before

    await until(serverBackToBefore, "memcached to see both connections closed")


TAC = """
from twisted.application import service
from twisted.internet import reactor
from txconnpool.memcache import MemCachePool
from txconnpool.service import PoolService

application = service.Application("txconnpool-twistd")
pool = MemCachePool({endpoint!r}, maxClients=2, minClients=2)
cache = PoolService(pool, name="cache", whenReadyTimeout={timeout}, failFast=True)
cache.setServiceParent(application)
cache.ready.addCallback(lambda _: reactor.callLater(0, reactor.stop))
reactor.addSystemEventTrigger(
    "after", "shutdown", lambda: print("after shutdown:", pool.poolStats(), flush=True)
)
"""


def runTwistd(
    tmp_path: Path, endpoint: str, timeout: float
) -> subprocess.CompletedProcess[str]:
    """
    Run twistd in the foreground on a .tac file holding a PoolService with failFast, which
    stops the reactor once the pool is ready (or, by failFast, when it is not).
    """
    tac = tmp_path / "pool.tac"
    tac.write_text(TAC.format(endpoint=endpoint, timeout=timeout))
    return subprocess.run(
        [
            sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
            "--nodaemon", "--pidfile=", "--logfile=-", "--python", str(tac),
        ],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )


def test_twistdRunsAndClosesThePool(memcached: MemcachedProcess, tmp_path: Path) -> None:
    """
    Under twistd, the service's pool becomes ready, and stopping the reactor closes it.
    """
    done = runTwistd(tmp_path, memcached.endpoint, timeout=30.0)
    assert done.returncode == 0, done.stderr
    assert "is ready" in done.stdout
    assert "did not become ready" not in done.stdout
    assert "after shutdown: PoolStats(busy=0, idle=0, connecting=0" in done.stdout
    assert "created=2, closed=2" in done.stdout


def test_twistdFailFastWithoutServer(tmp_path: Path) -> None:
    """
    Under twistd, failFast stops the reactor when the server cannot be reached, logging the
    connection error.
    """
    done = runTwistd(tmp_path, f"tcp:127.0.0.1:{freePort()}", timeout=1.0)
    assert "did not become ready (whenReadyTimeout=1.0s); stopping the reactor" in done.stdout
    assert "ServerUnavailableError" in done.stdout
    assert "refused" in done.stdout.lower()
    assert "after shutdown: PoolStats(busy=0, idle=0, connecting=0" in done.stdout
