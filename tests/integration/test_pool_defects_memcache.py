"""
Regression tests, against real memcached servers, of defects found when the pool was tried
adversarially.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import defer, reactor
from twisted.logger import LogEvent, globalLogPublisher

from txconnpool import ProtocolError, ServerUnavailableError
from txconnpool.memcache import MemCachePool
from txconnpool.memcache.testing import MemcachedProcess


@pytest_twisted.ensureDeferred
async def test_getAfterCancellingManyQueuedGets(memcached: MemcachedProcess) -> None:
    """
    On a fresh pool, with a connection checked out, 33 queued gets all cancelled, and the
    connection released, a new get is sent and answered, and nothing is logged as an error.
    """
    errors: list[LogEvent] = []

    def observe(event: LogEvent) -> None:
        if event.get("isError"):
            errors.append(event)

    globalLogPublisher.addObserver(observe)
    pool = MemCachePool(memcached.endpoint)
    try:
        connection = await pool.acquire()
        gets = [pool.get(b"defect-1-%d" % i) for i in range(33)]
        for d in gets:
            d.cancel()
        results = await defer.DeferredList(gets, consumeErrors=True)
        assert all(not ok for ok, _ in results)
        pool.release(connection)
        assert await pool.set(b"defect-1", b"ok") is True
        got = pool.get(b"defect-1")
        timeout = reactor.callLater(5, got.cancel)  # type: ignore[attr-defined]
        assert await got == (0, b"ok")
        timeout.cancel()
    finally:
        globalLogPublisher.removeObserver(observe)
        await pool.close()
    assert errors == []


@pytest.fixture
def fullMemcached(tmp_path: Path) -> Iterator[tuple[MemcachedProcess, list[socket.socket]]]:
    """
    A memcached at its connection limit (C{-c 16 -t 1} leaves 3 client connections, which
    raw sockets hold): it answers each new connection with an error line and closes it.
    """
    server = MemcachedProcess(tmp_path / "memcached.log", extraArgs=("-c", "16", "-t", "1"))
    server.start()
    held: list[socket.socket] = []
    try:
        while True:
            s = socket.create_connection((str(server.host), server.port), timeout=5)
            held.append(s)
            s.sendall(b"version\r\n")
            if not s.recv(100).startswith(b"VERSION"):
                break
        yield server, held
    finally:
        for s in held:
            s.close()
        server.stop()


@pytest_twisted.ensureDeferred
async def test_serverAtConnectionLimitBacksOffAndFailsFast(
    fullMemcached: tuple[MemcachedProcess, list[socket.socket]],
) -> None:
    """
    Connections refused by a memcached at its connection limit count as failed attempts:
    the pool backs off instead of reconnecting for every request, and once failFastAfter
    attempts failed, requests fail fast with ServerUnavailableError.
    """
    server, _ = fullMemcached
    pool = MemCachePool(server.endpoint, maxClients=4, failFastAfter=3)
    try:
        outcomes: list[type[BaseException]] = []
        for i in range(30):
            try:
                await pool.get(b"defect-3-%d" % i)
            except Exception as e:
                outcomes.append(type(e))
        stats = pool.poolStats()
        assert len(outcomes) == 30
        assert set(outcomes) <= {ProtocolError, ServerUnavailableError}
        assert ServerUnavailableError in outcomes
        assert stats.connectsFailed >= 3
        assert stats.connectsAttempted <= 6
    finally:
        await pool.close()
