"""
Synchronous tests of taking turns while clients wait, and of the protective defaults, on a
L{Clock} with fake transports.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site
from zope.interface import implementer

from tests.server_support import RecordingFactory, connect
from tests.server_support.served import LinesFactory
from txconnpool.server import IConnectionProbe, LimitConnectionsFactory

GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
SLOW = b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"


class Page(Resource):
    """
    Answers C{hello} at once, or holds C{/slow} open until the test finishes it.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.held: list[Request] = []

    def render_GET(self, request: Request) -> bytes | int:
        if request.path == b"/slow":
            self.held.append(request)
            return NOT_DONE_YET
        return b"hello"

    def render_POST(self, request: Request) -> bytes:
        return b"posted " + request.content.read()


def responses(data: bytes) -> list[tuple[dict[bytes, bytes], bytes]]:
    """
    Split what an HTTP/1.1 server sent into complete responses (headers, body), checking that
    nothing is left over: a truncated response fails the test.
    """
    found = []
    while data:
        head, separator, rest = data.partition(b"\r\n\r\n")
        assert separator, f"truncated head: {data!r}"
        lines = head.split(b"\r\n")
        assert lines[0].startswith(b"HTTP/1.1 "), lines[0]
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        if b"content-length" in headers:
            size = int(headers[b"content-length"])
            assert len(rest) >= size, f"truncated body: {rest!r}"
            body, data = rest[:size], rest[size:]
        else:
            assert headers.get(b"transfer-encoding") == b"chunked", headers
            body = b""
            while True:
                sizeLine, _, rest = rest.partition(b"\r\n")
                size = int(sizeLine, 16)
                body, rest = body + rest[:size], rest[size + 2 :]
                if size == 0:
                    break
            data = rest
        found.append((headers, body))
    return found


def closesAfter(headers: dict[bytes, bytes]) -> bool:
    return headers.get(b"connection", b"").lower() == b"close"


def makeSiteLimiter(
    maxConnections: int, **kwargs: Any
) -> tuple[LimitConnectionsFactory, Page, Clock]:
    """
    A limiter with its default options, but those in C{kwargs}, in front of a Site without
    an idle timeout of its own.
    """
    clock = Clock()
    page = Page()
    site = Site(page, reactor=clock, timeout=None)
    limiter = LimitConnectionsFactory(site, maxConnections, reactor=clock, **kwargs)
    return limiter, page, clock


def test_defaultsProtect() -> None:
    """
    Out of the box the limiter times out waiting, idle and slow-header clients, reaps idle
    connections and takes turns, with the documented values; no limit on the queue's length
    or the whole request.
    """
    limiter = LimitConnectionsFactory(RecordingFactory(), 5, reactor=Clock())
    assert (limiter.queueTimeout, limiter.idleTimeout, limiter.headerTimeout) == (30, 75, 10)
    assert (limiter.reapIdleAfter, limiter.minTurn) == (0.5, 0.05)
    assert (limiter.maxQueued, limiter.requestTimeout, limiter.minTurnRequests) == (
        None,
        None,
        None,
    )


def test_defaultTimeoutsCloseSlowAndSilentClients() -> None:
    """
    With the defaults, a client trickling its headers is closed 10 s after their first byte,
    and a silent one after 75 s.
    """
    limiter, _, clock = makeSiteLimiter(2)
    slow, silent = connect(limiter, 2)
    slow.send(b"GET / HTTP/1.1\r\n")
    clock.advance(9.9)
    slow.send(b"X-Slow: a")
    assert not slow.transport.disconnecting
    clock.advance(0.1)
    assert slow.transport.disconnecting
    slow.transport.finishClose()
    clock.advance(75 - 10 - 0.1)
    assert not silent.transport.disconnecting
    clock.advance(0.1)
    assert silent.transport.disconnecting
    stats = limiter.stats()
    assert (stats.headerTimedOut, stats.idleClosed) == (1, 1)


def test_defaultQueueTimeout() -> None:
    """
    With the defaults, a client that waited 30 s for a slot gets the overflow behaviour, while
    the connection holding the slot, whose response is still being worked on, keeps it.
    """
    limiter, page, clock = makeSiteLimiter(1)
    (first,) = connect(limiter, 1)
    first.send(SLOW)
    (waiting,) = connect(limiter, 1)
    clock.advance(29.9)
    assert not waiting.transport.disconnecting
    clock.advance(0.1)
    assert waiting.transport.disconnecting and waiting.served is None
    assert not first.transport.disconnecting
    assert limiter.stats().timedOutQueued == 1
    page.held[0].finish()


def test_nothingChangesWhileNobodyWaits() -> None:
    """
    While no client waits, keep-alive connections keep their slots however long they are
    served: no response says Connection: close and no turn ends.
    """
    limiter, _, clock = makeSiteLimiter(2)
    clients = connect(limiter, 2)
    for _ in range(100):
        for client in clients:
            client.send(GET)
        clock.advance(1)
    for client in clients:
        answers = responses(client.transport.value())
        assert len(answers) == 100
        assert not any(closesAfter(headers) for headers, _ in answers)
        assert not client.transport.disconnecting
    stats = limiter.stats()
    assert (stats.turnsEnded, stats.reaped, stats.served) == (0, 0, 2)


