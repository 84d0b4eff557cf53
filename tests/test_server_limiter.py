"""
Synchronous tests of L{LimitConnectionsFactory}: slots, the queue, overflow, departures and
timeouts, on a L{Clock} with fake transports.
"""

from __future__ import annotations

import sys

import attrs
import pytest
from twisted.internet.address import UNIXAddress
from twisted.internet.interfaces import IAddress, IHalfCloseableProtocol
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from zope.interface import implementer

from tests.server_support import (
    QUIET,
    Client,
    FakeTransport,
    RecordingFactory,
    RecordingProtocol,
    connect,
)
from txconnpool.server import LimitConnectionsFactory, LimiterStats, PeerStats


def makeLimiter(
    maxConnections: int = 2, **kwargs: object
) -> tuple[LimitConnectionsFactory, RecordingFactory, Clock]:
    """
    A limiter with the time-based features off (see L{QUIET}) but those in C{kwargs}.
    """
    clock = Clock()
    wrapped = RecordingFactory()
    options = {**QUIET, **kwargs}
    limiter = LimitConnectionsFactory(wrapped, maxConnections, reactor=clock, **options)  # type: ignore[arg-type]
    return limiter, wrapped, clock


def test_underLimitServedAtOnce() -> None:
    """
    Connections under the limit are served as soon as they are accepted, unpaused.
    """
    limiter, wrapped, _ = makeLimiter(2)
    clients = connect(limiter, 2)
    assert [c.served for c in clients] == wrapped.built
    assert all(p.made for p in wrapped.built)
    assert not any(c.transport.paused for c in clients)
    assert limiter.stats().active == 2
    assert limiter.stats().served == 2


def test_beyondLimitQueuedAndPaused() -> None:
    """
    A connection beyond the limit is paused and queued, and no protocol is built for it.
    """
    limiter, wrapped, _ = makeLimiter(1)
    _first, second = connect(limiter, 2)
    assert second.transport.paused
    assert second.served is None
    assert len(wrapped.built) == 1
    stats = limiter.stats()
    assert (stats.active, stats.queued) == (1, 1)


def test_freedSlotGoesToOldestInSameCall() -> None:
    """
    When a served connection closes, the oldest queued one is served within that same call,
    with its transport resumed.
    """
    limiter, wrapped, _ = makeLimiter(1)
    first, second, third = connect(limiter, 3)
    first.transport.clientLeaves()
    assert second.served is wrapped.built[1]
    assert not second.transport.paused
    assert third.served is None and third.transport.paused
    assert limiter.stats().active == 1 and limiter.stats().queued == 1


def test_dataDeliveredWhileQueuedReplayedInOrder() -> None:
    """
    Bytes a transport delivers while its connection waits reach the served protocol first,
    in order and intact, followed by later bytes.
    """
    limiter, wrapped, _ = makeLimiter(1)
    first, second = connect(limiter, 2)
    second.send(b"GET / HTTP/1.1\r\n")
    second.send(b"Host: x\r\n")
    first.transport.clientLeaves()
    second.send(b"\r\n")
    assert wrapped.built[1].received == [b"GET / HTTP/1.1\r\n", b"Host: x\r\n", b"\r\n"]


def test_queuedClientThatLeavesIsRemoved() -> None:
    """
    A queued connection that is lost is taken out of the queue, counted as having left and
    never served.
    """
    limiter, wrapped, _ = makeLimiter(1)
    first, second, third = connect(limiter, 3)
    second.transport.clientLeaves()
    assert limiter.stats().leftQueued == 1
    assert limiter.stats().queued == 1
    first.transport.clientLeaves()
    assert second.served is None
    assert third.served is wrapped.built[1]


def test_departureNoticedByWatcherAbortsAndCountsOnce() -> None:
    """
    A departure reported while queued aborts the connection and counts it once, even when the
    transport's own connectionLost follows.
    """
    limiter, wrapped, _ = makeLimiter(1)
    first, second = connect(limiter, 2)
    second.wrapper.departed()
    assert second.transport.aborted
    assert limiter.stats().queued == 0
    second.transport.finishClose()
    first.transport.clientLeaves()
    stats = limiter.stats()
    assert stats.leftQueued == 1
    assert stats.active == 0
    assert len(wrapped.built) == 1


