"""
The protocol a limiter gives every accepted connection.

L{LimitedProtocol} stands between the transport and whatever serves the connection.  While the
connection waits for a slot it keeps the transport paused, so the client's bytes stay in the
kernel's buffer (anything a transport delivers anyway, such as data a TLS layer had already
decrypted, is kept in order).  Once given a slot it builds the served protocol and acts as its
transport, the way L{twisted.protocols.policies.ProtocolWrapper} does, noting traffic in both
directions so that idle and slow connections can be found.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, cast

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IHalfCloseableProtocol,
    IHandshakeListener,
    IProtocol,
    IPushProducer,
    ITransport,
)
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import alsoProvides, directlyProvides, implementer, providedBy

from ._probe import IConnectionProbe, probeFor

if TYPE_CHECKING:
    from ._limiter import LimitConnectionsFactory


class State(enum.Enum):
    """
    Where a connection stands.
    """

    NEW = "new"
    QUEUED = "queued"
    ACTIVE = "active"
    OVERFLOW = "overflow"
    CLOSING = "closing"
    CLOSED = "closed"


def peerKeyOf(addr: IAddress | None) -> str | None:
    """
    The key the per-peer limit counts a client under: its IP address (an IPv4 address mapped
    into IPv6 counts as the IPv4 address), or L{None} for other kinds of address.
    """
    if isinstance(addr, IPv6Address):
        host = addr.host.split("%", 1)[0]
        if host.lower().startswith("::ffff:") and "." in host:
            return host[7:]
        return host
    if isinstance(addr, IPv4Address):
        return addr.host
    return None


@implementer(IProtocol, IHandshakeListener, IPushProducer)
class LimitedProtocol(Protocol):
    """
    One accepted connection, as seen by the limiter, and the transport of the protocol that
    serves it.

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

    def __init__(self, limiter: LimitConnectionsFactory, addr: IAddress, arrival: int) -> None:
        self.limiter = limiter
        self.addr = addr
        self.arrival = arrival
        self.peerKey = peerKeyOf(addr)
        self.state = State.NEW
        self.served: IProtocol | None = None
        self.probe: IConnectionProbe | None = None
        self.lastActivity = 0.0
        self.enqueuedAt = 0.0
        self.closingReason: str | None = None
        self.watchedFd: int | None = None
        self._pending: list[bytes] = []
        self._handshakeDone = False
        self._timing = False
        self._requestStart: float | None = None
        self._timer: IDelayedCall | None = None
        self._abortCall: IDelayedCall | None = None
        self._real: Any = None
        self._paused = False

    def __repr__(self) -> str:
        return f"<LimitedProtocol #{self.arrival} {self.state.value} from {self.addr}>"

    def logPrefix(self) -> str:
        served = self.served
        if served is None:
            return "LimitedProtocol"
        return f"{served.__class__.__name__} (LimitedProtocol)"

    # Events from the transport.

    def makeConnection(self, transport: ITransport) -> None:
        directlyProvides(self, providedBy(transport))
        self._real = transport
        Protocol.makeConnection(self, transport)

    def connectionMade(self) -> None:
        self.limiter._arrived(self)

    def dataReceived(self, data: bytes) -> None:
        served = self.served
        if self.state is State.ACTIVE and served is not None:
            if self._timing:
                self.lastActivity = self.limiter._clock.seconds()
                served.dataReceived(data)
                self._noteReceived()
            else:
                served.dataReceived(data)
        elif served is not None:
            served.dataReceived(data)
        else:
            self._pending.append(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """
        Tell the served protocol first, then release the slot, so the protocol that gets the
        slot next starts after this one has finished.
        """
        self._cancelTimers()
        served, self.served = self.served, None
        self._pending = []
        try:
            if served is not None:
                served.connectionLost(reason)
        finally:
            self.limiter._lost(self)
            self.state = State.CLOSED

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

    # The transport the served protocol sees.

    def write(self, data: bytes) -> None:
        self._real.write(data)
        if self._timing:
            self._noteSent()

    def writeSequence(self, data: Iterable[bytes]) -> None:
        self._real.writeSequence(data)
        if self._timing:
            self._noteSent()

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

    # Transitions, driven by the limiter.

    def enterQueue(self, now: float) -> None:
        """
        Pause the transport so nothing more is read until a slot is free.
        """
        self.state = State.QUEUED
        self.enqueuedAt = now
        self._paused = True
        self._real.pauseProducing()

    def serve(self, protocol: IProtocol, now: float, *, timing: bool) -> None:
        """
        Start serving the connection with C{protocol}: resume the transport, connect the
        protocol to this wrapper and hand it every byte that was delivered while waiting.

        @param timing: Whether traffic must be timed (for idle and request deadlines, and
            reaping).
        """
        self.state = State.ACTIVE
        self.served = protocol
        self.lastActivity = now
        self._timing = timing
        if timing:
            self.probe = probeFor(protocol)
        if IHalfCloseableProtocol.providedBy(protocol):
            alsoProvides(self, IHalfCloseableProtocol)
        self._resume()
        protocol.makeConnection(cast(ITransport, self))
        if self._handshakeDone and IHandshakeListener.providedBy(protocol):
            self._handshakeDone = False
            protocol.handshakeCompleted()
        self._replay()
        if timing:
            self._schedule(now)

    def overflow(self, protocol: IProtocol | None) -> None:
        """
        Hand the connection to an overflow protocol, or close it if there is none.
        """
        self.state = State.OVERFLOW
        self._cancelTimers()
        if protocol is None:
            self._real.loseConnection()
            return
        self.served = protocol
        self._resume()
        protocol.makeConnection(cast(ITransport, self))
        self._replay()

    def closeFor(self, reason: str, grace: float) -> None:
        """
        Close the connection on the limiter's behalf, aborting it if it has not closed after
        C{grace} seconds (a client that does not read can hold an orderly close forever).
        """
        self.closingReason = reason
        self._cancelTimer()
        self._real.loseConnection()
        if self.state is not State.CLOSED and self._abortCall is None:
            self._abortCall = self.limiter._clock.callLater(grace, self._abortNow)

    def departed(self) -> None:
        """
        The client went away while waiting; called by the departure watcher.
        """
        self.limiter._departed(self)

    def drop(self) -> None:
        """
        Close the connection at once, unread data and all.
        """
        self._cancelTimers()
        self._real.abortConnection()

    def idleFor(self, now: float) -> float | None:
        """
        @return: How long the connection has been idle (between requests and silent), or
            L{None} if it is busy or already closing.
        """
        probe = self.probe
        if self.closingReason is not None or probe is None or not probe.isIdle():
            return None
        return now - self.lastActivity

    def keepAliveTimeout(self) -> float | None:
        """
        @return: The keep-alive duration the served protocol announced, if any.
        """
        probe = self.probe
        return None if probe is None else probe.keepAliveTimeout()

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

    def _noteReceived(self) -> None:
        probe = self.probe
        assert probe is not None
        probe.bytesReceived()
        limit = self.limiter.requestTimeout
        if limit is None:
            return
        if probe.isReceivingRequest():
            if self._requestStart is None:
                self._requestStart = self.lastActivity
                timer = self._timer
                deadline = self.lastActivity + limit
                if timer is not None and timer.active() and timer.getTime() > deadline:
                    timer.reset(limit)
        else:
            self._requestStart = None

    def _noteSent(self) -> None:
        probe = self.probe
        if probe is None or self.state is not State.ACTIVE:
            return
        self.lastActivity = self.limiter._clock.seconds()
        probe.bytesSent()
        if self._requestStart is not None and not probe.isReceivingRequest():
            self._requestStart = None

    def _deadline(self) -> float | None:
        limiter = self.limiter
        deadlines = []
        if limiter.idleTimeout is not None:
            deadlines.append(self.lastActivity + limiter.idleTimeout)
        if limiter.requestTimeout is not None and self._requestStart is not None:
            deadlines.append(self._requestStart + limiter.requestTimeout)
        return min(deadlines) if deadlines else None

    def _schedule(self, now: float) -> None:
        deadline = self._deadline()
        if deadline is None:
            return
        self._timer = self.limiter._clock.callLater(max(0.0, deadline - now), self._check)

    def _check(self) -> None:
        """
        Close the connection if a request has taken too long to arrive, or if it has been idle
        too long; otherwise wait for the next deadline.
        """
        self._timer = None
        if self.state is not State.ACTIVE or self.closingReason is not None:
            return
        limiter = self.limiter
        probe = self.probe
        assert probe is not None
        now = limiter._clock.seconds()
        receiving = probe.isReceivingRequest()
        if not receiving:
            self._requestStart = None
        requestTimeout = limiter.requestTimeout
        start = self._requestStart
        if requestTimeout is not None and start is not None and now - start >= requestTimeout:
            limiter._closeActive(self, "request-timeout")
            return
        idleTimeout = limiter.idleTimeout
        if (
            idleTimeout is not None
            and now - self.lastActivity >= idleTimeout
            and (receiving or probe.isIdle())
        ):
            limiter._closeActive(self, "idle")
            return
        deadline = self._deadline()
        if deadline is not None and deadline <= now:
            # Silent while the server works on a response: look again after another period.
            assert idleTimeout is not None
            deadline = now + idleTimeout
        if deadline is not None:
            self._timer = limiter._clock.callLater(deadline - now, self._check)

    def _abortNow(self) -> None:
        self._abortCall = None
        if self.state is not State.CLOSED:
            self._real.abortConnection()

    def _cancelTimer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _cancelTimers(self) -> None:
        self._cancelTimer()
        abortCall, self._abortCall = self._abortCall, None
        if abortCall is not None and abortCall.active():
            abortCall.cancel()
