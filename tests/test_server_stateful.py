"""
A hypothesis state machine driving L{LimitConnectionsFactory} on a L{Clock} with fake
transports, checking the limiter's invariants after every step.
"""

from __future__ import annotations

from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import Factory
from twisted.internet.task import Clock

from tests.server_support import Client, ProbedProtocol, RecordingFactory, v4, v6
from txconnpool.server import LimitConnectionsFactory
from txconnpool.server._protocol import State

HOSTS = ["10.0.0.1", "10.0.0.2", "2001:db8::1"]


class Served(ProbedProtocol):
    """
    A served protocol that records how often it lost its connection and says whether it is
    busy.
    """

    def __init__(self) -> None:
        super().__init__()
        self.losses = 0

    def connectionLost(self, reason: Any = None) -> None:
        self.losses += 1


class ServedFactory(Factory[Served]):
    """
    Builds L{Served} protocols, or refuses (returns L{None}) when told to.
    """

    noisy = False

    def __init__(self) -> None:
        self.built: list[tuple[Served, IAddress]] = []
        self.refused: list[IAddress] = []
        self.calls: list[IAddress] = []
        self.refuseNext = False

    def buildProtocol(self, addr: IAddress | None) -> Served | None:
        assert addr is not None
        self.calls.append(addr)
        if self.refuseNext:
            self.refuseNext = False
            self.refused.append(addr)
            return None
        protocol = Served()
        self.built.append((protocol, addr))
        return protocol


