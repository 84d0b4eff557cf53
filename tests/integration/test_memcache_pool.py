"""
MemCachePool against a real memcached server, over TCP and a unix socket; the same tests run
against MetaMemCachePool, which has the same surface over the meta protocol.
"""

from __future__ import annotations

import signal
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, reactor
from twisted.internet.address import IPv4Address
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.protocols.memcache import MemCacheProtocol as TwistedMemCacheProtocol

from txconnpool import ConnectionLostError, PoolClosedError, ServerUnavailableError
from txconnpool.memcache import InvalidKeyError, MemCachePool, MetaMemCachePool
from txconnpool.memcache.testing import MemcachedProcess
from txconnpool.pool import Pool, PooledClientFactory


@pytest.fixture(params=["memcached", "memcachedUnix"])
def server(request: pytest.FixtureRequest) -> MemcachedProcess:
    """
    The shared memcached server, once over TCP and once over a unix socket.
    """
    result: MemcachedProcess = request.getfixturevalue(request.param)
    return result


@pytest.fixture(params=[MemCachePool, MetaMemCachePool], ids=["text", "meta"])
def poolClass(request: pytest.FixtureRequest) -> type[Any]:
    """
    The pool class under test: MemCachePool, then MetaMemCachePool.
    """
    result: type[Any] = request.param
    return result


async def acceptedConnections(server: MemcachedProcess) -> int:
    """
    Ask memcached how many connections it has accepted so far, not counting the one asking.
    """
    pool = MemCachePool(server.endpoint, maxClients=1)
    try:
        stats = await pool.stats()
    finally:
        await pool.close()
    return int(stats[b"total_connections"]) - 1


@pytest_twisted.ensureDeferred
async def test_everyCommand(
    server: MemcachedProcess, request: pytest.FixtureRequest, poolClass: type[Any]
) -> None:
    """
    Every MemCachePool method gives memcached's answer, with Twisted's result shapes.
    """
    pool = poolClass(server.endpoint, maxClients=3)
    prefix = request.node.callspec.id.encode() + b"-"
    k = prefix + b"key"
    try:
        assert await pool.set(k, b"value", flags=7) is True
        assert await pool.get(k) == (7, b"value")
        flags, cas, value = await pool.get(k, withIdentifier=True)
        assert (flags, value) == (7, b"value")
        assert await pool.checkAndSet(k, b"value2", cas) is True
        assert await pool.checkAndSet(k, b"value3", cas) is False
        assert await pool.get(k) == (0, b"value2")
        assert await pool.add(k, b"x") is False
        assert await pool.add(prefix + b"new", b"x") is True
        assert await pool.replace(k, b"replaced") is True
        assert await pool.replace(prefix + b"absent", b"x") is False
        assert await pool.append(k, b"-tail") is True
        assert await pool.prepend(k, b"head-") is True
        assert await pool.get(k) == (0, b"head-replaced-tail")
        assert await pool.set(prefix + b"n", b"10") is True
        assert await pool.increment(prefix + b"n") == 11
        assert await pool.increment(prefix + b"n", 5) == 16
        assert await pool.decrement(prefix + b"n", 6) == 10
        multiple = await pool.getMultiple([k, prefix + b"n", prefix + b"absent"])
        assert multiple == {
            k: (0, b"head-replaced-tail"),
            prefix + b"n": (0, b"10"),
            prefix + b"absent": (0, None),
        }
        assert await pool.touch(k, 100) is True
        assert await pool.touch(prefix + b"absent", 100) is False
        assert await pool.delete(k) is True
        assert await pool.delete(k) is False
        assert await pool.get(k) == (0, None)
        textKey = prefix.decode() + "clé"
        assert await pool.set(textKey, b"unicode key") is True
        assert await pool.get(textKey.encode("utf-8")) == (0, b"unicode key")
        stats = await pool.stats()
        assert int(stats[b"pid"]) == server.pid
        assert (await pool.version()).startswith(b"1.")
        assert await pool.flushAll() is True
        assert await pool.get(prefix + b"new") == (0, None)
        with pytest.raises(TypeError):
            await pool.set(k, "not bytes")  # type: ignore[arg-type]
        with pytest.raises(InvalidKeyError):
            await pool.get(b"has space")
        assert await pool.set(k, b"still fine") is True
        assert pool.poolStats().created <= 3
    finally:
        await pool.close()


@pytest_twisted.ensureDeferred
async def test_manyConcurrentRequestsShareFewConnections(
    memcached: MemcachedProcess, poolClass: type[Any]
) -> None:
    """
    Hundreds of concurrent requests are all answered correctly over at most maxClients
    connections.
    """
    accepted = await acceptedConnections(memcached)
    pool = poolClass(memcached.endpoint, maxClients=4)
    try:
        keys = [f"concurrent-{i}".encode() for i in range(400)]
        stored = await defer.gatherResults([pool.set(k, k[::-1]) for k in keys])
        assert stored == [True] * 400
        got = await defer.gatherResults([pool.get(k) for k in keys])
        assert got == [(0, k[::-1]) for k in keys]
        stats = pool.poolStats()
        assert stats.created == 4
        assert (stats.requests, stats.failedRequests, stats.waiting, stats.busy) == (800, 0, 0, 0)
    finally:
        await pool.close()
    assert await acceptedConnections(memcached) - accepted == 4 + 1
    assert pool.poolStats().closed == 4


