"""
The pool's connection driver: it opens connections through the endpoint (with the connect
timeout and the readiness handshake), closes them, and reports what happens to each one to
the pool's core through L{ConnectionEvents}. It changes none of the core's state.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import error
from twisted.internet.defer import Deferred, fail
from twisted.logger import Logger
from twisted.python.failure import Failure

from ._records import Connection, ConnectionEvents, Link
from ._wrapper import PoolFactory


class ConnectionDriver:
    """
    Opens and closes the connections of one pool.

    @ivar clock: The reactor, as the pool's source of time and timers.
    @ivar events: Where to report; set by the core before the first connection.
    @ivar live: The connections whose attempt or transport is still open.
    """

    _log = Logger()

    def __init__(
        self,
        reactor: Any,
        endpoint: Any,
        clientFactory: Any,
        pool: object,
        address: str,
        connectTimeout: float | None,
        tcpKeepAlive: bool,
    ) -> None:
        self.clock = reactor
        self.events: ConnectionEvents | None = None
        self.live: set[Connection] = set()
        self._endpoint = endpoint
        self._clientFactory = clientFactory
        self._pool = pool
        self._address = address
        self._connectTimeout = connectTimeout
        self._tcpKeepAlive = tcpKeepAlive

    def prepare(self) -> Connection:
        """
        Build the factory and the record of a new connection, without starting it.
        """
        factory = self._clientFactory()
        factory.connectionPool = self._pool
        if factory.deferred is None:
            factory.deferred = Deferred()
        return Connection(Link(factory, factory.deferred))

    def start(self, connection: Connection) -> None:
        """
        Start the connection attempt of a connection from L{prepare}. Its events may be
        reported before this returns.
        """
        link = connection.link
        self.live.add(connection)
        if self._connectTimeout is not None:
            link.timer = self.clock.callLater(self._connectTimeout, self._timedOut, connection)
        link.ready.addCallbacks(
            self._readyFired,
            self._readyFailed,
            callbackArgs=(connection,),
            errbackArgs=(connection,),
        )
        factory = PoolFactory(
            link,
            lambda transport: self._made(connection, transport),
            lambda reason: self._lost(connection, reason),
        )
        try:
            attempt = self._endpoint.connect(factory)
        except Exception:
            attempt = fail()
        if not attempt.called:
            link.attempt = attempt
        attempt.addCallbacks(
            self._attemptSucceeded,
            self._attemptFailed,
            callbackArgs=(connection,),
            errbackArgs=(connection,),
        )

    def close(self, connection: Connection, abort: bool = False) -> None:
        """
        Cancel a connection's attempt, or close its transport if it is still open.

        @param abort: Drop the connection at once, discarding unsent data, rather than after
            writing what is buffered.
        """
        link = connection.link
        if link.timer is not None:
            link.timer.cancel()
            link.timer = None
        if link.attempt is not None:
            link.attempt.cancel()
            return
        transport = link.transport
        if transport is None or link.lost:
            return
        if abort and hasattr(transport, "abortConnection"):
            transport.abortConnection()
        else:
            transport.loseConnection()

    def markReady(self, connection: Connection) -> None:
        """
        Treat a connecting connection as ready (0.1.1's C{clientFree} from C{connectionMade}).
        """
        self._readyFired(None, connection)

    def dropAll(self) -> None:
        """
        Drop every connection still open, and cancel every attempt.
        """
        for connection in list(self.live):
            self.close(connection, abort=True)

    # What the endpoint and the transport report.

    def _attemptSucceeded(self, protocol: object, connection: Connection) -> None:
        connection.link.attempt = None

    def _attemptFailed(self, reason: Failure, connection: Connection) -> None:
        connection.link.attempt = None
        self.live.discard(connection)
        self._fail(connection, reason)
        self._report().ended(connection, reason)

    def _timedOut(self, connection: Connection) -> None:
        """
        A connection attempt, or the handshake after it, took longer than C{connectTimeout}.
        """
        link = connection.link
        link.timer = None
        if link.settled:
            return
        self._fail(
            connection,
            Failure(
                error.TimeoutError(
                    f"connecting to {self._address} took longer than {self._connectTimeout}s"
                )
            ),
        )

    def _made(self, connection: Connection, transport: Any) -> None:
        link = connection.link
        link.attempt = None
        link.transport = transport
        protocol = link.protocol
        self._report().made(connection, protocol)
        protocol.makeConnection(transport)
        if link.settled or link.ready.called or link.lost:
            return
        try:
            preparing = link.factory.prepareConnection(protocol)
        except Exception:
            preparing = fail()
        if preparing is None:
            link.ready.callback(protocol)
            return

        def prepared(result: object) -> None:
            if not link.ready.called:
                link.ready.callback(protocol)

        def notPrepared(reason: Failure) -> None:
            if not link.ready.called:
                link.ready.errback(reason)

        preparing.addCallbacks(prepared, notPrepared)

    def _readyFired(self, result: object, connection: Connection) -> object:
        link = connection.link
        if not link.settled and not link.lost:
            link.settled = True
            if link.timer is not None:
                link.timer.cancel()
                link.timer = None
            if self._tcpKeepAlive:
                setKeepAlive = getattr(link.transport, "setTcpKeepAlive", None)
                if setKeepAlive is not None:
                    setKeepAlive(1)
            self._report().ready(connection)
        return result

    def _readyFailed(self, reason: Failure, connection: Connection) -> None:
        self._fail(connection, reason)

    def _lost(self, connection: Connection, reason: Failure) -> None:
        link = connection.link
        link.lost = True
        self.live.discard(connection)
        events = self._report()
        if link.settled:
            events.lost(connection, reason)
        else:
            self._fail(connection, reason)
        protocol = link.protocol
        try:
            protocol.connectionLost(reason)
        except Exception:
            self._log.failure("connectionLost of {protocol!r} raised", protocol=protocol)
        events.ended(connection, reason)

    def _fail(self, connection: Connection, reason: Failure) -> None:
        """
        Report an attempt failed, once; the core then closes what is left of it.
        """
        link = connection.link
        if link.settled:
            return
        link.settled = True
        self._report().failed(connection, reason)

    def _report(self) -> ConnectionEvents:
        events = self.events
        assert events is not None, "the pool's core listens before connecting"
        return events
