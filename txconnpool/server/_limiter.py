"""
L{LimitConnectionsFactory}: at most so many connections served at once; the others wait, paused
and unread, and are served in order of arrival.
"""

from __future__ import annotations

from typing import cast

from twisted.internet.interfaces import IAddress, IDelayedCall, IProtocolFactory, IReactorTime
from twisted.internet.protocol import Factory
from twisted.logger import Logger

from ._departure import departureWatcherFor, unwatchQueued, watchQueued
from ._fd import AcceptGate, checkDescriptorBudget, factoryChainHolds
from ._options import LimiterOptions
from ._protocol import LimitedProtocol, State
from ._queue import ConnectionQueue
from ._reaper import reapCandidates
from ._stats import LimiterStats, PeerStats


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

    Use it wherever a factory goes: C{reactor.listenTCP(8080, LimitConnectionsFactory(site,
    100))}, TLS and UNIX-socket endpoints, IPv6.

    @ivar wrappedFactory: The factory whose protocols serve the connections.
    @ivar maxConnections: Connections served at once.
    @ivar maxQueued: Connections that may wait; beyond it a new connection gets the overflow
        behaviour.  L{None} lets the queue grow as far as file descriptors allow: when they are
        about to run out the listening ports are paused, and further clients wait in the
        kernel's accept queue.
    @ivar queueTimeout: Seconds a connection may wait before it gets the overflow behaviour.
    @ivar idleTimeout: Seconds a served connection may stay silent (no byte either way) before
        it is closed.  A connection whose protocol says it is working on a response (see
        L{IConnectionProbe<txconnpool.server.IConnectionProbe>}) is not idle.
    @ivar requestTimeout: Seconds a request may take to arrive, from its first byte to its
        last, so a client trickling bytes cannot hold a slot forever.
    @ivar maxPerPeer: Connections served at once per client IP address (IPv4 and IPv6); the
        others from that address wait in the queue, while later clients from other addresses
        may go ahead of them.
    @ivar reapIdleAfter: When every slot is taken and clients wait, a served connection that
        has been idle at least this many seconds is closed to make room: the one with the
        shortest announced keep-alive first, then the one idle longest.  Only between requests.
    @ivar overflowFactory: Builds the protocol a refused or timed-out client gets; L{None}
        closes the connection at once.  L{ServiceUnavailableFactory
        <txconnpool.server.ServiceUnavailableFactory>} answers HTTP 503.
    @ivar closeGracePeriod: Seconds a connection closed by the limiter may take to close in
        order before it is aborted.
    @ivar reapPollInterval: Shortest time between two looks for a connection to reap while
        the served ones are busy.
    """

    noisy = False
    closeGracePeriod = 5.0
    reapPollInterval = 0.25
    _log = Logger()

    def __init__(
        self,
        wrappedFactory: IProtocolFactory,
        maxConnections: int,
        *,
        maxQueued: int | None = None,
        queueTimeout: float | None = None,
        idleTimeout: float | None = None,
        requestTimeout: float | None = None,
        maxPerPeer: int | None = None,
        reapIdleAfter: float | None = None,
        overflowFactory: IProtocolFactory | None = None,
        reactor: IReactorTime | None = None,
    ) -> None:
        """
        @raise TypeError: If an argument has the wrong type; the message names it.
        @raise ValueError: If an argument is out of range, or if C{maxConnections + maxQueued}
            connections cannot fit under the process's C{RLIMIT_NOFILE}.
        """
        LimiterOptions(
            wrappedFactory=wrappedFactory,
            maxConnections=maxConnections,
            maxQueued=maxQueued,
            queueTimeout=queueTimeout,
            idleTimeout=idleTimeout,
            requestTimeout=requestTimeout,
            maxPerPeer=maxPerPeer,
            reapIdleAfter=reapIdleAfter,
            overflowFactory=overflowFactory,
        )
        if reactor is None:
            from twisted.internet import reactor as globalReactor

            reactor = cast(IReactorTime, globalReactor)
        self._descriptorBudget = checkDescriptorBudget(maxConnections, maxQueued)

        self.wrappedFactory = wrappedFactory
        self.maxConnections = maxConnections
        self.maxQueued = maxQueued
        self.queueTimeout = queueTimeout
        self.idleTimeout = idleTimeout
        self.requestTimeout = requestTimeout
        self.maxPerPeer = maxPerPeer
        self.reapIdleAfter = reapIdleAfter
        self.overflowFactory = overflowFactory
        self._clock = reactor
        self._timing = (
            idleTimeout is not None or requestTimeout is not None or (reapIdleAfter is not None)
        )

        self._arrivals = 0
        self._active: dict[LimitedProtocol, None] = {}
        self._peerActive: dict[str, int] = {}
        self._queue: ConnectionQueue[LimitedProtocol] = ConnectionQueue(self._peerHasRoom)
        self._overflowing: set[LimitedProtocol] = set()
        self._reaping: set[LimitedProtocol] = set()
        self._dispatching = False
        self._again = False
        self._queueTimer: IDelayedCall | None = None
        self._reapTimer: IDelayedCall | None = None
        self._watcher = departureWatcherFor(reactor)
        self._learnedBudget: int | None = None
        self._gate = AcceptGate(
            reactor,
            lambda factory: factoryChainHolds(factory, self),
            self._freeDescriptors,
            self._descriptorsRecovered,
        )

        self._served = 0
        self._overflowed = 0
        self._timedOutQueued = 0
        self._leftQueued = 0
        self._reaped = 0
        self._idleClosed = 0
        self._requestTimedOut = 0

    def __repr__(self) -> str:
        return (
            f"<{self.__class__.__name__} wrapping {self.wrappedFactory!r}: "
            f"{len(self._active)}/{self.maxConnections} active, {len(self._queue)} queued, "
            f"{len(self._overflowing)} overflowing>"
        )

    # IProtocolFactory

    def buildProtocol(self, addr: IAddress | None) -> LimitedProtocol:
        """
        @return: A L{LimitedProtocol} for the new connection; the wrapped factory's protocol is
            built once the connection gets a slot.
        """
        self._arrivals += 1
        return LimitedProtocol(self, cast(IAddress, addr), self._arrivals)

    def doStart(self) -> None:
        self.wrappedFactory.doStart()
        super().doStart()  # type: ignore[no-untyped-call]

    def doStop(self) -> None:
        self.wrappedFactory.doStop()
        super().doStop()  # type: ignore[no-untyped-call]

    def startFactory(self) -> None:
        self._gate.start()

    def stopFactory(self) -> None:
        self._gate.stop()

    def logPrefix(self) -> str:
        return f"{self.__class__.__name__}({self.wrappedFactory.__class__.__name__})"

    # Observation

    def stats(self) -> LimiterStats:
        """
        @return: A snapshot of the current counts and of the counters since creation.
        """
        peers = {
            key: PeerStats(active=count, queued=self._queue.countFor(key))
            for key, count in self._peerActive.items()
        }
        for key in self._queue.peerKeys():
            if key not in peers:
                peers[key] = PeerStats(active=0, queued=self._queue.countFor(key))
        return LimiterStats(
            maxConnections=self.maxConnections,
            maxQueued=self.maxQueued,
            active=len(self._active),
            queued=len(self._queue),
            overflowing=len(self._overflowing),
            served=self._served,
            overflowed=self._overflowed,
            timedOutQueued=self._timedOutQueued,
            leftQueued=self._leftQueued,
            reaped=self._reaped,
            idleClosed=self._idleClosed,
            requestTimedOut=self._requestTimedOut,
            acceptPauses=self._gate.pauses,
            peers=peers,
        )

    # Events from connections

    def _arrived(self, conn: LimitedProtocol) -> None:
        """
        A connection was accepted: serve it, queue it or refuse it.
        """
        if (
            not self._queue
            and len(self._active) < self.maxConnections
            and self._peerHasRoom(conn.peerKey)
        ):
            self._activate(conn)
        elif self.maxQueued is not None and len(self._queue) >= self.maxQueued:
            self._overflowed += 1
            self._log.info(
                "Queue full ({queued} waiting): refusing {peer}",
                limiterEvent="overflow",
                queued=len(self._queue),
                peer=conn.addr,
            )
            self._overflow(conn)
        else:
            conn.enterQueue(self._clock.seconds())
            self._queue.append(conn)
            watchQueued(self._watcher, conn)
            self._dispatch()
            if conn.state is State.QUEUED:
                self._scheduleQueueTimer()
                self._reapForQueue()
        self._afterChange()

    def _lost(self, conn: LimitedProtocol) -> None:
        """
        A connection's transport is gone: release what it held.
        """
        state = conn.state
        if state is State.ACTIVE:
            del self._active[conn]
            key = conn.peerKey
            if key is not None:
                remaining = self._peerActive[key] - 1
                if remaining:
                    self._peerActive[key] = remaining
                else:
                    del self._peerActive[key]
                self._queue.peerHasRoom(key)
            self._reaping.discard(conn)
            self._dispatch()
        elif state is State.QUEUED:
            unwatchQueued(self._watcher, conn)
            self._leaveQueue(conn)
        elif state is State.OVERFLOW:
            self._overflowing.discard(conn)
        self._afterChange()

    def _departed(self, conn: LimitedProtocol) -> None:
        """
        The departure watcher saw a queued client close or reset its connection.
        """
        if conn.state is State.QUEUED and self._leaveQueue(conn):
            unwatchQueued(self._watcher, conn)
            conn.state = State.CLOSING
            conn.drop()
            self._afterChange()

    def _leaveQueue(self, conn: LimitedProtocol) -> bool:
        """
        Take a queued connection whose client went away out of the queue, and count it.

        @return: Whether it was still queued.
        """
        if not self._queue.remove(conn):
            return False
        self._countLeft(conn)
        return True

    def _countLeft(self, conn: LimitedProtocol) -> None:
        self._leftQueued += 1
        self._log.debug("Queued client {peer} went away", limiterEvent="left", peer=conn.addr)

    def _closeActive(self, conn: LimitedProtocol, reason: str) -> None:
        """
        Close a served connection for C{reason}: C{"idle"}, C{"request-timeout"} or
        C{"reaped"}.
        """
        if reason == "idle":
            self._idleClosed += 1
        elif reason == "request-timeout":
            self._requestTimedOut += 1
        else:
            self._reaped += 1
            self._reaping.add(conn)
        self._log.info(
            "Closing {peer} ({reason}); silent for {idle:.3f}s",
            limiterEvent="closing",
            peer=conn.addr,
            reason=reason,
            idle=self._clock.seconds() - conn.lastActivity,
        )
        conn.closeFor(reason, self.closeGracePeriod)

    # The one place that gives slots out.

    def _dispatch(self) -> None:
        """
        Serve waiting connections while slots are free.  A call made while this runs (a
        protocol that closes at once, say) only asks for another round.  A connection about to
        be served is checked for a hang-up first, so a client that left is never served even
        if the departure watcher has not had its turn yet.
        """
        if self._dispatching:
            self._again = True
            return
        self._dispatching = True
        try:
            while True:
                self._again = False
                while len(self._active) < self.maxConnections:
                    conn = self._queue.popNext()
                    if conn is None:
                        break
                    fd = conn.watchedFd
                    unwatchQueued(self._watcher, conn)
                    if fd is not None and self._watcher is not None:
                        if self._watcher.hasDeparted(fd):
                            self._countLeft(conn)
                            conn.state = State.CLOSING
                            conn.drop()
                            continue
                    self._activate(conn)
                if not self._again:
                    break
        finally:
            self._dispatching = False

    def _activate(self, conn: LimitedProtocol) -> None:
        conn.state = State.ACTIVE
        self._active[conn] = None
        key = conn.peerKey
        if key is not None:
            self._peerActive[key] = self._peerActive.get(key, 0) + 1
        self._served += 1
        try:
            protocol = self.wrappedFactory.buildProtocol(conn.addr)
            if protocol is None:
                self._log.info(
                    "{factory} refused {peer}",
                    limiterEvent="refused",
                    factory=self.wrappedFactory,
                    peer=conn.addr,
                )
                conn.closingReason = "refused"
                conn.drop()
                return
            conn.serve(protocol, self._clock.seconds(), timing=self._timing)
        except Exception:
            self._log.failure("Could not start serving {peer}", peer=conn.addr)
            if conn.state is not State.CLOSED:
                conn.closingReason = "error"
                conn.drop()

    def _overflow(self, conn: LimitedProtocol) -> None:
        self._overflowing.add(conn)
        protocol = None
        if self.overflowFactory is not None:
            try:
                protocol = self.overflowFactory.buildProtocol(conn.addr)
            except Exception:
                self._log.failure("Could not build the overflow protocol")
        try:
            conn.overflow(protocol)
        except Exception:
            self._log.failure("Overflow protocol failed for {peer}", peer=conn.addr)
            conn.drop()

    def _peerHasRoom(self, key: str | None) -> bool:
        limit = self.maxPerPeer
        return limit is None or key is None or self._peerActive.get(key, 0) < limit

    # Queue timeout

    def _scheduleQueueTimer(self) -> None:
        if self.queueTimeout is None or self._queueTimer is not None:
            return
        oldest = self._queue.oldest()
        if oldest is None:
            return
        delay = max(0.0, oldest.enqueuedAt + self.queueTimeout - self._clock.seconds())
        self._queueTimer = self._clock.callLater(delay, self._expireQueued)

    def _expireQueued(self) -> None:
        self._queueTimer = None
        assert self.queueTimeout is not None
        now = self._clock.seconds()
        while True:
            oldest = self._queue.oldest()
            if oldest is None or oldest.enqueuedAt + self.queueTimeout > now:
                break
            self._queue.remove(oldest)
            unwatchQueued(self._watcher, oldest)
            self._timedOutQueued += 1
            self._log.info(
                "{peer} waited {waited:.3f}s for a slot: giving up on it",
                limiterEvent="queue-timeout",
                peer=oldest.addr,
                waited=now - oldest.enqueuedAt,
            )
            self._overflow(oldest)
        self._scheduleQueueTimer()
        self._afterChange()

    # Reaping

    def _reapForQueue(self) -> None:
        """
        Close idle served connections to make room for waiting ones, if reaping is on and
        every slot is taken; look again later if none is idle long enough yet.
        """
        reapIdleAfter = self.reapIdleAfter
        if reapIdleAfter is None or self._reapTimer is not None:
            return
        need = len(self._queue) - len(self._reaping)
        if need <= 0 or len(self._active) < self.maxConnections:
            return
        now = self._clock.seconds()
        due, nextLook = reapCandidates(self._active, now, reapIdleAfter, self.reapPollInterval)
        for conn in due[:need]:
            self._closeActive(conn, "reaped")
        if len(due) < need:
            self._reapTimer = self._clock.callLater(nextLook - now, self._reapTimerFired)

    def _reapTimerFired(self) -> None:
        self._reapTimer = None
        self._reapForQueue()

    def _freeDescriptors(self) -> None:
        """
        An C{accept} failed for lack of descriptors: take on no more connections than are
        held now, until the gate says descriptors have recovered, and reap the best idle
        connection if reaping is on.
        """
        self._learnedBudget = self._held()
        if self.reapIdleAfter is not None:
            due, _ = reapCandidates(
                self._active, self._clock.seconds(), self.reapIdleAfter, self.reapPollInterval
            )
            if due:
                self._closeActive(due[0], "reaped")
        self._afterChange()

    def _descriptorsRecovered(self) -> None:
        self._learnedBudget = None
        self._afterChange()

    def _cancelQueueWork(self) -> None:
        for name in ("_queueTimer", "_reapTimer"):
            call = getattr(self, name)
            if call is not None:
                setattr(self, name, None)
                if call.active():
                    call.cancel()

    # Descriptors

    def _afterChange(self) -> None:
        """
        Bring the timers and the accept gate in line with the counts.
        """
        if not self._queue:
            self._cancelQueueWork()
        budgets = [b for b in (self._descriptorBudget, self._learnedBudget) if b is not None]
        self._gate.setRoom(
            min(budgets) - self._held() if budgets else None,
            precise=self._learnedBudget is not None,
        )

    def _held(self) -> int:
        """
        @return: How many connections (so descriptors) the limiter holds.
        """
        return len(self._active) + len(self._queue) + len(self._overflowing)
