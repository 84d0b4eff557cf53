"""
What the limiter knows about one accepted connection, and the two narrow interfaces between the
limiter's core and the protocol that stands for each connection.

The core owns every L{ConnectionRecord} and is the only code that changes one.  The connection
(a L{LimitedProtocol<txconnpool.server.LimitedProtocol>}) reports what happens to it through
L{LimiterEvents}, and the core tells it what to do through L{ConnectionHandle}.  Neither side
knows the other's class.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Protocol

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IAddress, IDelayedCall, IProtocol

from ._probe import IConnectionProbe


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


class ConnectionHandle(Protocol):
    """
    What the limiter's core may ask an accepted connection to do.  Each call does I/O only; the
    core has already recorded the change.
    """

    def enterQueue(self) -> None:
        """
        Stop reading from the connection: it waits for a slot.
        """

    def serve(self, protocol: IProtocol, *, reportTraffic: bool) -> None:
        """
        Serve the connection with C{protocol}: resume reading, connect the protocol and hand
        it the bytes delivered so far.

        @param reportTraffic: Whether to report every delivery and write to the core.
        """

    def overflow(self, protocol: IProtocol | None) -> None:
        """
        Hand the connection to an overflow protocol, or close it if there is none.
        """

    def loseConnection(self) -> None:
        """
        Close the connection in order, once what was written has been sent.
        """

    def abortConnection(self) -> None:
        """
        Close the connection at once, unread and unsent data and all.
        """

    def descriptor(self) -> int | None:
        """
        @return: The connection's socket descriptor, or L{None} if it has none.
        """


class DeadlineTimer(Protocol):
    """
    The timer of a served connection's deadlines.
    """

    def start(self) -> None:
        """
        Look at the deadlines when the earliest may pass.
        """

    def advance(self) -> None:
        """
        A request or its head started to arrive: look no later than its deadline.
        """

    def cancel(self) -> None:
        """
        Stop looking.
        """


class ConnectionRecord:
    """
    The limiter's state for one accepted connection.  Only the limiter's core changes it;
    everyone else may read it.

    @ivar handle: The connection itself.
    @ivar addr: The client's address.
    @ivar arrival: Order of arrival among the limiter's connections.
    @ivar peerKey: The address the per-peer limit counts this connection under.
    @ivar state: Where the connection stands.
    @ivar probe: What tells idle from busy for the served protocol, once served with traffic
        reported.
    @ivar enqueuedAt: When the connection started to wait.
    @ivar servedAt: When the connection was given its slot.
    @ivar lastActivity: When bytes last moved, by the limiter's clock.
    @ivar requestStart: When the request now arriving started to arrive, if one is.
    @ivar headStart: When the head of the request now arriving started to arrive, if it is.
    @ivar exchanges: Times the server wrote after the client had sent something.
    @ivar clientSpoke: Whether the client sent bytes since the server last wrote.
    @ivar turnEnded: Whether the connection was asked to give up its slot.
    @ivar leavesItself: Whether the served protocol said it closes the connection at its next
        request boundary.
    @ivar closingReason: Why the limiter is closing this connection, if it is.
    @ivar deadlines: The timer of this connection's deadlines, while it is served.
    @ivar abortCall: The pending abort of a connection the limiter closed.
    @ivar watchedFd: The descriptor watched for the client's departure while it waits.
    @ivar onDeparture: What the departure watcher calls for it.
    """

    __slots__ = (
        "abortCall",
        "addr",
        "arrival",
        "clientSpoke",
        "closingReason",
        "deadlines",
        "enqueuedAt",
        "exchanges",
        "handle",
        "headStart",
        "lastActivity",
        "leavesItself",
        "onDeparture",
        "peerKey",
        "probe",
        "requestStart",
        "servedAt",
        "state",
        "turnEnded",
        "watchedFd",
    )

    def __init__(self, handle: ConnectionHandle, addr: IAddress, arrival: int) -> None:
        self.handle = handle
        self.addr = addr
        self.arrival = arrival
        self.peerKey = peerKeyOf(addr)
        self.state = State.NEW
        self.probe: IConnectionProbe | None = None
        self.enqueuedAt = 0.0
        self.servedAt = 0.0
        self.lastActivity = 0.0
        self.requestStart: float | None = None
        self.headStart: float | None = None
        self.exchanges = 0
        self.clientSpoke = False
        self.turnEnded = False
        self.leavesItself = False
        self.closingReason: str | None = None
        self.deadlines: DeadlineTimer | None = None
        self.abortCall: IDelayedCall | None = None
        self.watchedFd: int | None = None
        self.onDeparture: Callable[[], None] | None = None

    def __repr__(self) -> str:
        return f"<ConnectionRecord #{self.arrival} {self.state.value} from {self.addr}>"


class LimiterEvents(Protocol):
    """
    What an accepted connection reports to the limiter's core.
    """

    def register(self, handle: ConnectionHandle, addr: IAddress) -> ConnectionRecord:
        """
        A connection from C{addr} was accepted and is about to be connected.

        @return: The record the core keeps for it.
        """

    def connectionArrived(self, record: ConnectionRecord) -> None:
        """
        The connection is connected: serve it, queue it or refuse it.
        """

    def dataArriving(self, record: ConnectionRecord) -> None:
        """
        Bytes from the client are about to reach the served protocol.
        """

    def dataDelivered(self, record: ConnectionRecord) -> None:
        """
        The served protocol has handled the bytes just delivered.
        """

    def dataSent(self, record: ConnectionRecord) -> None:
        """
        The served protocol wrote to the client.
        """

    def clientDeparted(self, record: ConnectionRecord) -> None:
        """
        The client closed or reset the connection while it waited.
        """

    def connectionLost(self, record: ConnectionRecord) -> None:
        """
        The connection's transport is gone (the served protocol has been told already).
        """
