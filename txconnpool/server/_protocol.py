"""
The protocol a limiter gives every accepted connection.

L{LimitedProtocol} stands between the transport and whatever serves the connection.  While the
connection waits for a slot it keeps the transport paused, so the client's bytes stay in the
kernel's buffer (anything a transport delivers anyway, such as data a TLS layer had already
decrypted, is kept in order).  Once given a slot it builds the served protocol and acts as its
transport, the way L{twisted.protocols.policies.ProtocolWrapper} does.

It decides nothing: it reports what happens (arrival, traffic in both directions, departure,
loss) to the limiter's core through L{LimiterEvents}, and does what the core asks through the
L{ConnectionHandle} methods.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

from twisted.internet.interfaces import (
    IAddress,
    IHalfCloseableProtocol,
    IHandshakeListener,
    IProtocol,
    IPushProducer,
    ITransport,
)
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import alsoProvides, directlyProvides, implementer, providedBy

from ._fairness import idleFor
from ._probe import IConnectionProbe
from ._record import LimiterEvents, State


@implementer(IProtocol, IHandshakeListener, IPushProducer)
class LimitedProtocol(Protocol):
    """
    One accepted connection, as seen by the limiter, and the transport of the protocol that
    serves it.

    Its state is kept by the limiter; the attributes below read it.

    @ivar addr: The client's address.
    @ivar arrival: Order of arrival among the limiter's connections.
    @ivar peerKey: The address the per-peer limit counts this connection under.
    @ivar state: Where the connection stands.
    @ivar served: The protocol serving the connection (or the overflow protocol), once there is
        one.
    @ivar probe: What tells idle from busy for the served protocol.
    @ivar lastActivity: When bytes last moved, by the limiter's clock.
    @ivar enqueuedAt: When the connection started to wait.
    @ivar closingReason: Why the limiter is closing this connection, if it is.
    """

    def __init__(self, events: LimiterEvents, addr: IAddress) -> None:
        self._events = events
        self.addr = addr
        self.served: IProtocol | None = None
        self._record = events.register(self, addr)
        self._reporting = False
        self._pending: list[bytes] = []
        self._handshakeDone = False
        self._real: Any = None
        self._paused = False

    def __repr__(self) -> str:
        return f"<LimitedProtocol #{self.arrival} {self.state.value} from {self.addr}>"

    # What the limiter knows about this connection.

    @property
    def arrival(self) -> int:
        return self._record.arrival

    @property
    def peerKey(self) -> str | None:
        return self._record.peerKey

    @property
    def state(self) -> State:
        return self._record.state

    @property
    def probe(self) -> IConnectionProbe | None:
        return self._record.probe

    @property
    def lastActivity(self) -> float:
        return self._record.lastActivity

    @property
    def enqueuedAt(self) -> float:
        return self._record.enqueuedAt

    @property
    def closingReason(self) -> str | None:
        return self._record.closingReason

    def idleFor(self, now: float) -> float | None:
        """
        @return: How long the connection has been idle (between requests and silent), or
            L{None} if it is busy or already closing.
        """
        return idleFor(self._record, now)

    def keepAliveTimeout(self) -> float | None:
        """
        @return: The keep-alive duration the served protocol announced, if any.
        """
        probe = self._record.probe
        return None if probe is None else probe.keepAliveTimeout()

    def logPrefix(self) -> str:
        served = self.served
        if served is None:
            return "LimitedProtocol"
        return f"{served.__class__.__name__} (LimitedProtocol)"

    # Events from the transport, reported to the limiter.

    def makeConnection(self, transport: ITransport) -> None:
        directlyProvides(self, providedBy(transport))
        self._real = transport
        Protocol.makeConnection(self, transport)

    def connectionMade(self) -> None:
        self._events.connectionArrived(self._record)

    def dataReceived(self, data: bytes) -> None:
        served = self.served
        if served is None:
            self._pending.append(data)
        elif self._reporting:
            events, record = self._events, self._record
            events.dataArriving(record)
            served.dataReceived(data)
            events.dataDelivered(record)
        else:
            served.dataReceived(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """
        Tell the served protocol first, then the limiter, so the protocol that gets the slot
        next starts after this one has finished.
        """
        served, self.served = self.served, None
        self._pending = []
        self._reporting = False
        try:
            if served is not None:
                served.connectionLost(reason)
        finally:
            self._events.connectionLost(self._record)

    def readConnectionLost(self) -> None:
        served = self.served
        if served is not None and IHalfCloseableProtocol.providedBy(served):
            served.readConnectionLost()
        else:
            self._real.loseConnection()

    def writeConnectionLost(self) -> None:
        served = self.served
        if served is not None and IHalfCloseableProtocol.providedBy(served):
            served.writeConnectionLost()

    def handshakeCompleted(self) -> None:
        served = self.served
        if served is not None and self.state is State.ACTIVE:
            if IHandshakeListener.providedBy(served):
                served.handshakeCompleted()
        else:
            self._handshakeDone = True

    def departed(self) -> None:
        """
        The client went away while waiting (the departure watcher saw it).
        """
        self._events.clientDeparted(self._record)

    # The transport the served protocol sees.

    def write(self, data: bytes) -> None:
        self._real.write(data)
        if self._reporting:
            self._events.dataSent(self._record)

    def writeSequence(self, data: Iterable[bytes]) -> None:
        self._real.writeSequence(data)
        if self._reporting:
            self._events.dataSent(self._record)

    @property
    def disconnecting(self) -> bool:
        """
        Whether the transport is closing, whoever asked.
        """
        return bool(getattr(self._real, "disconnecting", False))

    def loseConnection(self) -> None:
        self._real.loseConnection()

    def abortConnection(self) -> None:
        self._real.abortConnection()

    def getPeer(self) -> IAddress:
        return cast(IAddress, self._real.getPeer())

    def getHost(self) -> IAddress:
        return cast(IAddress, self._real.getHost())

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self._real.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        self._real.unregisterProducer()

    def pauseProducing(self) -> None:
        self._real.pauseProducing()

    def resumeProducing(self) -> None:
        self._real.resumeProducing()

    def stopProducing(self) -> None:
        self._real.stopProducing()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or "_real" not in self.__dict__:
            raise AttributeError(name)
        return getattr(self._real, name)

    # ConnectionHandle: what the limiter asks of the connection.

    def enterQueue(self) -> None:
        """
        Pause the transport so nothing more is read until a slot is free.
        """
        self._paused = True
        self._real.pauseProducing()

    def serve(self, protocol: IProtocol, *, reportTraffic: bool) -> None:
        """
        Start serving the connection with C{protocol}: resume the transport, connect the
        protocol to this wrapper and hand it every byte that was delivered while waiting.

        @param reportTraffic: Whether to report traffic to the limiter (for its timeouts and
            turns).
        """
        self.served = protocol
        self._reporting = reportTraffic
        if IHalfCloseableProtocol.providedBy(protocol):
            alsoProvides(self, IHalfCloseableProtocol)
        self._resume()
        protocol.makeConnection(cast(ITransport, self))
        if self._handshakeDone and IHandshakeListener.providedBy(protocol):
            self._handshakeDone = False
            protocol.handshakeCompleted()
        self._replay()

    def overflow(self, protocol: IProtocol | None) -> None:
        """
        Hand the connection to an overflow protocol, or close it if there is none.
        """
        if protocol is None:
            self._real.loseConnection()
            return
        self.served = protocol
        self._reporting = False
        self._resume()
        protocol.makeConnection(cast(ITransport, self))
        self._replay()

    def drop(self) -> None:
        """
        Close the connection at once, unread data and all.
        """
        self._real.abortConnection()

    def descriptor(self) -> int | None:
        """
        @return: The socket descriptor of the transport, if it has one.
        """
        fileno = getattr(self._real, "fileno", None)
        if fileno is None:
            return None
        try:
            fd = fileno()
        except Exception:
            return None
        return fd if isinstance(fd, int) and fd >= 0 else None

    # Internals.

    def _resume(self) -> None:
        if self._paused:
            self._paused = False
            self._real.resumeProducing()

    def _replay(self) -> None:
        pending, self._pending = self._pending, []
        served = self.served
        for chunk in pending:
            if served is None or self.served is not served:
                return
            self.dataReceived(chunk)