class LimiterMachine(RuleBasedStateMachine):
    """
    Clients arrive, send, leave, go idle or busy; time passes; the limiter closes what it
    decides to close, and the fake transports finish those closes when the machine says so.
    """

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        self.clients: list[Client] = []
        self.port = 30000
        self.departed: set[int] = set()
        self.checkedReaped: set[int] = set()
        self.sent: dict[int, bytes] = {}

    @initialize(
        maxConnections=st.integers(1, 3),
        maxQueued=st.one_of(st.none(), st.integers(0, 4)),
        maxPerPeer=st.one_of(st.none(), st.integers(1, 2)),
        queueTimeout=st.sampled_from([None, 5.0]),
        idleTimeout=st.sampled_from([None, 7.0]),
        requestTimeout=st.sampled_from([None, 4.0]),
        reapIdleAfter=st.sampled_from([None, 0.0, 2.0]),
        overflow=st.booleans(),
    )
    def configure(
        self,
        maxConnections: int,
        maxQueued: int | None,
        maxPerPeer: int | None,
        queueTimeout: float | None,
        idleTimeout: float | None,
        requestTimeout: float | None,
        reapIdleAfter: float | None,
        overflow: bool,
    ) -> None:
        self.wrapped = ServedFactory()
        self.overflowFactory = RecordingFactory() if overflow else None
        self.limiter = LimitConnectionsFactory(
            self.wrapped,
            maxConnections,
            maxQueued=maxQueued,
            maxPerPeer=maxPerPeer,
            queueTimeout=queueTimeout,
            idleTimeout=idleTimeout,
            requestTimeout=requestTimeout,
            reapIdleAfter=reapIdleAfter,
            overflowFactory=self.overflowFactory,
            reactor=self.clock,
        )

    # Helpers

    def live(self) -> list[Client]:
        return [c for c in self.clients if not c.transport.lost]

    def inState(self, state: State) -> list[Client]:
        return [c for c in self.live() if c.wrapper.state is state]

    def closing(self) -> list[Client]:
        return [c for c in self.live() if c.transport.disconnecting]

    def notClosing(self, state: State) -> list[Client]:
        return [c for c in self.inState(state) if not c.transport.disconnecting]

    def servedProtocols(self) -> list[Served]:
        return [p for p, _ in self.wrapped.built]

    # Rules

    @rule(host=st.sampled_from(HOSTS))
    def arrive(self, host: str) -> None:
        self.port += 1
        addr = v6(host, self.port) if ":" in host else v4(host, self.port)
        self.clients.append(Client(self.limiter, addr))

    @precondition(lambda self: self.live())
    @rule(data=st.data())
    def clientLeaves(self, data: st.DataObject) -> None:
        client = data.draw(st.sampled_from(self.live()))
        if client.wrapper.state is State.QUEUED:
            self.departed.add(client.wrapper.arrival)
        client.transport.clientLeaves()

    @precondition(lambda self: self.notClosing(State.QUEUED))
    @rule(data=st.data())
    def watcherSeesDeparture(self, data: st.DataObject) -> None:
        client = data.draw(st.sampled_from(self.notClosing(State.QUEUED)))
        self.departed.add(client.wrapper.arrival)
        client.wrapper.departed()

    @precondition(lambda self: self.closing())
    @rule(data=st.data())
    def closeCompletes(self, data: st.DataObject) -> None:
        data.draw(st.sampled_from(self.closing())).transport.finishClose()

    @precondition(lambda self: self.notClosing(State.ACTIVE))
    @rule(data=st.data(), payload=st.binary(min_size=1, max_size=4))
    def clientSends(self, data: st.DataObject, payload: bytes) -> None:
        self.send(data.draw(st.sampled_from(self.notClosing(State.ACTIVE))), payload)

    @precondition(lambda self: self.notClosing(State.QUEUED))
    @rule(data=st.data(), payload=st.binary(min_size=1, max_size=4))
    def transportDeliversWhileQueued(self, data: st.DataObject, payload: bytes) -> None:
        self.send(data.draw(st.sampled_from(self.notClosing(State.QUEUED))), payload)

    @rule()
    def factoryRefusesNext(self) -> None:
        self.wrapped.refuseNext = True

    @precondition(lambda self: self.notClosing(State.ACTIVE))
    @rule(data=st.data())
    def serverReplies(self, data: st.DataObject) -> None:
        client = data.draw(st.sampled_from(self.notClosing(State.ACTIVE)))
        client.served.transport.write(b"reply")

    @precondition(lambda self: self.notClosing(State.ACTIVE))
    @rule(data=st.data(), busy=st.booleans())
    def serverBusy(self, data: st.DataObject, busy: bool) -> None:
        client = data.draw(st.sampled_from(self.notClosing(State.ACTIVE)))
        client.served.busy = busy
        client.served.transport.write(b"progress")

    @precondition(lambda self: self.notClosing(State.ACTIVE))
    @rule(data=st.data())
    def serverCloses(self, data: st.DataObject) -> None:
        client = data.draw(st.sampled_from(self.notClosing(State.ACTIVE)))
        client.served.transport.loseConnection()

    @rule(seconds=st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.0, 6.0]))
    def timePasses(self, seconds: float) -> None:
        self.clock.advance(seconds)

    def send(self, client: Client, payload: bytes) -> None:
        arrival = client.wrapper.arrival
        self.sent[arrival] = self.sent.get(arrival, b"") + payload
        client.send(payload)

    # Invariants

    @invariant()
    def bytesReachServedProtocolInOrder(self) -> None:
        for client in self.live():
            if isinstance(client.served, Served) and client.wrapper.state is State.ACTIVE:
                assert client.served.data == self.sent.get(client.wrapper.arrival, b"")

    @invariant()
    def slotsBounded(self) -> None:
        stats = self.limiter.stats()
        assert stats.active <= self.limiter.maxConnections
        if self.limiter.maxPerPeer is not None:
            for peer in stats.peers.values():
                assert peer.active <= self.limiter.maxPerPeer
        if self.limiter.maxQueued is not None:
            assert stats.queued <= self.limiter.maxQueued

    @invariant()
    def everyConnectionInExactlyOnePlace(self) -> None:
        stats = self.limiter.stats()
        live = self.live()
        states = [c.wrapper.state for c in live]
        assert State.NEW not in states and State.CLOSED not in states
        assert stats.active == states.count(State.ACTIVE)
        assert stats.queued == states.count(State.QUEUED)
        assert stats.overflowing == states.count(State.OVERFLOW)
        for client in live:
            if client.wrapper.state is State.QUEUED:
                assert client.transport.paused and client.served is None

    @invariant()
    def releasedExactlyOnce(self) -> None:
        served = self.servedProtocols()
        assert self.limiter.stats().served == len(served) + len(self.wrapped.refused)
        for protocol in served:
            assert protocol.losses <= 1
        for client in self.clients:
            if client.transport.lost and isinstance(client.served, Served):
                raise AssertionError("a lost connection still holds its served protocol")
        lostServed = sum(p.losses for p in served)
        refusedHolding = sum(
            1 for c in self.inState(State.ACTIVE) if c.wrapper.closingReason == "refused"
        )
        assert lostServed == len(served) - (self.limiter.stats().active - refusedHolding)

    @invariant()
    def freedSlotGoesToOldestEligible(self) -> None:
        stats = self.limiter.stats()
        queued = self.inState(State.QUEUED)
        if stats.active < self.limiter.maxConnections:
            for client in queued:
                key = client.wrapper.peerKey
                limit = self.limiter.maxPerPeer
                assert limit is not None and key is not None
                assert stats.peers[key].active >= limit
        servedArrivals: dict[str | None, list[int]] = {}
        for addr in self.wrapped.calls:
            key = self.peerKey(addr) if self.limiter.maxPerPeer is not None else None
            servedArrivals.setdefault(key, []).append(self.arrivalOf(addr))
        for arrivals in servedArrivals.values():
            assert arrivals == sorted(arrivals)

    @invariant()
    def departedNeverServed(self) -> None:
        served = {self.arrivalOf(addr) for addr in self.wrapped.calls}
        assert not (served & self.departed)

    @invariant()
    def reapingOnlyIdle(self) -> None:
        for client in self.live():
            wrapper = client.wrapper
            if wrapper.closingReason != "reaped" or wrapper.arrival in self.checkedReaped:
                continue
            self.checkedReaped.add(wrapper.arrival)
            assert not client.served.busy
            reapIdleAfter = self.limiter.reapIdleAfter
            assert reapIdleAfter is not None
            assert self.clock.seconds() - wrapper.lastActivity >= reapIdleAfter

    def teardown(self) -> None:
        if not hasattr(self, "limiter"):
            return
        for client in self.live():
            client.transport.clientLeaves()
        stats = self.limiter.stats()
        assert (stats.active, stats.queued, stats.overflowing) == (0, 0, 0)
        assert self.clock.getDelayedCalls() == []

    # Lookups

    def arrivalOf(self, addr: IAddress) -> int:
        port = addr.port  # type: ignore[attr-defined]
        return int(port) - 30000

    def peerKey(self, addr: IAddress) -> str:
        return str(addr.host)  # type: ignore[attr-defined]


LimiterMachine.TestCase.settings = settings(
    max_examples=300, stateful_step_count=50, deadline=None
)
TestLimiterMachine = LimiterMachine.TestCase
TestLimiterMachine.__doc__ = "The limiter keeps its invariants under any sequence of events."
