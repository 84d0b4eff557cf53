"""
Unit tests of a pool's connection lifecycle on a clock: minClients and whenReady, idle and
lifetime limits, keepalive and validation pings, leak detection, TCP keepalive, and the
statistics that record them.
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionLost, ConnectionRefusedError
from twisted.logger import LogEvent, globalLogPublisher

from txconnpool import (
    Pool,
    PoolClosedError,
    PooledClientFactory,
    PoolTimeoutError,
    ServerUnavailableError,
)
from txconnpool.stats import DiscardCounts

from .helpers import Recorder, assertNoResult, failureOf, makePool, resultOf


class _Silent(Recorder):
    """
    A protocol without a ping method.
    """

    ping = None  # type: ignore[assignment]


def test_minClientsOpenedAtStartAndWhenReady() -> None:
    """
    A pool opens minClients connections when made, and whenReady fires once they are up.
    """
    h = makePool(maxClients=4, minClients=2)
    assert len(h.endpoint.attempts) == 2
    ready = h.pool.whenReady()
    h.connect()
    assertNoResult(ready)
    h.connect()
    assert resultOf(ready) is None
    assert resultOf(h.pool.whenReady()) is None
    stats = h.pool.poolStats()
    assert (stats.idle, stats.minClients) == (2, 2)
    assert h.clock.getDelayedCalls() == []


def test_lostConnectionRefilledToMinClients() -> None:
    """
    A connection lost below minClients is replaced in the background, with the backoff after
    a failed attempt.
    """
    h = makePool(maxClients=3, minClients=1)
    proto = h.connect()
    h.attemptFor(proto).lose()
    assert len(h.endpoint.attempts) == 2
    h.endpoint.pending()[0].fail(ConnectionRefusedError())
    assert h.endpoint.pending() == []
    h.clock.advance(1.0)
    assert len(h.endpoint.pending()) == 1
    h.connect()
    assert h.pool.poolStats().idle == 1


def test_whenReadyTimesOutWithTheLastConnectError() -> None:
    """
    whenReady fails after its timeout with ServerUnavailableError carrying the last connection
    error when attempts failed, and with PoolTimeoutError when they only hang.
    """
    h = makePool(maxClients=2, minClients=2, connectTimeout=None)
    ready = h.pool.whenReady(timeout=10.0)
    h.endpoint.attempts[0].fail(ConnectionRefusedError())
    h.clock.advance(10.0)
    f = failureOf(ready, ServerUnavailableError)
    assert isinstance(f.value.__cause__, ConnectionRefusedError)
    assert "only 0 of 2 connections" in str(f.value)

    hanging = makePool(maxClients=1, minClients=1, connectTimeout=None)
    ready = hanging.pool.whenReady(timeout=3.0)
    hanging.clock.advance(3.0)
    failureOf(ready, PoolTimeoutError)


def test_whenReadyFailsWhenClosed() -> None:
    """
    Closing the pool fails whenReady waiters with PoolClosedError, and later calls too.
    """
    h = makePool(minClients=1)
    ready = h.pool.whenReady()
    h.pool.close()
    failureOf(ready, PoolClosedError)
    failureOf(h.pool.whenReady(), PoolClosedError)
    assert h.clock.getDelayedCalls() == []


def test_minClientsCannotExceedMaxClients() -> None:
    """
    minClients above maxClients raises ValueError.
    """
    with pytest.raises(ValueError, match="minClients"):
        makePool(maxClients=2, minClients=3)


def test_idleTimeoutClosesIdleConnectionsAboveMinClients() -> None:
    """
    Connections unused for idleTimeout are closed, least recently used first, never below
    minClients.
    """
    h = makePool(maxClients=3, minClients=1, idleTimeout=60.0)
    ds = [h.pool.performRequest("ask", i) for i in range(3)]
    p1, p2, p3 = h.connect(), h.connect(), h.connect()
    p1.answer()
    h.clock.advance(10)
    p2.answer()
    h.clock.advance(10)
    p3.answer()
    [resultOf(d) for d in ds]
    h.clock.advance(40)
    assert h.attemptFor(p1).transport.disconnecting
    assert not h.attemptFor(p2).transport.disconnecting
    h.clock.advance(10)
    assert h.attemptFor(p2).transport.disconnecting
    h.clock.advance(100)
    assert not h.attemptFor(p3).transport.disconnecting
    stats = h.pool.poolStats()
    assert (stats.idle, stats.discarded.idle) == (1, 2)


def test_idleTimeoutCountsFromLastUse() -> None:
    """
    Using a connection restarts its idle time.
    """
    h = makePool(maxClients=1, idleTimeout=60.0)
    d = h.pool.performRequest("ask", 1)
    proto = h.connect()
    proto.answer()
    resultOf(d)
    h.clock.advance(50)
    d = h.pool.performRequest("ask", 2)
    proto.answer()
    resultOf(d)
    h.clock.advance(50)
    assert not h.attemptFor(proto).transport.disconnecting
    h.clock.advance(10)
    assert h.attemptFor(proto).transport.disconnecting


def test_maxLifetimeRetiresIdleConnectionsWithJitter(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    A connection is retired at maxLifetime less a random part of up to 5%, each connection
    with its own part.
    """
    draws = iter([0.0, 1.0])
    monkeypatch.setattr("txconnpool._connections.random.random", lambda: next(draws))
    h = makePool(maxClients=2, maxLifetime=100.0)
    ds = [h.pool.performRequest("ask", i) for i in range(2)]
    p1, p2 = h.connect(), h.connect()
    p1.answer()
    p2.answer()
    [resultOf(d) for d in ds]
    h.clock.advance(94.9)
    assert not h.attemptFor(p2).transport.disconnecting
    h.clock.advance(0.1)
    assert h.attemptFor(p2).transport.disconnecting
    assert not h.attemptFor(p1).transport.disconnecting
    h.clock.advance(5.0)
    assert h.attemptFor(p1).transport.disconnecting
    assert h.pool.poolStats().discarded.lifetime == 2


