"""
L{LimitConnectionsFactory}: at most so many connections served at once; the others wait, paused
and unread, and are served in order of arrival, taking turns while others wait.
"""

from __future__ import annotations

from typing import cast

from twisted.internet.interfaces import IAddress, IProtocolFactory, IReactorTime
from twisted.internet.protocol import Factory

from ._core import LimiterCore
from ._fd import checkDescriptorBudget, factoryChainHolds
from ._options import (
    DEFAULT_HEADER_TIMEOUT,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MIN_TURN,
    DEFAULT_QUEUE_TIMEOUT,
    DEFAULT_REAP_IDLE_AFTER,
    LimiterOptions,
)
from ._protocol import LimitedProtocol
from ._stats import LimiterStats


class LimitConnectionsFactory(Factory[LimitedProtocol]):
    """
    Wraps any protocol factory (a L{Site<twisted.web.server.Site>}, an AMP factory, ...) so
    that at most C{maxConnections} of its connections are served at once.

    Connections beyond the limit are accepted, paused (nothing is read from them) and queued.
    When a slot frees, the connection that arrived first among those waiting is served in the
    same reactor turn: the wrapped factory builds its protocol then, and every byte the client
    sent while waiting reaches that protocol, in order.  A waiting client that closes or resets
    its connection is noticed at once (on Linux, where epoll can watch the paused sockets for
    hang-ups), taken out of the queue and never served.

    While clients wait, served connections take turns: one that has held its slot for
    C{minTurn} seconds gives it up at its next request boundary (C{twisted.web} answers that
    request with C{Connection: close}, then closes), and one that is idle gives way at once.
    Nothing of this happens while no client waits.

    Every timeout has a protective default; L{None} turns it off.  Use the limiter wherever a
    factory goes: C{reactor.listenTCP(8080, LimitConnectionsFactory(site, 100))}, an endpoint
    from C{serverFromString}, TLS and UNIX-socket endpoints, IPv6.

    @ivar wrappedFactory: The factory whose protocols serve the connections.
    @ivar maxConnections: Connections served at once.
    @ivar maxQueued: Connections that may wait; beyond it a new connection gets the overflow
        behaviour.  L{None} (the default) lets the queue grow as far as file descriptors
        allow: when they are about to run out the listening ports are paused, and further
        clients wait in the kernel's accept queue.
    @ivar queueTimeout: Seconds a connection may wait before it gets the overflow behaviour
        (default 30).
    @ivar idleTimeout: Seconds a served connection may stay silent (no byte either way) before
        it is closed (default 75).  A connection whose protocol says it is working on a
        response (see L{IConnectionProbe<txconnpool.server.IConnectionProbe>}) is not idle.
    @ivar headerTimeout: Seconds the head of a request (for HTTP, the request line and
        headers) may take to arrive, from its first byte, so a client trickling bytes cannot
        hold a slot (default 10).  Only for protocols whose probe knows a request's head.
    @ivar requestTimeout: Seconds a whole request may take to arrive, from its first byte to
        its last, body included (default L{None}: uploads may take long).
    @ivar maxPerPeer: Connections served at once per client IP address (IPv4 and IPv6); the
        others from that address wait in the queue, while later clients from other addresses
        may go ahead of them.
    @ivar reapIdleAfter: When every slot is taken and clients wait, a served connection that
        has been idle at least this many seconds is closed to make room (default 0.5): the one
        with the shortest announced keep-alive first, then the one idle longest.  Only between
        requests, and never while unread bytes of a next request wait on its socket.
    @ivar minTurn: When every slot is taken and clients wait, a served connection that has
        held its slot this many seconds is asked to give it up at its next request boundary
        (default 0.05), the one served longest first, no more than clients wait.  L{None}
        turns taking turns off.
    @ivar minTurnRequests: With C{minTurn}, the number of requests a connection must also have
        had answered before its turn may end (default L{None}: no such minimum).
    @ivar overflowFactory: Builds the protocol a refused or timed-out client gets; L{None}
        closes the connection at once.  L{ServiceUnavailableFactory
        <txconnpool.server.ServiceUnavailableFactory>} answers HTTP 503.
    @ivar closeGracePeriod: Seconds a connection closed by the limiter may take to close in
        order before it is aborted.  A class attribute, read when the limiter is created.
    @ivar reapPollInterval: Shortest time between two looks for a connection to reap while
        the served ones are busy.  A class attribute, read when the limiter is created.
    """

    noisy = False
    closeGracePeriod = 5.0
    reapPollInterval = 0.25

    def __init__(
        self,
        wrappedFactory: IProtocolFactory,
        maxConnections: int,
        *,
        maxQueued: int | None = None,
        queueTimeout: float | None = DEFAULT_QUEUE_TIMEOUT,
        idleTimeout: float | None = DEFAULT_IDLE_TIMEOUT,
        headerTimeout: float | None = DEFAULT_HEADER_TIMEOUT,
        requestTimeout: float | None = None,
        maxPerPeer: int | None = None,
        reapIdleAfter: float | None = DEFAULT_REAP_IDLE_AFTER,
        minTurn: float | None = DEFAULT_MIN_TURN,
        minTurnRequests: int | None = None,
        overflowFactory: IProtocolFactory | None = None,
        reactor: IReactorTime | None = None,
    ) -> None:
        """
        @raise TypeError: If an argument has the wrong type; the message names it.
        @raise ValueError: If an argument is out of range, or if C{maxConnections + maxQueued}
            connections cannot fit under the process's C{RLIMIT_NOFILE}.
        """
        self._options = options = LimiterOptions(
            wrappedFactory=wrappedFactory,
            maxConnections=maxConnections,
            maxQueued=maxQueued,
            queueTimeout=queueTimeout,
            idleTimeout=idleTimeout,
            headerTimeout=headerTimeout,
            requestTimeout=requestTimeout,
            maxPerPeer=maxPerPeer,
            reapIdleAfter=reapIdleAfter,
            minTurn=minTurn,
            minTurnRequests=minTurnRequests,
            overflowFactory=overflowFactory,
        )
        if reactor is None:
            from twisted.internet import reactor as globalReactor

            reactor = cast(IReactorTime, globalReactor)
        self._core = LimiterCore(
            options,
            reactor,
            descriptorBudget=checkDescriptorBudget(maxConnections, maxQueued),
            closeGracePeriod=self.closeGracePeriod,
            reapPollInterval=self.reapPollInterval,
            ownsFactory=lambda factory: factoryChainHolds(factory, self),
        )

    def __repr__(self) -> str:
        stats = self._core.stats()
        return (
            f"<{self.__class__.__name__} wrapping {self.wrappedFactory!r}: "
            f"{stats.active}/{stats.maxConnections} active, {stats.queued} queued, "
            f"{stats.overflowing} overflowing>"
        )

    # The options, as given.

    @property
    def wrappedFactory(self) -> IProtocolFactory:
        return self._options.wrappedFactory

    @property
    def maxConnections(self) -> int:
        return self._options.maxConnections

    @property
    def maxQueued(self) -> int | None:
        return self._options.maxQueued

    @property
    def queueTimeout(self) -> float | None:
        return self._options.queueTimeout

    @property
    def idleTimeout(self) -> float | None:
        return self._options.idleTimeout

    @property
    def headerTimeout(self) -> float | None:
        return self._options.headerTimeout

    @property
    def requestTimeout(self) -> float | None:
        return self._options.requestTimeout

    @property
    def maxPerPeer(self) -> int | None:
        return self._options.maxPerPeer

    @property
    def reapIdleAfter(self) -> float | None:
        return self._options.reapIdleAfter

    @property
    def minTurn(self) -> float | None:
        return self._options.minTurn

    @property
    def minTurnRequests(self) -> int | None:
        return self._options.minTurnRequests

    @property
    def overflowFactory(self) -> IProtocolFactory | None:
        return self._options.overflowFactory

    # IProtocolFactory

    def buildProtocol(self, addr: IAddress | None) -> LimitedProtocol:
        """
        @return: A L{LimitedProtocol} for the new connection; the wrapped factory's protocol is
            built once the connection gets a slot.
        """
        return LimitedProtocol(self._core, cast(IAddress, addr))

    def doStart(self) -> None:
        self.wrappedFactory.doStart()
        super().doStart()  # type: ignore[no-untyped-call]

    def doStop(self) -> None:
        self.wrappedFactory.doStop()
        super().doStop()  # type: ignore[no-untyped-call]

    def startFactory(self) -> None:
        self._core.start()

    def stopFactory(self) -> None:
        self._core.stop()

    def logPrefix(self) -> str:
        return f"{self.__class__.__name__}({self.wrappedFactory.__class__.__name__})"

    # Observation

    def stats(self) -> LimiterStats:
        """
        @return: A snapshot of the current counts and of the counters since creation.
        """
        return self._core.stats()
