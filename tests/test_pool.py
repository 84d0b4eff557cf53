"""
Unit tests of txconnpool.Pool: synchronous, on a clock, over fake endpoints.
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.error import ConnectionDone, ConnectionLost, ConnectionRefusedError
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactorClock

from txconnpool import (
    ConnectionLostError,
    NoSuchCommand,
    Pool,
    PoolClosedError,
    PooledClientFactory,
    PoolFullError,
    PoolTimeoutError,
    RequestTimeoutError,
    ServerUnavailableError,
)

from .helpers import Recorder, assertNoResult, failureOf, makePool, resultOf


def test_requestOpensConnectionAndFiresWithResult() -> None:
    """
    The first request opens a connection and fires with the protocol method's result.
    """
    h = makePool()
    d = h.pool.performRequest("ask", 1)
    assert len(h.endpoint.attempts) == 1
    assertNoResult(d)
    proto = h.connect()
    assert h.attemptFor(proto).transport.value() == b"1\n"
    proto.answer("one")
    assert resultOf(d) == "one"
    stats = h.pool.poolStats()
    assert (stats.busy, stats.idle, stats.connecting, stats.waiting, stats.maxClients) == (
        0, 1, 0, 0, 2
    )
    assert (stats.created, stats.closed, stats.requests, stats.failedRequests) == (1, 0, 1, 0)
    assert (stats.connectsAttempted, stats.connectsFailed, stats.requestsWaited) == (1, 0, 1)


def test_idleConnectionIsReused() -> None:
    """
    A request made while a connection is idle uses it instead of opening another.
    """
    h = makePool()
    d1 = h.pool.performRequest("ask", 1)
    proto = h.connect()
    proto.answer()
    resultOf(d1)
    d2 = h.pool.performRequest("ask", 2)
    assert len(h.endpoint.attempts) == 1
    proto.answer()
    assert resultOf(d2) == 2


def test_nonDeferredResult() -> None:
    """
    A protocol method that returns a plain value fires the request with that value.
    """
    h = makePool()
    d = h.pool.performRequest("plain", 7)
    h.connect()
    assert resultOf(d) == ("plain", 7)


def test_requestsBeyondMaxClientsWaitInOrder() -> None:
    """
    With maxClients connections open or opening, further requests wait and are served first
    in, first out.
    """
    h = makePool(maxClients=2)
    ds = [h.pool.performRequest("ask", i) for i in range(6)]
    assert len(h.endpoint.attempts) == 2
    assert h.pool.poolStats().connecting == 2
    assert h.pool.poolStats().waiting == 6
    p1 = h.connect()
    p2 = h.connect()
    assert [v for v, _ in p1.asked + p2.asked] == [0, 1]
    served = []
    for d in ds:
        d.addCallback(served.append)
    p2.answer()
    p2.answer()
    p1.answer()
    p1.answer()
    p2.answer()
    p1.answer()
    assert served == [1, 2, 0, 4, 3, 5]
    assert h.attemptFor(p1).transport.value() == b"0\n4\n5\n"
    assert h.attemptFor(p2).transport.value() == b"1\n2\n3\n"
    assert len(h.endpoint.attempts) == 2


def test_connectingConnectionsCountTowardTheCap() -> None:
    """
    Connection attempts in progress count toward maxClients, so a burst opens no more than
    maxClients connections.
    """
    h = makePool(maxClients=3)
    for i in range(10):
        h.pool.performRequest("ask", i)
    assert len(h.endpoint.attempts) == 3
    assert h.pool.poolStats().waiting == 10


def test_failedRequestFreesItsConnection() -> None:
    """
    A request that fails hands its error to the caller and returns its connection to the pool.
    """
    h = makePool(maxClients=1)
    d1 = h.pool.performRequest("ask", 1)
    d2 = h.pool.performRequest("ask", 2)
    proto = h.connect()
    proto.reject(KeyError("nope"))
    failureOf(d1, KeyError)
    proto.answer()
    assert resultOf(d2) == 2
    stats = h.pool.poolStats()
    assert (stats.idle, stats.busy, stats.failedRequests, stats.closed) == (1, 0, 1, 0)


def test_queuedRequestErrorReachesItsCaller() -> None:
    """
    A request that waited in the queue and then failed delivers its error to its own caller.
    """
    h = makePool(maxClients=1)
    d1 = h.pool.performRequest("ask", 1)
    d2 = h.pool.performRequest("ask", 2)
    proto = h.connect()
    proto.answer()
    resultOf(d1)
    proto.reject(RuntimeError("second failed"))
    assert "second failed" in str(failureOf(d2, RuntimeError).value)


def test_methodRaisingSynchronously() -> None:
    """
    A protocol method that raises fails the request with that exception and frees the
    connection.
    """
    h = makePool(maxClients=1)
    d = h.pool.performRequest("boom")
    h.connect()
    failureOf(d, ValueError)
    assert h.pool.poolStats().idle == 1


def test_unknownMethodFailsWithNoSuchCommand() -> None:
    """
    Asking for a method the protocol class lacks fails at once with NoSuchCommand, without
    opening a connection.
    """
    h = makePool()
    f = failureOf(h.pool.performRequest("nonexistent"), NoSuchCommand)
    assert "nonexistent" in str(f.value)
    assert isinstance(f.value, AttributeError)
    assert h.endpoint.attempts == []
    assert h.pool.poolStats().failedRequests == 1


def test_unknownInstanceMethodFailsWithNoSuchCommand() -> None:
    """
    A protocol answering attribute lookups dynamically gets NoSuchCommand when the connected
    instance turns out not to have the method, and its connection stays usable.
    """

    class Dynamic(Recorder):
        def __getattr__(self, name: str) -> Any:
            raise AttributeError(name)

    h = makePool(maxClients=1, protocolClass=Dynamic)
    d = h.pool.performRequest("missing")
    h.connect()
    failureOf(d, NoSuchCommand)
    assert h.pool.poolStats().idle == 1


def test_methodNameMustBeAString() -> None:
    """
    A method name that is not a string raises TypeError.
    """
    h = makePool()
    with pytest.raises(TypeError, match="method must be a str"):
        h.pool.performRequest(b"ask")  # type: ignore[arg-type]


def test_lostConnectionFailsRequestInFlight() -> None:
    """
    A connection lost with a request in flight fails that request with ConnectionLostError,
    carrying the reason, and is never used again.
    """
    h = makePool(maxClients=1)
    d1 = h.pool.performRequest("ask", 1)
    d2 = h.pool.performRequest("ask", 2)
    proto = h.connect()
    h.attemptFor(proto).lose(ConnectionLost("reset"))
    f = failureOf(d1, ConnectionLostError)
    assert isinstance(f.value.__cause__, ConnectionLost)
    assert len(h.endpoint.attempts) == 1
    h.clock.advance(1.0)
    assert len(h.endpoint.attempts) == 2
    proto2 = h.connect()
    assert proto2 is not proto
    proto2.answer()
    assert resultOf(d2) == 2
    assert proto.asked == []
    assert h.pool.poolStats().closed == 1


def test_connectionDoneInFlightIsAFailure() -> None:
    """
    A clean close by the server while a request is in flight still fails the request.
    """
    h = makePool()
    d = h.pool.performRequest("ask", 1)
    proto = h.connect()
    h.attemptFor(proto).lose(ConnectionDone())
    failureOf(d, ConnectionLostError)


def test_protocolThatForgetsPendingRequestsOnLoss() -> None:
    """
    When the protocol does not fail its own pending request on connection loss, the pool
    fails it, exactly once.
    """

    class Forgetful(Recorder):
        def connectionLost(self, reason: Any = None) -> None:
            pass

    h = makePool(protocolClass=Forgetful)
    d = h.pool.performRequest("ask", 1)
    proto = h.connect()
    h.attemptFor(proto).lose()
    failureOf(d, ConnectionLostError)
    proto.answer("late")
    assert h.pool.poolStats().failedRequests == 1


def test_lostIdleConnectionIsNotHandedOut() -> None:
    """
    An idle connection that the server closed is dropped and the next request gets a new one.
    """
    h = makePool()
    d1 = h.pool.performRequest("ask", 1)
    proto = h.connect()
    proto.answer()
    resultOf(d1)
    h.attemptFor(proto).lose()
    assert h.pool.poolStats().idle == 0
    d2 = h.pool.performRequest("ask", 2)
    assert len(h.endpoint.attempts) == 2
    h.connect().answer()
    assert resultOf(d2) == 2


def test_cancelQueuedRequest() -> None:
    """
    Cancelling a queued request removes it from the queue and fails it with CancelledError;
    it never reaches a connection.
    """
    h = makePool(maxClients=1)
    d1 = h.pool.performRequest("ask", 1)
    d2 = h.pool.performRequest("ask", 2)
    d3 = h.pool.performRequest("ask", 3)
    d2.cancel()
    failureOf(d2, CancelledError)
    assert h.pool.poolStats().waiting == 2
    proto = h.connect()
    proto.answer()
    resultOf(d1)
    assert [v for v, _ in proto.asked] == [3]
    proto.answer()
    assert resultOf(d3) == 3
    assert h.pool.poolStats().failedRequests == 1


def test_cancelManyQueuedRequests() -> None:
    """
    Cancelling most of a long queue keeps the count right and serves the rest in order.
    """
    h = makePool(maxClients=1)
    ds = [h.pool.performRequest("echo", i) for i in range(500)]
    for i, d in enumerate(ds):
        if i % 5:
            d.cancel()
    assert h.pool.poolStats().waiting == 100
    h.connect()
    assert [resultOf(d) for d in ds[::5]] == list(range(0, 500, 5))
    assert h.pool.poolStats().waiting == 0


def test_cancelInFlightRequestDiscardsConnection() -> None:
    """
    Cancelling a request in flight fails it with CancelledError and discards its connection,
    whose reply can no longer be trusted.
    """
    h = makePool(maxClients=1)
    d1 = h.pool.performRequest("ask", 1)
    d2 = h.pool.performRequest("ask", 2)
    proto = h.connect()
    d1.cancel()
    failureOf(d1, CancelledError)
    attempt = h.attemptFor(proto)
    assert attempt.transport.disconnecting
    h.clock.advance(0)
    assert len(h.endpoint.attempts) == 2
    proto2 = h.connect()
    proto2.answer()
    assert resultOf(d2) == 2
    assert h.pool.poolStats().closed == 1


def test_cancelWhileConnectingCancelsTheAttempt() -> None:
    """
    Cancelling the only request waiting on a new connection cancels the connection attempt.
    """
    h = makePool()
    d = h.pool.performRequest("ask", 1)
    d.cancel()
    failureOf(d, CancelledError)
    assert h.endpoint.attempts[0].cancelled
    assert h.pool.poolStats().connecting == 0
    assert h.pool.poolStats().waiting == 0


def test_connectFailureFailsWaitersWhenNothingElseCanServeThem() -> None:
    """
    With failFastAfter=1, when the only connection attempt fails the waiting requests fail
    with ServerUnavailableError instead of hanging; new requests fail fast until the retry is
    due, and then try again.
    """
    h = makePool(maxClients=1, failFastAfter=1)
    ds = [h.pool.performRequest("ask", i) for i in range(3)]
    h.endpoint.attempts[0].fail(ConnectionRefusedError())
    for d in ds:
        f = failureOf(d, ServerUnavailableError)
        assert isinstance(f.value.__cause__, ConnectionRefusedError)
        assert "1 consecutive attempts failed" in str(f.value)
    failureOf(h.pool.performRequest("ask", 4), ServerUnavailableError)
    assert len(h.endpoint.attempts) == 1
    h.clock.advance(1.0)
    d = h.pool.performRequest("ask", 5)
    assert len(h.endpoint.attempts) == 2
    h.connect().answer()
    assert resultOf(d) == 5


def test_reconnectBacksOffThenCircuitOpensThenRecovers() -> None:
    """
    Failed connection attempts are retried after the policy's delays while requests wait;
    after failFastAfter failures the waiters fail and new requests fail fast; when the delay
    is over one probe connection is made, and once it carries a request the pool is back to
    normal.
    """
    delays: list[int] = []

    def policy(attempt: int) -> float:
        delays.append(attempt)
        return 2.0**attempt

    h = makePool(maxClients=3, failFastAfter=3, retryPolicy=policy)
    waiting = [h.pool.performRequest("ask", i) for i in range(2)]
    assert len(h.endpoint.attempts) == 2
    h.endpoint.attempts[0].fail()
    h.endpoint.attempts[1].fail()
    assert delays == [0, 1]
    h.clock.advance(1.9)
    assert len(h.endpoint.attempts) == 2
    h.clock.advance(0.1)
    assert len(h.endpoint.attempts) == 3
    assertNoResult(waiting[0])
    h.endpoint.attempts[2].fail()
    for d in waiting:
        failureOf(d, ServerUnavailableError)
    fast = h.pool.performRequest("ask", 9)
    failureOf(fast, ServerUnavailableError)
    h.clock.advance(4.0)
    probed = [h.pool.performRequest("ask", i) for i in range(3)]
    assert len(h.endpoint.pending()) == 1
    proto = h.connect()
    proto.answer()
    assert resultOf(probed[0]) == 0
    assert [v for v, _ in proto.asked] == [1]
    assert len(h.endpoint.pending()) == 1
    proto.answer()
    proto.answer()
    assert [resultOf(d) for d in probed[1:]] == [1, 2]
    assert h.connect().asked == []
    assert h.pool.poolStats().idle == 2
    assert h.clock.getDelayedCalls() == []


def test_connectTimeout() -> None:
    """
    A connection attempt that takes longer than connectTimeout is cancelled and counts as a
    failed attempt.
    """
    h = makePool(maxClients=1, connectTimeout=3.0, failFastAfter=1)
    d = h.pool.performRequest("ask", 1)
    h.clock.advance(2.9)
    assertNoResult(d)
    h.clock.advance(0.1)
    assert h.endpoint.attempts[0].cancelled
    f = failureOf(d, ServerUnavailableError)
    assert "longer than 3.0s" in str(f.value)
    assert h.pool.poolStats().connecting == 0


def test_connectTimeoutCoversTheHandshake() -> None:
    """
    A handshake that does not finish within connectTimeout drops the connection.
    """

    class Slow(PooledClientFactory):
        def prepareConnection(self, protocol: Any) -> Deferred[object]:
            return Deferred()

    h = makePool(factoryBase=Slow, connectTimeout=2.0, failFastAfter=1)
    d = h.pool.performRequest("ask", 1)
    proto = h.connect()
    h.clock.advance(2.0)
    failureOf(d, ServerUnavailableError)
    assert h.attemptFor(proto).transport.disconnecting


def test_acquireTimeout() -> None:
    """
    A request that waits acquireTimeout seconds for a connection fails with PoolTimeoutError
    naming the address and the counts, and a connection freed later skips it.
    """
    h = makePool(maxClients=1, acquireTimeout=5.0)
    d1 = h.pool.performRequest("ask", 1)
    proto = h.connect()
    d2 = h.pool.performRequest("ask", 2)
    d3 = h.pool.performRequest("ask", 3)
    h.clock.advance(5.0)
    f = failureOf(d2, PoolTimeoutError)
    assert "timed out after 5.0s waiting for a connection to <FakeEndpoint>" in str(f.value)
    assert "(1 busy, 0 idle, 0 connecting, 1 waiting)" in str(f.value)
    failureOf(d3, PoolTimeoutError)
    proto.answer()
    resultOf(d1)
    assert proto.asked == []
    assert h.pool.poolStats().idle == 1
    assert h.clock.getDelayedCalls() == []


def test_acquireTimeoutNotStartedWhenServedAtOnce() -> None:
    """
    A request that gets a connection at once leaves no acquire timer behind.
    """
    h = makePool(maxClients=1, acquireTimeout=5.0, connectTimeout=None)
    d1 = h.pool.performRequest("ask", 1)
    proto = h.connect()
    proto.answer()
    resultOf(d1)
    d2 = h.pool.performRequest("ask", 2)
    assert h.clock.getDelayedCalls() == []
    proto.answer()
    resultOf(d2)


def test_requestTimeoutDropsTheConnection() -> None:
    """
    A request without a reply within requestTimeout fails with RequestTimeoutError, and its
    connection is dropped and replaced.
    """
    h = makePool(maxClients=1, requestTimeout=2.0)
    d1 = h.pool.performRequest("ask", 1)
    d2 = h.pool.performRequest("ask", 2)
    proto = h.connect()
    h.clock.advance(2.0)
    f = failureOf(d1, RequestTimeoutError)
    assert isinstance(f.value, PoolTimeoutError)
    assert h.attemptFor(proto).transport.lost
    proto2 = h.connect()
    proto2.answer()
    assert resultOf(d2) == 2
    assert h.clock.getDelayedCalls() == []


def test_maxWaitersShedsLoad() -> None:
    """
    Beyond maxWaiters requests waiting for busy connections, new requests fail at once with
    PoolFullError; requests waiting for a connection being opened do not count.
    """
    h = makePool(maxClients=2, maxWaiters=1)
    d1 = h.pool.performRequest("ask", 1)
    d2 = h.pool.performRequest("ask", 2)
    d3 = h.pool.performRequest("ask", 3)
    f = failureOf(h.pool.performRequest("ask", 4), PoolFullError)
    assert "maxWaiters=1" in str(f.value)
    p1, p2 = h.connect(), h.connect()
    p1.answer()
    p2.answer()
    p1.answer()
    assert [resultOf(d) for d in (d1, d2, d3)] == [1, 2, 3]


def test_maxWaitersZeroNeverQueuesBehindBusyConnections() -> None:
    """
    With maxWaiters=0 a request may wait for a new connection but never for a busy one.
    """
    h = makePool(maxClients=1, maxWaiters=0)
    d1 = h.pool.performRequest("ask", 1)
    failureOf(h.pool.performRequest("ask", 2), PoolFullError)
    h.connect().answer()
    assert resultOf(d1) == 1


def test_staleConnectionRetriesIdempotentRequestOnce() -> None:
    """
    An idempotent request whose connection turns out closed before any reply arrived is sent
    again on another connection, once; a non-idempotent one fails.
    """

    class RetryingPool(Pool[Any]):
        idempotentMethods = frozenset({"ask"})

    h = makePool(maxClients=1, poolClass=RetryingPool)
    d1 = h.pool.performRequest("ask", 1)
    proto = h.connect()
    proto.answer()
    resultOf(d1)
    d2 = h.pool.performRequest("ask", 2)
    h.attemptFor(proto).lose(ConnectionDone())
    assertNoResult(d2)
    proto2 = h.connect()
    assert [v for v, _ in proto2.asked] == [2]
    h.attemptFor(proto2).lose(ConnectionDone())
    failureOf(d2, ConnectionLostError)


def test_connectFailureLeavesWaitersForOpenConnections() -> None:
    """
    A failed connection attempt does not fail waiting requests that an open connection will
    serve.
    """
    h = makePool(maxClients=2)
    d1 = h.pool.performRequest("ask", 1)
    proto = h.connect()
    d2 = h.pool.performRequest("ask", 2)
    h.endpoint.pending()[0].fail()
    assertNoResult(d2)
    proto.answer()
    proto.answer()
    assert (resultOf(d1), resultOf(d2)) == (1, 2)


def test_hundredThousandQueuedRequestsServedInOrder() -> None:
    """
    100,000 queued requests completing synchronously are all served, in order, without
    recursion.
    """
    h = makePool(maxClients=1)
    order: list[int] = []
    ds = [h.pool.performRequest("echo", i) for i in range(100_000)]
    for d in ds:
        d.addCallback(order.append)
    h.connect()
    assert order == list(range(100_000))
    assert h.pool.poolStats().requests == 100_000


def test_requestsMadeFromCallbacksDoNotRecurse() -> None:
    """
    A chain of 50,000 requests, each made from the previous one's callback while the pool is
    dispatching and completing synchronously, runs without growing the stack.
    """
    h = makePool(maxClients=1)
    seen: list[int] = []

    def next_(value: int) -> None:
        seen.append(value)
        if value < 50_000:
            h.pool.performRequest("echo", value + 1).addCallback(next_)

    h.pool.performRequest("echo", 1).addCallback(next_)
    h.connect()
    assert seen == list(range(1, 50_001))


def test_callbackRequestsQueueBehindWaiters() -> None:
    """
    A request made from a callback waits behind the requests already queued.
    """
    h = makePool(maxClients=1)
    order: list[str] = []
    d1 = h.pool.performRequest("ask", "a")
    d2 = h.pool.performRequest("ask", "b")
    d1.addCallback(lambda _: h.pool.performRequest("ask", "c").addCallback(order.append))
    d2.addCallback(order.append)
    proto = h.connect()
    proto.answer()
    proto.answer()
    proto.answer()
    assert order == ["b", "c"]


def test_acquireGivesExclusiveUse() -> None:
    """
    A connection checked out with acquire() serves no other request until released.
    """
    h = makePool(maxClients=1)
    da = h.pool.acquire()
    proto = h.connect()
    assert resultOf(da) is proto
    d = h.pool.performRequest("ask", 1)
    assert proto.asked == []
    assert h.pool.poolStats().busy == 1
    h.pool.release(proto)
    assert [v for v, _ in proto.asked] == [1]
    proto.answer()
    assert resultOf(d) == 1


def test_releaseErrors() -> None:
    """
    Releasing a protocol that is not checked out raises ValueError.
    """
    h = makePool(maxClients=1)
    da = h.pool.acquire()
    proto = h.connect()
    resultOf(da)
    with pytest.raises(ValueError, match="not checked out"):
        h.pool.release(Recorder())
    h.pool.release(proto)
    with pytest.raises(ValueError, match="not checked out"):
        h.pool.release(proto)


def test_releaseAfterConnectionLost() -> None:
    """
    Releasing a checked-out connection that was lost meanwhile is allowed, and the slot is
    free again.
    """
    h = makePool(maxClients=1)
    da = h.pool.acquire()
    proto = h.connect()
    resultOf(da)
    h.attemptFor(proto).lose()
    assert h.pool.poolStats().busy == 0
    h.pool.release(proto)
    with pytest.raises(ValueError):
        h.pool.release(proto)


def test_discardClosesCheckedOutConnection() -> None:
    """
    discard() closes a checked-out connection instead of reusing it.
    """
    h = makePool(maxClients=1)
    da = h.pool.acquire()
    proto = h.connect()
    resultOf(da)
    d = h.pool.performRequest("ask", 1)
    h.pool.discard(proto)
    assert h.attemptFor(proto).transport.disconnecting
    assert len(h.endpoint.attempts) == 2
    h.connect().answer()
    assert resultOf(d) == 1


def test_connectionContextManagerReleases() -> None:
    """
    Leaving an async with pool.connection() block normally, or with an ordinary exception,
    gives the connection back.
    """
    h = makePool(maxClients=1)

    async def use() -> Any:
        async with h.pool.connection() as proto:
            assert h.pool.poolStats().busy == 1
            return await proto.echo("x")

    d = Deferred.fromCoroutine(use())
    h.connect()
    assert resultOf(d) == "x"
    assert h.pool.poolStats().idle == 1

    async def fail() -> None:
        async with h.pool.connection():
            raise KeyError("app error")

    failureOf(Deferred.fromCoroutine(fail()), KeyError)
    assert h.pool.poolStats().idle == 1
    assert h.pool.poolStats().closed == 0


def test_connectionContextManagerDiscardsBrokenConnection() -> None:
    """
    Leaving an async with pool.connection() block with a connection error discards the
    connection.
    """
    h = makePool(maxClients=1)

    async def use() -> None:
        async with h.pool.connection() as proto:
            await proto.ask(1)

    d = Deferred.fromCoroutine(use())
    proto = h.connect()
    proto.reject(ConnectionLost("gone"))
    failureOf(d, ConnectionLost)
    stats = h.pool.poolStats()
    assert (stats.idle, stats.busy, stats.closed) == (0, 0, 1)
    assert h.attemptFor(proto).transport.disconnecting


def test_closeFailsNewAndQueuedAndLetsInFlightFinish() -> None:
    """
    close() fails new and queued requests with PoolClosedError, lets requests in flight
    finish, and fires once every connection is closed.
    """
    h = makePool(maxClients=1)
    inFlight = h.pool.performRequest("ask", 1)
    queued = h.pool.performRequest("ask", 2)
    proto = h.connect()
    closed = h.pool.close()
    failureOf(queued, PoolClosedError)
    failureOf(h.pool.performRequest("ask", 3), PoolClosedError)
    failureOf(h.pool.acquire(), PoolClosedError)
    assertNoResult(closed)
    proto.answer()
    assert resultOf(inFlight) == 1
    assert h.attemptFor(proto).transport.disconnecting
    assertNoResult(closed)
    h.clock.advance(0)
    assert resultOf(closed) is None
    assert resultOf(h.pool.close()) is None
    assert h.clock.getDelayedCalls() == []
    assert "closed" in repr(h.pool)


def test_closeCancelsConnectionAttempts() -> None:
    """
    close() cancels connection attempts in progress and fires without waiting for them.
    """
    h = makePool()
    d = h.pool.performRequest("ask", 1)
    closed = h.pool.close()
    failureOf(d, PoolClosedError)
    assert h.endpoint.attempts[0].cancelled
    assert resultOf(closed) is None


def test_closeWaitsForCheckedOutConnection() -> None:
    """
    close() waits for a checked-out connection to be released, then closes it.
    """
    h = makePool()
    da = h.pool.acquire()
    proto = h.connect()
    resultOf(da)
    closed = h.pool.close()
    second = h.pool.close()
    h.clock.advance(0)
    assertNoResult(closed)
    h.pool.release(proto)
    h.clock.advance(0)
    resultOf(closed)
    resultOf(second)


def test_closeTimeoutDropsConnectionsStillBusy() -> None:
    """
    close(timeout) drops connections still busy after the timeout, failing their requests.
    """
    h = makePool()
    d = h.pool.performRequest("ask", 1)
    h.connect()
    closed = h.pool.close(timeout=2.0)
    h.clock.advance(1.9)
    assertNoResult(closed)
    h.clock.advance(0.1)
    h.clock.advance(0)
    failureOf(d, ConnectionLostError)
    resultOf(closed)
    assert h.clock.getDelayedCalls() == []


def test_reactorShutdownClosesPoolWithoutHanging() -> None:
    """
    The pool registers a before-shutdown trigger that closes it, dropping busy connections
    after shutdownTimeout so shutdown cannot hang.
    """
    h = makePool(shutdownTimeout=3.0)
    triggers = h.clock.triggers["before"]["shutdown"]
    assert len(triggers) == 1
    d = h.pool.performRequest("ask", 1)
    h.connect()
    trigger, args, kwargs = triggers[0]
    closing = trigger(*args, **kwargs)
    assertNoResult(closing)
    h.clock.advance(3.0)
    h.clock.advance(0)
    failureOf(d, ConnectionLostError)
    resultOf(closing)


def test_closeRemovesShutdownTrigger() -> None:
    """
    An explicitly closed pool removes its shutdown trigger, so closed pools are not kept.
    """
    h = makePool()
    assert h.clock.triggers["before"]["shutdown"]
    h.pool.close()
    assert h.clock.triggers["before"]["shutdown"] == []


def test_poolStatsAndRepr() -> None:
    """
    poolStats() counts busy, idle, connecting and waiting, and repr() shows them with the
    address.
    """
    h = makePool(maxClients=2)
    ds = [h.pool.performRequest("ask", i) for i in range(3)]
    p1 = h.connect()
    stats = h.pool.poolStats()
    assert (stats.busy, stats.idle, stats.connecting, stats.waiting) == (1, 0, 1, 2)
    text = repr(h.pool)
    assert "busy=1 idle=0 connecting=1 waiting=2 maxClients=2" in text
    p1.answer()
    p1.answer()
    p1.answer()
    p2 = h.connect()
    assert p2.asked == []
    for d in ds:
        resultOf(d)
    stats = h.pool.poolStats()
    assert (stats.busy, stats.idle, stats.created, stats.requests) == (0, 2, 2, 3)
    with pytest.raises(AttributeError):
        stats.busy = 5  # type: ignore[misc]


def test_prepareConnectionHookDelaysReadiness() -> None:
    """
    A factory's prepareConnection Deferred holds the connection back until it fires.
    """
    handshakes: list[Deferred[object]] = []

    class Handshaking(PooledClientFactory):
        def prepareConnection(self, protocol: Any) -> Deferred[object]:
            d: Deferred[object] = Deferred()
            handshakes.append(d)
            return d

    h = makePool(factoryBase=Handshaking)
    d = h.pool.performRequest("echo", 1)
    h.connect()
    assertNoResult(d)
    assert h.pool.poolStats().connecting == 1
    handshakes[0].callback(None)
    assert resultOf(d) == 1


def test_prepareConnectionFailureDropsConnection() -> None:
    """
    A failed handshake closes the connection and counts as a failed connection attempt.
    """

    class Refusing(PooledClientFactory):
        def prepareConnection(self, protocol: Any) -> Deferred[object]:
            raise PermissionError("bad password")

    h = makePool(factoryBase=Refusing, maxClients=1, failFastAfter=1)
    d = h.pool.performRequest("echo", 1)
    proto = h.connect()
    f = failureOf(d, ServerUnavailableError)
    assert "bad password" in str(f.value)
    assert h.attemptFor(proto).transport.disconnecting
    h.clock.advance(0)
    stats = h.pool.poolStats()
    assert (stats.busy, stats.idle, stats.connecting, stats.waiting) == (0, 0, 0, 0)
    assert (stats.created, stats.closed, stats.requests, stats.failedRequests) == (0, 0, 1, 1)
    assert (stats.connectsAttempted, stats.connectsFailed) == (1, 1)


class LegacyProtocol(Recorder):
    """
    A protocol written to the txconnpool 0.1.1 contract.
    """

    factory: Any = None

    def connectionMade(self) -> None:
        Recorder.connectionMade(self)
        self.factory.connectionPool.clientFree(self)
        if self.factory.deferred is not None:
            self.factory.deferred.callback(self)
            self.factory.deferred = None


class LegacyFactory(PooledClientFactory):
    """
    A factory written to the txconnpool 0.1.1 contract.
    """

    protocol = LegacyProtocol


def test_legacyReadinessContract() -> None:
    """
    A protocol that calls clientFree and fires factory.deferred in connectionMade, as
    txconnpool 0.1.1 asked, is used once and only once per request.
    """
    h = makePool(protocolClass=LegacyProtocol, factoryBase=LegacyFactory)
    d1 = h.pool.performRequest("ask", 1)
    proto = h.connect()
    assert [v for v, _ in proto.asked] == [1]
    assert h.built[-1].factory.deferred is None
    proto.answer()
    assert resultOf(d1) == 1
    d2 = h.pool.performRequest("ask", 2)
    proto.answer()
    assert resultOf(d2) == 2
    assert h.pool.poolStats().created == 1


def test_legacyFactoryWithoutSuperInit() -> None:
    """
    A factory subclass whose __init__ does not call the base class still gets a readiness
    Deferred.
    """

    class NoSuper(PooledClientFactory):
        def __init__(self) -> None:
            pass

    h = makePool(factoryBase=NoSuper)
    d = h.pool.performRequest("echo", 5)
    h.connect()
    assert resultOf(d) == 5


def test_legacyClientBusyFreeGone() -> None:
    """
    clientBusy takes an idle connection out of service until clientFree, and clientGone
    removes a connection for good.
    """
    h = makePool(maxClients=1)
    d0 = h.pool.performRequest("echo", 0)
    proto = h.connect()
    resultOf(d0)
    h.pool.clientBusy(proto)
    d = h.pool.performRequest("echo", 1)
    assertNoResult(d)
    h.pool.clientFree(proto)
    assert resultOf(d) == 1
    h.pool.clientGone(proto)
    assert h.attemptFor(proto).transport.disconnecting
    assert h.pool.poolStats().idle == 0
    h.pool.clientGone(object())
    h.pool.clientFree(object())


def test_suggestMaxClients() -> None:
    """
    Growing maxClients serves waiters at once; shrinking closes idle connections now and busy
    ones when they come back.
    """
    h = makePool(maxClients=1)
    ds = [h.pool.performRequest("ask", i) for i in range(3)]
    p1 = h.connect()
    h.pool.suggestMaxClients(3)
    assert len(h.endpoint.attempts) == 3
    p2 = h.connect()
    p3 = h.connect()
    h.pool.suggestMaxClients(1)
    assert h.pool.poolStats().maxClients == 1
    p1.answer()
    assert h.attemptFor(p1).transport.disconnecting
    p2.answer()
    assert h.attemptFor(p2).transport.disconnecting
    p3.answer()
    assert not h.attemptFor(p3).transport.disconnecting
    assert [resultOf(d) for d in ds] == [0, 1, 2]
    stats = h.pool.poolStats()
    assert (stats.idle, stats.busy, stats.closed) == (1, 0, 2)
    with pytest.raises(ValueError):
        h.pool.suggestMaxClients(0)


def test_suggestMaxClientsClosesIdleNow() -> None:
    """
    Shrinking maxClients below the number of idle connections closes the surplus at once.
    """
    h = makePool(maxClients=2)
    d1 = h.pool.performRequest("ask", 1)
    d2 = h.pool.performRequest("ask", 2)
    p1, p2 = h.connect(), h.connect()
    p1.answer()
    p2.answer()
    resultOf(d1)
    resultOf(d2)
    h.pool.suggestMaxClients(1)
    assert h.pool.poolStats().idle == 1
    assert h.pool.poolStats().closed == 1


@pytest.mark.parametrize(
    ("address", "shown"),
    [
        ("tcp:127.0.0.1:11211", "tcp:127.0.0.1:11211"),
        ("unix:/tmp/mc.sock", "unix:/tmp/mc.sock"),
        (IPv4Address("TCP", "127.0.0.1", 11211), "tcp:127.0.0.1:11211"),
        (IPv4Address("TCP", "", 11211), "tcp:127.0.0.1:11211"),
        (IPv6Address("TCP", "::1", 11211), "tcp6:[::1]:11211"),
        (UNIXAddress("/tmp/mc.sock"), "unix:/tmp/mc.sock"),
    ],
)
def test_addressForms(address: object, shown: str) -> None:
    """
    Endpoint strings and the legacy address objects are accepted and shown in repr().
    """
    pool: Pool[Any] = Pool(address, reactor=MemoryReactorClock())
    assert shown in repr(pool)


def test_legacyAddressConnectsThroughTheReactor() -> None:
    """
    A legacy IPv4Address connects with the reactor's connectTCP to its host and port.
    """
    reactor = MemoryReactorClock()
    pool: Pool[Any] = Pool(IPv4Address("TCP", "127.0.0.1", 11211), reactor=reactor)
    pool.acquire()
    assert [(host, port) for host, port, *_ in reactor.tcpClients] == [("127.0.0.1", 11211)]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"serverAddress": 11211}, TypeError, "serverAddress"),
        ({"serverAddress": "nonsense:foo"}, ValueError, "serverAddress"),
        ({"maxClients": 0}, ValueError, "maxClients"),
        ({"maxClients": "5"}, TypeError, "maxClients"),
        ({"maxClients": True}, TypeError, "maxClients"),
        ({"shutdownTimeout": -1}, ValueError, "shutdownTimeout"),
        ({"shutdownTimeout": "1"}, TypeError, "shutdownTimeout"),
    ],
)
def test_constructorRejectsBadArguments(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    """
    Bad constructor arguments raise TypeError or ValueError naming the argument.
    """
    arguments: dict[str, Any] = {"serverAddress": "tcp:127.0.0.1:11211"}
    arguments.update(kwargs)
    with pytest.raises(error, match=match):
        Pool(reactor=MemoryReactorClock(), **arguments)


def test_everyDeferredFiresOnceUnderMixedFailures() -> None:
    """
    Requests hit by a mix of answers, errors, cancellation and connection loss each fire
    exactly once and leave no connection busy.
    """
    h = makePool(maxClients=2)
    fired: dict[int, int] = {}
    ds = []
    for i in range(8):
        d = h.pool.performRequest("ask", i)
        d.addBoth(lambda r, i=i: fired.__setitem__(i, fired.get(i, 0) + 1))
        ds.append(d)
    p1, p2 = h.connect(), h.connect()
    p1.answer()
    p2.reject(KeyError("x"))
    ds[5].cancel()
    h.attemptFor(p1).lose()
    p2.answer()
    h.connect().answer()
    p2.answer()
    for _ in range(4):
        for proto in h.built:
            if proto.asked:
                proto.answer()
    assert fired == {i: 1 for i in range(8)}
    stats = h.pool.poolStats()
    assert (stats.busy, stats.waiting, stats.connecting) == (0, 0, 0)


class _Plain(Protocol):
    """
    An ordinary protocol with no pool-specific code.
    """

    def hello(self) -> Deferred[str]:
        return succeed("hi")


def test_ordinaryProtocolNeedsNoPoolCode() -> None:
    """
    A plain protocol is ready as soon as connectionMade has run.
    """
    h = makePool(protocolClass=_Plain)
    d = h.pool.performRequest("hello")
    h.connect()
    assert resultOf(d) == "hi"


def test_connectionClosingAfterRequestIsNotReused() -> None:
    """
    A connection whose protocol started closing it while answering is not handed out again.
    """
    h = makePool(maxClients=1)
    d1 = h.pool.performRequest("ask", 1)
    d2 = h.pool.performRequest("ask", 2)
    proto = h.connect()
    proto.transport.loseConnection()
    proto.answer()
    assert resultOf(d1) == 1
    assert proto.asked == []
    h.clock.advance(0)
    h.connect().answer()
    assert resultOf(d2) == 2


def test_idleConnectionClosingIsSkipped() -> None:
    """
    An idle connection that is closing is never handed to a request.
    """
    h = makePool(maxClients=1)
    d1 = h.pool.performRequest("ask", 1)
    proto = h.connect()
    proto.answer()
    resultOf(d1)
    proto.transport.loseConnection()
    d2 = h.pool.performRequest("ask", 2)
    assert proto.asked == []
    h.clock.advance(0)
    h.connect().answer()
    assert resultOf(d2) == 2


def test_requestFromCallbackIsSentAtOnce() -> None:
    """
    A request made from a reply's callback, with a connection idle, is sent at once, so a
    close() right after lets it finish.
    """
    h = makePool(maxClients=1)
    d1 = h.pool.performRequest("ask", 1)
    proto = h.connect()
    follow: list[Deferred[Any]] = []

    def onReply(_: object) -> None:
        follow.append(h.pool.performRequest("ask", 2))
        h.pool.close()

    d1.addCallback(onReply)
    proto.answer()
    assert [v for v, _ in proto.asked] == [2]
    proto.answer()
    assert resultOf(follow[0]) == 2


def test_shrinkWhileConnectingClosesTheSurplusConnection() -> None:
    """
    A connection that completes after maxClients shrank below the connections opening is
    closed, not handed out, and its attempt is not cancelled after the fact.
    """
    h = makePool(maxClients=2)
    d1, d2 = h.pool.acquire(), h.pool.acquire()
    h.pool.suggestMaxClients(1)
    first = h.connect()
    assert h.attemptFor(first).transport.disconnecting
    assert not h.endpoint.attempts[0].cancelled
    second = h.connect()
    assert resultOf(d1) is second
    assertNoResult(d2)
    h.clock.advance(0)
    h.pool.release(second)
    assert resultOf(d2) is second


def test_pipeliningFillsAConnectionBeforeOpeningAnother() -> None:
    """
    With maxRequestsPerClient, requests share a connection up to that many in flight, and a
    new connection is opened only for requests beyond what the open ones can take.
    """
    h = makePool(maxClients=3, maxRequestsPerClient=3)
    ds = [h.pool.performRequest("ask", i) for i in range(3)]
    assert len(h.endpoint.attempts) == 1
    proto = h.connect()
    assert [v for v, _ in proto.asked] == [0, 1, 2]
    d3 = h.pool.performRequest("ask", 3)
    assert len(h.endpoint.attempts) == 2
    proto.answer()
    assert [v for v, _ in proto.asked] == [1, 2, 3]
    for _ in range(3):
        proto.answer()
    assert [resultOf(d) for d in [*ds, d3]] == [0, 1, 2, 3]
    stats = h.pool.poolStats()
    assert (stats.busy, stats.idle, stats.connecting) == (0, 1, 1)


def test_pipelinedFailureFailsOnlyItsConnectionsRequests() -> None:
    """
    A pipelined connection lost with requests in flight fails exactly those requests.
    """
    h = makePool(maxClients=2, maxRequestsPerClient=2)
    ds = [h.pool.performRequest("ask", i) for i in range(4)]
    p1, p2 = h.connect(), h.connect()
    assert [v for v, _ in p1.asked] == [0, 1]
    assert [v for v, _ in p2.asked] == [2, 3]
    h.attemptFor(p1).lose(ConnectionLost("reset"))
    failureOf(ds[0], ConnectionLostError)
    failureOf(ds[1], ConnectionLostError)
    p2.answer()
    p2.answer()
    assert (resultOf(ds[2]), resultOf(ds[3])) == (2, 3)


def test_cancelInFlightOnPipelinedConnection() -> None:
    """
    Cancelling one request on a pipelined connection drops the connection, failing the other
    requests on it with ConnectionLostError.
    """
    h = makePool(maxClients=1, maxRequestsPerClient=3)
    ds = [h.pool.performRequest("ask", i) for i in range(3)]
    h.connect()
    ds[1].cancel()
    failureOf(ds[1], CancelledError)
    h.clock.advance(0)
    failureOf(ds[0], ConnectionLostError)
    failureOf(ds[2], ConnectionLostError)
    assert h.pool.poolStats().discarded.cancelled == 1


def test_checkoutGetsAConnectionToItselfWhenPipelining() -> None:
    """
    A checkout waits for a connection with nothing in flight, and requests made after it wait
    behind it.
    """
    h = makePool(maxClients=1, maxRequestsPerClient=3)
    d1 = h.pool.performRequest("ask", 1)
    proto = h.connect()
    checkout = h.pool.acquire()
    d2 = h.pool.performRequest("ask", 2)
    assertNoResult(checkout)
    assert [v for v, _ in proto.asked] == [1]
    proto.answer()
    assert resultOf(d1) == 1
    assert resultOf(checkout) is proto
    assert proto.asked == []
    h.pool.release(proto)
    assert [v for v, _ in proto.asked] == [2]
    proto.answer()
    assert resultOf(d2) == 2


def test_maxRequestsPerClientValidated() -> None:
    """
    maxRequestsPerClient must be an int of at least 1.
    """
    with pytest.raises(ValueError, match="maxRequestsPerClient"):
        makePool(maxRequestsPerClient=0)
    with pytest.raises(TypeError, match="maxRequestsPerClient"):
        makePool(maxRequestsPerClient=2.5)
