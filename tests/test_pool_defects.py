"""
Regression tests of defects found when the pool was tried adversarially: each test states the
behaviour that the defect broke. Synchronous, on a clock, over fake endpoints.
"""

from __future__ import annotations

import gc
import weakref
from typing import Any

import pytest
from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import LogEvent, globalLogPublisher
from twisted.python.failure import Failure
from zope.interface import implementer

from txconnpool import ProtocolError, RequestTimeoutError, ServerUnavailableError
from txconnpool.interfaces import ICancellableRequests

from .helpers import Recorder, assertNoResult, failureOf, makePool, resultOf


class Blob:
    """
    A request argument that can be weakly referenced, to tell whether the pool holds it.
    """


def test_dispatchGoesOnAfterManyCancelledWaiters() -> None:
    """
    After a checkout and 33 queued requests that are all cancelled, releasing the checkout
    and making a new request sends it: dispatch never stops on the cancelled requests.
    """
    errors: list[LogEvent] = []
    globalLogPublisher.addObserver(
        lambda event: errors.append(event) if event.get("isError") else None
    )
    h = makePool(maxClients=1, maxRequestsPerClient=128)
    checkout = h.pool.acquire()
    proto = h.connect()
    assert resultOf(checkout) is proto
    waiting = [h.pool.performRequest("ask", i) for i in range(33)]
    for d in waiting:
        d.cancel()
        failureOf(d, CancelledError)
    h.pool.release(proto)
    d = h.pool.performRequest("ask", "x")
    assert proto.asked[-1][0] == "x"
    proto.answer()
    assert resultOf(d) == "x"
    assert h.pool.poolStats().waiting == 0
    assert errors == []


def test_shrinkingUnderSteadyPipelinedLoad() -> None:
    """
    suggestMaxClients(1) on a pool of 4 pipelined connections under steady load closes the
    surplus connections: they take no new requests, and close once their requests are done.
    """
    h = makePool(maxClients=4, maxRequestsPerClient=2)
    pending = [h.pool.performRequest("ask", i) for i in range(8)]
    protos = [h.connect() for _ in range(4)]
    assert h.pool.poolStats().busy == 4
    h.pool.suggestMaxClients(1)
    served = 0
    for _ in range(40):
        # Steady load: every answered request is replaced by a new one.
        for proto in protos:
            if proto.asked:
                proto.answer()
                served += 1
                pending.append(h.pool.performRequest("ask", served))
        h.clock.advance(0)
    stats = h.pool.poolStats()
    assert stats.busy + stats.idle + stats.connecting == 1
    assert stats.discarded.surplus == 3
    assert len(h.endpoint.attempts) == 4


def test_connectionBrokenBeforeProvenCountsAsFailedAttempt() -> None:
    """
    A new connection whose first request fails with a protocol error (a server at its
    connection limit answers with an error line) is a failed connection attempt: it counts,
    backs off, and after failFastAfter such failures requests fail fast.
    """
    h = makePool(maxClients=1, failFastAfter=2)
    d1 = h.pool.performRequest("ask", 1)
    proto = h.connect()
    proto.reject(ProtocolError("ERROR Too many open connections"))
    failureOf(d1, ProtocolError)
    stats = h.pool.poolStats()
    assert (stats.connectsFailed, stats.discarded.protocolError) == (1, 1)
    d2 = h.pool.performRequest("ask", 2)
    h.clock.advance(0)
    assert len(h.endpoint.attempts) == 1  # backing off
    h.clock.advance(1.0)
    proto2 = h.connect()
    proto2.reject(ProtocolError("ERROR Too many open connections"))
    failureOf(d2, ProtocolError)
    assert h.pool.poolStats().connectsFailed == 2
    failureOf(h.pool.performRequest("ask", 3), ServerUnavailableError)


def test_connectionClosedBeforeProvenAfterServerSpokeCountsAsFailedAttempt() -> None:
    """
    A new idle connection that the server closes after sending something unasked (an error
    line) counts as a failed attempt, so that minClients does not reconnect in a loop.
    """
    h = makePool(maxClients=1, minClients=1)
    proto = h.connect()
    attempt = h.attemptFor(proto)
    attempt.protocol.dataReceived(b"ERROR Too many open connections\r\n")
    attempt.lose()
    h.clock.advance(0)
    stats = h.pool.poolStats()
    assert stats.connectsFailed == 1
    assert len(h.endpoint.attempts) == 1
    h.clock.advance(1.0)
    assert len(h.endpoint.attempts) == 2


def test_protocolErrorIsCountedAsProtocolErrorDiscard() -> None:
    """
    A request failing with ProtocolError discards its connection for the reason
    protocolError, even when the protocol already dropped the connection.
    """
    h = makePool(maxClients=1)
    d = h.pool.performRequest("ask", 1)
    proto = h.connect()
    h.attemptFor(proto).transport.loseConnection()
    proto.reject(ProtocolError("garbage"))
    failureOf(d, ProtocolError)
    discarded = h.pool.poolStats().discarded
    assert (discarded.protocolError, discarded.lost) == (1, 0)