def test_maxLifetimeWaitsForBusyConnection() -> None:
    """
    A busy connection past its lifetime is retired when its request is done, not before.
    """
    h = makePool(maxClients=1, maxLifetime=10.0)
    d = h.pool.performRequest("ask", 1)
    proto = h.connect()
    h.clock.advance(20)
    assert not h.attemptFor(proto).transport.disconnecting
    proto.answer()
    assert resultOf(d) == 1
    assert h.attemptFor(proto).transport.disconnecting
    assert h.pool.poolStats().discarded.lifetime == 1


def test_keepalivePingsIdleConnections() -> None:
    """
    An idle connection is pinged every keepaliveInterval; an answered ping keeps it, and pings
    do not count as use for idleTimeout.
    """
    h = makePool(maxClients=1, keepaliveInterval=30.0, idleTimeout=100.0)
    d = h.pool.performRequest("ask", 1)
    proto = h.connect()
    proto.answer()
    resultOf(d)
    h.clock.advance(30)
    assert [v for v, _ in proto.asked] == ["<ping>"]
    assert h.pool.poolStats().busy == 1
    proto.answer()
    assert h.pool.poolStats().idle == 1
    h.clock.advance(30)
    proto.answer()
    h.clock.advance(30)
    proto.answer()
    h.clock.advance(10)
    assert h.attemptFor(proto).transport.disconnecting
    assert h.pool.poolStats().discarded.idle == 1


def test_failedOrSilentKeepaliveDiscardsAndReplaces() -> None:
    """
    A keepalive ping that fails, or gets no answer within pingTimeout, discards the connection,
    and a replacement is opened to keep minClients.
    """
    h = makePool(maxClients=1, minClients=1, keepaliveInterval=30.0, pingTimeout=5.0)
    proto = h.connect()
    h.clock.advance(30)
    proto.reject(ConnectionLost("gone"))
    assert h.attemptFor(proto).transport.disconnecting
    h.clock.advance(0)
    proto2 = h.connect()
    h.clock.advance(30)
    assert [v for v, _ in proto2.asked] == ["<ping>"]
    h.clock.advance(5)
    assert h.attemptFor(proto2).transport.disconnecting
    stats = h.pool.poolStats()
    assert stats.discarded == DiscardCounts(keepalive=2)


def test_validateAfterIdleHidesADeadConnection() -> None:
    """
    A connection idle longer than validateAfterIdle is pinged before use; a dead one is
    discarded and the request quietly goes to a new connection.
    """
    h = makePool(maxClients=1, validateAfterIdle=10.0)
    d1 = h.pool.performRequest("ask", 1)
    proto = h.connect()
    proto.answer()
    resultOf(d1)
    d2 = h.pool.performRequest("ask", 2)
    assert [v for v, _ in proto.asked] == [2]
    proto.answer()
    resultOf(d2)
    h.clock.advance(11)
    d3 = h.pool.performRequest("ask", 3)
    assert [v for v, _ in proto.asked] == ["<ping>"]
    proto.reject(ConnectionLost("dead"))
    h.clock.advance(0)
    proto2 = h.connect()
    assert [v for v, _ in proto2.asked] == [3]
    proto2.answer()
    assert resultOf(d3) == 3
    assert h.pool.poolStats().failedRequests == 0


