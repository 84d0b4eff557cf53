"""
Faults of the memcached process itself, made with signals: a server down at start, killed
with hundreds of requests pending, restarted on the same port, and hung (SIGSTOP) then
resumed (SIGCONT).
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest_twisted
from twisted.internet import error
from twisted.python.failure import Failure

from tests.faults.support import (
    ObservedBackoff,
    errorNames,
    failureOf,
    kill,
    later,
    outcomes,
    pause,
    reactor,
)
from txconnpool import ConnectionLostError, ServerUnavailableError
from txconnpool.backoff import backoffPolicy
from txconnpool.memcache import MemCachePool
from txconnpool.memcache.testing import MemcachedProcess


@pytest_twisted.ensureDeferred
async def test_serverDownAtStart(tmp_path: Path) -> None:
    """
    With no server listening, waiting requests fail with ServerUnavailableError after
    failFastAfter refused connections (parallel attempts each count), new ones then fail at
    once until the backoff delay has passed, and once the server is up the first request
    after the delay succeeds.
    """
    server = MemcachedProcess(tmp_path / "memcached.log")
    policy = ObservedBackoff(lambda attempt: 0.1)
    pool = MemCachePool(
        server.endpoint, maxClients=2, failFastAfter=3, retryPolicy=policy, maxRequestsPerClient=1
    )
    try:
        started = reactor.seconds()
        waiting = [pool.get(b"down-at-start") for _ in range(5)]
        results = await outcomes(waiting)
        assert errorNames(results) == {"ServerUnavailableError"}
        assert len(policy.delays) == 3
        assert 0.1 <= reactor.seconds() - started < 1.0
        failure = results[0]
        assert "3 consecutive attempts failed" in failure.getErrorMessage()
        assert isinstance(failure.value.__cause__, error.ConnectionRefusedError)

        fast = pool.get(b"down-at-start")
        assert fast.called
        assert (await failureOf(fast)).check(ServerUnavailableError)

        await policy.due()
        probe = await failureOf(pool.get(b"down-at-start"))
        assert probe.check(ServerUnavailableError)
        assert len(policy.delays) == 4

        server.start()
        await policy.due()
        assert await pool.get(b"down-at-start") == (0, None)
        assert await pool.set(b"down-at-start", b"up") is True
        stats = pool.poolStats()
        assert (stats.busy, stats.waiting, stats.connecting, stats.failedRequests) == (0, 0, 0, 7)
        assert len(policy.delays) == 4
    finally:
        await pool.close()
        server.stop()


def mixedRequest(pool: MemCachePool, i: int) -> Any:
    """
    One of several commands, idempotent or not, chosen by C{i}.
    """
    key = b"mid-request-%d" % (i % 7,)
    kind = i % 6
    if kind == 0:
        return pool.get(key)
    if kind == 1:
        return pool.set(key, b"%d" % (i,))
    if kind == 2:
        return pool.increment(b"mid-request-counter")
    if kind == 3:
        return pool.getMultiple([key, b"mid-request-other"])
    if kind == 4:
        return pool.delete(key)
    return pool.append(key, b"+")


@pytest_twisted.ensureDeferred
async def test_serverKilledWith200RequestsPending(freshMemcached: MemcachedProcess) -> None:
    """
    Killing memcached with 4 requests in flight and 196 queued settles all 200 promptly:
    in-flight non-idempotent ones fail with ConnectionLostError, and the rest (idempotent
    ones retried once) with ConnectionLostError or ServerUnavailableError.
    """
    pool = MemCachePool(
        freshMemcached.endpoint,
        maxClients=4,
        failFastAfter=3,
        retryPolicy=backoffPolicy(initialDelay=0.05, maxDelay=0.2),
        maxRequestsPerClient=1,
    )
    try:
        warm = await outcomes([pool.set(b"mid-request-counter", b"0") for _ in range(4)])
        assert warm == [True] * 4
        await pause(freshMemcached)
        pending = [mixedRequest(pool, i) for i in range(200)]
        stats = pool.poolStats()
        assert (stats.busy, stats.waiting) == (4, 196)
        inFlightNotIdempotent = [i for i in range(4) if i % 6 in (1, 2, 5)]
        kill(freshMemcached)
        started = reactor.seconds()
        results = await outcomes(pending, deadline=10)
        assert reactor.seconds() - started < 2.0
        assert all(isinstance(r, Failure) for r in results)
        assert errorNames(results) <= {"ConnectionLostError", "ServerUnavailableError"}
        for i in inFlightNotIdempotent:
            assert results[i].check(ConnectionLostError)
        stats = pool.poolStats()
        assert (stats.busy, stats.idle, stats.waiting) == (0, 0, 0)
        assert (stats.requests, stats.failedRequests, stats.closed) == (204, 200, 4)
        fast = await failureOf(pool.get(b"mid-request-0"))
        assert fast.check(ServerUnavailableError)
    finally:
        await pool.close()
    stats = pool.poolStats()
    assert (stats.busy, stats.idle, stats.connecting, stats.waiting) == (0, 0, 0, 0)


@pytest_twisted.ensureDeferred
async def test_serverKilledWithRequestsPipelinedByThePool(
    freshMemcached: MemcachedProcess,
) -> None:
    """
    With maxRequestsPerClient 50, killing memcached with 100 requests pipelined on two
    connections and 100 queued settles all 200: in-flight non-idempotent ones fail with
    ConnectionLostError, the rest with ConnectionLostError or ServerUnavailableError.
    """
    pool = MemCachePool(
        freshMemcached.endpoint,
        maxClients=2,
        maxRequestsPerClient=50,
        failFastAfter=3,
        retryPolicy=backoffPolicy(initialDelay=0.05, maxDelay=0.2),
    )
    try:
        async with pool.connection() as first, pool.connection() as second:
            assert first is not second
        assert pool.poolStats().idle == 2
        # This coroutine was resumed by acquire(), inside the pool's dispatch loop, which
        # serves the requests made here only once the coroutine yields: leave it first.
        await later(0)
        await pause(freshMemcached)
        pending = [mixedRequest(pool, i) for i in range(200)]
        stats = pool.poolStats()
        assert (stats.busy, stats.waiting) == (2, 100)
        kill(freshMemcached)
        results = await outcomes(pending, deadline=10)
        assert all(isinstance(r, Failure) for r in results)
        assert errorNames(results) <= {"ConnectionLostError", "ServerUnavailableError"}
        for i in range(100):
            if i % 6 in (1, 2, 5):
                assert results[i].check(ConnectionLostError), (i, results[i])
    finally:
        await pool.close()
    stats = pool.poolStats()
    assert (stats.busy, stats.idle, stats.connecting, stats.waiting) == (0, 0, 0, 0)
    assert (stats.failedRequests, stats.closed) == (200, 2)


@pytest_twisted.ensureDeferred
async def test_serverKilledWith200PipelinedRequests(freshMemcached: MemcachedProcess) -> None:
    """
    Killing memcached with 200 requests pipelined on one checked-out connection fails each
    with the reason the connection was lost, and the pool forgets the connection.
    """
    pool = MemCachePool(freshMemcached.endpoint, maxClients=2, maxRequestsPerClient=1)
    try:
        async with pool.connection() as protocol:
            assert await protocol.set(b"pipelined", b"v") is True
            await pause(freshMemcached)
            pending = [protocol.get(b"pipelined") for _ in range(200)]
            kill(freshMemcached)
            results = await outcomes(pending)
        assert all(isinstance(r, Failure) for r in results)
        assert all(r.check(error.ConnectionClosed) for r in results), errorNames(results)
        stats = pool.poolStats()
        assert (stats.busy, stats.idle, stats.connecting, stats.closed) == (0, 0, 0, 1)
    finally:
        await pool.close()


@pytest_twisted.ensureDeferred
async def test_restartOnTheSamePort(freshMemcached: MemcachedProcess) -> None:
    """
    Requests made while memcached is down wait for the next connection attempt (before
    failFastAfter failures), and complete by themselves within the backoff's maximum delay
    once memcached is back on the same port.
    """
    maxDelay = 0.5
    policy = ObservedBackoff(backoffPolicy(initialDelay=0.05, maxDelay=maxDelay))
    pool = MemCachePool(
        freshMemcached.endpoint,
        maxClients=4,
        failFastAfter=100,
        retryPolicy=policy,
        maxRequestsPerClient=1,
    )
    try:
        assert await pool.set(b"restart", b"before") is True
        kill(freshMemcached)
        waiting = [pool.get(b"restart") for _ in range(20)]
        await policy.failures(6)
        assert max(policy.delays) == maxDelay
        freshMemcached.start()
        restarted = reactor.seconds()
        results = await outcomes(waiting)
        assert results == [(0, None)] * 20
        assert reactor.seconds() - restarted < maxDelay + 0.2
        assert await pool.set(b"restart", b"after") is True
        stats = pool.poolStats()
        assert (stats.busy, stats.waiting, stats.connecting, stats.failedRequests) == (0, 0, 0, 0)
    finally:
        await pool.close()


@pytest_twisted.ensureDeferred
async def test_restartLeavesStaleIdleConnections(freshMemcached: MemcachedProcess) -> None:
    """
    After a restart that the pool has not noticed yet, a read handed a stale idle
    connection is retried once on a new one and succeeds; an increment fails with
    ConnectionLostError and never reaches the new server.
    """
    pool = MemCachePool(freshMemcached.endpoint, maxClients=2, maxRequestsPerClient=1)
    try:
        warm = await outcomes([pool.set(b"stale", b"1"), pool.set(b"stale-counter", b"1")])
        assert warm == [True, True]
        assert pool.poolStats().idle == 2
        kill(freshMemcached)
        freshMemcached.start()
        get = pool.get(b"stale")
        increment = pool.increment(b"stale-counter")
        assert pool.poolStats().busy == 2
        assert await get == (0, None)
        assert (await failureOf(increment)).check(ConnectionLostError)
        stats = await pool.stats()
        assert (stats[b"incr_hits"], stats[b"incr_misses"]) == (b"0", b"0")
        assert int(stats[b"get_misses"]) == 1
        assert pool.poolStats().closed == 2
    finally:
        await pool.close()


@pytest_twisted.ensureDeferred
async def test_hungServerThenResumed(freshMemcached: MemcachedProcess) -> None:
    """
    A hung server (SIGSTOP) fails requests with RequestTimeoutError after requestTimeout
    and their connections are closed; once it resumes (SIGCONT) requests succeed on new
    connections.
    """
    pool = MemCachePool(
        freshMemcached.endpoint, maxClients=2, requestTimeout=0.3, maxRequestsPerClient=1
    )
    try:
        assert await pool.set(b"hung", b"v") is True
        await pause(freshMemcached)
        started = reactor.seconds()
        results = await outcomes([pool.get(b"hung"), pool.increment(b"hung-counter")])
        elapsed = reactor.seconds() - started
        assert errorNames(results) == {"RequestTimeoutError"}, results
        assert all(isinstance(r, Failure) for r in results)
        assert 0.3 <= elapsed < 1.0
        stats = pool.poolStats()
        assert (stats.busy, stats.idle, stats.closed) == (0, 0, 2)
        freshMemcached.signal(signal.SIGCONT)
        assert await pool.get(b"hung") == (0, b"v")
        stats = pool.poolStats()
        assert (stats.created, stats.closed, stats.idle) == (3, 2, 1)
    finally:
        freshMemcached.signal(signal.SIGCONT)
        await pool.close()
