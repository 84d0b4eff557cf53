"""
Unit tests of PoolService on a clock: readiness at start, what a failed start does, closing
the pool on stop, and its place in a service hierarchy.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from twisted.application.service import MultiService
from twisted.internet.defer import CancelledError
from twisted.internet.error import ReactorNotRunning
from twisted.logger import LogEvent, LogLevel, globalLogPublisher

from txconnpool import (
    ConnectionLostError,
    Pool,
    PoolClosedError,
    PoolTimeoutError,
    ServerUnavailableError,
)
from txconnpool.service import PoolService
from txconnpool.testing import FakeEndpoint

from .helpers import FakeReactor, assertNoResult, failureOf, makePool, resultOf


@pytest.fixture
def events() -> Iterator[list[LogEvent]]:
    """
    The log events emitted during the test.
    """
    captured: list[LogEvent] = []
    globalLogPublisher.addObserver(captured.append)
    yield captured
    globalLogPublisher.removeObserver(captured.append)


def notReadyEvents(events: list[LogEvent]) -> list[LogEvent]:
    """
    The events logging that a service's pool did not become ready.
    """
    return [e for e in events if e.get("txconnpoolEvent") == "notReady"]


def test_startWaitsForMinClients(events: list[LogEvent]) -> None:
    """
    Starting the service waits for minClients connections; ready fires once they are up.
    """
    h = makePool(maxClients=3, minClients=2)
    svc = PoolService(h.pool)
    early = svc.ready
    assert not svc.running
    svc.startService()
    assert svc.running
    h.connect()
    assertNoResult(early)
    h.connect()
    assert resultOf(early) is None
    assert resultOf(svc.ready) is None
    assert h.pool.poolStats().idle == 2
    assert [e for e in events if e.get("txconnpoolEvent") == "ready"]
    assert notReadyEvents(events) == []


def test_readyCallbacksSeeTheConnectionsIdle() -> None:
    """
    When ready fires, the minClients connections are idle, so a request made at once is
    served on one of them without waiting or opening another connection.
    """
    h = makePool(maxClients=3, minClients=1)
    svc = PoolService(h.pool)
    svc.startService()
    seen: list[Any] = []

    def whenReady(_: None) -> None:
        seen.append(h.pool.poolStats())
        h.pool.performRequest("echo", 1).addBoth(seen.append)

    svc.ready.addCallback(whenReady)
    h.connect()
    stats = seen[0]
    assert (stats.busy, stats.idle, stats.connecting) == (0, 1, 0)
    assert seen[1] == 1
    stats = h.pool.poolStats()
    assert (stats.requestsWaited, stats.connectsAttempted, stats.connecting) == (0, 1, 0)


def test_noMinClientsReadyAtOnce() -> None:
    """
    A pool without minClients is ready as soon as the service starts.
    """
    h = makePool()
    svc = PoolService(h.pool)
    svc.startService()
    assert resultOf(svc.ready) is None
    assert h.endpoint.attempts == []


def test_notReadyIsLoggedAndTheServiceKeepsRunning(events: list[LogEvent]) -> None:
    """
    Without failFast, a pool not ready in time is logged as an error with the connection
    error, ready fails, and the pool keeps trying while the reactor runs on.
    """
    h = makePool(maxClients=2, minClients=1)
    svc = PoolService(h.pool, whenReadyTimeout=2.5)
    svc.startService()
    h.endpoint.pending()[0].fail()
    h.clock.advance(1)
    h.endpoint.pending()[0].fail()
    h.clock.advance(1.5)
    failure = failureOf(svc.ready, ServerUnavailableError)
    assert "refused" in str(failure.value).lower()
    [event] = notReadyEvents(events)
    assert event["log_level"] is LogLevel.error
    assert event["log_failure"].check(ServerUnavailableError)
    assert svc.running and not h.clock.hasStopped
    h.clock.advance(1)
    h.connect()
    assert h.pool.poolStats().idle == 1


def test_failFastStopsTheReactor(events: list[LogEvent]) -> None:
    """
    With failFast, a pool not ready in time is logged as critical and the reactor is stopped.
    """
    h = makePool(maxClients=2, minClients=2)
    h.clock.running = True
    svc = PoolService(h.pool, whenReadyTimeout=3, failFast=True)
    svc.startService()
    h.connect()
    h.clock.advance(3)
    failureOf(svc.ready, PoolTimeoutError)
    [event] = notReadyEvents(events)
    assert event["log_level"] is LogLevel.critical
    assert "failFast" in event["action"]
    assert h.clock.hasStopped


class _StrictReactor(FakeReactor):
    """
    A fake reactor whose stop() refuses to stop a reactor that is not running.
    """

    def stop(self) -> None:
        if not self.running:
            raise ReactorNotRunning()
        FakeReactor.stop(self)


def test_failFastBeforeTheReactorRuns(events: list[LogEvent]) -> None:
    """
    A service started on a closed pool logs the error, and with failFast stops the reactor
    as soon as it runs.
    """
    reactor = _StrictReactor()
    pool: Pool[Any] = Pool(FakeEndpoint(reactor), reactor=reactor)
    resultOf(pool.close())
    svc = PoolService(pool, failFast=True)
    svc.startService()
    failureOf(svc.ready, PoolClosedError)
    assert len(notReadyEvents(events)) == 1
    assert not reactor.hasStopped
    assert reactor.whenRunningHooks == [(reactor.stop, (), {})]
    reactor.running = True
    for f, args, kwargs in reactor.whenRunningHooks:
        f(*args, **kwargs)
    assert reactor.hasStopped


def test_stopServiceClosesThePool() -> None:
    """
    Stopping the service closes the pool and fires once every connection is closed.
    """
    h = makePool(maxClients=3, minClients=2)
    svc = PoolService(h.pool)
    svc.startService()
    h.connect()
    h.connect()
    stopped = svc.stopService()
    assert not svc.running
    h.clock.advance(0)
    assert resultOf(stopped) is None
    stats = h.pool.poolStats()
    assert (stats.busy, stats.idle, stats.connecting, stats.closed) == (0, 0, 0, 2)
    assert stats.discarded.closed == 2
    failureOf(h.pool.performRequest("echo", 1), PoolClosedError)
    assert h.clock.getDelayedCalls() == []


def test_stopServiceGivesRequestsInFlightTheShutdownTimeout() -> None:
    """
    Stopping the service lets a request in flight finish during the pool's shutdownTimeout,
    then drops its connection.
    """
    h = makePool(shutdownTimeout=2.0)
    svc = PoolService(h.pool)
    svc.startService()
    inFlight = h.pool.performRequest("ask", "slow")
    h.connect()
    stopped = svc.stopService()
    h.clock.advance(1.9)
    assertNoResult(stopped)
    assertNoResult(inFlight)
    h.clock.advance(0.1)
    h.clock.advance(0)
    assert resultOf(stopped) is None
    failureOf(inFlight, ConnectionLostError)
    assert h.pool.poolStats().closed == 1


def test_stoppedBeforeReadyIsNotAnError(events: list[LogEvent]) -> None:
    """
    Stopping the service before its pool is ready fails ready with PoolClosedError, logs no
    error and, even with failFast, leaves the reactor alone.
    """
    h = makePool(maxClients=2, minClients=1)
    svc = PoolService(h.pool, failFast=True)
    svc.startService()
    ready = svc.ready
    stopped = svc.stopService()
    h.clock.advance(0)
    failureOf(ready, PoolClosedError)
    assert resultOf(stopped) is None
    assert notReadyEvents(events) == []
    assert not h.clock.hasStopped
    assert h.clock.getDelayedCalls() == []


def test_cancellingOneReadyLeavesTheOthers() -> None:
    """
    Cancelling a ready Deferred fails it with CancelledError and leaves other ones waiting.
    """
    h = makePool(maxClients=2, minClients=1)
    svc = PoolService(h.pool)
    svc.startService()
    cancelled, kept = svc.ready, svc.ready
    cancelled.cancel()
    failureOf(cancelled, CancelledError)
    assertNoResult(kept)
    h.connect()
    assert resultOf(kept) is None


def test_namedServiceInAHierarchy() -> None:
    """
    A named service is found by name in its parent, which starts and stops it.
    """
    h = makePool(maxClients=2, minClients=1)
    parent = MultiService()
    svc = PoolService(h.pool, name="cache")
    svc.setServiceParent(parent)
    assert parent.getServiceNamed("cache") is svc
    assert PoolService(makePool().pool).name is None
    parent.startService()
    h.connect()
    assert resultOf(svc.ready) is None
    assert "'cache' running" in repr(svc) and repr(h.pool) in repr(svc)
    stopped = parent.stopService()
    h.clock.advance(0)
    resultOf(stopped)
    assert not svc.running and h.pool.poolStats().closed == 1


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"whenReadyTimeout": 0}, ValueError, "whenReadyTimeout must be more than 0"),
        ({"whenReadyTimeout": "5"}, TypeError, "whenReadyTimeout must be a number"),
        ({"whenReadyTimeout": True}, TypeError, "whenReadyTimeout must be a number"),
        ({"failFast": 1}, TypeError, "failFast must be True or False"),
        ({"name": b"cache"}, TypeError, "name must be a str or None"),
    ],
)
def test_badArguments(kwargs: dict[str, Any], error: type[Exception], message: str) -> None:
    """
    Bad arguments raise an error that names the argument.
    """
    with pytest.raises(error, match=message):
        PoolService(makePool().pool, **kwargs)


def test_notAPool() -> None:
    """
    A service is made for a txconnpool Pool only.
    """
    with pytest.raises(TypeError, match="pool must be a txconnpool Pool"):
        PoolService(object())  # type: ignore[arg-type]
