"""
The pool's failure behaviours, as the memcached fault tests check them, against a real
redis-server: killed (SIGKILL) with requests pending, restarted on the same port, stale idle
connections after a restart, hung (SIGSTOP) then resumed, acquire and request timeouts,
cancellation while queued, in flight and connecting, and closing with work pending.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import CancelledError
from twisted.python.failure import Failure

from tests.faults.conftest import noLoggedErrors
from tests.faults.proxy import FaultProxy
from tests.faults.support import (
    FullListener,
    ObservedBackoff,
    errorNames,
    failureOf,
    kill,
    later,
    outcomes,
    pause,
    reactor,
    turnsUntil,
)
from txconnpool import ConnectionLostError, PoolClosedError, PoolTimeoutError
from txconnpool.backoff import backoffPolicy
from txconnpool.redis import RedisPool
from txconnpool.redis.testing import RedisProcess

__all__ = ["noLoggedErrors"]


@pytest.fixture
def freshRedis(tmp_path: Path) -> Iterator[RedisProcess]:
    """
    A redis-server of the test's own, for tests that stop, pause or restart it.
    """
    server = RedisProcess(tmp_path / "redis.log")
    server.start()
    yield server
    server.stop()


@pytest_twisted.async_yield_fixture
async def redisProxy(freshRedis: RedisProcess) -> AsyncIterator[FaultProxy]:
    """
    A fault proxy in front of a redis-server of the test's own.
    """
    faultProxy = FaultProxy(freshRedis.port)
    faultProxy.listen()
    yield faultProxy
    await faultProxy.close()


@pytest.fixture
def fullListener() -> Iterator[FullListener]:
    """
    A loopback listener whose accept queue is full, so that connecting to it hangs.
    """
    listener = FullListener()
    yield listener
    listener.close()


def counts(pool: RedisPool) -> tuple[int, ...]:
    stats = pool.poolStats()
    return (stats.busy, stats.idle, stats.connecting, stats.waiting)


def mixed(pool: RedisPool, i: int) -> Any:
    """
    One of several commands, idempotent or not, chosen by C{i}.
    """
    key = b"faults:%d" % (i % 7,)
    return [
        lambda: pool.get(key),
        lambda: pool.set(key, i),
        lambda: pool.incr(b"faults:counter"),
        lambda: pool.mget(key, b"faults:other"),
        lambda: pool.rpush(b"faults:list", i),
        lambda: pool.hgetall(b"faults:hash"),
    ][i % 6]()


@pytest.mark.parametrize("depth", [1, 50])
@pytest_twisted.ensureDeferred
async def test_killedWithRequestsPending(freshRedis: RedisProcess, depth: int) -> None:
    """
    Killing redis-server with requests in flight (one or fifty per connection) and more
    queued settles all 200 promptly with ConnectionLostError or ServerUnavailableError; the
    non-idempotent ones in flight fail with ConnectionLostError.
    """
    pool = RedisPool(
        freshRedis.endpoint, maxClients=2, maxRequestsPerClient=depth, failFastAfter=3,
        retryPolicy=backoffPolicy(initialDelay=0.05, maxDelay=0.2),
    )
    try:
        async with pool.connection(), pool.connection():
            pass
        await later(0)
        await pause(freshRedis)
        pending = [mixed(pool, i) for i in range(200)]
        inFlight = 2 * depth
        assert counts(pool)[::3] == (2, 200 - inFlight)
        kill(freshRedis)
        started = reactor.seconds()
        results = await outcomes(pending)
        assert reactor.seconds() - started < 2.0
        assert all(isinstance(r, Failure) for r in results)
        assert errorNames(results) <= {"ConnectionLostError", "ServerUnavailableError"}
        for i in range(inFlight):
            if i % 6 in (2, 4):
                assert results[i].check(ConnectionLostError), (i, results[i])
    finally:
        await pool.close()
    assert counts(pool) == (0, 0, 0, 0)


@pytest_twisted.ensureDeferred
async def test_restartOnTheSamePort(freshRedis: RedisProcess) -> None:
    """
    Requests made while redis-server is down wait for the next attempt, and complete by
    themselves within the backoff's maximum delay once it is back on the same port.
    """
    maxDelay = 0.5
    policy = ObservedBackoff(backoffPolicy(initialDelay=0.05, maxDelay=maxDelay))
    pool = RedisPool(freshRedis.endpoint, maxClients=4, failFastAfter=100, retryPolicy=policy)
    try:
        assert await pool.set(b"restart", b"before") is True
        kill(freshRedis)
        waiting = [pool.get(b"restart") for _ in range(20)]
        await policy.failures(6)
        freshRedis.start()
        restarted = reactor.seconds()
        assert await outcomes(waiting) == [None] * 20
        assert reactor.seconds() - restarted < maxDelay + 0.2
        assert pool.poolStats().failedRequests == 0
    finally:
        await pool.close()


@pytest_twisted.ensureDeferred
async def test_restartLeavesStaleIdleConnections(freshRedis: RedisProcess) -> None:
    """
    After a restart the pool has not noticed, a GET handed a stale idle connection is sent
    again on a new one and succeeds; an INCR fails with ConnectionLostError and never
    reaches the new server.
    """
    pool = RedisPool(freshRedis.endpoint, maxClients=2, maxRequestsPerClient=1)
    try:
        async with pool.connection(), pool.connection():
            pass
        await later(0)
        assert pool.poolStats().idle == 2
        kill(freshRedis)
        freshRedis.start()
        get, incr = pool.get(b"stale"), pool.incr(b"stale-counter")
        assert await get is None
        assert (await failureOf(incr)).check(ConnectionLostError)
        assert await pool.get(b"stale-counter") is None
        assert pool.poolStats().closed == 2
    finally:
        await pool.close()


@pytest_twisted.ensureDeferred
async def test_hungServerThenResumed(freshRedis: RedisProcess) -> None:
    """
    A hung server (SIGSTOP) fails requests with RequestTimeoutError after requestTimeout and
    drops their connection; once resumed, requests succeed on a new connection.
    """
    pool = RedisPool(freshRedis.endpoint, maxClients=2, requestTimeout=0.3)
    try:
        assert await pool.set(b"hung", b"v") is True
        await pause(freshRedis)
        started = reactor.seconds()
        results = await outcomes([pool.get(b"hung"), pool.incr(b"hung-counter")])
        assert errorNames(results) == {"RequestTimeoutError"}
        assert 0.3 <= reactor.seconds() - started < 1.0
        assert counts(pool)[:2] == (0, 0)
        freshRedis.signal(signal.SIGCONT)
        assert await pool.get(b"hung") == b"v"
        stats = pool.poolStats()
        assert (stats.created, stats.closed) == (2, 1)
    finally:
        freshRedis.signal(signal.SIGCONT)
        await pool.close()


@pytest_twisted.ensureDeferred
async def test_acquireTimeout(redisProxy: FaultProxy) -> None:
    """
    A request that waits acquireTimeout behind a checkout fails with PoolTimeoutError naming
    the address and the counts; the connection freed later serves the next one.
    """
    pool = RedisPool(redisProxy.endpoint, maxClients=1, acquireTimeout=0.2)
    try:
        held = await pool.acquire()
        failure = await failureOf(pool.get(b"exhausted"))
        assert type(failure.value) is PoolTimeoutError
        assert "(1 busy, 0 idle, 0 connecting, 0 waiting)" in failure.getErrorMessage()
        queued = pool.get(b"exhausted")
        pool.release(held)
        assert await queued is None
        assert counts(pool) == (0, 1, 0, 0)
    finally:
        await pool.close()


@pytest_twisted.ensureDeferred
async def test_cancelWhileQueuedAndInFlight(redisProxy: FaultProxy) -> None:
    """
    Cancelling queued requests leaves the connection in service; cancelling requests in
    flight (pipelined on a stalled connection) closes it, and nothing is left open.
    """
    pool = RedisPool(redisProxy.endpoint, maxClients=1, maxRequestsPerClient=4)
    try:
        held = await pool.acquire()
        queued = [pool.get(b"cancel") for _ in range(10)]
        for d in queued:
            d.cancel()
        assert all(r.check(CancelledError) for r in await outcomes(queued))
        pool.release(held)
        assert counts(pool) == (0, 1, 0, 0)
        redisProxy.stall()
        sent = redisProxy.requests
        pending = [pool.get(b"cancel") for _ in range(8)]
        await redisProxy.until(lambda: redisProxy.requests > sent)
        assert counts(pool) == (1, 0, 0, 4)
        for d in pending:
            d.cancel()
        assert all(r.check(CancelledError) for r in await outcomes(pending))
        await redisProxy.until(lambda: redisProxy.openClients == 0)
        assert counts(pool) == (0, 0, 0, 0)
        redisProxy.resume()
        assert await pool.get(b"cancel") is None
        stats = pool.poolStats()
        assert (stats.created, stats.closed, stats.discarded.cancelled) == (2, 1, 1)
    finally:
        await pool.close()


@pytest_twisted.ensureDeferred
async def test_cancelWhileConnecting(fullListener: FullListener) -> None:
    """
    Cancelling a request that waits for a hanging connection attempt cancels the attempt.
    """
    pool = RedisPool(fullListener.endpoint, maxClients=1, connectTimeout=None)
    base = fullListener.halfOpen()
    try:
        pending = pool.get(b"connecting")
        await turnsUntil(lambda: fullListener.halfOpen() == base + 1)
        pending.cancel()
        assert (await failureOf(pending)).check(CancelledError)
        assert counts(pool) == (0, 0, 0, 0)
        await turnsUntil(lambda: fullListener.halfOpen() == base)
    finally:
        await pool.close()


@pytest_twisted.ensureDeferred
async def test_closeWithWorkPending(redisProxy: FaultProxy) -> None:
    """
    close() fails queued and new requests with PoolClosedError, lets requests in flight
    finish, and fires once every connection is closed; close(timeout) drops what is still
    in flight after the timeout with ConnectionLostError.
    """
    pool = RedisPool(redisProxy.endpoint, maxClients=1, maxRequestsPerClient=2)
    assert await pool.set(b"close", b"v") is True
    redisProxy.stall()
    sent = redisProxy.requests
    inFlight = [pool.get(b"close"), pool.incr(b"close-n")]
    queued = [pool.get(b"close") for _ in range(3)]
    await redisProxy.until(lambda: redisProxy.requests > sent)
    closing = pool.close()
    assert errorNames(await outcomes(queued)) == {"PoolClosedError"}
    assert (await failureOf(pool.get(b"close"))).check(PoolClosedError)
    redisProxy.resume()
    assert await outcomes(inFlight) == [b"v", 1]
    assert await outcomes([closing]) == [None]

    pool = RedisPool(redisProxy.endpoint, maxClients=1)
    assert await pool.ping() == "PONG"
    redisProxy.stall()
    stuck = pool.get(b"close")
    await redisProxy.nextRequest()
    started = reactor.seconds()
    closing = pool.close(timeout=0.3)
    assert errorNames(await outcomes([stuck])) == {"ConnectionLostError"}
    assert reactor.seconds() - started >= 0.3
    assert await outcomes([closing]) == [None]
    await redisProxy.until(lambda: redisProxy.openClients == 0)


SHUTDOWN = """
import sys
from twisted.internet import reactor
from txconnpool.redis import RedisPool

