"""
The parts of txconnpool 0.1.1's contract kept for code written against it: the factory's
ReconnectingClientFactory methods and notifications, the reactor check, and the shutdown
attributes. Synchronous, on a clock, over fake endpoints.
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IReactorTCP
from twisted.internet.protocol import Protocol, ReconnectingClientFactory
from zope.interface import implementer

from txconnpool import Pool, PooledClientFactory

from .helpers import Recorder, makePool, resultOf


class Notes:
    """
    A stand-in pool that records the 0.1.1 notifications it gets.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def clientFree(self, client: Any) -> None:
        self.calls.append(("free", client))

    def clientBusy(self, client: Any) -> None:
        self.calls.append(("busy", client))

    def clientGone(self, client: Any) -> None:
        self.calls.append(("gone", client))


class Simple(Protocol):
    """
    A protocol with nothing to say.
    """


class SimpleFactory(PooledClientFactory):
    protocol = Simple


def test_factoryIsAReconnectingClientFactory() -> None:
    """
    PooledClientFactory is still a ReconnectingClientFactory, whose resetDelay and stopTrying
    can be called, and whose retry never reconnects.
    """
    factory = SimpleFactory()
    assert isinstance(factory, ReconnectingClientFactory)
    factory.resetDelay()
    factory.retry(None)
    factory.stopTrying()
    assert factory.connector is None


@pytest.mark.parametrize("method", ["clientConnectionFailed", "clientConnectionLost"])
def test_connectionNotificationsMarkTheClientBusy(method: str) -> None:
    """
    clientConnectionFailed and clientConnectionLost tell the pool that the factory's protocol
    is busy, as txconnpool 0.1.1 did.
    """
    factory = SimpleFactory()
    factory.connectionPool = notes = Notes()
    protocol = factory.buildProtocol(None)
    getattr(factory, method)(None, None)
    assert notes.calls == [("busy", protocol)]
    assert protocol.factory is factory


def test_buildingAgainReportsTheOldProtocolGone() -> None:
    """
    A second buildProtocol reports the first protocol gone to the pool.
    """
    factory = SimpleFactory()
    factory.connectionPool = notes = Notes()
    first = factory.buildProtocol(None)
    factory.buildProtocol(None)
    assert notes.calls == [("gone", first)]


class ResettingRecorder(Recorder):
    """
    A protocol that calls its factory's resetDelay() once connected, as 0.1.1 protocols did.
    """

    def connectionMade(self) -> None:
        assert self.factory is not None
        self.factory.resetDelay()


def test_protocolCallingResetDelayIsServed() -> None:
    """
    A protocol that calls self.factory.resetDelay() in connectionMade gets its requests.
    """
    h = makePool(protocolClass=ResettingRecorder)
    d = h.pool.performRequest("ask", 1)
    proto = h.connect()
    proto.answer()
    assert resultOf(d) == 1


@implementer(IReactorTCP)
class TCPOnlyReactor:
    """
    A reactor that can connect but cannot keep time.
    """

    def connectTCP(self, *args: Any, **kwargs: Any) -> None:
        raise AssertionError("not to be called")


def test_reactorWithoutTimeIsRefusedAtConstruction() -> None:
    """
    A reactor that does not provide IReactorTime is refused with TypeError when the pool is
    made, instead of an AttributeError from a later request.
    """
    with pytest.raises(TypeError, match="IReactorTime"):
        Pool(IPv4Address("TCP", "127.0.0.1", 11211), reactor=TCPOnlyReactor())


def test_shutdownAttributes() -> None:
    """
    shutdown_requested turns true when the pool closes; shutdown_deferred is the Deferred the
    reactor waits for once shutdown began, and None before.
    """
    h = makePool()
    assert (h.pool.shutdown_requested, h.pool.shutdown_deferred) == (False, None)
    for trigger, args, kwargs in h.clock.triggers["before"]["shutdown"]:
        trigger(*args, **kwargs)
    assert h.pool.shutdown_requested is True
    assert h.pool.shutdown_deferred is not None
    assert resultOf(h.pool.shutdown_deferred) is None