def test_maxQueuedOverflowClosesAtOnce() -> None:
    """
    Beyond maxQueued a new connection is closed at once and counted as overflowed.
    """
    limiter, _wrapped, _ = makeLimiter(1, maxQueued=1)
    _first, _second, third = connect(limiter, 3)
    assert third.transport.disconnecting
    assert third.served is None
    third.transport.finishClose()
    stats = limiter.stats()
    assert (stats.active, stats.queued, stats.overflowed, stats.overflowing) == (1, 1, 1, 0)


def test_maxQueuedZeroRefusesEveryExcessClient() -> None:
    """
    With maxQueued=0 nothing waits: every connection beyond the slots is refused.
    """
    limiter, _, _ = makeLimiter(1, maxQueued=0)
    _, second = connect(limiter, 2)
    assert second.transport.disconnecting
    assert limiter.stats().overflowed == 1


def test_overflowFactoryGetsQueuedBytes() -> None:
    """
    An overflowing connection is handed to the overflow factory's protocol, resumed, with the
    bytes already delivered.
    """
    overflow = RecordingFactory()
    limiter, _, _ = makeLimiter(1, maxQueued=0, overflowFactory=overflow)
    _, second = connect(limiter, 2)
    assert second.served is overflow.built[0]
    assert not second.transport.paused
    second.send(b"hello")
    assert overflow.built[0].data == b"hello"
    assert limiter.stats().overflowing == 1
    second.transport.clientLeaves()
    assert limiter.stats().overflowing == 0
    assert overflow.built[0].lostReason is not None


def test_queueTimeoutClosesWaitingConnection() -> None:
    """
    A connection that waited queueTimeout seconds is given the overflow behaviour and counted;
    one that arrived later keeps waiting until its own deadline.
    """
    limiter, _, clock = makeLimiter(1, queueTimeout=10)
    first, second = connect(limiter, 2)
    clock.advance(4)
    (third,) = connect(limiter, 1)
    clock.advance(6)
    assert second.transport.disconnecting
    assert not third.transport.disconnecting
    second.transport.finishClose()
    assert limiter.stats().timedOutQueued == 1
    clock.advance(4)
    assert third.transport.disconnecting
    third.transport.finishClose()
    stats = limiter.stats()
    assert (stats.timedOutQueued, stats.queued, stats.active) == (2, 0, 1)
    assert clock.getDelayedCalls() == []
    assert not first.transport.disconnecting


def test_queueTimerCancelledWhenQueueEmpties() -> None:
    """
    Once the queue is empty no queue timer is left behind.
    """
    limiter, _, clock = makeLimiter(1, queueTimeout=10)
    first, second = connect(limiter, 2)
    first.transport.clientLeaves()
    assert second.served is not None
    assert clock.getDelayedCalls() == []


def test_idleTimeoutClosesSilentConnection() -> None:
    """
    A served connection with no traffic for idleTimeout seconds is closed and counted; traffic
    in either direction postpones it.
    """
    limiter, _, clock = makeLimiter(1, idleTimeout=10)
    (client,) = connect(limiter, 1)
    clock.advance(6)
    client.send(b"x")
    clock.advance(6)
    client.served.transport.write(b"reply")
    clock.advance(6)
    assert not client.transport.disconnecting
    clock.advance(4)
    assert client.transport.disconnecting
    client.transport.finishClose()
    assert limiter.stats().idleClosed == 1
    assert clock.getDelayedCalls() == []


def test_idleCloseAbortsClientThatDoesNotRead() -> None:
    """
    A connection closed for idleness that has not closed after the grace period is aborted.
    """
    limiter, _, clock = makeLimiter(1, idleTimeout=10)
    (client,) = connect(limiter, 1)
    clock.advance(10)
    assert client.transport.disconnecting and not client.transport.aborted
    clock.advance(limiter.closeGracePeriod)
    assert client.transport.aborted
    client.transport.finishClose()
    assert clock.getDelayedCalls() == []


