"""
A multiplexed pool (Pool.multiplexed) on a clock and a fake endpoint, with Twisted's AMP as
the protocol and an in-memory AMP server that answers when the test says, in any order:
replies out of order reach their requests, and a request cancelled or timed out in flight
leaves its connection in service while its late reply is dropped.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.testing import StringTransport
from twisted.protocols import amp

from tests.helpers import FakeReactor, assertNoResult, failureOf, resultOf
from txconnpool import Pool, PooledClientFactory, RequestTimeoutError
from txconnpool.testing import FakeConnectAttempt, FakeEndpoint


class Ask(amp.Command):
    arguments = [(b"tag", amp.Unicode())]
    response = [(b"tag", amp.Unicode())]


class HeldServer(amp.AMP):
    """
    An AMP server that answers each request only when the test calls L{answer}.
    """

    def __init__(self) -> None:
        super().__init__()
        self.held: dict[str, Deferred[dict[str, str]]] = {}

    @Ask.responder
    def ask(self, tag: str) -> Deferred[dict[str, str]]:
        self.held[tag] = Deferred()
        return self.held[tag]

    def answer(self, tag: str) -> None:
        self.held.pop(tag).callback({"tag": tag})


class AMPFactory(PooledClientFactory):
    protocol = amp.AMP


class AMPPool(Pool[amp.AMP]):
    clientFactory = AMPFactory
    multiplexed = True
    defaultMaxRequestsPerClient = 10

    def ask(self, tag: str) -> Deferred[Any]:
        return self.performRequest("callRemote", Ask, tag=tag)


class InOrderAMPPool(AMPPool):
    multiplexed = False


class Link:
    """
    A pooled AMP connection wired to a L{HeldServer} in memory.
    """

    def __init__(self, attempt: FakeConnectAttempt) -> None:
        attempt.succeed()
        self.attempt = attempt
        self.server = HeldServer()
        self.serverTransport = StringTransport()
        self.server.makeConnection(self.serverTransport)

    def pump(self) -> None:
        """
        Carry the bytes written each way until both sides are quiet.
        """
        client = self.attempt.transport
        assert client is not None
        while client.value() or self.serverTransport.value():
            toServer, toClient = client.value(), self.serverTransport.value()
            client.clear()
            self.serverTransport.clear()
            if toServer:
                self.server.dataReceived(toServer)
            if toClient and not client.lost:
                self.attempt.protocol.dataReceived(toClient)

    def answer(self, *tags: str) -> None:
        for tag in tags:
            self.server.answer(tag)
        self.pump()


def makePool(
    poolClass: type[AMPPool] = AMPPool, **options: Any
) -> tuple[AMPPool, FakeReactor, FakeEndpoint]:
    clock = FakeReactor()
    endpoint = FakeEndpoint(clock)
    options.setdefault("idleTimeout", None)
    pool = poolClass(endpoint, options.pop("maxClients", 1), reactor=clock, **options)
    return pool, clock, endpoint


def close(pool: AMPPool, clock: FakeReactor) -> None:
    closing = pool.close()
    clock.advance(0)
    assert resultOf(closing) is None
    assert clock.getDelayedCalls() == []


def test_repliesOutOfOrder() -> None:
    """
    Requests in flight together on one connection are answered in another order, and each
    fires with its own answer.
    """
    pool, clock, endpoint = makePool()
    calls = {tag: pool.ask(tag) for tag in "abcd"}
    link = Link(endpoint.attempts[0])
    link.pump()
    assert set(link.server.held) == set("abcd")
    order: list[str] = []
    for d in calls.values():
        d.addCallback(lambda answer: order.append(answer["tag"]) or answer)
    link.answer("c", "a", "d", "b")
    assert order == ["c", "a", "d", "b"]
    assert {tag: resultOf(d) for tag, d in calls.items()} == {t: {"tag": t} for t in "abcd"}
    stats = pool.poolStats()
    assert (stats.created, stats.idle, stats.busy) == (1, 1, 0)
    close(pool, clock)


def test_cancelInFlightKeepsTheConnection() -> None:
    """
    Cancelling a request in flight fails it with CancelledError and leaves its connection in
    service for the others; its late answer is dropped.
    """
    pool, clock, endpoint = makePool()
    kept, cancelled = pool.ask("kept"), pool.ask("cancelled")
    link = Link(endpoint.attempts[0])
    link.pump()
    cancelled.cancel()
    failureOf(cancelled, CancelledError)
    assert pool.poolStats().busy == 1
    later = pool.ask("later")
    link.pump()
    link.answer("cancelled", "later", "kept")
    assert resultOf(later) == {"tag": "later"}
    assert resultOf(kept) == {"tag": "kept"}
    stats = pool.poolStats()
    assert (stats.created, stats.closed, stats.idle, stats.failedRequests) == (1, 0, 1, 1)
    close(pool, clock)


def test_cancelOfTheOnlyRequestFreesTheConnection() -> None:
    """
    With one request per connection, cancelling the request in flight hands the connection
    to the next waiting request at once.
    """
    pool, clock, endpoint = makePool(maxRequestsPerClient=1)
    first, second = pool.ask("first"), pool.ask("second")
    link = Link(endpoint.attempts[0])
    link.pump()
    assert pool.poolStats().waiting == 1
    first.cancel()
    link.pump()
    assert set(link.server.held) == {"first", "second"}
    link.answer("second", "first")
    assert resultOf(second) == {"tag": "second"}
    failureOf(first, CancelledError)
    assert (pool.poolStats().closed, len(endpoint.attempts)) == (0, 1)
    close(pool, clock)


def test_cancelMakesRoomOnAFullConnection() -> None:
    """
    On a connection carrying maxRequestsPerClient requests, cancelling one in flight makes
    room for the oldest waiting request, sent on the same connection.
    """
    pool, clock, endpoint = makePool(maxRequestsPerClient=2)
    first, second, waiting = pool.ask("first"), pool.ask("second"), pool.ask("waiting")
    link = Link(endpoint.attempts[0])
    link.pump()
    assert set(link.server.held) == {"first", "second"}
    assert pool.poolStats().waiting == 1
    first.cancel()
    link.pump()
    assert set(link.server.held) == {"first", "second", "waiting"}
    link.answer("waiting", "first", "second")
    assert resultOf(waiting) == {"tag": "waiting"}
    assert resultOf(second) == {"tag": "second"}
    failureOf(first, CancelledError)
    assert (len(endpoint.attempts), pool.poolStats().closed) == (1, 0)
    close(pool, clock)


def test_requestTimeoutKeepsTheConnection() -> None:
    """
    A request without an answer within requestTimeout fails with RequestTimeoutError and
    its connection stays in service; the late answer is dropped.
    """
    pool, clock, endpoint = makePool(requestTimeout=2.0)
    slow = pool.ask("slow")
    link = Link(endpoint.attempts[0])
    link.pump()
    clock.advance(1)
    quick = pool.ask("quick")
    link.pump()
    clock.advance(1)
    failure = failureOf(slow, RequestTimeoutError)
    assert "dropped" not in str(failure.value)
    assertNoResult(quick)
    link.answer("slow", "quick")
    assert resultOf(quick) == {"tag": "quick"}
    stats = pool.poolStats()
    assert (stats.closed, stats.idle, stats.discarded.timeout) == (0, 1, 0)
    close(pool, clock)


def test_notMultiplexedDropsTheConnection() -> None:
    """
    The same cancellation on a pool that is not multiplexed closes the connection and fails
    the other request in flight with it.
    """
    pool, clock, endpoint = makePool(InOrderAMPPool)
    kept, cancelled = pool.ask("kept"), pool.ask("cancelled")
    link = Link(endpoint.attempts[0])
    link.pump()
    cancelled.cancel()
    clock.advance(0)
    stats = pool.poolStats()
    assert (stats.closed, stats.discarded.cancelled) == (1, 1)
    failureOf(kept)
    close(pool, clock)
