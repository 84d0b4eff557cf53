"""
Pool exhaustion (acquireTimeout, maxWaiters), cancellation while queued, in flight and
connecting, a connection attempt that hangs (connectTimeout), and closing the pool with work
pending, against a real memcached behind a fault proxy or a listener that never accepts.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import error
from twisted.internet.defer import CancelledError
from twisted.python.failure import Failure

from tests.faults.proxy import FaultProxy
from tests.faults.support import (
    FullListener,
    ObservedBackoff,
    errorNames,
    failureOf,
    outcomes,
    reactor,
    turnsUntil,
)
from txconnpool import (
    PoolClosedError,
    PoolFullError,
    PoolTimeoutError,
    ServerUnavailableError,
)
from txconnpool.memcache import MemCachePool


@pytest.fixture
def fullListener() -> Iterator[FullListener]:
    """
    A loopback listener whose accept queue is full, so that connecting to it hangs.
    """
    listener = FullListener()
    yield listener
    listener.close()


def counts(pool: MemCachePool) -> tuple[int, ...]:
    """
    @return: The pool's busy, idle, connecting and waiting counts.
    """
    stats = pool.poolStats()
    return (stats.busy, stats.idle, stats.connecting, stats.waiting)


@pytest_twisted.ensureDeferred
async def test_acquireTimeout(proxy: FaultProxy) -> None:
    """
    A request that waits acquireTimeout for a busy pool fails with PoolTimeoutError naming
    the address and the pool's counts, and the connection freed later goes to the next
    waiter, not to it.
    """
    pool = MemCachePool(proxy.endpoint, maxClients=1, acquireTimeout=0.2, maxRequestsPerClient=1)
    try:
        held = await pool.acquire()
        started = reactor.seconds()
        failure = await failureOf(pool.get(b"exhausted"))
        assert type(failure.value) is PoolTimeoutError
        assert reactor.seconds() - started >= 0.2
        message = failure.getErrorMessage()
        assert f"timed out after 0.2s waiting for a connection to {proxy.endpoint}" in message
        assert "(1 busy, 0 idle, 0 connecting, 0 waiting)" in message
        queued = pool.get(b"exhausted")
        pool.release(held)
        assert await queued == (0, None)
        assert counts(pool) == (0, 1, 0, 0)
        stats = pool.poolStats()
        assert (stats.created, stats.requests, stats.failedRequests) == (1, 3, 1)
        assert proxy.openClients == 1
    finally:
        await pool.close()


@pytest_twisted.ensureDeferred
async def test_maxWaiters(proxy: FaultProxy) -> None:
    """
    Past maxWaiters queued requests, a new request fails at once with PoolFullError; the
    queued ones are served once connections are free.
    """
    pool = MemCachePool(proxy.endpoint, maxClients=2, maxWaiters=3, maxRequestsPerClient=1)
    try:
        held = [await pool.acquire(), await pool.acquire()]
        queued = [pool.get(b"full-%d" % (i,)) for i in range(3)]
        refused = pool.get(b"full-refused")
        assert refused.called
        failure = await failureOf(refused)
        assert failure.check(PoolFullError)
        assert "maxWaiters=3" in failure.getErrorMessage()
        assert "3 waiting" in failure.getErrorMessage()
        for protocol in held:
            pool.release(protocol)
        assert await outcomes(queued) == [(0, None)] * 3
        assert await pool.get(b"full-after") == (0, None)
        stats = pool.poolStats()
        assert (stats.created, stats.waiting, stats.failedRequests) == (2, 0, 1)
    finally:
        await pool.close()


@pytest_twisted.ensureDeferred
async def test_cancelWhileQueued(proxy: FaultProxy) -> None:
    """
    Cancelling a queued request fails it with CancelledError and removes it from the queue;
    the busy connection goes back to the pool and no connection is opened for it.
    """
    pool = MemCachePool(proxy.endpoint, maxClients=1, maxRequestsPerClient=1)
    try:
        held = await pool.acquire()
        queued = [pool.get(b"cancel-queued") for _ in range(10)]
        assert pool.poolStats().waiting == 10
        for d in queued:
            d.cancel()
        results = await outcomes(queued)
        assert all(isinstance(r, Failure) and r.check(CancelledError) for r in results)
        assert counts(pool) == (1, 0, 0, 0)
        pool.release(held)
        assert counts(pool) == (0, 1, 0, 0)
        assert await pool.get(b"cancel-queued") == (0, None)
        stats = pool.poolStats()
        assert (stats.created, stats.closed, stats.failedRequests) == (1, 0, 10)
        assert proxy.openClients == proxy.accepted == 1
    finally:
        await pool.close()


@pytest_twisted.ensureDeferred
async def test_cancelInFlight(proxy: FaultProxy) -> None:
    """
    Cancelling requests in flight fails them with CancelledError and closes their
    connections, whose replies can no longer be trusted; nothing is left open.
    """
    pool = MemCachePool(proxy.endpoint, maxClients=4, maxRequestsPerClient=1)
    try:
        warm = await outcomes([pool.set(b"cancel-flight", b"v") for _ in range(4)])
        assert warm == [True] * 4
        proxy.stall()
        sent = proxy.requests
        pending = [pool.get(b"cancel-flight") for _ in range(20)]
        await proxy.until(lambda: proxy.requests >= sent + 4)
        assert counts(pool) == (4, 0, 0, 16)
        for d in pending:
            d.cancel()
        results = await outcomes(pending)
        assert all(isinstance(r, Failure) and r.check(CancelledError) for r in results)
        await proxy.until(lambda: proxy.openClients == 0)
        stats = pool.poolStats()
        assert (stats.busy, stats.idle, stats.connecting, stats.waiting) == (0, 0, 0, 0)
        assert (stats.closed, stats.failedRequests) == (4, 20)
        proxy.resume()
        assert await pool.get(b"cancel-flight") == (0, b"v")
        assert pool.poolStats().created == 5
    finally:
        await pool.close()


@pytest_twisted.ensureDeferred
async def test_cancelWhileConnecting(fullListener: FullListener) -> None:
    """
    Cancelling a request that waits for a connection attempt cancels the attempt too: its
    socket is closed and nothing is left connecting.
    """
    pool = MemCachePool(
        fullListener.endpoint, maxClients=2, connectTimeout=None, maxRequestsPerClient=1
    )
    base = fullListener.halfOpen()
    try:
        pending = [pool.get(b"cancel-connecting") for _ in range(2)]
        assert pool.poolStats().connecting == 2
        await turnsUntil(lambda: fullListener.halfOpen() == base + 2)
        for d in pending:
            d.cancel()
        results = await outcomes(pending)
        assert all(isinstance(r, Failure) and r.check(CancelledError) for r in results)
        stats = pool.poolStats()
        assert (stats.busy, stats.idle, stats.connecting, stats.waiting) == (0, 0, 0, 0)
        await turnsUntil(lambda: fullListener.halfOpen() == base)
    finally:
        await pool.close()


@pytest_twisted.ensureDeferred
async def test_acquireTimeoutWhileConnecting(fullListener: FullListener) -> None:
    """
    With connectTimeout None, a request waiting on a hanging connection attempt fails with
    PoolTimeoutError after acquireTimeout, and the attempt is cancelled.
    """
    pool = MemCachePool(
        fullListener.endpoint,
        maxClients=1,
        connectTimeout=None,
        acquireTimeout=0.2,
        maxRequestsPerClient=1,
    )
    base = fullListener.halfOpen()
    try:
        started = reactor.seconds()
        failure = await failureOf(pool.get(b"acquire-connecting"))
        assert type(failure.value) is PoolTimeoutError
        assert f"waiting for a connection to {fullListener.endpoint}" in str(failure.value)
        assert reactor.seconds() - started >= 0.2
        await turnsUntil(lambda: fullListener.halfOpen() == base)
        stats = pool.poolStats()
        assert (stats.busy, stats.idle, stats.connecting, stats.waiting) == (0, 0, 0, 0)
    finally:
        await pool.close()


@pytest_twisted.ensureDeferred
async def test_connectHangsUntilConnectTimeout(fullListener: FullListener) -> None:
    """
    A connection attempt that hangs is abandoned after connectTimeout and counts as a failed
    attempt: after failFastAfter of them the waiting request fails with
    ServerUnavailableError caused by a TimeoutError, and no socket is left behind.
    """
    policy = ObservedBackoff(lambda attempt: 0.1)
    pool = MemCachePool(
        fullListener.endpoint,
        maxClients=2,
        connectTimeout=0.2,
        failFastAfter=2,
        retryPolicy=policy,
        maxRequestsPerClient=1,
    )
    base = fullListener.halfOpen()
    try:
        started = reactor.seconds()
        failure = await failureOf(pool.get(b"connect-hang"))
        assert failure.check(ServerUnavailableError)
        assert 0.5 <= reactor.seconds() - started < 1.5
        assert len(policy.delays) == 2
        cause = failure.value.__cause__
        assert isinstance(cause, error.TimeoutError)
        assert "longer than 0.2s" in str(cause)
        await turnsUntil(lambda: fullListener.halfOpen() == base)
        stats = pool.poolStats()
        assert (stats.busy, stats.idle, stats.connecting, stats.waiting) == (0, 0, 0, 0)
    finally:
        await pool.close()


@pytest_twisted.ensureDeferred
async def test_connectTimeoutFailureSeesConsistentStats(fullListener: FullListener) -> None:
    """
    When a connect timeout makes the waiting requests fail with ServerUnavailableError,
    their callbacks already see the abandoned attempt gone from poolStats().
    """
    pool = MemCachePool(
        fullListener.endpoint,
        maxClients=1,
        connectTimeout=0.1,
        failFastAfter=1,
        maxRequestsPerClient=1,
    )
    try:
        seen: list[int] = []
        waiting = pool.get(b"connect-hang-stats")
        waiting.addErrback(lambda f: seen.append(pool.poolStats().connecting) or f)
        assert (await failureOf(waiting)).check(ServerUnavailableError)
        assert seen == [0]
    finally:
        await pool.close()


@pytest_twisted.ensureDeferred
async def test_closeWithWorkPending(proxy: FaultProxy) -> None:
    """
    close() fails queued requests and new ones with PoolClosedError, lets requests in
    flight finish, and fires once every connection is closed.
    """
    pool = MemCachePool(proxy.endpoint, maxClients=2, maxRequestsPerClient=1)
    try:
        warm = await outcomes([pool.set(b"close-pending", b"v"), pool.version()])
        assert warm[0] is True
        proxy.stall()
        sent = proxy.requests
        inFlight = [pool.get(b"close-pending"), pool.increment(b"close-pending-n")]
        queued = [pool.get(b"close-pending") for _ in range(5)]
        await proxy.until(lambda: proxy.requests >= sent + 2)
        closing = pool.close()
        assert errorNames(await outcomes(queued)) == {"PoolClosedError"}
        refused = pool.get(b"close-pending")
        assert refused.called
        assert (await failureOf(refused)).check(PoolClosedError)
        assert not closing.called
        proxy.resume()
        assert await outcomes(inFlight) == [(0, b"v"), False]
        assert await outcomes([closing]) == [None]
        await proxy.until(lambda: proxy.openClients == 0)
        stats = pool.poolStats()
        assert (stats.busy, stats.idle, stats.connecting, stats.waiting) == (0, 0, 0, 0)
        assert (stats.created, stats.closed) == (2, 2)
    finally:
        await pool.close()


@pytest_twisted.ensureDeferred
async def test_closeWithTimeoutDropsRequestsInFlight(proxy: FaultProxy) -> None:
    """
    close(timeout) drops the connections still busy after the timeout: their requests fail
    with ConnectionLostError (none is retried) and the close completes.
    """
    pool = MemCachePool(proxy.endpoint, maxClients=2, maxRequestsPerClient=1)
    try:
        warm = await outcomes([pool.set(b"close-timeout", b"v"), pool.version()])
        assert warm[0] is True
        proxy.stall()
        sent = proxy.requests
        inFlight = [pool.get(b"close-timeout"), pool.increment(b"close-timeout-n")]
        await proxy.until(lambda: proxy.requests >= sent + 2)
        started = reactor.seconds()
        closing = pool.close(timeout=0.3)
        results = await outcomes(inFlight)
        assert errorNames(results) == {"ConnectionLostError"}
        assert reactor.seconds() - started >= 0.3
        assert await outcomes([closing]) == [None]
        await proxy.until(lambda: proxy.openClients == 0)
        assert proxy.requests == sent + 2
        stats = pool.poolStats()
        assert (stats.busy, stats.idle, stats.connecting, stats.waiting) == (0, 0, 0, 0)
    finally:
        await pool.close()


@pytest_twisted.ensureDeferred
async def test_closeWhileConnecting(fullListener: FullListener) -> None:
    """
    close() while a connection attempt hangs fails the waiting request with
    PoolClosedError, cancels the attempt and fires at once.
    """
    pool = MemCachePool(
        fullListener.endpoint, maxClients=1, connectTimeout=None, maxRequestsPerClient=1
    )
    base = fullListener.halfOpen()
    waiting = pool.get(b"close-connecting")
    await turnsUntil(lambda: fullListener.halfOpen() == base + 1)
    closing = pool.close()
    results: list[Any] = await outcomes([waiting, closing], deadline=2)
    assert isinstance(results[0], Failure) and results[0].check(PoolClosedError)
    assert results[1] is None
    stats = pool.poolStats()
    assert (stats.busy, stats.idle, stats.connecting, stats.waiting) == (0, 0, 0, 0)
    await turnsUntil(lambda: fullListener.halfOpen() == base)


@pytest_twisted.ensureDeferred
async def test_retriedRequestStillHonoursAcquireTimeout(proxy: FaultProxy) -> None:
    """
    A read retried because its idle connection turned out stale waits at most
    acquireTimeout for its second connection, then fails with PoolTimeoutError.
    """
    pool = MemCachePool(
        proxy.endpoint,
        maxClients=1,
        acquireTimeout=0.3,
        failFastAfter=10,
        retryPolicy=lambda attempt: 5.0,
        maxRequestsPerClient=1,
    )
    try:
        assert await pool.set(b"retry-bounded", b"v") is True
        await proxy.stopListening()
        proxy.closeAll()
        started = reactor.seconds()
        failure = await failureOf(pool.get(b"retry-bounded"), deadline=3)
        assert type(failure.value) is PoolTimeoutError
        assert reactor.seconds() - started < 1.0
    finally:
        await pool.close()