def test_slowlorisClosedAtRequestDeadline() -> None:
    """
    A client trickling a byte at a time, too fast for the idle timeout, is closed when its
    request has taken requestTimeout seconds to arrive.
    """
    limiter, _, clock = makeLimiter(1, idleTimeout=10, requestTimeout=30)
    (client,) = connect(limiter, 1)
    client.send(b"x")
    for _ in range(29):
        clock.advance(1)
        client.send(b"x")
    assert not client.transport.disconnecting
    clock.advance(1)
    assert client.transport.disconnecting
    client.transport.finishClose()
    assert limiter.stats().requestTimedOut == 1
    assert limiter.stats().idleClosed == 0


def test_requestDeadlineRestartsAfterReply() -> None:
    """
    For a protocol without a probe, a reply ends the request, so steady request/reply traffic
    is never cut off.
    """
    limiter, _, clock = makeLimiter(1, requestTimeout=5)
    (client,) = connect(limiter, 1)
    for _ in range(20):
        client.send(b"ping")
        clock.advance(3)
        client.served.transport.write(b"pong")
    assert not client.transport.disconnecting
    assert limiter.stats().requestTimedOut == 0
    client.transport.clientLeaves()
    assert clock.getDelayedCalls() == []


def test_refusedByWrappedFactoryReleasesSlot() -> None:
    """
    When the wrapped factory returns None the connection is dropped, and its slot goes to the
    next queued connection once it is closed.
    """

    class Refusing(Factory[Protocol]):
        noisy = False
        count = 0

        def buildProtocol(self, addr: IAddress | None) -> Protocol | None:
            self.count += 1
            return None if self.count == 2 else Protocol()

    clock = Clock()
    limiter = LimitConnectionsFactory(Refusing(), 1, reactor=clock, **QUIET)
    first, second, third = connect(limiter, 3)
    first.transport.clientLeaves()
    assert second.transport.aborted
    assert third.served is None
    second.transport.finishClose()
    assert third.served is not None
    assert limiter.stats().active == 1


def test_crashingProtocolDroppedAndSlotReleased() -> None:
    """
    A served protocol whose connectionMade raises is dropped, and its slot is released when
    its transport closes.
    """

    class Crashing(Protocol):
        def connectionMade(self) -> None:
            raise RuntimeError("boom")

    clock = Clock()
    limiter = LimitConnectionsFactory(Factory.forProtocol(Crashing), 1, reactor=clock, **QUIET)
    (client,) = connect(limiter, 1)
    assert client.transport.aborted
    client.transport.finishClose()
    assert limiter.stats().active == 0


def test_synchronousClosesDoNotRecurse() -> None:
    """
    Thousands of queued connections whose protocols close synchronously are all served by
    one loop, without deep recursion.
    """

    class Closing(Protocol):
        def connectionMade(self) -> None:
            self.transport.loseConnection()  # type: ignore[union-attr]

    clock = Clock()
    limiter = LimitConnectionsFactory(Factory.forProtocol(Closing), 1, reactor=clock, **QUIET)
    blocker = Client(limiter, connect_addr(1))
    n = sys.getrecursionlimit() * 3
    waiting = [Client(limiter, connect_addr(i + 2), closeAtOnce=True) for i in range(n)]
    assert limiter.stats().queued == n
    blocker.transport.clientLeaves()
    assert all(c.transport.lost for c in waiting)
    stats = limiter.stats()
    assert (stats.served, stats.active, stats.queued) == (n + 1, 0, 0)


def connect_addr(port: int) -> IAddress:
    from tests.server_support import v4

    return v4("10.9.9.9", port)


