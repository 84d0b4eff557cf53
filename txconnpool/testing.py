"""
Fakes for testing code that uses txconnpool, without a network.

L{FakeEndpoint} records each connection attempt; the test decides how each one ends::

    clock = task.Clock()
    endpoint = FakeEndpoint(clock)
    pool = MyPool(endpoint, reactor=clock)
    d = pool.performRequest("ping")
    endpoint.attempts[0].succeed()        # the connection is made
    ...                                   # inspect endpoint.attempts[0].transport.value()
    endpoint.attempts[0].lose()           # the server goes away
"""

from __future__ import annotations

from typing import Any

from twisted.internet import error
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IProtocol,
    IProtocolFactory,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from zope.interface import implementer

__all__ = ["FakeConnectAttempt", "FakeEndpoint", "FakeTransport"]


class FakeTransport(StringTransport):
    """
    A L{StringTransport} whose C{loseConnection} and C{abortConnection} end the connection the
    way a reactor does: the protocol's C{connectionLost} runs on a later turn of the clock
    (C{clock.advance(0)}).
    """

    def __init__(self, clock: IReactorTime, protocol: IProtocol) -> None:
        StringTransport.__init__(
            self,
            hostAddress=IPv4Address("TCP", "127.0.0.1", 40000),
            peerAddress=IPv4Address("TCP", "127.0.0.1", 11211),
        )
        self._clock = clock
        self.protocol = protocol
        self.lost = False
        self.tcpKeepAlive = False

    def setTcpKeepAlive(self, enabled: int) -> None:
        """
        Record whether TCP keepalive was turned on, as a TCP transport would apply it.
        """
        self.tcpKeepAlive = bool(enabled)

    def loseConnection(self) -> None:
        """
        Close the connection cleanly: C{connectionLost} with L{error.ConnectionDone} follows.
        """
        if not self.disconnecting:
            StringTransport.loseConnection(self)
            self._clock.callLater(0, self.connectionLost, error.ConnectionDone())

    def abortConnection(self) -> None:
        """
        Drop the connection: C{connectionLost} with L{error.ConnectionAborted} follows.
        """
        if not self.disconnecting:
            StringTransport.abortConnection(self)
            self._clock.callLater(0, self.connectionLost, error.ConnectionAborted())

    def connectionLost(self, reason: BaseException) -> None:
        """
        Tell the protocol the connection is gone, unless it already knows.
        """
        if not self.lost:
            self.lost = True
            self.disconnecting = True
            self.protocol.connectionLost(Failure(reason))


class FakeConnectAttempt:
    """
    One connection attempt made through a L{FakeEndpoint}.

    @ivar factory: The factory given to C{connect}.
    @ivar deferred: The L{Deferred} C{connect} returned.
    @ivar protocol: The protocol the factory built, once L{succeed} was called.
    @ivar transport: Its L{FakeTransport}.
    @ivar cancelled: Whether the caller cancelled the attempt.
    """

    def __init__(self, clock: IReactorTime, factory: IProtocolFactory) -> None:
        self._clock = clock
        self.factory = factory
        self.deferred: Deferred[IProtocol] = Deferred(self._cancel)
        self.protocol: Any = None
        self.transport: FakeTransport | None = None
        self.cancelled = False

    def _cancel(self, deferred: Deferred[IProtocol]) -> None:
        self.cancelled = True
        deferred.errback(error.ConnectingCancelledError(None))

    def succeed(self) -> Any:
        """
        Complete the attempt: build the protocol, connect it to a L{FakeTransport} and fire
        the attempt's L{Deferred} with it.

        @return: The protocol the factory built.
        """
        protocol = self.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 11211))
        assert protocol is not None, "the factory refused to build a protocol"
        self.protocol = protocol
        self.transport = FakeTransport(self._clock, protocol)
        protocol.makeConnection(self.transport)
        self.deferred.callback(protocol)
        return protocol

    def fail(self, reason: BaseException | None = None) -> None:
        """
        Fail the attempt, by default with L{error.ConnectionRefusedError}.
        """
        self.deferred.errback(reason if reason is not None else error.ConnectionRefusedError())

    def lose(self, reason: BaseException | None = None) -> None:
        """
        End an established connection from the server's side, by default cleanly
        (L{error.ConnectionDone}).
        """
        assert self.transport is not None, "the attempt has not succeeded"
        self.transport.connectionLost(reason if reason is not None else error.ConnectionDone())


@implementer(IStreamClientEndpoint)
class FakeEndpoint:
    """
    A client endpoint that connects nowhere: each C{connect} call is recorded in
    C{attempts} as a L{FakeConnectAttempt} for the test to complete or fail.
    """

    def __init__(self, clock: IReactorTime) -> None:
        """
        @param clock: The clock on which closed connections report C{connectionLost}.
        """
        self._clock = clock
        self.attempts: list[FakeConnectAttempt] = []

    def __repr__(self) -> str:
        return "<FakeEndpoint>"

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        """
        Record a connection attempt.

        @return: A L{Deferred} that fires when the test calls C{succeed} or C{fail} on the
            attempt, and fails with L{error.ConnectingCancelledError} when cancelled.
        """
        attempt = FakeConnectAttempt(self._clock, protocolFactory)
        self.attempts.append(attempt)
        return attempt.deferred

    def pending(self) -> list[FakeConnectAttempt]:
        """
        @return: The attempts neither completed, failed nor cancelled yet.
        """
        return [a for a in self.attempts if not a.deferred.called]
