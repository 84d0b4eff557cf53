"""
Taking turns on real loopback sockets, with the limiter's default options: keep-alive HTTP
clients and line-protocol clients far beyond the limit, and idle keep-alive sockets holding
every slot.
"""

from __future__ import annotations

import statistics
from collections.abc import Generator
from typing import Any

import pytest_twisted
from twisted.internet import defer, reactor
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IAddress
from twisted.web.server import Site

from tests.server_support.net import ClientProtocol, ObservedLimiter, runTurnLoad, tcpClient
from tests.server_support.served import CountingSite, LinesFactory, Occupancy, TagPage

Gen = Generator[Any, Any, Any]

SLOTS = 5
CLIENTS = 50
SECONDS = 3.0


class ArrivalOrder(ObservedLimiter):
    """
    A limiter that numbers its connections in order of arrival, and has the served factory's
    L{Occupancy} record those numbers as connections are given slots.
    """

    def __init__(self, wrapped: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(wrapped, *args, **kwargs)
        self.arrivalOf: dict[IAddress, int] = {}
        wrapped.occupancy.label = self.arrivalOf.__getitem__

    def buildProtocol(self, addr: IAddress | None) -> Any:
        wrapper = super().buildProtocol(addr)
        assert addr is not None
        self.arrivalOf[addr] = wrapper.arrival
        return wrapper


def checkTurns(report: dict[str, Any], limiter: ArrivalOrder, occupancy: Occupancy) -> None:
    """
    Check a load report and what the server saw: every client answered, the answers spread
    evenly, nothing reset, cut short or wrong, never more than the limit served at once, and
    clients admitted in their order of arrival.
    """
    assert report["resets"] == [] and report["truncated"] == [], report
    assert report["unannounced"] == [] and report["wrong"] == [], report
    responses, turns = report["responses"], report["turns"]
    assert min(responses) >= 1, responses
    assert max(turns) - min(turns) <= 2, turns
    assert max(responses) <= 10 * statistics.median(responses), responses
    assert occupancy.maxLive == SLOTS
    admitted = occupancy.admitted
    assert admitted == sorted(admitted)
    assert len(admitted) == sum(report["connections"]) - limiter.stats().leftQueued
    stats = limiter.stats()
    assert stats.turnsEnded >= sum(turns) - CLIENTS
    assert (stats.reaped, stats.overflowed, stats.timedOutQueued) == (0, 0, 0)


@pytest_twisted.inlineCallbacks
def test_keepAliveHTTPClientsTakeTurns() -> Gen:
    """
    Fifty HTTP/1.1 keep-alive clients sending requests back to back for three seconds against
    five slots all get answers, spread evenly; no connection is reset or cut short, never
    more than five are served at once, and waiting clients are admitted first come, first
    served.
    """
    site = CountingSite()
    limiter = ArrivalOrder(site, SLOTS)
    port = reactor.listenTCP(0, limiter, backlog=128, interface="127.0.0.1")
    try:
        load = runTurnLoad("127.0.0.1", port.getHost().port, CLIENTS, SECONDS, "http")
        report = yield load.addTimeout(60, reactor)
        checkTurns(report, limiter, site.occupancy)
    finally:
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_lineProtocolWithProbeTakesTurns() -> Gen:
    """
    A line protocol whose probe ends its turn with a goodbye line takes turns the same way:
    fifty clients against five slots for three seconds all get answers, evenly, with nothing
    reset, cut short or wrong, never more than five served, admitted in order.
    """
    factory = LinesFactory()
    limiter = ArrivalOrder(factory, SLOTS)
    port = reactor.listenTCP(0, limiter, backlog=128, interface="127.0.0.1")
    try:
        load = runTurnLoad("127.0.0.1", port.getHost().port, CLIENTS, SECONDS, "line")
        report = yield load.addTimeout(60, reactor)
        checkTurns(report, limiter, factory.occupancy)
    finally:
        yield port.stopListening()


class KeepAliveClient(ClientProtocol):
    """
    A raw HTTP/1.1 client that keeps its connection open.
    """

    def get(self) -> defer.Deferred[bytes]:
        """
        Send a GET; the Deferred fires once its answer has arrived.
        """
        expected = self.received.count(b"hello") + 1
        self.transport.write(b"GET /?tag=x HTTP/1.1\r\nHost: x\r\n\r\n")  # type: ignore[union-attr]
        return self.receivedContaining(b"hello x", expected)


@pytest_twisted.inlineCallbacks
def test_idleKeepAliveSocketsMakeRoomWithinASecond() -> Gen:
    """
    With five idle keep-alive connections holding all five slots, a sixth client is answered
    within a second: the connection idle longest is closed in order (no reset) to make room,
    and the other four stay open.
    """
    limiter = ObservedLimiter(Site(TagPage()), SLOTS)
    port = reactor.listenTCP(0, limiter, interface="127.0.0.1")
    number = port.getHost().port
    idle: list[KeepAliveClient] = []
    try:
        for _ in range(SLOTS):
            client = yield tcpClient("127.0.0.1", number, protocol=KeepAliveClient)
            yield client.get().addTimeout(10, reactor)
            idle.append(client)
        started = reactor.seconds()
        sixth = yield tcpClient("127.0.0.1", number, protocol=KeepAliveClient)
        yield sixth.get().addTimeout(10, reactor)
        assert reactor.seconds() - started < 1.0
        yield idle[0].lost.addTimeout(10, reactor)
        assert idle[0].reason is not None and idle[0].reason.check(ConnectionDone)
        assert not any(client.lost.called for client in idle[1:])
        assert limiter.stats().reaped == 1
        for client in [*idle[1:], sixth]:
            client.transport.loseConnection()  # type: ignore[union-attr]
            yield client.lost
    finally:
        yield port.stopListening()
