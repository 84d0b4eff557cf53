"""
Served protocols for the turn-taking tests: an HTTP site and a line protocol that count the
connections they serve at once and record the order in which they were given them, and
answer each request with its tag so a client can check the answer is its own.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import Factory
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel
from twisted.web.resource import Resource
from twisted.web.server import Request, Site
from zope.interface import implementer

from txconnpool.server import IConnectionProbe


class Occupancy:
    """
    Counts the connections a server serves at once, and remembers the order in which they
    were given slots, as told by C{label} at that moment (by default, their client's address;
    an address may come back later, from a new connection on a reused port).
    """

    def __init__(self) -> None:
        self.live = 0
        self.maxLive = 0
        self.admitted: list[object] = []
        self.label: Callable[[IAddress], object] = lambda addr: addr

    def admit(self, addr: IAddress) -> None:
        self.admitted.append(self.label(addr))

    def made(self) -> None:
        self.live += 1
        self.maxLive = max(self.maxLive, self.live)

    def lost(self) -> None:
        self.live -= 1


class TagPage(Resource):
    """
    Answers C{GET /?tag=T} with C{hello T}.
    """

    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        return b"hello " + request.args.get(b"tag", [b""])[0]


class CountingChannel(HTTPChannel):
    """
    An HTTP channel that tells its site's L{Occupancy} when it starts and stops serving.
    """

    factory: CountingSite

    def connectionMade(self) -> None:
        self.factory.occupancy.made()
        super().connectionMade()

    def connectionLost(self, reason: Failure) -> None:
        self.factory.occupancy.lost()
        super().connectionLost(reason)


class CountingSite(Site):
    """
    A site of L{TagPage} whose channels are counted.
    """

    protocol = CountingChannel  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__(TagPage())
        self.noisy = False
        self.occupancy = Occupancy()

    def buildProtocol(self, addr: IAddress) -> CountingChannel:
        self.occupancy.admit(addr)
        return super().buildProtocol(addr)  # type: ignore[return-value]

    def log(self, request: Request) -> None:
        pass


@implementer(IConnectionProbe)
class TurnTakingLines(LineReceiver):
    """
    A line protocol that answers each line C{T} with C{OK T}.  It answers its own probe: it is
    idle and receiving nothing when no partial line is buffered; at the end of its turn it
    answers the next line with C{OK T BYE} and closes.
    """

    delimiter = b"\n"
    leaving = False
    factory: LinesFactory | None = None

    def connectionMade(self) -> None:
        if self.factory is not None:
            self.factory.occupancy.made()

    def connectionLost(self, reason: Failure) -> None:
        if self.factory is not None:
            self.factory.occupancy.lost()

    def lineReceived(self, line: bytes) -> None:
        if self.leaving:
            self.sendLine(b"OK " + line + b" BYE")
            self.transport.loseConnection()  # type: ignore[union-attr]
        else:
            self.sendLine(b"OK " + line)

    def bytesReceived(self) -> None:
        pass

    def bytesSent(self) -> None:
        pass

    def isIdle(self) -> bool:
        return not self._buffer

    def isReceivingRequest(self) -> bool:
        return bool(self._buffer)

    def isReceivingHead(self) -> bool:
        return bool(self._buffer)

    def keepAliveTimeout(self) -> None:
        return None

    def endTurn(self) -> bool:
        self.leaving = True
        return True


class LinesFactory(Factory[TurnTakingLines]):
    """
    Builds L{TurnTakingLines} and counts them.
    """

    protocol = TurnTakingLines
    noisy = False

    def __init__(self) -> None:
        self.occupancy = Occupancy()

    def buildProtocol(self, addr: IAddress) -> TurnTakingLines:
        self.occupancy.admit(addr)
        protocol = TurnTakingLines()
        protocol.factory = self
        return protocol