pool = RedisPool(sys.argv[1], maxClients=2, shutdownTimeout=0.5)
outcome = []

def ready(_):
    print("connected", flush=True)
    sys.stdin.readline()
    inFlight = pool.get(b"k")
    inFlight.addBoth(lambda r: outcome.append(type(getattr(r, "value", r)).__name__))
    reactor.callLater(0, reactor.stop)

pool.set(b"k", b"v").addCallback(ready)
reactor.run()
print("exited after", outcome, pool.poolStats())
"""


def test_shutdownWithRequestInFlightToAHungServer(freshRedis: RedisProcess) -> None:
    """
    Stopping the reactor while a request waits on a hung redis-server drops the connection
    after shutdownTimeout, fails the request, and lets the process exit.
    """
    child = subprocess.Popen(
        [sys.executable, "-c", SHUTDOWN, freshRedis.endpoint],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert child.stdout is not None and child.stdin is not None
    try:
        assert child.stdout.readline() == "connected\n"
        freshRedis.signal(signal.SIGSTOP)
        child.stdin.write("\n")
        child.stdin.flush()
        out, err = child.communicate(timeout=30)
    finally:
        freshRedis.signal(signal.SIGCONT)
        if child.poll() is None:
            child.kill()
    assert child.returncode == 0, err
    assert "exited after ['ConnectionLostError']" in out
    assert "busy=0, idle=0, connecting=0, waiting=0" in out
