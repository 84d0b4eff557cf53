"""
Synchronous tests of reaping: which idle connection gives way to a waiting client, and when.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from twisted.internet.protocol import Factory
from twisted.internet.task import Clock

from tests.server_support import QUIET, Client, ProbedProtocol, RecordingFactory, connect, v4
from txconnpool.server import LimitConnectionsFactory


def makeLimiter(
    maxConnections: int, reapIdleAfter: float = 3, factory: Factory[Any] | None = None
) -> tuple[LimitConnectionsFactory, Clock]:
    """
    A limiter that reaps after C{reapIdleAfter} seconds, with turns and timeouts off.
    """
    clock = Clock()
    limiter = LimitConnectionsFactory(
        factory or RecordingFactory(),
        maxConnections,
        reactor=clock,
        **{**QUIET, "reapIdleAfter": reapIdleAfter},
    )
    return limiter, clock


def reply(client: Client, data: bytes = b"reply") -> None:
    """
    The served protocol writes to its client.
    """
    client.served.transport.write(data)


def test_longestIdleReapedForQueuedClient() -> None:
    """
    With every slot taken, a queued client makes the connection idle longest give way, and
    only as many connections are reaped as clients wait.
    """
    limiter, clock = makeLimiter(3)
    old, mid, recent = connect(limiter, 3)
    clock.advance(2)
    reply(mid)
    clock.advance(2)
    reply(recent)
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


def test_connectionAwaitingReplyNeverReaped() -> None:
    """
    A connection of a protocol without a probe whose client spoke last (the server has not
    answered yet) is not reaped, however long it is silent; once the server answers, it is
    reaped after reapIdleAfter seconds.
    """
    limiter, clock = makeLimiter(1, reapIdleAfter=2)
    (asking,) = connect(limiter, 1)
    asking.send(b"question")
    (waiting,) = connect(limiter, 1)
    clock.advance(60)
    assert not asking.transport.disconnecting
    reply(asking, b"answer")
    clock.advance(2 + limiter.reapPollInterval)
    assert asking.transport.disconnecting
    asking.transport.finishClose()
    assert waiting.served is not None
    assert clock.getDelayedCalls() == []


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
    reply(busy, b"response")
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


class SocketTransportClient(Client):
    """
    A fake client whose transport has a real socket descriptor, so the limiter can see
    whether bytes wait unread on it.
    """

    def __init__(self, limiter: LimitConnectionsFactory, sock: socket.socket) -> None:
        super().__init__(limiter, v4("10.1.1.1", 40000 + sock.fileno()))
        self.transport.fileno = sock.fileno  # type: ignore[attr-defined]


@pytest.fixture
def socketPair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """
    A connected pair of UNIX stream sockets, closed afterwards.
    """
    pair = socket.socketpair()
    yield pair
    for sock in pair:
        sock.close()


def test_unreadRequestOnSocketPreventsReaping(
    socketPair: tuple[socket.socket, socket.socket],
) -> None:
    """
    An idle connection whose socket already holds the bytes of a next request, not read yet,
    is not reaped; once they have been read and answered, and it is idle again, it is.
    """
    server, client = socketPair
    limiter, clock = makeLimiter(1, reapIdleAfter=1)
    served = SocketTransportClient(limiter, server)
    clock.advance(5)
    client.sendall(b"next request")
    (waiting,) = connect(limiter, 1)
    assert not served.transport.disconnecting
    assert limiter.stats().reaped == 0
    served.send(server.recv(100))
    reply(served)
    clock.advance(1 + limiter.reapPollInterval)
    assert served.transport.disconnecting
    served.transport.finishClose()
    assert waiting.served is not None
    assert limiter.stats().reaped == 1
