"""
An in-memory connection between a client protocol and a server protocol: what each writes
reaches the other on a later turn of the reactor (or of a
L{Clock<twisted.internet.task.Clock>}), in order, as over a socket. L{MemoryEndpoint}
connects a client factory to a server factory that way.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone, ConnectionLost, ConnectionRefusedError
from twisted.internet.interfaces import (
    IAddress,
    IProtocol,
    IProtocolFactory,
    IReactorTime,
    IStreamClientEndpoint,
    ITransport,
)
from twisted.python.failure import Failure
from zope.interface import implementer


@implementer(ITransport)
class MemoryTransport:
    """
    One end of an in-memory connection.

    @ivar disconnecting: C{True} once this end started to close.
    @ivar disconnected: C{True} once the connection is closed.
    """

    def __init__(self, clock: IReactorTime, host: IPv4Address, peer: IPv4Address) -> None:
        self._clock = clock
        self._host = host
        self._peer = peer
        self.protocol: IProtocol | None = None
        self.other: MemoryTransport | None = None
        self._outgoing: list[bytes] = []
        self._scheduled = False
        self._abort = False
        self.disconnecting = False
        self.disconnected = False

    def write(self, data: bytes) -> None:
        """
        Send C{data} to the other end, on a later turn; nothing after this end started to
        close.
        """
        if self.disconnecting or self.disconnected or not data:
            return
        self._outgoing.append(data)
        self._schedule()

    def writeSequence(self, data: Any) -> None:
        """
        Send each of C{data}.
        """
        for chunk in data:
            self.write(chunk)

    def loseConnection(self) -> None:
        """
        Close the connection once what was written has been delivered.
        """
        if not (self.disconnecting or self.disconnected):
            self.disconnecting = True
            self._schedule()

    def abortConnection(self) -> None:
        """
        Close the connection at once, dropping what was not delivered yet.
        """
        if not self.disconnected:
            self.disconnecting = True
            self._abort = True
            self._outgoing = []
            self._schedule()

    def getPeer(self) -> IAddress:
        return self._peer

    def getHost(self) -> IAddress:
        return self._host

    def setTcpKeepAlive(self, enabled: int) -> None:
        """
        Accepted and ignored: there is no TCP here.
        """

    def setTcpNoDelay(self, enabled: int) -> None:
        """
        Accepted and ignored: there is no TCP here.
        """

    def pauseProducing(self) -> None:
        """
        Accepted and ignored.
        """

    def resumeProducing(self) -> None:
        """
        Accepted and ignored.
        """

    def stopProducing(self) -> None:
        """
        Close the connection, as a reactor's transport does.
        """
        self.loseConnection()

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            self._clock.callLater(0, self._deliver)

    def _deliver(self) -> None:
        self._scheduled = False
        if self.disconnected:
            return
        other = self.other
        if self._outgoing:
            data = b"".join(self._outgoing)
            self._outgoing = []
            if other is not None and not other.disconnected and other.protocol is not None:
                other.protocol.dataReceived(data)
        if self.disconnecting and not self._outgoing:
            reason: Failure = Failure(ConnectionLost() if self._abort else ConnectionDone())
            self._closeBoth(reason)

    def _closeBoth(self, reason: Failure) -> None:
        for end in (self, self.other):
            if end is not None and not end.disconnected:
                end.disconnected = True
                end.disconnecting = True
                end._outgoing = []
                if end.protocol is not None:
                    end.protocol.connectionLost(reason)


@implementer(IStreamClientEndpoint)
class MemoryEndpoint:
    """
    Connects a client factory to a fresh protocol of C{serverFactory}, in memory, on the
    next turn of C{clock}.
    """

    def __init__(self, clock: IReactorTime, serverFactory: IProtocolFactory) -> None:
        self._clock = clock
        self._serverFactory = serverFactory
        self._port = 40000

    def __repr__(self) -> str:
        return f"<MemoryEndpoint to {self._serverFactory!r}>"

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        """
        Connect on the next turn of the clock.

        @return: A L{Deferred} firing with the client protocol once connected; it fails with
            L{ConnectionRefusedError} if either factory refuses to build a protocol, and can
            be cancelled until then.
        """
        pending: list[Any] = []
        d: Deferred[IProtocol] = Deferred(lambda _: pending[0].cancel())
        pending.append(self._clock.callLater(0, self._connect, protocolFactory, d))
        return d

    def _connect(self, protocolFactory: IProtocolFactory, d: Deferred[IProtocol]) -> None:
        self._port += 1
        client = IPv4Address("TCP", "127.0.0.1", self._port)
        server = IPv4Address("TCP", "127.0.0.1", 11211)
        clientProtocol = protocolFactory.buildProtocol(server)
        serverProtocol = self._serverFactory.buildProtocol(client)
        if clientProtocol is None or serverProtocol is None:
            d.errback(ConnectionRefusedError("in-memory connection refused"))
            return
        clientEnd = MemoryTransport(self._clock, client, server)
        serverEnd = MemoryTransport(self._clock, server, client)
        clientEnd.other, serverEnd.other = serverEnd, clientEnd
        clientEnd.protocol, serverEnd.protocol = clientProtocol, serverProtocol
        serverProtocol.makeConnection(serverEnd)
        clientProtocol.makeConnection(clientEnd)
        d.callback(clientProtocol)