def test_maxPerPeerQueuesSamePeerOnly() -> None:
    """
    With maxPerPeer=1, a second connection from the same address waits while a connection from
    another address is served in the free slot.
    """
    limiter, _, _ = makeLimiter(3, maxPerPeer=1)
    (a1,) = connect(limiter, 1, host="10.0.0.1")
    (a2,) = connect(limiter, 1, host="10.0.0.1")
    (b1,) = connect(limiter, 1, host="10.0.0.2")
    assert a1.served is not None and b1.served is not None
    assert a2.served is None and a2.transport.paused
    assert limiter.stats().peers == {
        "10.0.0.1": PeerStats(active=1, queued=1),
        "10.0.0.2": PeerStats(active=1, queued=0),
    }
    a1.transport.clientLeaves()
    assert a2.served is not None


def test_maxPerPeerFifoAcrossPeers() -> None:
    """
    A freed slot goes to the oldest queued connection whose address has room, skipping older
    ones whose address is at its limit.
    """
    limiter, _, _ = makeLimiter(2, maxPerPeer=1)
    (a1,) = connect(limiter, 1, host="10.0.0.1")
    (b1,) = connect(limiter, 1, host="10.0.0.2")
    (a2,) = connect(limiter, 1, host="10.0.0.1")
    (c1,) = connect(limiter, 1, host="10.0.0.3")
    (c2,) = connect(limiter, 1, host="10.0.0.3")
    b1.transport.clientLeaves()
    assert c1.served is not None
    assert a2.served is None and c2.served is None
    a1.transport.clientLeaves()
    assert a2.served is not None
    assert c2.served is None


def test_maxPerPeerIPv6AndMappedIPv4() -> None:
    """
    The per-peer limit counts IPv6 addresses on their own and an IPv4-mapped IPv6 address as
    its IPv4 address.
    """
    limiter, _, _ = makeLimiter(4, maxPerPeer=1)
    (six,) = connect(limiter, 1, host="2001:db8::7")
    (sixAgain,) = connect(limiter, 1, host="2001:db8::7")
    (four,) = connect(limiter, 1, host="192.0.2.5")
    (mapped,) = connect(limiter, 1, host="::ffff:192.0.2.5")
    assert six.served is not None and four.served is not None
    assert sixAgain.served is None and mapped.served is None
    assert limiter.stats().peers["192.0.2.5"] == PeerStats(active=1, queued=1)
    assert limiter.stats().peers["2001:db8::7"] == PeerStats(active=1, queued=1)


def test_unixPeersNotLimitedPerPeer() -> None:
    """
    Connections on a UNIX socket have no peer address and are not held back by maxPerPeer.
    """
    limiter, wrapped, _ = makeLimiter(3, maxPerPeer=1)
    clients = [Client(limiter, UNIXAddress(None)) for _ in range(3)]
    assert all(c.served is not None for c in clients)
    assert limiter.stats().peers == {}
    assert len(wrapped.built) == 3


def test_halfCloseForwardedToHalfCloseableProtocol() -> None:
    """
    A served protocol that supports half-close receives readConnectionLost instead of the
    connection being closed.
    """

    @implementer(IHalfCloseableProtocol)
    class HalfCloser(RecordingProtocol):
        readLost = False

        def readConnectionLost(self) -> None:
            self.readLost = True

        def writeConnectionLost(self) -> None:
            pass

    limiter = LimitConnectionsFactory(Factory.forProtocol(HalfCloser), 1, reactor=Clock(), **QUIET)
    (client,) = connect(limiter, 1)
    assert IHalfCloseableProtocol.providedBy(client.wrapper)
    client.wrapper.readConnectionLost()
    assert client.served.readLost
    assert not client.transport.disconnecting


def test_transportAttributesReachable() -> None:
    """
    The served protocol's transport offers the real transport's methods and interfaces.
    """
    limiter, _, _ = makeLimiter(1)
    (client,) = connect(limiter, 1)
    transport = client.served.transport
    assert transport.getPeer() == client.transport.getPeer()
    assert transport.getHost() == client.transport.getHost()
    transport.write(b"abc")
    transport.writeSequence([b"d", b"e"])
    assert client.transport.value() == b"abcde"
    assert transport.value() == b"abcde"
    transport.pauseProducing()
    assert client.transport.paused
    transport.resumeProducing()
    assert not client.transport.paused
    assert not transport.disconnecting
    transport.loseConnection()
    assert transport.disconnecting and client.transport.disconnecting


