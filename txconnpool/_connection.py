"""
The pool's records of its connections and requests, and the protocol wrapper that tells the
pool when a connection is made and lost.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from enum import Enum
from typing import TYPE_CHECKING, Any

from twisted.internet import interfaces
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import directlyProvides

if TYPE_CHECKING:
    from ._lifecycle import ConnectionMachine
    from .pool import PooledClientFactory


class State(Enum):
    """
    Where a connection is in its life.
    """

    CONNECTING = "connecting"
    IDLE = "idle"
    BUSY = "busy"
    GONE = "gone"


class Request(Deferred[Any]):
    """
    One call of C{performRequest} (C{method} is the name) or C{acquire} (C{method} is L{None}):
    the L{Deferred} handed to the caller, which also carries what the pool needs to serve it.
    (One object a request keeps the work of the garbage collector down when many wait.)

    @ivar connection: The connection serving the request, once it has one.
    @ivar done: Whether the request has been, or is being, fired or cancelled.
    @ivar timer: The pending timeout of the request (waiting or in flight), if any.
    @ivar retried: Whether the request was already sent again after a stale connection.
    @ivar mark: The connection's count of received chunks when the request was sent.
    @ivar queuedAt: When the request was made.
    @ivar sentAt: When the request was handed to a connection.
    @ivar origin: For a checkout under leak detection, the stack where it was made.
    """

    __slots__ = (
        "args",
        "connection",
        "done",
        "kwargs",
        "mark",
        "method",
        "origin",
        "queuedAt",
        "retried",
        "sentAt",
        "timer",
    )

    def __init__(
        self,
        method: str | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        canceller: Callable[[Deferred[Any]], None] | None = None,
    ) -> None:
        Deferred.__init__(self, canceller)
        self.method = method
        self.args = args
        self.kwargs = kwargs
        self.connection: Connection | None = None
        self.done = False
        self.timer: Any = None
        self.retried = False
        self.mark = 0
        self.queuedAt = 0.0
        self.sentAt = 0.0
        self.origin: str | None = None


class Connection:
    """
    One connection of a pool, from its connection attempt to its end.

    @ivar factory: The user's factory that built the protocol.
    @ivar ready: The readiness L{Deferred} (the factory's C{deferred} when it was made).
    @ivar attempt: The endpoint's connection attempt, while it is pending.
    @ivar protocol: The user's protocol, once it is built.
    @ivar transport: The transport, once connected.
    @ivar requests: The requests in flight on the connection, in the order they were sent.
    @ivar holder: The checkout (or ping) holding the connection for itself, if any.
    @ivar accepting: Whether the connection is in the pool's list of busy connections that
        can take one more pipelined request.
    @ivar lost: Whether the transport reported the connection lost.
    @ivar timer: The pending connect timeout, while connecting.
    @ivar proven: Whether a request completed on the connection without breaking it.
    @ivar received: How many chunks of data the connection has received.
    @ivar lastUsed: When the connection last finished serving a request (or became ready).
    @ivar lastActive: When the connection last finished a request or a ping.
    @ivar expiresAt: When the connection reaches its lifetime, or L{None}.
    @ivar leakAt: For a checkout under leak detection, when to warn; L{None} once warned.
    @ivar validated: Whether the connection just answered a validation ping, and goes to the
        next request without another.
    """

    __slots__ = (
        "accepting",
        "attempt",
        "expiresAt",
        "factory",
        "holder",
        "lastActive",
        "lastUsed",
        "leakAt",
        "lost",
        "protocol",
        "proven",
        "ready",
        "received",
        "requests",
        "state",
        "timer",
        "transport",
        "validated",
    )

    def __init__(self, factory: PooledClientFactory, ready: Deferred[Any]) -> None:
        self.factory: Any = factory
        self.ready = ready
        self.attempt: Deferred[Any] | None = None
        self.protocol: Any = None
        self.transport: Any = None
        self.requests: deque[Request] = deque()
        self.holder: Request | None = None
        self.accepting = False
        self.state = State.CONNECTING
        self.lost = False
        self.timer: Any = None
        self.proven = False
        self.received = 0
        self.lastUsed = 0.0
        self.lastActive = 0.0
        self.expiresAt: float | None = None
        self.leakAt: float | None = None
        self.validated = False

    def close(self, abort: bool = False) -> None:
        """
        Close the transport, if there is one and it is still open.

        @param abort: Drop the connection at once, discarding unsent data, rather than after
            writing what is buffered.
        """
        transport = self.transport
        if transport is None or self.lost:
            return
        if abort and hasattr(transport, "abortConnection"):
            transport.abortConnection()
        else:
            transport.loseConnection()


_FORWARDED_INTERFACES = (
    interfaces.IHalfCloseableProtocol,
    interfaces.IFileDescriptorReceiver,
    interfaces.IHandshakeListener,
)


class PoolProtocol(Protocol):
    """
    Carries a user's protocol for the pool: events pass straight through to it, and the pool
    hears when the connection is made and lost. The user's protocol gets the real transport.
    """

    def __init__(self, pool: ConnectionMachine, connection: Connection, wrapped: Any) -> None:
        self._pool = pool
        self._connection = connection
        self._wrapped = wrapped
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
        Connect the wrapped protocol, then let the pool judge whether it is ready.
        """
        self.connected = True
        self.transport = transport
        self._pool._connectionMade(self._connection, self._wrapped, transport)

    def dataReceived(self, data: bytes) -> None:
        """
        Pass received bytes to the wrapped protocol.
        """
        self._connection.received += 1
        self._wrapped.dataReceived(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """
        Tell the wrapped protocol, and the pool, that the connection is gone.
        """
        self.connected = False
        self._pool._connectionLost(self._connection, reason)

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
    The factory given to the endpoint for one connection of a pool: it has the user's factory
    build the protocol and wraps it in a L{PoolProtocol}.
    """

    noisy = False

    def __init__(self, pool: ConnectionMachine, connection: Connection) -> None:
        self._pool = pool
        self._connection = connection

    def doStart(self) -> None:
        """
        Pass the start notification to the user's factory.
        """
        self._connection.factory.doStart()

    def doStop(self) -> None:
        """
        Pass the stop notification to the user's factory.
        """
        self._connection.factory.doStop()

    def buildProtocol(self, addr: Any) -> PoolProtocol | None:
        """
        Have the user's factory build its protocol, and wrap it.
        """
        wrapped = self._connection.factory.buildProtocol(addr)
        if wrapped is None:
            return None
        self._connection.protocol = wrapped
        return PoolProtocol(self._pool, self._connection, wrapped)
