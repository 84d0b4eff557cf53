"""
Faults on the connection between a MemCachePool and a real memcached, made by a fault proxy:
slow, sliced and split replies, resets, closes, partial replies, garbage and replies of the
wrong type, unsolicited bytes, dropped connections and stale idle connections.
"""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, error
from twisted.python.failure import Failure

from tests.faults.proxy import FaultProxy
from tests.faults.support import (
    ObservedBackoff,
    errorNames,
    failureOf,
    later,
    outcomes,
    reactor,
)
from txconnpool import (
    ConnectionLostError,
    PoolTimeoutError,
    ProtocolError,
    RequestTimeoutError,
    ServerUnavailableError,
)
from txconnpool.memcache import (
    ClientError,
    MemCacheClientFactory,
    MemCachePool,
    UnknownCommandError,
)
from txconnpool.memcache.protocol import MemCacheProtocol


class ChunkRecordingProtocol(MemCacheProtocol):
    """
    A memcached protocol that records the size of every chunk of bytes it receives.
    """

    chunks: list[int] = []

    def dataReceived(self, data: bytes) -> None:
        ChunkRecordingProtocol.chunks.append(len(data))
        super().dataReceived(data)


class ChunkRecordingFactory(MemCacheClientFactory):
    protocol = ChunkRecordingProtocol


class ChunkRecordingPool(MemCachePool):
    clientFactory = ChunkRecordingFactory