@pytest.mark.parametrize(
    ("kwargs", "exception", "name"),
    [
        ({"maxConnections": 0}, ValueError, "maxConnections"),
        ({"maxConnections": 1.5}, TypeError, "maxConnections"),
        ({"maxConnections": True}, TypeError, "maxConnections"),
        ({"maxQueued": -1}, ValueError, "maxQueued"),
        ({"maxPerPeer": 0}, ValueError, "maxPerPeer"),
        ({"queueTimeout": -1}, ValueError, "queueTimeout"),
        ({"idleTimeout": -1}, ValueError, "idleTimeout"),
        ({"requestTimeout": float("nan")}, ValueError, "requestTimeout"),
        ({"reapIdleAfter": "1"}, TypeError, "reapIdleAfter"),
        ({"headerTimeout": -0.5}, ValueError, "headerTimeout"),
        ({"minTurn": -1}, ValueError, "minTurn"),
        ({"minTurn": "0.1"}, TypeError, "minTurn"),
        ({"minTurnRequests": 0}, ValueError, "minTurnRequests"),
        ({"minTurnRequests": 1.0}, TypeError, "minTurnRequests"),
        ({"overflowFactory": object()}, TypeError, "overflowFactory"),
    ],
)
def test_badArgumentsNamed(kwargs: dict[str, object], exception: type, name: str) -> None:
    """
    A bad argument raises TypeError or ValueError with a message naming it.
    """
    args: dict[str, object] = {"maxConnections": 1, "reactor": Clock()}
    args.update(kwargs)
    maxConnections = args.pop("maxConnections")
    with pytest.raises(exception, match=name):
        LimitConnectionsFactory(RecordingFactory(), maxConnections, **args)  # type: ignore[arg-type]


def test_wrappedFactoryMustBeAFactory() -> None:
    """
    Wrapping something that is not a protocol factory raises TypeError.
    """
    with pytest.raises(TypeError, match="wrappedFactory"):
        LimitConnectionsFactory(object(), 1, reactor=Clock())  # type: ignore[arg-type]


def test_statsIsFrozenSnapshot() -> None:
    """
    stats() returns an immutable snapshot that later changes do not alter.
    """
    limiter, _, _ = makeLimiter(1, maxQueued=5)
    connect(limiter, 2)
    stats = limiter.stats()
    assert isinstance(stats, LimiterStats)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        stats.active = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        stats.peers["x"] = PeerStats(active=0, queued=0)  # type: ignore[index]
    connect(limiter, 1)
    assert stats.queued == 1 and limiter.stats().queued == 2
    assert (stats.maxConnections, stats.maxQueued) == (1, 5)


def test_reprShowsCounts() -> None:
    """
    The limiter's repr shows its active, queued and overflowing counts.
    """
    limiter, _, _ = makeLimiter(1)
    connect(limiter, 3)
    assert "1/1 active, 2 queued, 0 overflowing" in repr(limiter)
    assert "queued" in repr(limiter.stats())


def test_startAndStopForwardedToWrappedFactory() -> None:
    """
    Starting and stopping the limiter starts and stops the wrapped factory.
    """
    limiter, wrapped, _ = makeLimiter(1)
    limiter.doStart()
    assert wrapped.numPorts == 1
    limiter.doStop()
    assert wrapped.numPorts == 0
    assert limiter.numPorts == 0


def test_fakeTransportPausedUntilServed() -> None:
    """
    A queued transport stays paused through later arrivals and is resumed only when served.
    """
    limiter, _, _ = makeLimiter(1)
    first, second = connect(limiter, 2)
    connect(limiter, 5)
    assert isinstance(second.transport, FakeTransport)
    assert second.transport.paused
    first.transport.clientLeaves()
    assert second.transport.producerState == "producing"