class PooledMemCacheProtocol(TwistedMemCacheProtocol):
    """
    The protocol of the txconnpool 0.1.1 README.
    """

    factory: Any = None

    def connectionMade(self) -> None:
        TwistedMemCacheProtocol.connectionMade(self)
        self.factory.connectionPool.clientFree(self)
        if self.factory.deferred is not None:
            self.factory.deferred.callback(self)
            self.factory.deferred = None


class MemCacheClientFactory(PooledClientFactory):
    protocol = PooledMemCacheProtocol


class LegacyMemCachePool(Pool[Any]):
    clientFactory = MemCacheClientFactory

    def get(self, *args: Any, **kwargs: Any) -> defer.Deferred[Any]:
        return self.performRequest("get", *args, **kwargs)

    def set(self, *args: Any, **kwargs: Any) -> defer.Deferred[Any]:
        return self.performRequest("set", *args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> defer.Deferred[Any]:
        return self.performRequest("delete", *args, **kwargs)

    def add(self, *args: Any, **kwargs: Any) -> defer.Deferred[Any]:
        return self.performRequest("add", *args, **kwargs)


@pytest_twisted.ensureDeferred
async def test_legacyReadmePattern(memcached: MemcachedProcess) -> None:
    """
    The txconnpool 0.1.1 README's classes and IPv4Address work against memcached, with
    requests queued beyond maxClients.
    """
    assert memcached.port is not None
    addr = IPv4Address("TCP", "127.0.0.1", memcached.port)
    mc_pool = LegacyMemCachePool(addr, maxClients=2)
    try:
        assert await mc_pool.get(b"legacy-cached-data") == (0, None)
        results = await defer.gatherResults(
            [mc_pool.set(f"legacy-{i}".encode(), b"v%d" % i) for i in range(20)]
        )
        assert results == [True] * 20
        assert await mc_pool.get(b"legacy-7") == (0, b"v7")
        assert await mc_pool.add(b"legacy-7", b"other") is False
        assert await mc_pool.delete(b"legacy-7") is True
        assert mc_pool.poolStats().created == 2
    finally:
        await mc_pool.close()


@pytest_twisted.ensureDeferred
async def test_serverKilledMidRequestThenDown(
    freshMemcached: MemcachedProcess, poolClass: type[Any]
) -> None:
    """
    Killing memcached fails the request in flight with ConnectionLostError; the request
    queued behind it, like the requests made while the server is down, fails with
    ServerUnavailableError after failFastAfter refused connections.
    """
    pool = poolClass(freshMemcached.endpoint, maxClients=1, failFastAfter=2)
    try:
        assert await pool.set(b"k", b"1") is True
        assert await pool.get(b"k") == (0, b"1")
        freshMemcached.signal(signal.SIGSTOP)
        increment = pool.increment(b"k")
        get = pool.get(b"k")
        freshMemcached.signal(signal.SIGKILL)
        freshMemcached.process.wait()  # type: ignore[union-attr]
        with pytest.raises(ConnectionLostError):
            await increment
        with pytest.raises(ServerUnavailableError):
            await get
        with pytest.raises(ServerUnavailableError):
            await pool.get(b"k")
        stats = pool.poolStats()
        assert (stats.busy, stats.idle, stats.waiting, stats.closed) == (0, 0, 0, 1)
        assert stats.discarded.lost == 1
    finally:
        await pool.close()


@pytest_twisted.ensureDeferred
async def test_closeWaitsForInFlightAndClosesSockets(
    memcached: MemcachedProcess, poolClass: type[Any]
) -> None:
    """
    close() lets requests in flight finish, fails queued ones, and fires when every socket to
    memcached is closed.
    """
    pool = poolClass(memcached.endpoint, maxClients=1, maxRequestsPerClient=1)
    assert await pool.set(b"close-k", b"v") is True
    inFlight = pool.get(b"close-k")
    queued = pool.get(b"close-k")
    await pool.close()
    assert await inFlight == (0, b"v")
    with pytest.raises(PoolClosedError):
        await queued
    with pytest.raises(PoolClosedError):
        await pool.get(b"close-k")
    stats = pool.poolStats()
    assert (stats.created, stats.closed, stats.busy, stats.idle) == (1, 1, 0, 0)


@pytest_twisted.ensureDeferred
async def test_endpointObjectAndExclusiveCheckout(
    memcached: MemcachedProcess, poolClass: type[Any]
) -> None:
    """
    A pool built on an endpoint object hands out a connection for exclusive use with
    connection(), and reuses it afterwards.
    """
    assert memcached.port is not None
    pool = poolClass(TCP4ClientEndpoint(reactor, "127.0.0.1", memcached.port), maxClients=1)
    try:
        async with pool.connection() as protocol:
            assert await protocol.set(b"exclusive", b"1") is True
            assert await protocol.increment(b"exclusive") == 2
        assert await pool.get(b"exclusive") == (0, b"2")
        assert pool.poolStats().created == 1
    finally:
        await pool.close()
