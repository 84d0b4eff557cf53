"""
Unit tests of MetaMemCachePool over a fake endpoint and a clock: the probe of each new
connection, the refusal of servers without the meta protocol, pings, closing, and the surface
it shares with MemCachePool.
"""

from __future__ import annotations

import inspect

from twisted.internet.defer import CancelledError, Deferred

from txconnpool.errors import PoolClosedError, ServerUnavailableError
from txconnpool.interfaces import ICancellableRequests
from txconnpool.memcache import MemCachePool, MetaMemCachePool
from txconnpool.memcache.meta import MetaProtocolUnsupportedError
from txconnpool.testing import FakeConnectAttempt, FakeEndpoint

from .helpers import FakeReactor, assertNoResult, failureOf, resultOf


def probed(attempt: FakeConnectAttempt, version: bytes = b"1.6.18") -> None:
    """
    Complete an attempt and answer its probe as memcached 1.6.18 does.
    """
    attempt.succeed()
    assert attempt.transport is not None
    line = attempt.transport.value()
    attempt.transport.clear()
    opaque = line.split(b" ")[-1].strip()
    attempt.protocol.dataReceived(b"VERSION %s\r\nMN\r\nEN %s\r\n" % (version, opaque))


def test_requestsWaitForTheProbe() -> None:
    """
    A new connection is probed first; the requests waiting for it are sent once the server
    has shown it speaks the meta protocol, and fire with the replies.
    """
    clock = FakeReactor()
    endpoint = FakeEndpoint(clock)
    pool = MetaMemCachePool(endpoint, maxClients=1, reactor=clock)
    d = pool.get(b"k")
    attempt = endpoint.attempts[0]
    attempt.succeed()
    assert attempt.transport is not None
    probe = attempt.transport.value()
    assert probe.startswith(b"version\r\nmn\r\nmg txconnpool:probe:")
    assertNoResult(d)
    attempt.transport.clear()
    opaque = probe.split(b" ")[-1].strip()
    attempt.protocol.dataReceived(b"VERSION 1.6.18\r\nMN\r\nEN " + opaque + b"\r\n")
    assert attempt.transport.value() == b"mg k O2 v f\r\n"
    attempt.protocol.dataReceived(b"VA 2 O2 f1\r\nhi\r\n")
    assert resultOf(d) == (1, b"hi")
    assert pool.poolStats().created == 1
    closed = pool.close()
    clock.advance(0)
    resultOf(closed)
    assert clock.getDelayedCalls() == []


def test_serverWithoutMetaCommandsIsRefused() -> None:
    """
    A server answering ERROR to mn fails each connection attempt; after failFastAfter of
    them the waiting request fails with ServerUnavailableError, whose cause says the server
    has no meta commands.
    """
    clock = FakeReactor()
    endpoint = FakeEndpoint(clock)
    pool = MetaMemCachePool(
        endpoint, maxClients=1, reactor=clock, failFastAfter=2, retryPolicy=lambda n: 1.0
    )
    d = pool.get(b"k")
    for n in range(2):
        clock.advance(1.0 if n else 0)
        attempt = endpoint.attempts[n]
        attempt.succeed()
        attempt.protocol.dataReceived(b"VERSION 1.4.25\r\nERROR\r\nERROR\r\n")
        clock.advance(0)
    failure = failureOf(d, ServerUnavailableError)
    cause = failure.value.__cause__
    assert isinstance(cause, MetaProtocolUnsupportedError)
    assert cause.serverVersion == b"1.4.25"
    assert "no meta commands" in str(failure.value)
    assert all(a.transport is not None and a.transport.lost for a in endpoint.attempts)
    assert pool.poolStats().created == 0
    resultOf(pool.close())


def test_earlyMetaVariantIsRefused() -> None:
    """
    memcached 1.6.0 to 1.6.9 (ElastiCache's 1.6.6) is refused when the connection is made,
    with an error naming the variant.
    """
    clock = FakeReactor()
    endpoint = FakeEndpoint(clock)
    pool = MetaMemCachePool(endpoint, maxClients=1, reactor=clock, failFastAfter=1)
    d = pool.set(b"k", b"v")
    attempt = endpoint.attempts[0]
    attempt.succeed()
    attempt.protocol.dataReceived(b"VERSION 1.6.6\r\nMN\r\nEN\r\n")
    clock.advance(0)
    cause = failureOf(d, ServerUnavailableError).value.__cause__
    assert isinstance(cause, MetaProtocolUnsupportedError)
    assert "1.6.6" in str(cause) and "S flag" in str(cause)
    resultOf(pool.close())


