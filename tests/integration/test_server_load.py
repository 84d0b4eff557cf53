"""
Ten thousand clients against a limiter of one hundred slots, on real loopback sockets, from a
load-generating subprocess.
"""

from __future__ import annotations

from typing import Any

import pytest_twisted
from twisted.internet import defer, reactor
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure

from tests.server_support.loadgen import payload
from tests.server_support.net import runLoadgen
from txconnpool.server import LimitConnectionsFactory, LimitedProtocol

CLIENTS = 10_000
SLOTS = 100
SIZE = 700


class CheckingProtocol(Protocol):
    """
    Reads one C{REQ <i> <size>} request, checks its body, answers C{OK <i>} and closes.  The
    first slots hold their answers until every client has arrived, so the queue fills up.
    """

    factory: CheckingFactory

    def __init__(self) -> None:
        self.buffer = b""
        self.ident: int | None = None

    def connectionMade(self) -> None:
        factory = self.factory
        factory.live += 1
        factory.maxLive = max(factory.maxLive, factory.live)
        factory.maxActive = max(factory.maxActive, factory.limiter.stats().active)

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        head, newline, body = self.buffer.partition(b"\n")
        if not newline:
            return
        _, ident, size = head.split()
        if len(body) < int(size):
            return
        self.ident = int(ident)
        self.factory.servedIds.append(self.ident)
        if body != payload(self.ident, int(size)):
            self.factory.corrupt.append(self.ident)
        self.factory.whenAllArrived.addCallback(self.answer)

    def answer(self, result: object) -> object:
        self.transport.write(b"OK %d\n" % (self.ident,))  # type: ignore[union-attr]
        self.transport.loseConnection()  # type: ignore[union-attr]
        return result

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.factory.live -= 1


class CheckingFactory(Factory[CheckingProtocol]):
    protocol = CheckingProtocol
    noisy = False

    def __init__(self) -> None:
        self.live = 0
        self.maxLive = 0
        self.maxActive = 0
        self.servedIds: list[int] = []
        self.corrupt: list[int] = []
        self.whenAllArrived: Deferred[None] = Deferred()
        self.limiter: LimitConnectionsFactory


class CountingLimiter(LimitConnectionsFactory):
    """
    Fires its wrapped factory's C{whenAllArrived} once C{expected} connections have arrived.
    """

    expected = CLIENTS

    def buildProtocol(self, addr: IAddress | None) -> LimitedProtocol:
        wrapper = super().buildProtocol(addr)
        if wrapper.arrival == self.expected:
            factory = self.wrappedFactory
            assert isinstance(factory, CheckingFactory)
            reactor.callLater(0, factory.whenAllArrived.callback, None)  # type: ignore[attr-defined]
        return wrapper


@pytest_twisted.inlineCallbacks
def test_tenThousandClientsServedInOrderWithDataIntact() -> Any:
    """
    10,000 clients against 100 slots are all served, never more than 100 at once, in order of
    arrival, each with the request bytes it sent while queued intact.
    """
    checking = CheckingFactory()
    # The first slots hold their answers until every client has arrived, however long that
    # takes on a slow machine: no client may give up waiting meanwhile.
    limiter = CountingLimiter(checking, SLOTS, queueTimeout=None)
    checking.limiter = limiter
    port = reactor.listenTCP(0, limiter, backlog=1024, interface="127.0.0.1")  # type: ignore[attr-defined]
    try:
        report = yield runLoadgen("127.0.0.1", port.getHost().port, CLIENTS, SIZE, 150)
    finally:
        yield port.stopListening()
    assert report["badCount"] == 0, report
    assert report["ok"] == CLIENTS
    assert checking.corrupt == []
    assert checking.servedIds == list(range(CLIENTS))
    assert checking.maxLive == SLOTS
    assert checking.maxActive == SLOTS
    stats = limiter.stats()
    assert (stats.served, stats.active, stats.queued) == (CLIENTS, 0, 0)
    assert (stats.leftQueued, stats.overflowed, stats.timedOutQueued) == (0, 0, 0)
    yield defer.succeed(None)