def test_validateAfterIdleLiveConnection() -> None:
    """
    A validated connection that answers its ping serves the waiting request.
    """
    h = makePool(maxClients=1, validateAfterIdle=10.0)
    d1 = h.pool.performRequest("ask", 1)
    proto = h.connect()
    proto.answer()
    resultOf(d1)
    h.clock.advance(11)
    d2 = h.pool.performRequest("ask", 2)
    proto.answer()
    assert [v for v, _ in proto.asked] == [2]
    proto.answer()
    assert resultOf(d2) == 2
    assert len(h.endpoint.attempts) == 1


def test_pingsNeedAPing() -> None:
    """
    keepaliveInterval or validateAfterIdle without a ping method or pingConnection override
    raises ValueError.
    """
    with pytest.raises(ValueError, match="pingConnection"):
        makePool(protocolClass=_Silent, keepaliveInterval=5.0)

    class Pinging(Pool[Any]):
        def pingConnection(self, protocol: Any) -> Deferred[object]:
            result: Deferred[object] = protocol.ask("custom")
            return result

    h = makePool(protocolClass=_Silent, poolClass=Pinging, validateAfterIdle=1.0)
    d = h.pool.performRequest("echo", 1)
    h.connect()
    resultOf(d)


def test_leakDetectionWarnsOnceWithTheAcquireStack() -> None:
    """
    A connection checked out longer than leakDetectionThreshold logs one warning naming where
    it was acquired; one given back in time logs nothing.
    """
    events: list[LogEvent] = []
    globalLogPublisher.addObserver(events.append)
    try:
        h = makePool(maxClients=2, leakDetectionThreshold=5.0)
        quick = h.pool.acquire()
        slow = _acquireSomewhereRecognisable(h.pool)
        p1, p2 = h.connect(), h.connect()
        h.pool.release(resultOf(quick))
        h.clock.advance(5)
        h.clock.advance(60)
        leaks = [e for e in events if e.get("txconnpoolEvent") == "leak"]
        assert len(leaks) == 1
        assert "_acquireSomewhereRecognisable" in leaks[0]["origin"]
        h.pool.release(resultOf(slow))
        assert {p1, p2} == set(h.built)
        closed = h.pool.close()
        h.clock.advance(0)
        resultOf(closed)
        assert h.clock.getDelayedCalls() == []
    finally:
        globalLogPublisher.removeObserver(events.append)


def _acquireSomewhereRecognisable(pool: Pool[Any]) -> Deferred[Any]:
    return pool.acquire()


def test_tcpKeepAlive() -> None:
    """
    tcpKeepAlive turns on TCP keepalive on every connection.
    """
    h = makePool(tcpKeepAlive=True)
    h.pool.performRequest("echo", 1)
    proto = h.connect()
    assert h.attemptFor(proto).transport.tcpKeepAlive
    off = makePool()
    off.pool.performRequest("echo", 1)
    assert not off.attemptFor(off.connect()).transport.tcpKeepAlive


def test_timingsAndCountsInPoolStats() -> None:
    """
    poolStats records requests that waited, wait and request time summaries, connection
    attempts and discards by reason.
    """
    h = makePool(maxClients=1, requestTimeout=50.0)
    d1 = h.pool.performRequest("ask", 1)
    d2 = h.pool.performRequest("ask", 2)
    proto = h.connect()
    h.clock.advance(2)
    proto.answer()
    h.clock.advance(4)
    proto.answer()
    resultOf(d1)
    resultOf(d2)
    d3 = h.pool.performRequest("ask", 3)
    h.clock.advance(50)
    failureOf(d3)
    stats = h.pool.poolStats()
    assert stats.requestsWaited == 2
    assert stats.waitTime.count == 3
    assert (stats.waitTime.p50, stats.waitTime.max) == (0.0, 2.0)
    assert (stats.requestTime.count, stats.requestTime.max) == (2, 4.0)
    assert (stats.connectsAttempted, stats.connectsFailed) == (1, 0)
    assert stats.discarded == DiscardCounts(timeout=1)


def test_protocolPingMethodSatisfiesTheCheck() -> None:
    """
    A PooledClientFactory-based pool with a ping method passes the construction check.
    """

    class F(PooledClientFactory):
        protocol = Recorder

    class P(Pool[Any]):
        clientFactory = F

    h = makePool(poolClass=P, keepaliveInterval=1.0)
    assert h.pool.poolStats().maxClients == 2