def test_turnEndsWithConnectionCloseOnceSomeoneWaits() -> None:
    """
    While a client waits, a keep-alive connection keeps its slot until it has held it minTurn
    seconds; then its next response says Connection: close, is sent whole, and the connection
    closes, after which the waiting client is served.
    """
    limiter, _, clock = makeSiteLimiter(1, minTurn=1.0)
    (first,) = connect(limiter, 1)
    clock.advance(0.5)
    first.send(GET)
    (waiting,) = connect(limiter, 1)
    clock.advance(0.4)
    first.send(GET)
    assert not first.transport.disconnecting
    clock.advance(0.1)
    assert limiter.stats().turnsEnded == 1
    first.send(GET)
    answers = responses(first.transport.value())
    assert [closesAfter(headers) for headers, _ in answers] == [False, False, True]
    assert [body for _, body in answers] == [b"hello"] * 3
    assert first.transport.disconnecting and not first.transport.aborted
    assert waiting.served is None
    first.transport.finishClose()
    assert waiting.served is not None
    assert limiter.stats().reaped == 0


def test_responseInProgressGetsConnectionClose() -> None:
    """
    When a turn ends during a request whose response has not started, that response says
    Connection: close, and the connection closes once it has been sent.
    """
    limiter, page, _ = makeSiteLimiter(1, minTurn=0.0)
    (first,) = connect(limiter, 1)
    first.send(SLOW)
    (waiting,) = connect(limiter, 1)
    assert limiter.stats().turnsEnded == 1
    assert not first.transport.disconnecting
    page.held[0].write(b"slow ")
    page.held[0].write(b"answer")
    assert not first.transport.disconnecting
    page.held[0].finish()
    ((headers, body),) = responses(first.transport.value())
    assert closesAfter(headers) and body == b"slow answer"
    assert first.transport.disconnecting
    first.transport.finishClose()
    assert waiting.served is not None


def test_turnEndingDuringRequestBodyClosesAfterItsResponse() -> None:
    """
    When a turn ends while a request's body is still arriving (its headers, and so the
    channel's decision to keep the connection, already in), that request's response says
    Connection: close and the connection closes after it.
    """
    limiter, _, _ = makeSiteLimiter(1, minTurn=0.0)
    (first,) = connect(limiter, 1)
    first.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nabc")
    (waiting,) = connect(limiter, 1)
    assert limiter.stats().turnsEnded == 1
    first.send(b"def")
    ((headers, body),) = responses(first.transport.value())
    assert closesAfter(headers) and body == b"posted abcdef"
    assert first.transport.disconnecting
    first.transport.finishClose()
    assert waiting.served is not None


def test_startedResponseGoesOutAsItWasThenNextOneCloses() -> None:
    """
    When a turn ends while a response is already being sent, that response goes out
    unchanged and the connection stays open; the response to the next request says
    Connection: close.
    """
    limiter, page, _ = makeSiteLimiter(1, minTurn=0.0)
    (first,) = connect(limiter, 1)
    first.send(SLOW)
    page.held[0].write(b"started")
    (waiting,) = connect(limiter, 1)
    assert limiter.stats().turnsEnded == 1
    page.held[0].finish()
    ((headers, body),) = responses(first.transport.value())
    assert not closesAfter(headers) and body == b"started"
    assert not first.transport.disconnecting
    first.send(GET)
    answers = responses(first.transport.value())
    assert closesAfter(answers[-1][0]) and answers[-1][1] == b"hello"
    assert first.transport.disconnecting
    first.transport.finishClose()
    assert waiting.served is not None


def test_onlyAsManyTurnsEndAsClientsWaitOldestFirst() -> None:
    """
    Turns end for no more connections than clients wait, the connection served longest
    first.
    """
    limiter, _, clock = makeSiteLimiter(3, minTurn=1.0, reapIdleAfter=None)
    clients = []
    for _ in range(3):
        clients.extend(connect(limiter, 1))
        clock.advance(1)
    connect(limiter, 1)
    for client in clients:
        client.send(GET)
    assert [client.transport.disconnecting for client in clients] == [True, False, False]
    connect(limiter, 1)
    for client in clients[1:]:
        client.send(GET)
    assert [client.transport.disconnecting for client in clients] == [True, True, False]
    assert limiter.stats().turnsEnded == 2


def test_minTurnRequests() -> None:
    """
    With minTurnRequests, a turn also lasts until that many requests have been answered.
    """
    limiter, _, clock = makeSiteLimiter(1, minTurn=0.0, minTurnRequests=3)
    (first,) = connect(limiter, 1)
    connect(limiter, 1)
    for _ in range(2):
        first.send(GET)
        clock.advance(limiter.reapPollInterval)
    assert limiter.stats().turnsEnded == 0
    first.send(GET)
    clock.advance(limiter.reapPollInterval)
    assert limiter.stats().turnsEnded == 1
    first.send(GET)
    answers = responses(first.transport.value())
    assert [closesAfter(headers) for headers, _ in answers] == [False, False, False, True]