def test_cancelledWaitersAreNotKept() -> None:
    """
    Cancelled waiting requests are forgotten at once: the pool keeps no reference to them or
    to their arguments.
    """
    h = makePool(maxClients=1)
    first = h.pool.performRequest("ask", 0)
    h.connect()
    blobs = [Blob() for _ in range(30)]
    refs = [weakref.ref(blob) for blob in blobs]
    waiting = [h.pool.performRequest("ask", blob) for blob in blobs]
    del blobs
    for d in waiting:
        d.cancel()
        failureOf(d, CancelledError)
    del waiting, d
    gc.collect()
    assert [ref() for ref in refs] == [None] * 30
    assert h.pool.poolStats().waiting == 0
    assertNoResult(first)


@pytest.mark.parametrize(
    "policy",
    [lambda attempt: None, lambda attempt: 1 / 0, lambda attempt: -1.0, lambda attempt: "1"],
    ids=["returnsNone", "raises", "negative", "string"],
)
def test_badRetryPolicyFailsRequestsClearly(policy: Any) -> None:
    """
    A retryPolicy that raises or gives something other than a number of seconds makes the
    waiting requests fail with ServerUnavailableError naming retryPolicy, instead of hanging;
    the pool tries again later.
    """
    h = makePool(maxClients=1, retryPolicy=policy)
    d = h.pool.performRequest("ask", 1)
    h.endpoint.attempts[0].fail()
    f = failureOf(d, ServerUnavailableError)
    assert "retryPolicy(0)" in str(f.value)
    assert isinstance(f.value.__cause__, (TypeError, ValueError))
    h.clock.advance(10.0)
    later = h.pool.performRequest("ask", 2)
    h.connect()
    assert h.built[-1].asked[0][0] == 2
    h.built[-1].answer()
    assert resultOf(later) == 2


@pytest.mark.parametrize("bad", [-1, -0.5, float("nan")])
def test_negativeTimeoutsRefusedBeforeAnythingChanges(bad: float) -> None:
    """
    whenReady() and close() refuse a negative timeout with ValueError, and the pool is left
    as it was.
    """
    h = makePool(maxClients=1, minClients=1)
    with pytest.raises(ValueError, match="timeout"):
        h.pool.whenReady(bad)
    with pytest.raises(ValueError, match="timeout"):
        h.pool.close(timeout=bad)
    assert "closed" not in repr(h.pool)
    proto = h.connect()
    d = h.pool.performRequest("ask", 1)
    proto.answer()
    assert resultOf(d) == 1
    with pytest.raises(TypeError):
        h.pool.whenReady("1")  # type: ignore[arg-type]


@implementer(ICancellableRequests)
class Settling(Recorder):
    """
    A Recorder whose requests can be cancelled: cancelling one drops the connection and fails
    the others, as a protocol that cannot match late replies must.
    """

    def ask(self, value: Any) -> Deferred[Any]:
        d = Recorder.ask(self, value)
        d.__init__(self._cancel)  # type: ignore[misc]
        return d

    def _cancel(self, d: Deferred[Any]) -> None:
        self.asked = [(v, other) for v, other in self.asked if other is not d]
        assert self.transport is not None
        self.transport.abortConnection()
        d.errback(Failure(CancelledError()))


def test_directRequestGetsTheProtocolsDeferred() -> None:
    """
    A request sent at once on a protocol that settles its own Deferreds returns that very
    Deferred, which still counts in the statistics.
    """
    h = makePool(maxClients=1, protocolClass=Settling)
    first = h.pool.performRequest("ask", 1)
    proto = h.connect()
    proto.answer()
    assert resultOf(first) == 1
    d = h.pool.performRequest("ask", 2)
    assert proto.asked[0][1] is d
    proto.answer()
    assert resultOf(d) == 2
    assert h.pool.poolStats().requests == 2


def test_directRequestCancelledDiscardsConnection() -> None:
    """
    Cancelling a request sent at once on a protocol that settles its own Deferreds fails it
    with CancelledError and discards the connection, which the protocol dropped.
    """
    h = makePool(maxClients=1, protocolClass=Settling)
    first = h.pool.performRequest("ask", 1)
    proto = h.connect()
    proto.answer()
    resultOf(first)
    d = h.pool.performRequest("ask", 2)
    d.cancel()
    failureOf(d, CancelledError)
    h.clock.advance(0)
    stats = h.pool.poolStats()
    assert (stats.discarded.cancelled, stats.idle, stats.failedRequests) == (1, 0, 1)


def test_directRequestsCountInWaitAndRequestTimes() -> None:
    """
    Requests sent at once on a protocol that settles its own Deferreds count in waitTime with
    0, and in requestTime; a request that timed out does not count in requestTime.
    """
    h = makePool(maxClients=1, protocolClass=Settling, requestTimeout=2.0)
    first = h.pool.performRequest("ask", 1)
    proto = h.connect()
    proto.answer()
    resultOf(first)
    d = h.pool.performRequest("ask", 2)
    h.clock.advance(0.5)
    proto.answer()
    resultOf(d)
    stats = h.pool.poolStats()
    assert (stats.waitTime.count, stats.waitTime.max) == (2, 0.0)
    assert (stats.requestTime.count, stats.requestTime.max) == (2, 0.5)
    late = h.pool.performRequest("ask", 3)
    h.clock.advance(2.0)
    failureOf(late, RequestTimeoutError)
    assert h.pool.poolStats().requestTime.count == 2
