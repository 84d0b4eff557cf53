"""
A hypothesis state machine driving L{LimitConnectionsFactory} on a L{Clock} with fake
transports, checking the limiter's invariants after every step.

The machine keeps its own account of every client from what it can observe: the fake
transports, the protocols the factories built, C{stats()}, the probe calls the limiter makes
and the C{limiterEvent} log events.
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
from twisted.logger import LogEvent, globalLogPublisher

from tests.server_support import Client, ProbedProtocol, RecordingFactory, v4, v6
from txconnpool.server import LimitConnectionsFactory

HOSTS = ["10.0.0.1", "10.0.0.2", "2001:db8::1"]
BASE_PORT = 30000


class Served(ProbedProtocol):
    """
    A served protocol that says whether it is busy or receiving a request, and records how
    often it lost its connection and when it was asked to end its turn.  A cooperative one
    closes its connection after its next reply once its turn has ended.
    """

    cooperative = False
    heads = False

    def __init__(self, machine: LimiterMachine) -> None:
        super().__init__()
        self.machine = machine
        self.losses = 0
        self.receiving = False
        self.turnEndedAt: list[tuple[float, int]] = []

    def isReceivingRequest(self) -> bool:
        return self.receiving

    def isReceivingHead(self) -> bool:
        return self.receiving and self.heads

    def isIdle(self) -> bool:
        return not (self.busy or self.receiving)

    def endTurn(self) -> bool:
        machine = self.machine
        self.turnEndedAt.append((machine.clock.seconds(), machine.limiter.stats().queued))
        return self.cooperative

    def connectionLost(self, reason: Any = None) -> None:
        self.losses += 1


class ServedFactory(Factory[Served]):
    """
    Builds L{Served} protocols, or refuses (returns L{None}) when told to.
    """

    noisy = False

    def __init__(self, machine: LimiterMachine) -> None:
        self.machine = machine
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
        protocol = Served(self.machine)
        self.built.append((protocol, addr))
        return protocol


class Account:
    """
    What the machine knows about one client: when it was served, when bytes last moved, when
    its current request started and how many requests were answered.
    """

    def __init__(self) -> None:
        self.servedAt: float | None = None
        self.lastTraffic = 0.0
        self.requestStart: float | None = None
        self.clientSpoke = False
        self.exchanges = 0

    def serverWrote(self, now: float) -> None:
        if self.clientSpoke:
            self.clientSpoke = False
            self.exchanges += 1
        self.lastTraffic = now


class LimiterMachine(RuleBasedStateMachine):
    """
    Clients arrive, send, leave, go idle or busy; servers reply, close or end their turn;
    time passes; the limiter closes what it decides to close, and the fake transports finish
    those closes when the machine says so.
    """

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        self.clients: list[Client] = []
        self.accounts: dict[int, Account] = {}
        self.port = BASE_PORT
        self.departed: set[int] = set()
        self.sent: dict[int, bytes] = {}
        self.closings: list[tuple[int, str, float]] = []
        globalLogPublisher.addObserver(self.observe)

    def observe(self, event: LogEvent) -> None:
        if event.get("limiterEvent") == "closing":
            arrival = int(event["peer"].port) - BASE_PORT
            self.closings.append((arrival, event["reason"], self.clock.seconds()))

    @initialize(
        maxConnections=st.integers(1, 3),
        maxQueued=st.one_of(st.none(), st.integers(0, 4)),
        maxPerPeer=st.one_of(st.none(), st.integers(1, 2)),
        queueTimeout=st.sampled_from([None, 5.0]),
        idleTimeout=st.sampled_from([None, 7.0]),
        headerTimeout=st.sampled_from([None, 3.0]),
        requestTimeout=st.sampled_from([None, 4.0]),
        reapIdleAfter=st.sampled_from([None, 0.0, 2.0]),
        minTurn=st.sampled_from([None, 0.0, 1.0]),
        minTurnRequests=st.sampled_from([None, 2]),
        overflow=st.booleans(),
        cooperative=st.booleans(),
        heads=st.booleans(),
    )
    def configure(self, overflow: bool, cooperative: bool, heads: bool, **options: Any) -> None:
        self.options = options
        Served.cooperative = cooperative
        Served.heads = heads
        self.wrapped = ServedFactory(self)
        self.overflowFactory = RecordingFactory() if overflow else None
        self.limiter = LimitConnectionsFactory(
            self.wrapped, overflowFactory=self.overflowFactory, reactor=self.clock, **options
        )

    # What the machine sees of each client

    def arrivalOf(self, client: Client) -> int:
        return int(client.transport.getPeer().port) - BASE_PORT  # type: ignore[attr-defined]

    def live(self) -> list[Client]:
        return [c for c in self.clients if not c.transport.lost]

    def holdsSlot(self, client: Client) -> bool:
        """
        Served by the wrapped factory's protocol, or refused by it and not closed yet.
        """
        return isinstance(client.served, Served) or (
            client.transport.getPeer() in self.wrapped.refused
        )

    def overflowing(self, client: Client) -> bool:
        if self.holdsSlot(client):
            return False
        if client.served is not None:
            return True
        return client.transport.disconnecting and not client.transport.aborted

    def queued(self, client: Client) -> bool:
        return (
            client.served is None
            and not self.holdsSlot(client)
            and not client.transport.disconnecting
        )

    def servedOpen(self) -> list[Client]:
        live = self.live()
        return [c for c in live if isinstance(c.served, Served) and not c.transport.disconnecting]

    def queuedOpen(self) -> list[Client]:
        return [c for c in self.live() if self.queued(c)]

    def closing(self) -> list[Client]:
        return [c for c in self.live() if c.transport.disconnecting]

    def account(self, client: Client) -> Account:
        return self.accounts[self.arrivalOf(client)]

    # Rules

    @rule(host=st.sampled_from(HOSTS))
    def arrive(self, host: str) -> None:
        self.port += 1
        addr = v6(host, self.port) if ":" in host else v4(host, self.port)
        self.accounts[self.port - BASE_PORT] = Account()
        self.clients.append(Client(self.limiter, addr))

    @precondition(lambda self: self.live())
    @rule(data=st.data())
    def clientLeaves(self, data: st.DataObject) -> None:
        client = data.draw(st.sampled_from(self.live()))
        if self.queued(client):
            self.departed.add(self.arrivalOf(client))
        client.transport.clientLeaves()

    @precondition(lambda self: self.queuedOpen())
    @rule(data=st.data())
    def watcherSeesDeparture(self, data: st.DataObject) -> None:
        client = data.draw(st.sampled_from(self.queuedOpen()))
        self.departed.add(self.arrivalOf(client))
        client.wrapper.departed()

    @precondition(lambda self: self.closing())
    @rule(data=st.data())
    def closeCompletes(self, data: st.DataObject) -> None:
        data.draw(st.sampled_from(self.closing())).transport.finishClose()

    @precondition(lambda self: self.servedOpen())
    @rule(data=st.data(), payload=st.binary(min_size=1, max_size=4))
    def clientSends(self, data: st.DataObject, payload: bytes) -> None:
        client = data.draw(st.sampled_from(self.servedOpen()))
        account = self.account(client)
        if account.requestStart is None:
            account.requestStart = self.clock.seconds()
        account.lastTraffic = self.clock.seconds()
        client.served.receiving = True
        self.send(client, payload)

    @precondition(lambda self: self.queuedOpen())
    @rule(data=st.data(), payload=st.binary(min_size=1, max_size=4))
    def transportDeliversWhileQueued(self, data: st.DataObject, payload: bytes) -> None:
        self.send(data.draw(st.sampled_from(self.queuedOpen())), payload)

    @rule()
    def factoryRefusesNext(self) -> None:
        self.wrapped.refuseNext = True

    @precondition(lambda self: self.servedOpen())
    @rule(data=st.data())
    def serverReplies(self, data: st.DataObject) -> None:
        client = data.draw(st.sampled_from(self.servedOpen()))
        served = client.served
        account = self.account(client)
        served.receiving = False
        account.requestStart = None
        account.serverWrote(self.clock.seconds())
        served.transport.write(b"reply")
        if served.turnEndedAt and Served.cooperative:
            served.transport.loseConnection()

    @precondition(lambda self: self.servedOpen())
    @rule(data=st.data(), busy=st.booleans())
    def serverBusy(self, data: st.DataObject, busy: bool) -> None:
        client = data.draw(st.sampled_from(self.servedOpen()))
        client.served.busy = busy
        self.account(client).serverWrote(self.clock.seconds())
        client.served.transport.write(b"progress")

    @precondition(lambda self: self.servedOpen())
    @rule(data=st.data())
    def serverCloses(self, data: st.DataObject) -> None:
        client = data.draw(st.sampled_from(self.servedOpen()))
        client.served.transport.loseConnection()

    @rule(seconds=st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.0, 6.0]))
    def timePasses(self, seconds: float) -> None:
        self.clock.advance(seconds)

    def send(self, client: Client, payload: bytes) -> None:
        arrival = self.arrivalOf(client)
        self.accounts[arrival].clientSpoke = True
        self.sent[arrival] = self.sent.get(arrival, b"") + payload
        client.send(payload)

    # Invariants

    @invariant()
    def noteNewlyServed(self) -> None:
        for client in self.live():
            account = self.account(client)
            if isinstance(client.served, Served) and account.servedAt is None:
                account.servedAt = account.lastTraffic = self.clock.seconds()

    @invariant()
    def bytesReachServedProtocolInOrder(self) -> None:
        for client in self.live():
            if isinstance(client.served, Served):
                assert client.served.data == self.sent.get(self.arrivalOf(client), b"")

    @invariant()
    def slotsBounded(self) -> None:
        stats = self.limiter.stats()
        options = self.options
        assert stats.active <= options["maxConnections"]
        if options["maxPerPeer"] is not None:
            for peer in stats.peers.values():
                assert peer.active <= options["maxPerPeer"]
        if options["maxQueued"] is not None:
            assert stats.queued <= options["maxQueued"]

    @invariant()
    def everyConnectionInExactlyOnePlace(self) -> None:
        stats = self.limiter.stats()
        live = self.live()
        assert stats.active == sum(self.holdsSlot(c) for c in live)
        assert stats.queued == sum(self.queued(c) for c in live)
        assert stats.overflowing == sum(self.overflowing(c) for c in live)
        for client in live:
            if self.queued(client):
                assert client.transport.paused

    @invariant()
    def releasedExactlyOnce(self) -> None:
        served = [p for p, _ in self.wrapped.built]
        stats = self.limiter.stats()
        assert stats.served == len(served) + len(self.wrapped.refused)
        assert all(protocol.losses <= 1 for protocol in served)
        assert not any(c.transport.lost and c.served is not None for c in self.clients)
        refusedHolding = sum(
            1 for c in self.live() if c.transport.getPeer() in self.wrapped.refused
        )
        lostServed = sum(p.losses for p in served)
        assert lostServed == len(served) - (stats.active - refusedHolding)

    @invariant()
    def freedSlotGoesToOldestEligible(self) -> None:
        stats = self.limiter.stats()
        limit = self.options["maxPerPeer"]
        if stats.active < self.options["maxConnections"]:
            for client in self.queuedOpen():
                host = client.transport.getPeer().host  # type: ignore[attr-defined]
                assert limit is not None and stats.peers[host].active >= limit
        servedArrivals: dict[str | None, list[int]] = {}
        for addr in self.wrapped.calls:
            key = addr.host if limit is not None else None  # type: ignore[attr-defined]
            servedArrivals.setdefault(key, []).append(int(addr.port) - BASE_PORT)  # type: ignore[attr-defined]
        for arrivals in servedArrivals.values():
            assert arrivals == sorted(arrivals)

    @invariant()
    def departedNeverServed(self) -> None:
        served = {int(addr.port) - BASE_PORT for addr in self.wrapped.calls}  # type: ignore[attr-defined]
        assert not (served & self.departed)

    @invariant()
    def limiterClosesOnlyForCause(self) -> None:
        options = self.options
        for arrival, reason, at in self.closings:
            account = self.accounts[arrival]
            silent = at - account.lastTraffic
            if reason == "reaped":
                assert options["reapIdleAfter"] is not None
                assert silent >= options["reapIdleAfter"]
            elif reason == "idle":
                assert silent >= options["idleTimeout"]
            elif reason == "header-timeout":
                assert account.requestStart is not None
                assert at - account.requestStart >= options["headerTimeout"]
            elif reason == "request-timeout":
                assert account.requestStart is not None
                assert at - account.requestStart >= options["requestTimeout"]
        self.closings.clear()

    @invariant()
    def turnsEndOnlyWhileClientsWaitAfterTheMinimum(self) -> None:
        ended = 0
        for protocol, addr in self.wrapped.built:
            assert len(protocol.turnEndedAt) <= 1
            account = self.accounts[int(addr.port) - BASE_PORT]  # type: ignore[attr-defined]
            for at, queued in protocol.turnEndedAt:
                ended += 1
                assert self.options["minTurn"] is not None and queued > 0
                assert account.servedAt is not None
                assert at - account.servedAt >= self.options["minTurn"]
                minRequests = self.options["minTurnRequests"]
                assert minRequests is None or account.exchanges >= minRequests
        assert self.limiter.stats().turnsEnded == ended

    def teardown(self) -> None:
        globalLogPublisher.removeObserver(self.observe)
        if not hasattr(self, "limiter"):
            return
        for client in self.live():
            client.transport.clientLeaves()
        stats = self.limiter.stats()
        assert (stats.active, stats.queued, stats.overflowing) == (0, 0, 0)
        assert self.clock.getDelayedCalls() == []


LimiterMachine.TestCase.settings = settings(
    max_examples=300, stateful_step_count=50, deadline=None
)
TestLimiterMachine = LimiterMachine.TestCase
TestLimiterMachine.__doc__ = "The limiter keeps its invariants under any sequence of events."
