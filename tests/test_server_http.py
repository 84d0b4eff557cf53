"""
Synchronous tests of the limiter in front of C{twisted.web}: the HTTP probe (idle only between
requests, keep-alive durations, slow requests) and the 503 overflow protocol.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from tests.server_support import QUIET, Client, RecordingFactory, connect
from txconnpool.server import (
    HTTPChannelProbe,
    IConnectionProbe,
    LimitConnectionsFactory,
    ServiceUnavailableFactory,
)


class Page(Resource):
    """
    Answers at once, or holds the request open when the path is C{/slow}, and announces the
    keep-alive given in the C{ka} query argument.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.held: list[Request] = []

    def render_GET(self, request: Request) -> bytes | int:
        keepAlive = request.args.get(b"ka")
        if keepAlive:
            request.setHeader(b"keep-alive", b"timeout=" + keepAlive[0])
        if request.path == b"/slow":
            self.held.append(request)
            return NOT_DONE_YET
        return b"hello"

    def render_POST(self, request: Request) -> bytes:
        return b"got %d bytes" % (len(request.content.read()),)


def makeSiteLimiter(
    maxConnections: int, **kwargs: object
) -> tuple[LimitConnectionsFactory, Page, Clock]:
    """
    A limiter in front of a Site, with the time-based features off but those in C{kwargs}.
    """
    clock = Clock()
    page = Page()
    site = Site(page, reactor=clock, timeout=120)
    options = {**QUIET, **kwargs}
    limiter = LimitConnectionsFactory(site, maxConnections, reactor=clock, **options)  # type: ignore[arg-type]
    return limiter, page, clock


def probeOf(client: Client) -> IConnectionProbe:
    probe = client.wrapper.probe
    assert probe is not None
    return probe


def test_httpProbeAdaptsSiteChannel() -> None:
    """
    A connection served by a Site is probed by HTTPChannelProbe.
    """
    limiter, _, _ = makeSiteLimiter(1, idleTimeout=60)
    (client,) = connect(limiter, 1)
    assert isinstance(probeOf(client), HTTPChannelProbe)
    client.transport.clientLeaves()


def test_httpIdleOnlyBetweenRequests() -> None:
    """
    An HTTP connection is busy from the first byte of a request until its response is
    finished, and idle before and after.
    """
    limiter, page, _ = makeSiteLimiter(1, idleTimeout=60)
    (client,) = connect(limiter, 1)
    probe = probeOf(client)
    assert probe.isIdle() and not probe.isReceivingRequest()
    client.send(b"GET /sl")
    assert not probe.isIdle() and probe.isReceivingRequest()
    client.send(b"ow HTTP/1.1\r\nHost: x\r\n")
    assert not probe.isIdle() and probe.isReceivingRequest()
    client.send(b"\r\n")
    assert not probe.isIdle() and not probe.isReceivingRequest()
    page.held[0].write(b"partial")
    assert not probe.isIdle()
    page.held[0].finish()
    assert probe.isIdle() and not probe.isReceivingRequest()
    assert client.transport.value().startswith(b"HTTP/1.1 200 OK")
    client.transport.clientLeaves()


def test_httpKeepAliveFromResponseThenRequestThenSite() -> None:
    """
    The keep-alive duration is the one the response announced, else the one the request asked
    for, else the Site's timeout.
    """
    limiter, _, _ = makeSiteLimiter(1, idleTimeout=60)
    (client,) = connect(limiter, 1)
    probe = probeOf(client)
    assert probe.keepAliveTimeout() == 120.0
    client.send(b"GET /?ka=7 HTTP/1.1\r\nHost: x\r\nKeep-Alive: timeout=30\r\n\r\n")
    assert probe.keepAliveTimeout() == 7.0
    client.send(b"GET / HTTP/1.1\r\nHost: x\r\nKeep-Alive: 300\r\n\r\n")
    assert probe.keepAliveTimeout() == 300.0
    client.transport.clientLeaves()


def test_httpKeepAliveForms() -> None:
    """
    Keep-Alive values are read in the timeout=N form, with other parameters around it and any
    case, and in the older bare-number form; a value without a duration is ignored.
    """
    forms = [
        (b"timeout=5, max=100", 5.0),
        (b"max=100; Timeout = 2.5", 2.5),
        (b"115", 115.0),
        (b"max=100", 120.0),
    ]
    limiter, _, _ = makeSiteLimiter(1, idleTimeout=60)
    (client,) = connect(limiter, 1)
    probe = probeOf(client)
    for value, expected in forms:
        client.send(b"GET / HTTP/1.1\r\nHost: x\r\nKeep-Alive: " + value + b"\r\n\r\n")
        assert probe.keepAliveTimeout() == expected, value
    client.transport.clientLeaves()


