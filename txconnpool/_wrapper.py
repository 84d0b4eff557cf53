"""
The protocol wrapper that carries a user's protocol for the pool: every event passes straight
through to the user's protocol, which gets the real transport, and the driver hears when the
connection is made and lost.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import interfaces
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import directlyProvides

from ._records import Link

_FORWARDED_INTERFACES = (
    interfaces.IHalfCloseableProtocol,
    interfaces.IFileDescriptorReceiver,
    interfaces.IHandshakeListener,
)


class PoolProtocol(Protocol):
    """
    Wraps a user's protocol: C{onMade(transport)} runs when the transport is connected, and
    C{onLost(reason)} when it is gone.
    """

    def __init__(
        self,
        link: Link,
        wrapped: Any,
        onMade: Callable[[Any], None],
        onLost: Callable[[Failure], None],
    ) -> None:
        self._link = link
        self._wrapped = wrapped
        self._onMade = onMade
        self._onLost = onLost
        provided = [i for i in _FORWARDED_INTERFACES if i.providedBy(wrapped)]
        if provided:
            directlyProvides(self, *provided)

    def logPrefix(self) -> str:
        """
        Use the wrapped protocol's log prefix.
        """
        if interfaces.ILoggingContext.providedBy(self._wrapped):
            prefix: str = self._wrapped.logPrefix()
            return prefix
        name: str = self._wrapped.__class__.__name__
        return name

    def makeConnection(self, transport: Any) -> None:
        """
        Record the transport and report the connection made.
        """
        self.connected = True
        self.transport = transport
        self._onMade(transport)

    def dataReceived(self, data: bytes) -> None:
        """
        Count the chunk, and pass it to the wrapped protocol.
        """
        self._link.received += 1
        self._wrapped.dataReceived(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """
        Report the connection gone.
        """
        self.connected = False
        self._onLost(reason)

    def readConnectionLost(self) -> None:
        """
        Pass a half-close to the wrapped protocol.
        """
        self._wrapped.readConnectionLost()

    def writeConnectionLost(self) -> None:
        """
        Pass a half-close to the wrapped protocol.
        """
        self._wrapped.writeConnectionLost()

    def fileDescriptorReceived(self, descriptor: int) -> None:
        """
        Pass a received file descriptor to the wrapped protocol.
        """
        self._wrapped.fileDescriptorReceived(descriptor)

    def handshakeCompleted(self) -> None:
        """
        Pass the end of a TLS handshake to the wrapped protocol.
        """
        self._wrapped.handshakeCompleted()


class PoolFactory(Factory):
    """
    The factory given to the endpoint for one connection: it has the user's factory build
    its protocol, and wraps it in a L{PoolProtocol}.
    """

    noisy = False

    def __init__(
        self,
        link: Link,
        onMade: Callable[[Any], None],
        onLost: Callable[[Failure], None],
    ) -> None:
        self._link = link
        self._onMade = onMade
        self._onLost = onLost

    def doStart(self) -> None:
        """
        Pass the start notification to the user's factory.
        """
        self._link.factory.doStart()

    def doStop(self) -> None:
        """
        Pass the stop notification to the user's factory.
        """
        self._link.factory.doStop()

    def buildProtocol(self, addr: Any) -> PoolProtocol | None:
        """
        Have the user's factory build its protocol, and wrap it.
        """
        wrapped = self._link.factory.buildProtocol(addr)
        if wrapped is None:
            return None
        self._link.protocol = wrapped
        return PoolProtocol(self._link, wrapped, self._onMade, self._onLost)