def test_idleKeepAliveConnectionsMakeRoomWithinASecond() -> None:
    """
    With every slot held by an idle keep-alive connection, a new client is served within a
    second, the connection idle longest giving way, closed in order.
    """
    limiter, _, clock = makeSiteLimiter(5)
    idle = []
    for _ in range(5):
        (client,) = connect(limiter, 1)
        client.send(GET)
        idle.append(client)
        clock.advance(0.01)
    (sixth,) = connect(limiter, 1)
    started = clock.seconds()
    while not any(client.transport.disconnecting for client in idle):
        clock.advance(0.01)
    assert clock.seconds() - started < 1
    assert [client.transport.disconnecting for client in idle] == [True] + [False] * 4
    assert not idle[0].transport.aborted
    idle[0].transport.finishClose()
    assert sixth.served is not None
    assert limiter.stats().reaped == 1


def test_protocolWithoutProbeGivesWayOnlyWhenIdle() -> None:
    """
    A protocol that cannot end its turn itself keeps its slot while it owes an answer, and is
    closed once it has answered and stayed silent for reapIdleAfter seconds.
    """
    clock = Clock()
    limiter = LimitConnectionsFactory(RecordingFactory(), 1, reactor=clock, minTurn=0.0)
    (first,) = connect(limiter, 1)
    first.send(b"question")
    (waiting,) = connect(limiter, 1)
    clock.advance(5)
    assert limiter.stats().turnsEnded == 1
    assert not first.transport.disconnecting
    first.served.transport.write(b"answer")
    clock.advance(limiter.reapIdleAfter + limiter.reapPollInterval)  # type: ignore[operator]
    assert first.transport.disconnecting
    first.transport.finishClose()
    assert waiting.served is not None
    assert limiter.stats().reaped == 1


def test_lineProtocolWithProbeTakesTurns() -> None:
    """
    A line protocol whose probe ends its turn answers its next line with a goodbye and closes
    in order, and the waiting client is served.
    """
    clock = Clock()
    factory = LinesFactory()
    limiter = LimitConnectionsFactory(factory, 1, reactor=clock, minTurn=0.2)
    (first,) = connect(limiter, 1)
    (waiting,) = connect(limiter, 1)
    first.send(b"a\n")
    clock.advance(0.2)
    first.send(b"b\n")
    assert first.transport.value() == b"OK a\nOK b BYE\n"
    assert first.transport.disconnecting and not first.transport.aborted
    first.transport.finishClose()
    waiting.send(b"c\n")
    assert waiting.transport.value() == b"OK c\n"
    assert limiter.stats().turnsEnded == 1


def test_turnsOffWithMinTurnNone() -> None:
    """
    With minTurn=None and reapIdleAfter=None a served connection keeps its slot while others
    wait, as long as it stays open.
    """
    limiter, _, clock = makeSiteLimiter(1, minTurn=None, reapIdleAfter=None, idleTimeout=None)
    (first,) = connect(limiter, 1)
    (waiting,) = connect(limiter, 1)
    for _ in range(20):
        first.send(GET)
        clock.advance(1)
    assert not any(closesAfter(headers) for headers, _ in responses(first.transport.value()))
    assert waiting.served is None
    assert limiter.stats().turnsEnded == 0


def test_endedTurnOfSilentClientReaped() -> None:
    """
    A connection whose turn ended but whose client sends nothing more is reaped once it has
    been idle reapIdleAfter seconds.
    """
    limiter, _, clock = makeSiteLimiter(1, minTurn=0.0)
    (first,) = connect(limiter, 1)
    first.send(GET)
    (waiting,) = connect(limiter, 1)
    assert limiter.stats().turnsEnded == 1
    clock.advance(limiter.reapIdleAfter)  # type: ignore[arg-type]
    assert first.transport.disconnecting
    first.transport.finishClose()
    assert waiting.served is not None
    assert limiter.stats().reaped == 1


def test_probeWithoutTurnMethodsIsTreatedAsUnableToEndTurns() -> None:
    """
    A protocol whose probe lacks isReceivingHead and endTurn is served, has no head deadline
    and is closed only when idle at the end of its turn.
    """

    @implementer(IConnectionProbe)
    class Older(Protocol):
        busy = True

        def bytesReceived(self) -> None:
            pass

        def bytesSent(self) -> None:
            pass

        def isIdle(self) -> bool:
            return not self.busy

        def isReceivingRequest(self) -> bool:
            return self.busy

        def keepAliveTimeout(self) -> None:
            return None

    clock = Clock()
    limiter = LimitConnectionsFactory(
        Factory.forProtocol(Older), 1, reactor=clock, minTurn=0.0, idleTimeout=None
    )
    (first,) = connect(limiter, 1)
    first.send(b"x")
    (waiting,) = connect(limiter, 1)
    clock.advance(20)
    assert limiter.stats().turnsEnded == 1
    assert not first.transport.disconnecting
    first.served.busy = False
    clock.advance(limiter.reapIdleAfter + limiter.reapPollInterval)  # type: ignore[operator]
    assert first.transport.disconnecting
    first.transport.finishClose()
    assert waiting.served is not None