def test_httpMidRequestNeverReaped() -> None:
    """
    An HTTP connection in the middle of a request is not reaped even when it has been silent
    longest; an idle keep-alive connection is reaped instead.
    """
    limiter, page, clock = makeSiteLimiter(2, reapIdleAfter=1)
    midRequest, keptAlive = connect(limiter, 2)
    midRequest.send(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    clock.advance(5)
    keptAlive.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    clock.advance(5)
    (waiting,) = connect(limiter, 1)
    assert keptAlive.transport.disconnecting
    assert not midRequest.transport.disconnecting
    keptAlive.transport.finishClose()
    assert waiting.served is not None
    page.held[0].finish()


def test_httpShortKeepAliveReapedFirst() -> None:
    """
    Between two idle HTTP connections, the one whose response announced the shorter
    keep-alive is reaped first, even though the other has been idle longer.
    """
    limiter, _, clock = makeSiteLimiter(2, reapIdleAfter=1)
    longer, shorter = connect(limiter, 2)
    longer.send(b"GET /?ka=60 HTTP/1.1\r\nHost: x\r\n\r\n")
    clock.advance(3)
    shorter.send(b"GET /?ka=5 HTTP/1.1\r\nHost: x\r\n\r\n")
    clock.advance(3)
    connect(limiter, 1)
    assert shorter.transport.disconnecting
    assert not longer.transport.disconnecting


def test_httpSlowlorisHeadersClosed() -> None:
    """
    An HTTP client sending its headers a byte at a time is closed once requestTimeout has
    passed since the request's first byte, although it never stays silent.
    """
    limiter, _, clock = makeSiteLimiter(1, requestTimeout=10, idleTimeout=5)
    (client,) = connect(limiter, 1)
    for byte in b"GET / HTTP/1.1\r\nX-a: bbbbbbbbbbbbbb":
        if client.transport.disconnecting:
            break
        client.send(bytes([byte]))
        clock.advance(1)
    assert client.transport.disconnecting
    assert limiter.stats().requestTimedOut == 1
    assert limiter.stats().idleClosed == 0


def test_httpHeadDeadline() -> None:
    """
    With headerTimeout, a request's head must arrive within that many seconds of its first
    byte: a client trickling its headers is closed then and counted as a header timeout.
    """
    limiter, _, clock = makeSiteLimiter(1, headerTimeout=10, idleTimeout=5)
    (client,) = connect(limiter, 1)
    client.send(b"GET / HTTP/1.1\r\n")
    for byte in b"X-Slow: " + b"b" * 20:
        if client.transport.disconnecting:
            break
        clock.advance(1)
        client.send(bytes([byte]))
    assert client.transport.disconnecting
    assert client.transport.value() == b""
    stats = limiter.stats()
    assert (stats.headerTimedOut, stats.requestTimedOut, stats.idleClosed) == (1, 0, 0)


def test_httpHeadDeadlineSparesSlowBodyAndIdleGaps() -> None:
    """
    The head deadline covers only a request's head: a body arriving slowly after prompt
    headers, and the silence between requests, are not cut off by it.
    """
    limiter, _, clock = makeSiteLimiter(1, headerTimeout=2)
    (client,) = connect(limiter, 1)
    client.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\n\r\n")
    for _ in range(20):
        clock.advance(1)
        client.send(b"z")
    assert client.transport.value().startswith(b"HTTP/1.1 200 OK")
    assert client.transport.value().endswith(b"got 20 bytes")
    clock.advance(60)
    client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert client.transport.value().count(b"HTTP/1.1 200 OK") == 2
    assert not client.transport.disconnecting
    assert limiter.stats().headerTimedOut == 0
    client.transport.clientLeaves()
    assert clock.getDelayedCalls() == []


def test_httpSlowResponseNotIdleClosed() -> None:
    """
    An HTTP connection whose response the server is still working on is not closed by the
    idle timeout.
    """
    limiter, page, clock = makeSiteLimiter(1, idleTimeout=5)
    (client,) = connect(limiter, 1)
    client.send(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    clock.advance(60)
    assert not client.transport.disconnecting
    page.held[0].finish()
    clock.advance(5)
    assert client.transport.disconnecting
    assert limiter.stats().idleClosed == 1


def test_serviceUnavailableAfterHeaders() -> None:
    """
    The overflow protocol reads the request's headers, answers 503 with Retry-After and
    Connection: close, and closes its writing side.
    """
    clock = Clock()
    overflow = ServiceUnavailableFactory(retryAfter=7, reactor=clock)
    limiter = LimitConnectionsFactory(
        RecordingFactory(), 1, maxQueued=0, overflowFactory=overflow, reactor=clock, **QUIET
    )
    _, refused = connect(limiter, 2)
    refused.send(b"GET / HTTP/1.1\r\nHo")
    assert refused.transport.value() == b""
    refused.send(b"st: x\r\n\r\n")
    response = refused.transport.value()
    assert response.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert b"\r\nRetry-After: 7\r\n" in response
    assert b"\r\nConnection: close\r\n" in response
    assert refused.transport.disconnecting
    refused.transport.finishClose()
    assert clock.getDelayedCalls() == []
    assert limiter.stats().overflowed == 1


def test_serviceUnavailableAnswersSilentClientAfterReadTimeout() -> None:
    """
    A refused client that sends nothing still gets the 503 once readTimeout has passed.
    """
    clock = Clock()
    overflow = ServiceUnavailableFactory(readTimeout=2, reactor=clock)
    limiter = LimitConnectionsFactory(
        RecordingFactory(), 1, maxQueued=0, overflowFactory=overflow, reactor=clock, **QUIET
    )
    _, refused = connect(limiter, 2)
    clock.advance(2)
    assert refused.transport.value().startswith(b"HTTP/1.1 503")
    refused.transport.finishClose()
    assert clock.getDelayedCalls() == []


def test_serviceUnavailableValidatesArguments() -> None:
    """
    ServiceUnavailableFactory rejects a negative or fractional Retry-After, naming it.
    """
    import pytest

    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="retryAfter"):
            ServiceUnavailableFactory(retryAfter=bad, reactor=Clock())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="readTimeout"):
        ServiceUnavailableFactory(readTimeout=-1, reactor=Clock())
