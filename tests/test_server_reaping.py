"""
Synchronous tests of reaping: which idle connection gives way to a waiting client, and when.
"""

from __future__ import annotations

from twisted.internet.protocol import Factory
from twisted.internet.task import Clock

from tests.server_support import ProbedProtocol, RecordingFactory, connect
from txconnpool.server import LimitConnectionsFactory


def makeLimiter(
    maxConnections: int, reapIdleAfter: float = 3, factory: Factory | None = None
) -> tuple[LimitConnectionsFactory, Clock]:
    clock = Clock()
    limiter = LimitConnectionsFactory(
        factory or RecordingFactory(),
        maxConnections,
        reapIdleAfter=reapIdleAfter,
        reactor=clock,
    )
    return limiter, clock


def test_longestIdleReapedForQueuedClient() -> None:
    """
    With every slot taken, a queued client makes the connection idle longest give way, and
    only as many connections are reaped as clients wait.
    """
    limiter, clock = makeLimiter(3)
    old, mid, recent = connect(limiter, 3)
    clock.advance(2)
    mid.send(b"x")
    clock.advance(2)
    recent.send(b"y")
    clock.advance(4)
    (waiting,) = connect(limiter, 1)
    assert old.transport.disconnecting
    assert not mid.transport.disconnecting and not recent.transport.disconnecting
    old.transport.finishClose()
    assert waiting.served is not None
    assert limiter.stats().reaped == 1
    assert clock.getDelayedCalls() == []


def test_noReapingWithoutWaitingClients() -> None:
    """
    Idle connections are left alone while nobody waits.
    """
    limiter, clock = makeLimiter(2)
    clients = connect(limiter, 2)
    clock.advance(100)
    assert not any(c.transport.disconnecting for c in clients)
    assert limiter.stats().reaped == 0
    assert clock.getDelayedCalls() == []


def test_reapWaitsUntilIdleLongEnough() -> None:
    """
    A connection is reaped only once it has been idle reapIdleAfter seconds, at that moment.
    """
    limiter, clock = makeLimiter(1, reapIdleAfter=5)
    (served,) = connect(limiter, 1)
    clock.advance(1)
    (waiting,) = connect(limiter, 1)
    clock.advance(3.9)
    assert not served.transport.disconnecting
    clock.advance(0.1)
    assert served.transport.disconnecting
    served.transport.finishClose()
    assert waiting.served is not None


def test_busyConnectionNeverReaped() -> None:
    """
    A connection whose protocol says it is in the middle of a request is not reaped, however
    long it has been silent; an idle one is taken instead.
    """
    limiter, clock = makeLimiter(2, factory=Factory.forProtocol(ProbedProtocol))
    busy, idle = connect(limiter, 2)
    busy.served.busy = True
    clock.advance(1)
    idle.send(b"x")
    clock.advance(10)
    (_waiting,) = connect(limiter, 1)
    assert idle.transport.disconnecting
    assert not busy.transport.disconnecting


def test_onlyBusyConnectionsMeansWaitThenReapWhenIdle() -> None:
    """
    While every served connection is busy nothing is reaped; once one turns idle it is reaped
    after reapIdleAfter seconds of idleness.
    """
    limiter, clock = makeLimiter(1, reapIdleAfter=2, factory=Factory.forProtocol(ProbedProtocol))
    (busy,) = connect(limiter, 1)
    busy.served.busy = True
    (waiting,) = connect(limiter, 1)
    clock.advance(30)
    assert not busy.transport.disconnecting
    busy.served.transport.write(b"response")
    busy.served.busy = False
    clock.advance(1.9)
    assert not busy.transport.disconnecting
    clock.advance(limiter.reapPollInterval + 2)
    assert busy.transport.disconnecting
    busy.transport.finishClose()
    assert waiting.served is not None
    assert clock.getDelayedCalls() == []


def test_shortKeepAliveReapedBeforeLong() -> None:
    """
    Among idle connections, the one whose protocol announced the shortest keep-alive is reaped
    first, even if another has been idle longer; connections that announce none come last.
    """
    limiter, clock = makeLimiter(3, factory=Factory.forProtocol(ProbedProtocol))
    none, long, short = connect(limiter, 3)
    long.served.keepAlive = 300.0
    short.served.keepAlive = 5.0
    clock.advance(1)
    short.send(b"x")
    clock.advance(10)
    connect(limiter, 1)
    assert short.transport.disconnecting
    assert not long.transport.disconnecting and not none.transport.disconnecting
    connect(limiter, 1)
    assert long.transport.disconnecting
    assert not none.transport.disconnecting
    connect(limiter, 1)
    assert none.transport.disconnecting
    assert limiter.stats().reaped == 3


def test_equalKeepAliveOldestIdleFirst() -> None:
    """
    Among idle connections with the same keep-alive, the one idle longest is reaped first.
    """
    limiter, clock = makeLimiter(2, factory=Factory.forProtocol(ProbedProtocol))
    first, second = connect(limiter, 2)
    first.served.keepAlive = second.served.keepAlive = 15.0
    clock.advance(1)
    first.send(b"x")
    clock.advance(10)
    connect(limiter, 1)
    assert second.transport.disconnecting
    assert not first.transport.disconnecting


def test_reapedConnectionNotCountedTwice() -> None:
    """
    A connection being reaped is not chosen again while it closes; the next waiting client
    makes another connection give way.
    """
    limiter, clock = makeLimiter(2)
    a, b = connect(limiter, 2)
    clock.advance(10)
    connect(limiter, 1)
    connect(limiter, 1)
    assert a.transport.disconnecting and b.transport.disconnecting
    assert limiter.stats().reaped == 2


def test_reapTimerCancelledWhenQueueEmpties() -> None:
    """
    A pending look for a connection to reap is cancelled when the waiting client leaves.
    """
    limiter, clock = makeLimiter(1, reapIdleAfter=60)
    connect(limiter, 1)
    (waiting,) = connect(limiter, 1)
    assert len(clock.getDelayedCalls()) == 1
    waiting.transport.clientLeaves()
    assert limiter.stats().leftQueued == 1
    assert limiter.stats().queued == 0
    assert clock.getDelayedCalls() == []
