"""
Fakes for the synchronous tests of L{txconnpool.server}: transports that record pausing and
closing, and served protocols that record what they get.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.error import ConnectionAborted, ConnectionDone
from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from zope.interface import implementer

from txconnpool.server import IConnectionProbe, LimitConnectionsFactory, LimitedProtocol


class FakeTransport(StringTransport):
    """
    A transport that records pauses and closes; the test decides when the close completes
    (as a reactor would, a turn later) by calling L{finishClose} or L{clientLeaves}.
    """

    def __init__(self, peer: IAddress, *, closeAtOnce: bool = False) -> None:
        super().__init__(peerAddress=peer)
        self.aborted = False
        self.lost = False
        self.closeAtOnce = closeAtOnce
        self.protocol: Any = None

    def loseConnection(self) -> None:
        super().loseConnection()
        if self.closeAtOnce:
            self.finishClose()

    def abortConnection(self) -> None:
        self.aborted = True
        super().loseConnection()
        if self.closeAtOnce:
            self.finishClose()

    def finishClose(self) -> None:
        """
        Complete a close the protocol asked for: deliver C{connectionLost}.
        """
        if not self.lost:
            self.lost = True
            reason = ConnectionAborted() if self.aborted else ConnectionDone()
            self.protocol.connectionLost(Failure(reason))

    def clientLeaves(self) -> None:
        """
        The client closed its end: deliver C{connectionLost} now.
        """
        self.disconnecting = True
        self.finishClose()

    @property
    def paused(self) -> bool:
        return self.producerState == "paused"


QUIET: dict[str, Any] = {
    "queueTimeout": None,
    "idleTimeout": None,
    "headerTimeout": None,
    "reapIdleAfter": None,
    "minTurn": None,
}
"""
Limiter options that turn off every time-based feature (all on by default), for tests of
something else.
"""

_DONE = Failure(ConnectionDone())


class RecordingProtocol(Protocol):
    """
    A served protocol that records the bytes it receives and whether it lost its connection.
    """

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.made = False
        self.lostReason: Failure | None = None

    def connectionMade(self) -> None:
        self.made = True

    def dataReceived(self, data: bytes) -> None:
        self.received.append(data)

    def connectionLost(self, reason: Failure = _DONE) -> None:
        self.lostReason = reason

    @property
    def data(self) -> bytes:
        return b"".join(self.received)


@implementer(IConnectionProbe)
class ProbedProtocol(RecordingProtocol):
    """
    A served protocol that answers the limiter's probe itself: idle unless C{busy}, with the
    keep-alive it is told.
    """

    busy = False
    keepAlive: float | None = None

    def bytesReceived(self) -> None:
        pass

    def bytesSent(self) -> None:
        pass

    def isIdle(self) -> bool:
        return not self.busy

    def isReceivingRequest(self) -> bool:
        return False

    def isReceivingHead(self) -> bool:
        return False

    def keepAliveTimeout(self) -> float | None:
        return self.keepAlive

    def endTurn(self) -> bool:
        return False


class RecordingFactory(Factory[RecordingProtocol]):
    """
    Builds L{RecordingProtocol}s and keeps them in the order they were built.
    """

    protocol = RecordingProtocol
    noisy = False

    def __init__(self) -> None:
        self.built: list[RecordingProtocol] = []
        self.addresses: list[IAddress] = []

    def buildProtocol(self, addr: IAddress | None) -> RecordingProtocol:
        protocol = RecordingProtocol()
        protocol.factory = self
        self.built.append(protocol)
        assert addr is not None
        self.addresses.append(addr)
        return protocol


def v4(host: str = "10.0.0.1", port: int = 40000) -> IPv4Address:
    return IPv4Address("TCP", host, port)


def v6(host: str = "2001:db8::1", port: int = 40000) -> IPv6Address:
    return IPv6Address("TCP", host, port)


class Client:
    """
    One fake client connection to a limiter.
    """

    def __init__(
        self, limiter: LimitConnectionsFactory, addr: IAddress, *, closeAtOnce: bool = False
    ) -> None:
        self.wrapper: LimitedProtocol = limiter.buildProtocol(addr)
        self.transport = FakeTransport(addr, closeAtOnce=closeAtOnce)
        self.transport.protocol = self.wrapper
        self.wrapper.makeConnection(self.transport)

    @property
    def served(self) -> Any:
        return self.wrapper.served

    def send(self, data: bytes) -> None:
        """
        Deliver bytes as the transport would (a paused transport delivers nothing: the bytes
        stay with the client until the transport is resumed).
        """
        self.wrapper.dataReceived(data)


def connect(
    limiter: LimitConnectionsFactory,
    n: int = 1,
    *,
    host: str = "10.0.0.1",
    closeAtOnce: bool = False,
) -> list[Client]:
    """
    Connect C{n} clients from C{host}, each on its own port.
    """
    connect.port += n  # type: ignore[attr-defined]
    base = connect.port  # type: ignore[attr-defined]
    maker = v6 if ":" in host else v4
    return [Client(limiter, maker(host, base + i), closeAtOnce=closeAtOnce) for i in range(n)]


connect.port = 20000  # type: ignore[attr-defined]