def test_structuredLogEvents() -> None:
    """
    Connects, failed connects, discards with their reason, and the circuit opening and closing
    are logged as events with a txconnpoolEvent field and the address.
    """
    events: list[LogEvent] = []
    globalLogPublisher.addObserver(events.append)
    try:
        h = makePool(maxClients=1, failFastAfter=1)
        d = h.pool.performRequest("ask", 1)
        h.endpoint.attempts[0].fail(ConnectionRefusedError())
        failureOf(d)
        h.clock.advance(1.0)
        d = h.pool.performRequest("ask", 2)
        proto = h.connect()
        proto.answer()
        resultOf(d)
        h.attemptFor(proto).lose()
    finally:
        globalLogPublisher.removeObserver(events.append)
    mine = [e for e in events if "txconnpoolEvent" in e]
    assert [e["txconnpoolEvent"] for e in mine] == [
        "connectFailed",
        "circuitOpen",
        "connect",
        "circuitClosed",
        "lost",
        "discard",
    ]
    assert all(e["address"] == "<FakeEndpoint>" for e in mine)
    assert mine[-1]["reason"] == "lost"


def test_requestFromWhenReadyUsesTheReadyConnection() -> None:
    """
    A request made when whenReady fires is served by the connection that just became ready.
    """
    h = makePool(maxClients=2, minClients=1)
    served: list[Deferred[Any]] = []
    h.pool.whenReady().addCallback(lambda _: served.append(h.pool.performRequest("ask", 1)))
    proto = h.connect()
    assert [v for v, _ in proto.asked] == [1]
    assert len(h.endpoint.attempts) == 1
    assert h.pool.poolStats().requestsWaited == 0


@pytest.mark.parametrize(
    "option",
    [
        "connectTimeout",
        "requestTimeout",
        "idleTimeout",
        "maxLifetime",
        "keepaliveInterval",
        "pingTimeout",
        "leakDetectionThreshold",
    ],
)
def test_zeroDurationsRefused(option: str) -> None:
    """
    Durations that only make sense above zero refuse 0 with a ValueError naming the option.
    """
    with pytest.raises(ValueError, match=f"{option} must be more than 0"):
        makePool(**{option: 0})


def test_circuitOpenLoggedOnce() -> None:
    """
    The circuit opening is logged once, however many attempts fail while it stays open.
    """
    events: list[LogEvent] = []
    globalLogPublisher.addObserver(events.append)
    try:
        h = makePool(maxClients=1, failFastAfter=1)
        for _ in range(3):
            d = h.pool.performRequest("ask", 1)
            h.endpoint.pending()[0].fail(ConnectionRefusedError())
            failureOf(d, ServerUnavailableError)
            h.clock.advance(1.0)
    finally:
        globalLogPublisher.removeObserver(events.append)
    kinds = [e["txconnpoolEvent"] for e in events if "txconnpoolEvent" in e]
    assert kinds.count("connectFailed") == 3
    assert kinds.count("circuitOpen") == 1


def test_lostPingIsNotAFailedConnectionAttempt() -> None:
    """
    A connection that answered a ping is proven usable, and losing one during a ping does
    not count as a failed connection attempt.
    """
    h = makePool(maxClients=1, minClients=1, keepaliveInterval=10.0)
    proto = h.connect()
    h.clock.advance(10)
    proto.answer()
    h.clock.advance(10)
    h.attemptFor(proto).lose()
    stats = h.pool.poolStats()
    assert stats.connectsFailed == 0
    assert len(h.endpoint.pending()) == 1


def test_idleTimeoutNotDelayedByALaterLeakDeadline() -> None:
    """
    A connection checked in while the housekeeping timer waits for a later leak deadline is
    still closed at its own idle deadline.
    """
    h = makePool(maxClients=2, idleTimeout=10.0, leakDetectionThreshold=100.0)
    held = h.pool.acquire()
    checkedOut = h.connect()
    assert resultOf(held) is checkedOut
    h.clock.advance(10)
    d = h.pool.performRequest("ask", 1)
    served = h.connect()
    served.answer()
    resultOf(d)
    h.clock.advance(9.9)
    assert not h.attemptFor(served).transport.disconnecting
    h.clock.advance(0.1)
    assert h.attemptFor(served).transport.disconnecting
    h.pool.release(checkedOut)


def test_timingSummariesCoverTheLatestRequests() -> None:
    """
    The wait and request time summaries cover the latest 1024 requests once more have run.
    """
    h = makePool(maxClients=1)
    first = h.pool.performRequest("ask", 0)
    proto = h.connect()
    h.clock.advance(50)
    proto.answer()
    resultOf(first)
    for i in range(1500):
        d = h.pool.performRequest("ask", i)
        h.clock.advance(0.5 if i < 600 else 1.0)
        proto.answer()
        resultOf(d)
    stats = h.pool.poolStats()
    assert stats.requestTime.count == 1024
    assert (stats.requestTime.p50, stats.requestTime.p99, stats.requestTime.max) == (1.0, 1.0, 1.0)
    assert stats.waitTime.count == 1024
