"""
RedisPool on a clock and a fake endpoint: the AUTH and SELECT handshake, a refused password,
exclusive commands refused on the pool, pipelining, reads sent again after a stale
connection, protocol errors, what a checkout leaves behind, and health pings.
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.defer import Deferred, ensureDeferred

from tests.helpers import FakeReactor, assertNoResult, failureOf, resultOf
from tests.test_redis_protocol import sent
from txconnpool.errors import ConnectionLostError, ProtocolError, ServerUnavailableError
from txconnpool.redis import (
    AuthenticationError,
    ExclusiveCommandError,
    RedisPool,
    RedisProtocol,
    ResponseError,
    TransactionDiscardedError,
)
from txconnpool.testing import FakeConnectAttempt, FakeEndpoint


def makePool(**options: Any) -> tuple[RedisPool, FakeReactor, FakeEndpoint]:
    clock = FakeReactor()
    endpoint = FakeEndpoint(clock)
    options.setdefault("retryPolicy", lambda attempt: 1.0)
    options.setdefault("idleTimeout", None)
    pool = RedisPool(endpoint, options.pop("maxClients", 2), reactor=clock, **options)
    return pool, clock, endpoint


def close(pool: RedisPool, clock: FakeReactor) -> None:
    closing = pool.close()
    clock.advance(0)
    assert resultOf(closing) is None
    assert clock.getDelayedCalls() == []


def transportOf(attempt: FakeConnectAttempt) -> Any:
    assert attempt.transport is not None
    return attempt.transport


def test_handshake() -> None:
    """
    With a user name, password and database, a new connection sends AUTH and SELECT at once
    and takes requests only when both are accepted.
    """
    pool, clock, endpoint = makePool(password="pw", username="app", db=3)
    d = pool.get(b"k")
    attempt = endpoint.attempts[0]
    attempt.succeed()
    assert sent(transportOf(attempt)) == [[b"AUTH", b"app", b"pw"], [b"SELECT", b"3"]]
    attempt.protocol.dataReceived(b"+OK\r\n")
    assert pool.poolStats().connecting == 1
    attempt.protocol.dataReceived(b"+OK\r\n")
    assert sent(transportOf(attempt)) == [[b"GET", b"k"]]
    attempt.protocol.dataReceived(b"$1\r\nv\r\n")
    assert resultOf(d) == b"v"
    assert "db=3" in repr(pool)
    close(pool, clock)


def test_noHandshake() -> None:
    """
    Without a password and on database 0, a new connection sends nothing before the first
    request.
    """
    pool, clock, endpoint = makePool()
    d = pool.ping()
    attempt = endpoint.attempts[0]
    attempt.succeed()
    assert sent(transportOf(attempt)) == [[b"PING"]]
    attempt.protocol.dataReceived(b"+PONG\r\n")
    assert resultOf(d) == "PONG"
    close(pool, clock)


def test_refusedPassword() -> None:
    """
    A refused password fails whenReady() at once with ServerUnavailableError caused by an
    AuthenticationError, closes the connection, and the waiting requests fail after
    failFastAfter attempts made one at a time, a retry delay apart.
    """
    pool, clock, endpoint = makePool(password="wrong", minClients=1, maxClients=4)
    ready = pool.whenReady()
    waiting = [pool.get(b"k") for _ in range(10)]
    for attempt in range(3):
        assert len(endpoint.pending()) == 1
        current = endpoint.pending()[0]
        current.succeed()
        current.protocol.dataReceived(b"-WRONGPASS invalid username-password pair\r\n")
        if attempt == 0:
            failure = failureOf(ready, ServerUnavailableError)
            assert "refused the password: WRONGPASS" in str(failure.value)
            assert isinstance(failure.value.__cause__, AuthenticationError)
        assert transportOf(current).disconnecting
        clock.advance(0)
        if attempt < 2:
            assert endpoint.pending() == []
            clock.advance(1.0)
    for d in waiting:
        failure = failureOf(d, ServerUnavailableError)
        assert isinstance(failure.value.__cause__, AuthenticationError)
    assert len(endpoint.attempts) == 3
    close(pool, clock)


def test_passwordMissing() -> None:
    """
    A server that wants a password when none was given (NOAUTH to SELECT) is an
    AuthenticationError; an impossible database is the server's ResponseError.
    """
    pool, clock, endpoint = makePool(db=1, minClients=1, failFastAfter=1)
    ready = pool.whenReady()
    endpoint.attempts[0].succeed()
    endpoint.attempts[0].protocol.dataReceived(b"-NOAUTH Authentication required.\r\n")
    assert isinstance(failureOf(ready).value.__cause__, AuthenticationError)
    close(pool, clock)
    pool, clock, endpoint = makePool(db=99, failFastAfter=1)
    d = pool.get(b"k")
    endpoint.attempts[0].succeed()
    endpoint.attempts[0].protocol.dataReceived(b"-ERR DB index is out of range\r\n")
    cause = failureOf(d, ServerUnavailableError).value.__cause__
    assert type(cause) is ResponseError and "out of range" in str(cause)
    close(pool, clock)


@pytest.mark.parametrize(
    "command",
    [("BLPOP", "q", 0), ("subscribe", "c"), ("MULTI",), ("WATCH", "k"), ("SELECT", 1),
     ("XREAD", "block", 0, "STREAMS", "s", "$"), ("CLIENT", "SETNAME", "x"), ("AUTH", "x")],
)
def test_exclusiveCommandsRefusedOnThePool(command: tuple[Any, ...]) -> None:
    """
    A command that blocks or changes its connection's state fails at once on the pool with
    ExclusiveCommandError naming the checkout, and no connection is opened for it.
    """
    pool, clock, endpoint = makePool()
    failure = failureOf(pool.execute(*command), ExclusiveCommandError)
    assert "async with pool.connection() as redis" in str(failure.value)
    assert endpoint.attempts == []
    close(pool, clock)


def test_genericCommandOnThePool() -> None:
    """
    Any other command goes through execute() and fires with the reply as it came.
    """
    pool, clock, endpoint = makePool()
    d = pool.execute("CLIENT", "LIST")
    attempt = endpoint.attempts[0]
    attempt.succeed()
    assert sent(transportOf(attempt)) == [[b"CLIENT", b"LIST"]]
    attempt.protocol.dataReceived(b"$2\r\nid\r\n")
    assert resultOf(d) == b"id"
    close(pool, clock)


def test_pipelinedByDefault() -> None:
    """
    Requests are pipelined 32 deep on a connection; the rest wait, and every reply goes to
    its own request.
    """
    pool, clock, endpoint = makePool(maxClients=1)
    requests = [pool.get(b"k%d" % (i,)) for i in range(40)]
    attempt = endpoint.attempts[0]
    attempt.succeed()
    assert len(sent(transportOf(attempt))) == 32
    assert pool.poolStats().waiting == 8
    for i in range(40):
        attempt.protocol.dataReceived(b"$%d\r\nv%d\r\n" % (len(b"v%d" % (i,)), i))
    assert [resultOf(d) for d in requests] == [b"v%d" % (i,) for i in range(40)]
    close(pool, clock)


def test_readSentAgainAfterStaleConnection() -> None:
    """
    A read whose idle connection turns out closed before any reply is sent again on a new
    connection; an INCR fails with ConnectionLostError instead.
    """
    pool, clock, endpoint = makePool(maxClients=2, maxRequestsPerClient=1)
    warm = [pool.ping(), pool.ping()]
    for attempt in endpoint.attempts:
        attempt.succeed()
    for attempt in endpoint.attempts:
        attempt.protocol.dataReceived(b"+PONG\r\n")
    assert [resultOf(d) for d in warm] == ["PONG", "PONG"]
    get, incr = pool.get(b"k"), pool.incr(b"n")
    for attempt in list(endpoint.attempts):
        attempt.lose()
    failureOf(incr, ConnectionLostError)
    assertNoResult(get)
    retry = endpoint.pending()[0]
    retry.succeed()
    assert sent(transportOf(retry)) == [[b"GET", b"k"]]
    retry.protocol.dataReceived(b"$-1\r\n")
    assert resultOf(get) is None
    close(pool, clock)


def test_protocolErrorDiscardsTheConnection() -> None:
    """
    A reply that does not fit its command fails the request with ProtocolError, and the
    connection is never handed out again. (The connection first proves itself, so that the
    pool replaces it at once rather than back off as after a failed connection attempt.)
    """
    pool, clock, endpoint = makePool(maxClients=1)
    first = pool.get(b"k")
    attempt = endpoint.attempts[0]
    attempt.succeed()
    attempt.protocol.dataReceived(b"$-1\r\n")
    assert resultOf(first) is None
    d = pool.get(b"k")
    attempt.protocol.dataReceived(b":1\r\n")
    failureOf(d, ProtocolError)
    after = pool.get(b"k")
    clock.advance(0)
    assert pool.poolStats().closed == 1
    endpoint.pending()[0].succeed()
    endpoint.attempts[1].protocol.dataReceived(b"$1\r\nv\r\n")
    assert resultOf(after) == b"v"
    close(pool, clock)


def checkout(pool: RedisPool, body: Any) -> Deferred[Any]:
    async def run() -> Any:
        async with pool.connection() as redis:
            return await body(redis)

    return ensureDeferred(run())


def test_leavingTheBlockDiscardsTheTransaction() -> None:
    """
    Leaving a checkout with a transaction open sends DISCARD before the connection serves
    the next request, whose reply is its own.
    """
    pool, clock, endpoint = makePool(maxClients=1)
    queued: list[Deferred[Any]] = []

    async def body(redis: RedisProtocol) -> None:
        await redis.multi()
        queued.append(redis.set(b"k", b"v"))

    done = checkout(pool, body)
    attempt = endpoint.attempts[0]
    attempt.succeed()
    attempt.protocol.dataReceived(b"+OK\r\n")
    assert resultOf(done) is None
    later = pool.get(b"k")
    assert [c[0] for c in sent(transportOf(attempt))] == [b"MULTI", b"SET", b"DISCARD", b"GET"]
    attempt.protocol.dataReceived(b"+QUEUED\r\n+OK\r\n$-1\r\n")
    failureOf(queued[0], TransactionDiscardedError)
    assert resultOf(later) is None
    assert pool.poolStats().closed == 0
    close(pool, clock)


def test_leavingTheBlockSubscribedClosesTheConnection() -> None:
    """
    A connection left subscribed is closed when its checkout ends, not handed out again.
    """
    pool, clock, endpoint = makePool(maxClients=1)

    async def body(redis: RedisProtocol) -> int:
        return await redis.subscribe(b"c")

    done = checkout(pool, body)
    attempt = endpoint.attempts[0]
    attempt.succeed()
    attempt.protocol.dataReceived(b"*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n")
    assert resultOf(done) == 1
    assert transportOf(attempt).disconnecting
    stats = pool.poolStats()
    assert (stats.closed, stats.discarded.caller) == (1, 1)
    close(pool, clock)


def test_keepalivePings() -> None:
    """
    An idle connection is pinged with PING every keepaliveInterval, and one that does not
    answer within pingTimeout is closed.
    """
    pool, clock, endpoint = makePool(keepaliveInterval=10, pingTimeout=1)
    d = pool.ping()
    attempt = endpoint.attempts[0]
    attempt.succeed()
    attempt.protocol.dataReceived(b"+PONG\r\n")
    resultOf(d)
    sent(transportOf(attempt))
    clock.advance(10)
    assert sent(transportOf(attempt)) == [[b"PING"]]
    attempt.protocol.dataReceived(b"+PONG\r\n")
    clock.advance(10)
    assert sent(transportOf(attempt)) == [[b"PING"]]
    clock.advance(1)
    assert transportOf(attempt).disconnecting
    assert pool.poolStats().discarded.keepalive == 1
    close(pool, clock)


@pytest.mark.parametrize(
    "options, error",
    [
        ({"password": 1}, TypeError),
        ({"username": b"u"}, ValueError),
        ({"db": -1}, ValueError),
        ({"db": True}, TypeError),
        ({"maxMessages": 0}, ValueError),
    ],
)
def test_badOptions(options: dict[str, Any], error: type[Exception]) -> None:
    """
    An impossible option raises TypeError or ValueError naming it.
    """
    with pytest.raises(error) as raised:
        makePool(**options)
    assert next(iter(options)) in str(raised.value)
