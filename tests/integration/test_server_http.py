"""
The limiter in front of a real C{twisted.web} Site: 503 overflow read with treq, queue timeout,
and the order in which idle keep-alive connections are reaped.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest_twisted
import treq
from twisted.internet import defer, reactor
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from tests.server_support.net import (
    ClientProtocol,
    ObservedLimiter,
    arrive,
    closeClient,
    limiterEvents,
    tcpClient,
)
from txconnpool.server import ServiceUnavailableFactory

Gen = Generator[Any, Any, Any]


class Page(Resource):
    """
    Says hello; holds C{/slow} open until released; announces the keep-alive given in the
    C{ka} query argument.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.held: list[Request] = []
        self.nextHeld: defer.Deferred[Request] = defer.Deferred()

    def render_GET(self, request: Request) -> bytes | int:
        keepAlive = request.args.get(b"ka")
        if keepAlive:
            request.setHeader(b"keep-alive", b"timeout=" + keepAlive[0])
        if request.path == b"/slow":
            self.held.append(request)
            waiter, self.nextHeld = self.nextHeld, defer.Deferred()
            waiter.callback(request)
            return NOT_DONE_YET
        return b"hello"


def httpClient() -> tuple[treq.client.HTTPClient, HTTPConnectionPool]:
    pool = HTTPConnectionPool(reactor, persistent=False)
    return treq.client.HTTPClient(Agent(reactor, pool=pool)), pool


@pytest_twisted.inlineCallbacks
def test_queueFullGets503WithRetryAfter() -> Gen:
    """
    With the slot busy and maxQueued=0, a treq request is answered 503 with Retry-After by the
    overflow protocol, and the busy request still completes.
    """
    page = Page()
    limiter = ObservedLimiter(
        Site(page), 1, maxQueued=0, overflowFactory=ServiceUnavailableFactory(retryAfter=3)
    )
    port = reactor.listenTCP(0, limiter, interface="127.0.0.1")
    client, pool = httpClient()
    try:
        base = f"http://127.0.0.1:{port.getHost().port}"
        held = page.nextHeld
        slow = client.get(base + "/slow")
        request = yield held
        response = yield client.get(base + "/")
        assert response.code == 503
        assert response.headers.getRawHeaders("retry-after") == ["3"]
        assert b"busy" in (yield response.content())
        request.write(b"done")
        request.finish()
        slowResponse = yield slow
        assert slowResponse.code == 200
        assert (yield slowResponse.content()) == b"done"
        stats = limiter.stats()
        assert (stats.overflowed, stats.served) == (1, 1)
    finally:
        yield pool.closeCachedConnections()
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_queueTimeoutGets503() -> Gen:
    """
    A request that waited queueTimeout seconds for the busy slot is answered 503 and counted
    as timed out while queued.
    """
    page = Page()
    limiter = ObservedLimiter(
        Site(page), 1, queueTimeout=0.2, overflowFactory=ServiceUnavailableFactory()
    )
    port = reactor.listenTCP(0, limiter, interface="127.0.0.1")
    client, pool = httpClient()
    try:
        base = f"http://127.0.0.1:{port.getHost().port}"
        held = page.nextHeld
        slow = client.get(base + "/slow")
        request = yield held
        started = reactor.seconds()
        response = yield client.get(base + "/")
        assert response.code == 503
        assert reactor.seconds() - started >= 0.2
        yield response.content()
        assert limiter.stats().timedOutQueued == 1
        request.finish()
        assert (yield slow).code == 200
    finally:
        yield pool.closeCachedConnections()
        yield port.stopListening()


class HTTPClientProtocol(ClientProtocol):
    """
    A keep-alive HTTP/1.1 client speaking raw bytes.
    """

    def get(self, path: str) -> defer.Deferred[bytes]:
        """
        Send a GET; the Deferred fires once the response's body C{hello} has arrived.
        """
        expected = self.received.count(b"hello") + 1
        self.transport.write(  # type: ignore[union-attr]
            f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        )
        return self.receivedContaining(b"hello", expected)


@pytest_twisted.inlineCallbacks
def test_reapingOrderShortKeepAliveThenOldestIdleNeverMidRequest() -> Gen:
    """
    With every slot taken, waiting clients make idle keep-alive connections give way: the one
    that announced the shorter keep-alive first, then the one idle longest; a connection in
    the middle of a request is never closed.
    """
    page = Page()
    limiter = ObservedLimiter(Site(page, timeout=60), 3, reapIdleAfter=0)
    port = reactor.listenTCP(0, limiter, interface="127.0.0.1")
    number = port.getHost().port

    def connect() -> defer.Deferred[Any]:
        return arrive(limiter, tcpClient("127.0.0.1", number, protocol=HTTPClientProtocol))

    try:
        with limiterEvents() as waitFor:
            longKeepAlive = yield connect()
            yield longKeepAlive.get("/?ka=60")
            shortKeepAlive = yield connect()
            yield shortKeepAlive.get("/?ka=5")
            midRequest = yield connect()
            held = page.nextHeld
            midRequest.transport.write(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
            request = yield held

            fourth = yield connect()
            yield shortKeepAlive.lost
            assert not longKeepAlive.lost.called and not midRequest.lost.called
            yield fourth.get("/")

            fifth = yield connect()
            yield longKeepAlive.lost
            assert not midRequest.lost.called and not fourth.lost.called
            yield fifth.get("/")
            events = yield waitFor("closing", 2)
            assert [e["reason"] for e in events] == ["reaped", "reaped"]

        request.finish()
        assert b"HTTP/1.1 200" in (yield midRequest.receivedContaining(b"\r\n\r\n", 1))
        assert limiter.stats().reaped == 2
        for client in (midRequest, fourth, fifth):
            yield closeClient(client)
    finally:
        yield port.stopListening()