class ShortTimeoutProtocol(MemCacheProtocol):
    """
    A memcached protocol whose own timeOut is 0.3 seconds instead of 60.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(0.3, **kwargs)


class ShortTimeoutFactory(MemCacheClientFactory):
    protocol = ShortTimeoutProtocol


class ShortTimeoutPool(MemCachePool):
    clientFactory = ShortTimeoutFactory


async def settledClients(proxy: FaultProxy, count: int) -> None:
    """
    Wait until the proxy has exactly C{count} client connections open.
    """
    await proxy.until(lambda: proxy.openClients == count)


@pytest_twisted.ensureDeferred
async def test_proxyPassesRepliesThrough(proxy: FaultProxy) -> None:
    """
    Through a fault proxy with no fault switched on, every command gives memcached's answer
    and the proxy sees exactly the pool's connections.
    """
    pool = MemCachePool(proxy.endpoint, maxClients=3, requestTimeout=2, maxRequestsPerClient=1)
    try:
        assert await pool.set(b"faults-pass", b"value") is True
        results = await outcomes([pool.get(b"faults-pass") for _ in range(30)])
        assert results == [(0, b"value")] * 30
        assert proxy.openClients == pool.poolStats().idle == 3
    finally:
        await pool.close()
    await settledClients(proxy, 0)
    assert proxy.accepted == 3


@pytest_twisted.ensureDeferred
async def test_replySplitAtEveryByteBoundary(proxy: FaultProxy) -> None:
    """
    A reply split in two at any byte, the second part arriving later, gives the same result
    on the same connection.
    """
    pool = ChunkRecordingPool(proxy.endpoint, maxClients=1, requestTimeout=2)
    reply = b"VALUE faults-split 5 12\r\nsplit\r\nvalue\r\nEND\r\n"
    try:
        assert await pool.set(b"faults-split", b"split\r\nvalue", flags=5) is True
        for at in range(1, len(reply)):
            ChunkRecordingProtocol.chunks = []
            proxy.splitNextReply(at, 0.005)
            assert await pool.get(b"faults-split") == (5, b"split\r\nvalue"), at
            assert ChunkRecordingProtocol.chunks == [at, len(reply) - at]
        stats = pool.poolStats()
        assert (stats.created, stats.closed, stats.failedRequests) == (1, 0, 0)
    finally:
        await pool.close()


@pytest_twisted.ensureDeferred
async def test_repliesInOneByteWrites(proxy: FaultProxy) -> None:
    """
    Replies written one byte at a time give every command its right result.
    """
    pool = ChunkRecordingPool(proxy.endpoint, maxClients=2, requestTimeout=5)
    try:
        assert await pool.set(b"faults-bytes", b"one\r\nbyte", flags=3) is True
        assert await pool.set(b"faults-count", b"41") is True
        proxy.sliceReplies = True
        ChunkRecordingProtocol.chunks = []
        before = proxy.delivered
        assert await pool.get(b"faults-bytes") == (3, b"one\r\nbyte")
        assert await pool.get(b"faults-bytes", withIdentifier=True) != (0, b"", None)
        assert await pool.getMultiple([b"faults-bytes", b"faults-absent"]) == {
            b"faults-bytes": (3, b"one\r\nbyte"),
            b"faults-absent": (0, None),
        }
        assert await pool.increment(b"faults-count") == 42
        assert await pool.set(b"faults-other", b"x") is True
        assert await pool.delete(b"faults-other") is True
        assert await pool.touch(b"faults-absent", 10) is False
        assert (await pool.version()).startswith(b"1.")
        assert b"pid" in await pool.stats()
        chunks = ChunkRecordingProtocol.chunks
        assert sum(chunks) == proxy.delivered - before > 1000
        assert max(chunks) <= 2
        assert chunks.count(1) >= 0.9 * sum(chunks)
        assert pool.poolStats().failedRequests == 0
    finally:
        await pool.close()


@pytest_twisted.ensureDeferred
async def test_latencyBelowRequestTimeout(proxy: FaultProxy) -> None:
    """
    Replies slower than usual but within requestTimeout are received, and no connection is
    replaced.
    """
    pool = MemCachePool(proxy.endpoint, maxClients=4, requestTimeout=1.0, maxRequestsPerClient=1)
    try:
        assert await pool.set(b"faults-slow", b"v") is True
        proxy.latency = 0.2
        started = reactor.seconds()
        results = await outcomes([pool.get(b"faults-slow") for _ in range(40)])
        assert results == [(0, b"v")] * 40
        assert reactor.seconds() - started >= 0.2 * 40 / 4
        stats = pool.poolStats()
        assert (stats.created, stats.closed, stats.failedRequests) == (4, 0, 0)
    finally:
        await pool.close()


@pytest_twisted.ensureDeferred
async def test_latencyAboveRequestTimeout(proxy: FaultProxy) -> None:
    """
    A reply slower than requestTimeout fails the request with RequestTimeoutError and drops
    its connection; once the server is fast again a new connection serves requests.
    """
    pool = MemCachePool(proxy.endpoint, maxClients=1, requestTimeout=0.2, maxRequestsPerClient=1)
    try:
        assert await pool.set(b"faults-slower", b"v") is True
        proxy.latency = 0.5
        started = reactor.seconds()
        failure = await failureOf(pool.get(b"faults-slower"))
        assert failure.check(RequestTimeoutError)
        assert failure.check(PoolTimeoutError)
        assert 0.2 <= reactor.seconds() - started < 0.5
        assert "within 0.2s" in failure.getErrorMessage()
        await settledClients(proxy, 0)
        proxy.latency = 0.0
        assert await pool.get(b"faults-slower") == (0, b"v")
        stats = pool.poolStats()
        assert (stats.created, stats.closed, stats.busy, stats.idle) == (2, 1, 0, 1)
    finally:
        await pool.close()


@pytest_twisted.ensureDeferred
async def test_protocolTimeoutWithoutRequestTimeout(proxy: FaultProxy) -> None:
    """
    With requestTimeout None, the memcached protocol's own timeOut fails a request that
    receives nothing with Twisted's TimeoutError and drops its connection.
    """
    pool = ShortTimeoutPool(proxy.endpoint, maxClients=1)
    try:
        assert await pool.set(b"faults-protocol-timeout", b"v") is True
        proxy.stall()
        started = reactor.seconds()
        failure = await failureOf(pool.get(b"faults-protocol-timeout"))
        assert type(failure.value) is defer.TimeoutError
        assert reactor.seconds() - started >= 0.3
        await settledClients(proxy, 0)
        proxy.resume()
        assert await pool.get(b"faults-protocol-timeout") == (0, b"v")
        stats = pool.poolStats()
        assert (stats.created, stats.closed, stats.failedRequests) == (2, 1, 1)
    finally:
        await pool.close()


@pytest_twisted.ensureDeferred
async def test_resetInFlight(proxy: FaultProxy) -> None:
    """
    A connection reset while a request is in flight: an idempotent request is sent once more
    on a new connection and succeeds; a non-idempotent one fails with ConnectionLostError and
    is not sent again.
    """
    pool = MemCachePool(proxy.endpoint, maxClients=1, requestTimeout=2, maxRequestsPerClient=1)
    try:
        assert await pool.set(b"faults-reset", b"10") is True
        proxy.resetOnRequest()
        assert await pool.get(b"faults-reset") == (0, b"10")
        assert proxy.requests == 3
        proxy.resetOnRequest()
        failure = await failureOf(pool.increment(b"faults-reset"))
        assert failure.check(ConnectionLostError)
        assert isinstance(failure.value.__cause__, error.ConnectionClosed)
        assert proxy.requests == 4
        assert await pool.get(b"faults-reset") == (0, b"10")
        stats = pool.poolStats()
        assert (stats.created, stats.closed, stats.idle, stats.busy) == (3, 2, 1, 0)
        await settledClients(proxy, 1)
    finally:
        await pool.close()


@pytest_twisted.ensureDeferred
async def test_resetWhileIdle(proxy: FaultProxy) -> None:
    """
    Idle connections that are reset are never handed out: the next requests run on new
    connections and succeed.
    """
    pool = MemCachePool(proxy.endpoint, maxClients=2, requestTimeout=2, maxRequestsPerClient=1)
    try:
        warm = await outcomes([pool.set(b"faults-idle-reset", b"v"), pool.version()])
        assert warm[0] is True
        assert pool.poolStats().idle == 2
        proxy.resetAll()
        await settledClients(proxy, 0)
        results = await outcomes([pool.get(b"faults-idle-reset") for _ in range(10)])
        assert results == [(0, b"v")] * 10
        stats = pool.poolStats()
        assert (stats.created, stats.closed, stats.failedRequests) == (4, 2, 0)
    finally:
        await pool.close()


@pytest_twisted.ensureDeferred
async def test_staleIdleConnections(proxy: FaultProxy) -> None:
    """
    Requests handed idle connections that the server has just closed: an idempotent one is
    retried once on a new connection and succeeds, a non-idempotent one fails with
    ConnectionLostError without reaching the server.
    """
    pool = MemCachePool(proxy.endpoint, maxClients=2, requestTimeout=2, maxRequestsPerClient=1)
    try:
        warm = await outcomes([pool.set(b"faults-stale", b"5"), pool.version()])
        assert warm[0] is True
        assert pool.poolStats().idle == 2
        proxy.closeAll()
        get = pool.get(b"faults-stale")
        increment = pool.increment(b"faults-stale")
        assert pool.poolStats().busy == 2
        assert await get == (0, b"5")
        failure = await failureOf(increment)
        assert failure.check(ConnectionLostError)
        assert await pool.get(b"faults-stale") == (0, b"5")
        stats = pool.poolStats()
        assert (stats.closed, stats.failedRequests) == (2, 1)
    finally:
        await pool.close()


@pytest_twisted.ensureDeferred
async def test_staleIdleConnectionsWithValidation(proxy: FaultProxy) -> None:
    """
    With validateAfterIdle, idle connections that the server has closed are pinged before
    they are handed out and discarded, so that even a non-idempotent request succeeds on a
    new connection.
    """
    pool = MemCachePool(
        proxy.endpoint,
        maxClients=2,
        requestTimeout=2,
        validateAfterIdle=0.05,
        maxRequestsPerClient=1,
    )
    try:
        warm = await outcomes([pool.set(b"faults-validated", b"5"), pool.version()])
        assert warm[0] is True
        assert pool.poolStats().idle == 2
        await later(0.1)
        proxy.closeAll()
        results = await outcomes(
            [pool.get(b"faults-validated"), pool.increment(b"faults-validated")]
        )
        assert results[0] in ((0, b"5"), (0, b"6"))
        assert results[1] == 6
        stats = pool.poolStats()
        assert (stats.closed, stats.failedRequests) == (2, 0)
    finally:
        await pool.close()


@pytest_twisted.ensureDeferred
async def test_validateAfterIdleZero(proxy: FaultProxy) -> None:
    """
    With validateAfterIdle 0, every request given an idle connection is preceded by a ping,
    and then runs on that connection.
    """
    pool = MemCachePool(
        proxy.endpoint, maxClients=1, requestTimeout=2, validateAfterIdle=0, maxRequestsPerClient=1
    )
    try:
        assert await outcomes([pool.set(b"faults-validate-zero", b"v")], deadline=3) == [True]
        sent = proxy.requests
        assert await outcomes([pool.get(b"faults-validate-zero")], deadline=3) == [(0, b"v")]
        assert proxy.requests - sent == 2
    finally:
        await pool.close(timeout=0)


@pytest_twisted.ensureDeferred
async def test_partialReplyThenClose(proxy: FaultProxy) -> None:
    """
    A connection closed after part of a reply fails the request with ConnectionLostError,
    even an idempotent one, which is not sent again since the server answered it.
    """
    pool = MemCachePool(proxy.endpoint, maxClients=1, requestTimeout=2, maxRequestsPerClient=1)
    try:
        assert await pool.set(b"faults-partial", b"0123456789") is True
        sent = proxy.requests
        proxy.closeAfter(15)
        failure = await failureOf(pool.get(b"faults-partial"))
        assert failure.check(ConnectionLostError)
        assert proxy.requests == sent + 1
        await settledClients(proxy, 0)
        assert await pool.get(b"faults-partial") == (0, b"0123456789")
        stats = pool.poolStats()
        assert (stats.created, stats.closed, stats.failedRequests) == (2, 1, 1)
    finally:
        await pool.close()


@pytest_twisted.ensureDeferred
async def test_partialReplyThenSilence(proxy: FaultProxy) -> None:
    """
    A server that sends part of a reply and then nothing fails the request with
    RequestTimeoutError after requestTimeout and its connection is closed.
    """
    pool = MemCachePool(proxy.endpoint, maxClients=1, requestTimeout=0.3, maxRequestsPerClient=1)
    try:
        assert await pool.set(b"faults-silent", b"0123456789") is True
        proxy.silenceAfter(15)
        started = reactor.seconds()
        failure = await failureOf(pool.get(b"faults-silent"))
        assert failure.check(RequestTimeoutError)
        assert reactor.seconds() - started >= 0.3
        await settledClients(proxy, 0)
        assert await pool.get(b"faults-silent") == (0, b"0123456789")
        stats = pool.poolStats()
        assert (stats.created, stats.closed, stats.failedRequests) == (2, 1, 1)
    finally:
        await pool.close()


WRONG_REPLIES = [
    ("get", b"GARBAGE\r\n"),
    ("get", b"\x00\xff\xfe binary noise\r\n"),
    ("get", b"STORED\r\n"),
    ("get", b"VALUE another-key 0 1\r\nx\r\nEND\r\n"),
    ("get", b"VALUE faults-wrong 0 99999999\r\n"),
    ("get", b"VALUE faults-wrong 0 3\r\nabcdef\r\nEND\r\n"),
    ("get", b"X" * 5000),
    ("set", b"END\r\n"),
    ("increment", b"VALUE faults-wrong 0 1\r\n1\r\nEND\r\n"),
    ("delete", b"TOUCHED\r\n"),
    ("version", b"OK\r\n"),
]


@pytest.mark.parametrize("method, reply", WRONG_REPLIES)
@pytest_twisted.ensureDeferred
async def test_garbageOrWrongTypeReply(proxy: FaultProxy, method: str, reply: bytes) -> None:
    """
    A garbage reply, or one that does not fit its command, fails that request with
    ProtocolError and drops its connection; requests on other connections and later ones
    succeed.
    """
    pool = MemCachePool(proxy.endpoint, maxClients=2, requestTimeout=2, maxRequestsPerClient=1)
    calls: dict[str, Any] = {
        "get": lambda: pool.get(b"faults-wrong"),
        "set": lambda: pool.set(b"faults-wrong", b"7"),
        "increment": lambda: pool.increment(b"faults-wrong"),
        "delete": lambda: pool.delete(b"faults-absent"),
        "version": lambda: pool.version(),
    }
    try:
        warm = await outcomes([pool.set(b"faults-wrong", b"7"), pool.version()])
        assert warm[0] is True
        assert proxy.openClients == 2
        other = pool.get(b"faults-wrong")
        await proxy.nextRequest()
        proxy.replyWith(reply)
        faulty: defer.Deferred[Any] = calls[method]()
        failure = await failureOf(faulty)
        assert failure.check(ProtocolError), failure
        assert await other == (0, b"7")
        await settledClients(proxy, 1)
        results = await outcomes([pool.get(b"faults-wrong") for _ in range(10)])
        assert results == [(0, b"7")] * 10
        stats = pool.poolStats()
        assert (stats.closed, stats.failedRequests) == (1, 1)
    finally:
        await pool.close()


@pytest_twisted.ensureDeferred
async def test_unsolicitedBytesOnIdleConnection(proxy: FaultProxy) -> None:
    """
    Bytes the server sends to an idle connection, unasked, drop that connection; it is
    never handed out again.
    """
    pool = MemCachePool(proxy.endpoint, maxClients=1, requestTimeout=2, maxRequestsPerClient=1)
    try:
        assert await pool.set(b"faults-unsolicited", b"v") is True
        proxy.inject(b"STORED\r\n")
        await settledClients(proxy, 0)
        assert await pool.get(b"faults-unsolicited") == (0, b"v")
        stats = pool.poolStats()
        assert (stats.created, stats.closed, stats.failedRequests) == (2, 1, 0)
    finally:
        await pool.close()


@pytest_twisted.ensureDeferred
async def test_garbageWithPipelinedRequests(proxy: FaultProxy) -> None:
    """
    With maxRequestsPerClient above 1, garbage on a connection fails every request in flight
    on it with ProtocolError (none is sent again), and later requests succeed.
    """
    pool = MemCachePool(proxy.endpoint, maxClients=1, maxRequestsPerClient=10, requestTimeout=2)
    try:
        assert await pool.set(b"faults-pipelined", b"v") is True
        proxy.replyWith(b"GARBAGE\r\n")
        sent = proxy.requests
        pending = [pool.get(b"faults-pipelined") for _ in range(5)]
        assert pool.poolStats().busy == 1
        results = await outcomes(pending)
        assert errorNames(results) == {"ProtocolError"}
        assert all(isinstance(r, Failure) for r in results)
        await settledClients(proxy, 0)
        assert await pool.get(b"faults-pipelined") == (0, b"v")
        assert proxy.requests - sent <= 6
        stats = pool.poolStats()
        assert (stats.created, stats.closed, stats.failedRequests) == (2, 1, 5)
    finally:
        await pool.close()


@pytest_twisted.ensureDeferred
async def test_extraReplyAfterACompleteOne(proxy: FaultProxy) -> None:
    """
    A reply followed by an extra one gives the request its result and drops the
    connection, so the extra reply never answers a later request.
    """
    pool = MemCachePool(proxy.endpoint, maxClients=1, requestTimeout=2, maxRequestsPerClient=1)
    try:
        assert await pool.set(b"faults-extra", b"v") is True
        proxy.replyWith(b"STORED\r\nSTORED\r\n")
        assert await pool.set(b"faults-extra", b"w") is True
        await settledClients(proxy, 0)
        assert await pool.get(b"faults-extra") == (0, b"v")
        stats = pool.poolStats()
        assert (stats.created, stats.closed, stats.failedRequests) == (2, 1, 0)
    finally:
        await pool.close()


@pytest_twisted.ensureDeferred
async def test_extraReplyNeverAnswersAQueuedRequest(proxy: FaultProxy) -> None:
    """
    An extra reply that arrives together with a request's reply is never taken as the reply
    of the request queued behind it, which the pool sends on the same connection.
    """
    pool = MemCachePool(proxy.endpoint, maxClients=1, requestTimeout=2, maxRequestsPerClient=1)
    try:
        assert await pool.set(b"faults-extra-counter", b"1") is True
        proxy.replyWith(b"STORED\r\n42\r\n")
        store = pool.set(b"faults-extra", b"w")
        queued = pool.increment(b"faults-extra-counter")
        stored, incremented = await outcomes([store, queued])
        assert stored is True
        assert incremented != 42
        assert incremented == 2 or isinstance(incremented, Failure), incremented
    finally:
        await pool.close()


@pytest.mark.parametrize(
    "reply, errorType",
    [(b"CLIENT_ERROR bad data chunk\r\n", ClientError), (b"ERROR\r\n", UnknownCommandError)],
)
@pytest_twisted.ensureDeferred
async def test_errorToStorageCommandKeepsLaterRequests(
    proxy: FaultProxy, reply: bytes, errorType: type[Exception]
) -> None:
    """
    A CLIENT_ERROR or ERROR reply to a storage command fails it with its typed error and
    drops its connection; a request queued behind it is sent on a new connection and
    succeeds.
    """
    pool = MemCachePool(proxy.endpoint, maxClients=1, requestTimeout=2, maxRequestsPerClient=1)
    try:
        assert await pool.set(b"faults-client-error", b"1") is True
        proxy.replyWith(reply)
        store = pool.set(b"faults-client-error", b"2")
        queued = pool.increment(b"faults-client-error")
        failure = await failureOf(store)
        assert failure.check(errorType)
        assert await outcomes([queued]) == [2]
        await settledClients(proxy, 1)
        stats = pool.poolStats()
        assert (stats.created, stats.closed, stats.failedRequests) == (2, 1, 1)
    finally:
        await pool.close()


ERROR_REPLIES = [
    ("set", b"SERVER_ERROR out of memory storing object\r\n", "ServerError"),
    ("get", b"SERVER_ERROR temporary failure\r\n", "ServerError"),
    ("get", b"ERROR\r\n", "UnknownCommandError"),
    (
        "increment",
        b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n",
        "ClientError",
    ),
]


@pytest.mark.parametrize("method, reply, errorName", ERROR_REPLIES)
@pytest_twisted.ensureDeferred
async def test_errorReplyKeepsTheConnection(
    proxy: FaultProxy, method: str, reply: bytes, errorName: str
) -> None:
    """
    An error reply that leaves the connection in step (SERVER_ERROR, or ERROR and
    CLIENT_ERROR to a command without a data block) fails the request with its typed
    error and keeps the connection in the pool.
    """
    pool = MemCachePool(proxy.endpoint, maxClients=1, requestTimeout=2, maxRequestsPerClient=1)
    calls: dict[str, Any] = {
        "get": lambda: pool.get(b"faults-error-reply"),
        "set": lambda: pool.set(b"faults-error-reply", b"w"),
        "increment": lambda: pool.increment(b"faults-error-reply"),
    }
    try:
        assert await pool.set(b"faults-error-reply", b"v") is True
        proxy.replyWith(reply)
        failure = await failureOf(calls[method]())
        assert type(failure.value).__name__ == errorName
        assert await pool.get(b"faults-error-reply") == (0, b"v")
        stats = pool.poolStats()
        assert (stats.created, stats.closed, stats.failedRequests) == (1, 0, 1)
        assert proxy.openClients == proxy.accepted == 1
    finally:
        await pool.close()


@pytest_twisted.ensureDeferred
async def test_newConnectionsDropped(proxy: FaultProxy) -> None:
    """
    A server that resets every new connection: the request fails with a typed error after
    failFastAfter attempts, new requests then fail fast with ServerUnavailableError, and
    once connections are accepted again the first request after the backoff succeeds.
    """
    policy = ObservedBackoff(lambda attempt: 0.1)
    pool = MemCachePool(
        proxy.endpoint,
        maxClients=2,
        requestTimeout=2,
        failFastAfter=2,
        retryPolicy=policy,
        maxRequestsPerClient=1,
    )
    try:
        proxy.dropNew = True
        failure = await failureOf(pool.get(b"faults-dropped"))
        assert failure.check(ConnectionLostError, ServerUnavailableError), failure
        assert len(policy.delays) == 2
        assert proxy.accepted == 2
        fast = pool.get(b"faults-dropped")
        assert fast.called
        assert (await failureOf(fast)).check(ServerUnavailableError)
        proxy.dropNew = False
        await policy.due()
        assert await pool.get(b"faults-dropped") == (0, None)
        stats = pool.poolStats()
        assert (stats.busy, stats.idle, stats.connecting, stats.waiting) == (0, 1, 0, 0)
    finally:
        await pool.close()