def test_pingSendsNoop() -> None:
    """
    Keepalive pings of an idle connection send mn.
    """
    clock = FakeReactor()
    endpoint = FakeEndpoint(clock)
    pool = MetaMemCachePool(endpoint, maxClients=1, reactor=clock, keepaliveInterval=10)
    d = pool.version()
    attempt = endpoint.attempts[0]
    probed(attempt)
    assert attempt.transport is not None
    assert attempt.transport.value() == b"version\r\n"
    attempt.transport.clear()
    attempt.protocol.dataReceived(b"VERSION 1.6.18\r\n")
    assert resultOf(d) == b"1.6.18"
    clock.advance(10)
    assert attempt.transport.value() == b"mn\r\n"
    attempt.protocol.dataReceived(b"MN\r\n")
    assert pool.poolStats().discarded.keepalive == 0
    closed = pool.close()
    clock.advance(0)
    resultOf(closed)


def test_closeFailsGetOrComputeWaiters() -> None:
    """
    Closing the pool fails a getOrCompute waiting for another client's computation with
    PoolClosedError and leaves no timer.
    """
    clock = FakeReactor()
    endpoint = FakeEndpoint(clock)
    pool = MetaMemCachePool(endpoint, maxClients=1, reactor=clock)
    d = pool.getOrCompute(b"k", lambda: b"v", 60)
    attempt = endpoint.attempts[0]
    probed(attempt)
    assert attempt.transport is not None
    assert attempt.transport.value() == b"mg k O2 v f c N30\r\n"
    attempt.protocol.dataReceived(b"VA 0 O2 f0 c9 Z\r\n\r\n")
    assertNoResult(d)
    closed = pool.close()
    failureOf(d, PoolClosedError)
    clock.advance(0)
    resultOf(closed)
    assert clock.getDelayedCalls() == []


def test_sameSurfaceAsMemCachePool() -> None:
    """
    Every public method of MemCachePool exists on MetaMemCachePool, with the same parameter
    names, kinds and defaults.
    """

    def shape(function: object) -> list[tuple[str, object, object]]:
        parameters = inspect.signature(function).parameters.values()  # type: ignore[arg-type]
        return [(p.name, p.kind, p.default) for p in parameters]

    names = [
        name
        for name, _ in inspect.getmembers(MemCachePool, inspect.isfunction)
        if not name.startswith("_")
    ]
    assert {"get", "getMultiple", "set", "checkAndSet", "stats", "close"} <= set(names)
    for name in names:
        assert shape(getattr(MetaMemCachePool, name)) == shape(getattr(MemCachePool, name)), name


def test_invalidKeyOfGetOrComputeSendsNothing() -> None:
    """
    getOrCompute refuses a key the server would refuse before connecting or sending.
    """
    clock = FakeReactor()
    endpoint = FakeEndpoint(clock)
    pool = MetaMemCachePool(endpoint, maxClients=1, reactor=clock)
    d: Deferred[bytes] = pool.getOrCompute(b"bad key", lambda: b"v", 60)
    failureOf(d, ValueError)
    assert endpoint.attempts == []
    resultOf(pool.close())


def test_cancelledRequestInFlightDropsItsConnection() -> None:
    """
    The meta protocol settles its own requests (ICancellableRequests): cancelling a request
    in flight fails it with CancelledError and the pool discards its connection.
    """
    assert ICancellableRequests.implementedBy(MetaMemCachePool.clientFactory.protocol)
    clock = FakeReactor()
    endpoint = FakeEndpoint(clock)
    pool = MetaMemCachePool(endpoint, maxClients=1, reactor=clock)
    d = pool.get(b"k")
    attempt = endpoint.attempts[0]
    probed(attempt)
    assert attempt.transport is not None
    assert attempt.transport.value() == b"mg k O2 v f\r\n"
    d.cancel()
    failureOf(d, CancelledError)
    clock.advance(0)
    assert attempt.transport.lost
    stats = pool.poolStats()
    assert (stats.busy, stats.idle, stats.discarded.cancelled) == (0, 0, 1)
    resultOf(pool.close())
