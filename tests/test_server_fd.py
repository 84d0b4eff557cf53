"""
Synchronous tests of the descriptor checks, the accept gate and the departure watcher.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import Logger

from tests.server_support import RecordingFactory, connect
from txconnpool.server import LimitConnectionsFactory, checkDescriptorBudget, descriptorLimit
from txconnpool.server._departure import EpollDepartureWatcher, departureWatcherFor
from txconnpool.server._fd import DESCRIPTOR_RESERVE, AcceptGate, openDescriptorCount


class FakePort:
    """
    Stands for a listening port in a reactor's readers.
    """

    connected = True
    disconnecting = False

    numberAccepts = 100

    def __init__(self, reactor: MemoryReactorClock, factory: object) -> None:
        self.reactor = reactor
        self.factory = factory
        self.reading = False
        self.startReading()

    def startReading(self) -> None:
        self.reading = True
        self.reactor.addReader(self)  # type: ignore[arg-type]

    def stopReading(self) -> None:
        self.reading = False
        self.reactor.removeReader(self)  # type: ignore[arg-type]

    def stopListening(self) -> None:
        self.stopReading()

    def fileno(self) -> int:
        return 99


def test_budgetRefusesConfigurationThatCannotFit() -> None:
    """
    A configuration that cannot fit under the descriptor limit is refused with a message that
    names the arguments, the limit and the remedy.
    """
    with pytest.raises(ValueError) as caught:
        checkDescriptorBudget(100, 900, limit=1024, inUse=20)
    message = str(caught.value)
    assert "maxConnections (100) + maxQueued (900) = 1000" in message
    assert "RLIMIT_NOFILE (1024)" in message
    assert "ulimit -n" in message


def test_budgetAcceptsConfigurationThatFits() -> None:
    """
    A configuration that fits returns how many connections the descriptors leave room for.
    """
    budget = checkDescriptorBudget(100, 800, limit=1024, inUse=20)
    assert budget == 1024 - 20 - DESCRIPTOR_RESERVE


def test_budgetUnlimitedQueueChecksSlotsOnly() -> None:
    """
    With no maxQueued only the slots themselves must fit.
    """
    assert checkDescriptorBudget(500, None, limit=1024, inUse=10) == 1024 - 10 - DESCRIPTOR_RESERVE
    with pytest.raises(ValueError, match=r"maxConnections \(2000\) connections"):
        checkDescriptorBudget(2000, None, limit=1024, inUse=10)


def test_limiterRefusesOversizedConfiguration() -> None:
    """
    The limiter refuses, at construction, more slots and queue than the process's
    RLIMIT_NOFILE allows.
    """
    limit = descriptorLimit()
    assert limit is not None
    with pytest.raises(ValueError, match="RLIMIT_NOFILE"):
        LimitConnectionsFactory(RecordingFactory(), limit, maxQueued=1, reactor=Clock())


def test_openDescriptorCountSeesNewSocket() -> None:
    """
    Opening a socket raises the count of open descriptors by one.
    """
    before = openDescriptorCount()
    with socket.socket() as extra:
        assert extra.fileno() >= 0
        assert openDescriptorCount() == before + 1


def test_gatePausesOwnPortsOnAcceptFailureThenResumes() -> None:
    """
    A failed accept pauses the factory's own listening ports (not others) for a back-off delay
    that doubles on repeated failures, then resumes them; after four quiet delays the factory
    hears that descriptors recovered and the next delay is short again.
    """
    reactor = MemoryReactorClock()
    mine, other = object(), object()
    events: list[str] = []
    gate = AcceptGate(
        reactor,
        lambda f: f is mine,
        lambda: events.append("failed"),
        lambda: events.append("recovered"),
        minBackoff=0.1,
    )
    port, otherPort = FakePort(reactor, mine), FakePort(reactor, other)
    gate.acceptFailed()
    assert not port.reading and otherPort.reading
    assert events == ["failed"] and gate.paused and gate.pauses == 1
    reactor.advance(0.1)
    assert port.reading and not gate.paused
    gate.acceptFailed()
    gate.acceptFailed()
    reactor.advance(0.39)
    assert not port.reading
    reactor.advance(0.01)
    assert port.reading
    reactor.advance(4 * 0.4)
    assert events == ["failed"] * 3 + ["recovered"]
    gate.acceptFailed()
    reactor.advance(0.1)
    assert port.reading
    gate.stop()
    assert reactor.getDelayedCalls() == []


def test_gateLearnsOfFailuresFromPortLogEvents() -> None:
    """
    Between start and stop, the log event a Twisted port emits when accept fails for lack of
    descriptors makes the gate back off.
    """
    reactor = MemoryReactorClock()
    mine = object()
    gate = AcceptGate(reactor, lambda f: f is mine, lambda: None)
    port = FakePort(reactor, mine)
    log = Logger(namespace="twisted.internet.tcp.Port")
    gate.start()
    try:
        log.info("Could not accept new connection ({acceptError})", acceptError="EMFILE")
        log.info("Could not accept new connection ({acceptError})", acceptError="ECONNABORTED")
        reactor.advance(0)
        assert not port.reading and gate.pauses == 1
    finally:
        gate.stop()
    assert port.reading
    log.info("EMFILE encountered; releasing reserved file descriptor.")
    reactor.advance(0)
    assert port.reading and gate.pauses == 1


def test_gateHoldsPortsWhileFull() -> None:
    """
    While the factory holds all the connections descriptors allow, its ports stay paused, also
    past a back-off delay.
    """
    reactor = MemoryReactorClock()
    mine = object()
    gate = AcceptGate(reactor, lambda f: f is mine, lambda: None, minBackoff=0.1)
    port = FakePort(reactor, mine)
    gate.setRoom(0)
    assert not port.reading
    gate.acceptFailed()
    reactor.advance(1)
    assert not port.reading
    gate.setRoom(3)
    assert port.reading
    assert port.numberAccepts == 3


@pytest.fixture
def lowDescriptorLimit() -> Iterator[int]:
    """
    Lower this process's soft RLIMIT_NOFILE so that exactly three more connections fit under
    it, beside the descriptors open now and the reserve; restore it afterwards.
    """
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    room = 3
    resource.setrlimit(
        resource.RLIMIT_NOFILE, (openDescriptorCount() + DESCRIPTOR_RESERVE + room, hard)
    )
    try:
        yield room
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_limiterPausesPortsAtDescriptorBudget(lowDescriptorLimit: int) -> None:
    """
    With no maxQueued, the limiter pauses its listening ports once it holds as many
    connections as descriptors allow, and resumes them when one closes.
    """
    reactor = MemoryReactorClock()
    limiter = LimitConnectionsFactory(RecordingFactory(), 1, reactor=reactor)
    port = FakePort(reactor, limiter)
    first, *_ = connect(limiter, lowDescriptorLimit)
    assert not port.reading
    assert limiter.stats().acceptPauses == 1
    first.transport.clientLeaves()
    assert port.reading


def test_acceptFailureReapsIdleConnectionAndLearnsBudget() -> None:
    """
    When accept fails for lack of descriptors, the limiter reaps its best idle connection
    even though nobody is queued, and keeps its ports paused while it holds as many
    connections as it held then, until descriptors recover.
    """
    reactor = MemoryReactorClock()
    limiter = LimitConnectionsFactory(RecordingFactory(), 5, reapIdleAfter=1, reactor=reactor)
    port = FakePort(reactor, limiter)
    idle, recent = connect(limiter, 2)
    reactor.advance(5)
    recent.send(b"x")
    limiter.doStart()
    Logger(namespace="twisted.internet.tcp.Port").info(
        "Could not accept new connection ({acceptError})", acceptError="EMFILE"
    )
    reactor.advance(0)
    assert idle.transport.disconnecting and not recent.transport.disconnecting
    assert limiter.stats().reaped == 1
    reactor.advance(0.05)
    assert not port.reading
    idle.transport.finishClose()
    assert port.reading
    connect(limiter, 1)
    assert not port.reading
    reactor.advance(10)
    assert port.reading
    limiter.doStop()


def test_departureWatcherReportsClosedPeer() -> None:
    """
    The epoll watcher reports a watched socket whose peer closed, once, and leaves the reactor
    when nothing is watched.
    """
    reactor = MemoryReactorClock()
    watcher = departureWatcherFor(reactor)
    assert isinstance(watcher, EpollDepartureWatcher)
    ours, theirs = socket.socketpair()
    stay, stayPeer = socket.socketpair()
    departed: list[str] = []

    def gone() -> None:
        departed.append("gone")

    def stayed() -> None:
        departed.append("stay")

    try:
        theirs.sendall(b"unread request")
        watcher.watch(ours.fileno(), gone)
        watcher.watch(stay.fileno(), stayed)
        assert watcher in reactor.getReaders()
        watcher.doRead()
        assert departed == []
        theirs.close()
        watcher.doRead()
        assert departed == ["gone"]
        assert ours.recv(100) == b"unread request"
        watcher.unwatch(stay.fileno(), gone)
        assert watcher in reactor.getReaders()
        watcher.unwatch(stay.fileno(), stayed)
        assert watcher not in reactor.getReaders()
        assert watcher.fileno() == -1
    finally:
        watcher.close()
        for s in (ours, theirs, stay, stayPeer):
            s.close()


def test_hasDepartedSeesHangUpWithoutReading() -> None:
    """
    The synchronous hang-up check tells a closed peer from a live one and leaves unread data
    in place.
    """
    watcher = departureWatcherFor(MemoryReactorClock())
    assert watcher is not None
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall(b"pending")
        assert not watcher.hasDeparted(ours.fileno())
        theirs.shutdown(socket.SHUT_WR)
        assert watcher.hasDeparted(ours.fileno())
        assert ours.recv(100) == b"pending"


def test_noWatcherForClock() -> None:
    """
    A reactor without descriptor support (a Clock) gets no departure watcher.
    """
    assert departureWatcherFor(Clock()) is None
