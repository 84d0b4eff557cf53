"""
The plain records of a pool: its requests, its connections and the requests in flight on
them, and the interface through which the connection driver reports to the pool's core.

Nothing here acts: the core (L{txconnpool._core.PoolCore}) is the only code that changes
these records, except the fields of L{Link}, which belong to the driver.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from enum import Enum
from typing import Any, Protocol

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure


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
    A request that waits for a connection: a call of C{performRequest} (C{method} is the
    name) or C{acquire} (C{method} is L{None}) that found no connection free. It is the
    L{Deferred} handed to the caller. (A request sent at once, on a protocol that settles its
    own L{Deferred}s, has no L{Request}: the caller gets the protocol's L{Deferred}.)

    @ivar queuedAt: When the request was made.
    @ivar timer: The pending C{acquireTimeout} call, while the request waits.
    @ivar retried: Whether this is the second sending of a request whose connection had
        been closed before any reply.
    @ivar origin: For a checkout under leak detection, the stack where it was made.
    @ivar flight: The request in flight, once it was sent.
    @ivar done: Whether the request has been, or is being, fired or cancelled.
    """

    __slots__ = ("args", "done", "flight", "kwargs", "method", "origin", "queuedAt",
                 "retried", "timer")

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
        self.queuedAt = 0.0
        self.timer: Any = None
        self.retried = False
        self.origin: str | None = None
        self.flight: Flight | None = None
        self.done = False


class Flight:
    """
    One request in flight on a connection.

    @ivar connection: The connection carrying it.
    @ivar deferred: The L{Deferred} the protocol's method returned, if it returned one.
    @ivar request: The caller's L{Request}, when the request had waited in the queue;
        L{None} when the caller holds C{deferred} itself.
    @ivar sentAt: When the request was handed to the connection.
    @ivar mark: The connection's count of received chunks when the request was sent: if it
        is unchanged when the connection is lost, no reply to the request had arrived.
    @ivar timedOut: Whether the request outlived C{requestTimeout}.
    """

    __slots__ = ("args", "connection", "deferred", "kwargs", "mark", "method", "request",
                 "retried", "sentAt", "timedOut")

    def __init__(
        self,
        connection: Connection,
        method: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        request: Request | None,
        retried: bool,
        sentAt: float,
        mark: int,
    ) -> None:
        self.connection = connection
        self.method = method
        self.args = args
        self.kwargs = kwargs
        self.request = request
        self.retried = retried
        self.sentAt = sentAt
        self.mark = mark
        self.deferred: Deferred[Any] | None = None
        self.timedOut = False


class Checkout:
    """
    The holder of a connection checked out by a caller.

    @ivar origin: Under leak detection, the stack where the checkout was made.
    """

    __slots__ = ("origin",)

    def __init__(self, origin: str | None) -> None:
        self.origin = origin


class Ping:
    """
    The holder of a connection taken out of service to be pinged.
    """

    __slots__ = ("purpose",)

    def __init__(self, purpose: str) -> None:
        self.purpose = purpose


class Link:
    """
    The driver's side of one connection: the attempt, the transport and what came over it.

    @ivar factory: The user's factory that builds the protocol.
    @ivar ready: The readiness L{Deferred} (the factory's C{deferred} when it was made).
    @ivar attempt: The endpoint's connection attempt, while it is pending.
    @ivar protocol: The user's protocol, once it is built.
    @ivar transport: The transport, once connected.
    @ivar received: How many chunks of data arrived.
    @ivar lost: Whether the transport reported the connection lost.
    @ivar timer: The pending connect timeout, until the connection is ready or gone.
    @ivar settled: Whether the attempt has been reported ready or failed.
    """

    __slots__ = ("attempt", "factory", "lost", "protocol", "ready", "received", "settled",
                 "timer", "transport")

    def __init__(self, factory: Any, ready: Deferred[Any]) -> None:
        self.factory = factory
        self.ready = ready
        self.attempt: Deferred[Any] | None = None
        self.protocol: Any = None
        self.transport: Any = None
        self.received = 0
        self.lost = False
        self.timer: Any = None
        self.settled = False


class Connection:
    """
    The core's record of one connection, from its connection attempt to its end.

    @ivar link: The driver's side of the connection.
    @ivar protocol: The user's protocol, once connected.
    @ivar state: Where the connection is in its life.
    @ivar flights: The requests in flight on it, oldest first.
    @ivar holder: The L{Checkout} or L{Ping} holding it for itself, if any.
    @ivar proven: Whether a request or ping completed on it without breaking it.
    @ivar retiring: Why it takes no new requests and closes once its requests are done
        (C{"lifetime"} or C{"surplus"}), or L{None}.
    @ivar validated: Whether it just answered a validation ping, and goes to the next
        request without another.
    @ivar lastUsed: When it last finished serving a request (or became ready).
    @ivar lastActive: When it last finished a request or a ping.
    @ivar expiresAt: When it reaches its lifetime, or L{None}.
    """

    __slots__ = (
        "expiresAt",
        "flights",
        "holder",
        "lastActive",
        "lastUsed",
        "link",
        "protocol",
        "proven",
        "retiring",
        "state",
        "validated",
    )

    def __init__(self, link: Link) -> None:
        self.link = link
        self.protocol: Any = None
        self.state = State.CONNECTING
        self.flights: deque[Flight] = deque()
        self.holder: Checkout | Ping | None = None
        self.proven = False
        self.retiring: str | None = None
        self.validated = False
        self.lastUsed = 0.0
        self.lastActive = 0.0
        self.expiresAt: float | None = None


class ConnectionEvents(Protocol):
    """
    What the connection driver reports about each connection, in this order: C{made} (the
    transport is connected), then exactly one of C{ready} and C{failed}, then, after
    C{ready}, C{lost}. C{ended} comes last, once nothing of the connection is left open.
    """

    def made(self, connection: Connection, protocol: Any) -> None:
        """
        The transport is connected and C{protocol} built; it may not be ready yet.
        """

    def ready(self, connection: Connection) -> None:
        """
        The connection is ready for requests.
        """

    def failed(self, connection: Connection, reason: Failure) -> None:
        """
        The attempt failed, timed out, or the handshake failed.
        """

    def lost(self, connection: Connection, reason: Failure) -> None:
        """
        A ready connection's transport is gone.
        """

    def ended(self, connection: Connection, reason: Failure) -> None:
        """
        Nothing of the connection is left open; C{reason} is why it ended.
        """

