"""
The core of a connection limiter: the one object that owns its state (the records of the
connections, the slots, the queue, the counters and every timer) and the only code that
changes it.  Connections report events to it through L{LimiterEvents}; it tells them what to do
through L{ConnectionHandle}.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime
from twisted.logger import Logger

from ._deadlines import expiredDeadline, nextDeadline, nextLook, requestClocks
from ._departure import departureWatcherFor, hasDeparted, hasPendingInput, watchDeparture
from ._fairness import reapCandidates, turnCandidates
from ._fd import AcceptGate
from ._options import LimiterOptions
from ._probe import probeFor
from ._queue import ConnectionQueue
from ._record import ConnectionHandle, ConnectionRecord, State
from ._stats import LimiterStats, PeerStats

_CLOSE_COUNTERS = {
    "idle": "idleClosed",
    "request-timeout": "requestTimedOut",
    "header-timeout": "headerTimedOut",
    "reaped": "reaped",
}


def _cancel(call: IDelayedCall | None) -> None:
    if call is not None and call.active():
        call.cancel()


class LimiterCore:
    """
    Gives slots to connections, queues the others in order of arrival, takes turns among them,
    and enforces the timeouts.

    Re-entrant events (a protocol that closes its connection while being served, say) do not
    recurse: the outer loops of L{_dispatch} and L{_adjust} do the work they ask for.
    """

    _log = Logger()

    def __init__(
        self,
        options: LimiterOptions,
        clock: IReactorTime,
        *,
        descriptorBudget: int | None,
        closeGracePeriod: float,
        reapPollInterval: float,
        ownsFactory: Callable[[object], bool],
    ) -> None:
        self._options = options
        self._clock = clock
        self._descriptorBudget = descriptorBudget
        self._closeGracePeriod = closeGracePeriod
        self._pollInterval = reapPollInterval
        self._timing = (
            options.idleTimeout is not None
            or options.headerTimeout is not None
            or options.requestTimeout is not None
        )
        self._requestClocks = (
            options.headerTimeout is not None or options.requestTimeout is not None
        )
        self._fair = options.minTurn is not None or options.reapIdleAfter is not None
        self._reportTraffic = self._timing or self._fair

        self._arrivals = 0
        self._active: dict[ConnectionRecord, None] = {}
        self._peerActive: dict[str, int] = {}
        self._queue: ConnectionQueue[ConnectionRecord] = ConnectionQueue(self._peerHasRoom)
        self._overflowing: set[ConnectionRecord] = set()
        self._reaping: set[ConnectionRecord] = set()
        self._ending: set[ConnectionRecord] = set()
        self._unmet = 0
        self._dispatching = self._dispatchAgain = False
        self._adjusting = self._adjustAgain = False
        self._queueTimer: IDelayedCall | None = None
        self._fairnessTimer: IDelayedCall | None = None
        self._watcher = departureWatcherFor(clock)
        self._learnedBudget: int | None = None
        self._gate = AcceptGate(
            clock, ownsFactory, self._descriptorsShort, self._descriptorsRecovered
        )
        self._counters = dict.fromkeys(
            (
                "served",
                "overflowed",
                "timedOutQueued",
                "leftQueued",
                "reaped",
                "idleClosed",
                "requestTimedOut",
                "headerTimedOut",
                "turnsEnded",
            ),
            0,
        )

    # Lifetime and observation

    def start(self) -> None:
        """
        Start watching for failed accepts.
        """
        self._gate.start()

    def stop(self) -> None:
        """
        Stop watching for failed accepts and resume any paused port.
        """
        self._gate.stop()

    def stats(self) -> LimiterStats:
        """
        @return: A snapshot of the current counts and of the counters since creation.
        """
        queue = self._queue
        peers = {
            key: PeerStats(active=count, queued=queue.countFor(key))
            for key, count in self._peerActive.items()
        }
        for key in queue.peerKeys():
            if key not in peers:
                peers[key] = PeerStats(active=0, queued=queue.countFor(key))
        return LimiterStats(
            maxConnections=self._options.maxConnections,
            maxQueued=self._options.maxQueued,
            active=len(self._active),
            queued=len(queue),
            overflowing=len(self._overflowing),
            acceptPauses=self._gate.pauses,
            peers=peers,
            **self._counters,
        )

    # LimiterEvents

    def register(self, handle: ConnectionHandle, addr: IAddress) -> ConnectionRecord:
        self._arrivals += 1
        return ConnectionRecord(handle, addr, self._arrivals)

    def connectionArrived(self, record: ConnectionRecord) -> None:
        options = self._options
        queue = self._queue
        if (
            not queue
            and len(self._active) < options.maxConnections
            and self._peerHasRoom(record.peerKey)
        ):
            self._activate(record)
        elif options.maxQueued is not None and len(queue) >= options.maxQueued:
            self._counters["overflowed"] += 1
            self._log.info(
                "Queue full ({queued} waiting): refusing {peer}",
                limiterEvent="overflow",
                queued=len(queue),
                peer=record.addr,
            )
            self._overflow(record)
        else:
            record.state = State.QUEUED
            record.enqueuedAt = self._clock.seconds()
            record.handle.enterQueue()
            queue.append(record)
            self._watch(record)
            self._dispatch()
            if record.state is State.QUEUED:
                self._scheduleQueueTimer()
                if not self._unmet:
                    self._adjust()
        self._afterChange()

    def dataArriving(self, record: ConnectionRecord) -> None:
        probe = record.probe
        if record.state is not State.ACTIVE or probe is None:
            return
        record.lastActivity = self._clock.seconds()
        record.clientSpoke = True
        probe.bytesReceived()

    def dataDelivered(self, record: ConnectionRecord) -> None:
        if not self._requestClocks or record.state is not State.ACTIVE:
            return
        if record.probe is None or record.closingReason is not None:
            return
        requestBefore, headBefore = record.requestStart, record.headStart
        record.requestStart, record.headStart = requestClocks(record, record.lastActivity)
        if (requestBefore is None and record.requestStart is not None) or (
            headBefore is None and record.headStart is not None
        ):
            self._advanceDeadline(record)

    def dataSent(self, record: ConnectionRecord) -> None:
        probe = record.probe
        if record.state is not State.ACTIVE or probe is None:
            return
        record.lastActivity = self._clock.seconds()
        probe.bytesSent()
        if record.clientSpoke:
            record.clientSpoke = False
            record.exchanges += 1
        if record.requestStart is not None and not probe.isReceivingRequest():
            record.requestStart = record.headStart = None
        elif record.headStart is not None and not probe.isReceivingHead():
            record.headStart = None

    def clientDeparted(self, record: ConnectionRecord) -> None:
        if record.state is State.QUEUED and self._leaveQueue(record):
            self._unwatch(record)
            self._drop(record)
            self._afterChange()

    def connectionLost(self, record: ConnectionRecord) -> None:
        _cancel(record.deadlineCall)
        _cancel(record.abortCall)
        record.deadlineCall = record.abortCall = None
        state = record.state
        if state is State.ACTIVE:
            del self._active[record]
            key = record.peerKey
            if key is not None:
                remaining = self._peerActive[key] - 1
                if remaining:
                    self._peerActive[key] = remaining
                else:
                    del self._peerActive[key]
                self._queue.peerHasRoom(key)
            self._reaping.discard(record)
            self._ending.discard(record)
            record.state = State.CLOSED
            self._dispatch()
        elif state is State.QUEUED:
            self._unwatch(record)
            self._leaveQueue(record)
        elif state is State.OVERFLOW:
            self._overflowing.discard(record)
        record.state = State.CLOSED
        record.probe = None
        self._afterChange()

    # Slots

    def _dispatch(self) -> None:
        """
        Serve waiting connections while slots are free: the one place that gives slots out.
        A connection about to be served is checked for a hang-up first, so a client that left
        is never served even if the departure watcher has not had its turn yet.
        """
        if self._dispatching:
            self._dispatchAgain = True
            return
        self._dispatching = True
        try:
            while True:
                self._dispatchAgain = False
                while len(self._active) < self._options.maxConnections:
                    record = self._queue.popNext()
                    if record is None:
                        break
                    fd = record.watchedFd
                    self._unwatch(record)
                    if fd is not None and self._watcher is not None and hasDeparted(fd):
                        self._countLeft(record)
                        self._drop(record)
                        continue
                    self._activate(record)
                if not self._dispatchAgain:
                    break
        finally:
            self._dispatching = False

    def _activate(self, record: ConnectionRecord) -> None:
        record.state = State.ACTIVE
        self._active[record] = None
        key = record.peerKey
        if key is not None:
            self._peerActive[key] = self._peerActive.get(key, 0) + 1
        self._counters["served"] += 1
        now = self._clock.seconds()
        record.servedAt = record.lastActivity = now
        wrapped = self._options.wrappedFactory
        try:
            protocol = wrapped.buildProtocol(record.addr)
            if protocol is None:
                self._log.info(
                    "{factory} refused {peer}",
                    limiterEvent="refused",
                    factory=wrapped,
                    peer=record.addr,
                )
                record.closingReason = "refused"
                self._drop(record)
                return
            if self._reportTraffic:
                record.probe = probeFor(protocol)
            record.handle.serve(protocol, reportTraffic=self._reportTraffic)
        except Exception:
            self._log.failure("Could not start serving {peer}", peer=record.addr)
            if record.state is not State.CLOSED:
                record.closingReason = "error"
                self._drop(record)
            return
        if record.state is State.ACTIVE and record.closingReason is None:
            if self._timing:
                self._armDeadline(record, now)
            minTurn = self._options.minTurn
            if minTurn is not None and self._queue:
                self._lookBy(now + minTurn)

    def _overflow(self, record: ConnectionRecord) -> None:
        record.state = State.OVERFLOW
        self._overflowing.add(record)
        protocol = None
        factory = self._options.overflowFactory
        if factory is not None:
            try:
                protocol = factory.buildProtocol(record.addr)
            except Exception:
                self._log.failure("Could not build the overflow protocol")
        try:
            record.handle.overflow(protocol)
        except Exception:
            self._log.failure("Overflow protocol failed for {peer}", peer=record.addr)
            self._drop(record)

    def _peerHasRoom(self, key: str | None) -> bool:
        limit = self._options.maxPerPeer
        return limit is None or key is None or self._peerActive.get(key, 0) < limit

    def _closeActive(self, record: ConnectionRecord, reason: str) -> None:
        """
        Close a served connection in order for C{reason} (a key of L{_CLOSE_COUNTERS}),
        aborting it if it has not closed after the grace period (a client that does not read
        can hold an orderly close forever).
        """
        self._counters[_CLOSE_COUNTERS[reason]] += 1
        if reason == "reaped":
            self._reaping.add(record)
            self._ending.discard(record)
        self._log.info(
            "Closing {peer} ({reason}); silent for {idle:.3f}s",
            limiterEvent="closing",
            peer=record.addr,
            reason=reason,
            idle=self._clock.seconds() - record.lastActivity,
        )
        record.closingReason = reason
        _cancel(record.deadlineCall)
        record.deadlineCall = None
        record.handle.loseConnection()
        if record.state is not State.CLOSED and record.abortCall is None:
            record.abortCall = self._clock.callLater(
                self._closeGracePeriod, self._abortDue, record
            )

    def _abortDue(self, record: ConnectionRecord) -> None:
        record.abortCall = None
        if record.state is not State.CLOSED:
            record.handle.abortConnection()

    def _drop(self, record: ConnectionRecord) -> None:
        """
        Close a connection at once, unread data and all.
        """
        if record.state is State.QUEUED:
            record.state = State.CLOSING
        _cancel(record.deadlineCall)
        _cancel(record.abortCall)
        record.deadlineCall = record.abortCall = None
        record.handle.abortConnection()

    # The queue

    def _watch(self, record: ConnectionRecord) -> None:
        onDeparture = record.onDeparture = partial(self.clientDeparted, record)
        fd = record.handle.descriptor()
        if watchDeparture(self._watcher, fd, onDeparture):
            record.watchedFd = fd

    def _unwatch(self, record: ConnectionRecord) -> None:
        fd, record.watchedFd = record.watchedFd, None
        onDeparture, record.onDeparture = record.onDeparture, None
        if fd is not None and onDeparture is not None and self._watcher is not None:
            self._watcher.unwatch(fd, onDeparture)

    def _leaveQueue(self, record: ConnectionRecord) -> bool:
        """
        Take a queued connection whose client went away out of the queue, and count it.

        @return: Whether it was still queued.
        """
        if not self._queue.remove(record):
            return False
        self._countLeft(record)
        return True

    def _countLeft(self, record: ConnectionRecord) -> None:
        self._counters["leftQueued"] += 1
        self._log.debug("Queued client {peer} went away", limiterEvent="left", peer=record.addr)

    def _scheduleQueueTimer(self) -> None:
        queueTimeout = self._options.queueTimeout
        if queueTimeout is None or self._queueTimer is not None:
            return
        oldest = self._queue.oldest()
        if oldest is None:
            return
        delay = max(0.0, oldest.enqueuedAt + queueTimeout - self._clock.seconds())
        self._queueTimer = self._clock.callLater(delay, self._queueTimerDue)

    def _queueTimerDue(self) -> None:
        self._queueTimer = None
        queueTimeout = self._options.queueTimeout
        assert queueTimeout is not None
        now = self._clock.seconds()
        while True:
            oldest = self._queue.oldest()
            if oldest is None or oldest.enqueuedAt + queueTimeout > now:
                break
            self._queue.remove(oldest)
            self._unwatch(oldest)
            self._counters["timedOutQueued"] += 1
            self._log.info(
                "{peer} waited {waited:.3f}s for a slot: giving up on it",
                limiterEvent="queue-timeout",
                peer=oldest.addr,
                waited=now - oldest.enqueuedAt,
            )
            self._overflow(oldest)
        self._scheduleQueueTimer()
        self._afterChange()

    # Deadlines of served connections

    def _armDeadline(self, record: ConnectionRecord, now: float) -> None:
        deadline = nextDeadline(record, self._options)
        if deadline is not None:
            record.deadlineCall = self._clock.callLater(
                max(0.0, deadline - now), self._deadlineDue, record
            )

    def _advanceDeadline(self, record: ConnectionRecord) -> None:
        """
        A request or its head started to arrive: look at the deadlines no later than the new
        one.
        """
        call = record.deadlineCall
        now = self._clock.seconds()
        if call is None:
            self._armDeadline(record, now)
            return
        deadline = nextDeadline(record, self._options)
        if deadline is not None and call.getTime() > deadline:
            call.reset(max(0.0, deadline - now))

    def _deadlineDue(self, record: ConnectionRecord) -> None:
        record.deadlineCall = None
        if record.state is not State.ACTIVE or record.closingReason is not None:
            return
        now = self._clock.seconds()
        record.requestStart, record.headStart = requestClocks(record, record.lastActivity)
        reason = expiredDeadline(record, now, self._options)
        if reason is not None:
            self._closeActive(record, reason)
            return
        look = nextLook(record, now, self._options)
        if look is not None:
            record.deadlineCall = self._clock.callLater(look - now, self._deadlineDue, record)

    # Turns: making room for waiting clients

    def _adjust(self) -> None:
        """
        Make room for waiting clients, if every slot is taken: reap idle connections and end
        the turns of connections that have had theirs, no more than clients wait.
        """
        if self._adjusting:
            self._adjustAgain = True
            return
        self._adjusting = True
        try:
            while True:
                self._adjustAgain = False
                self._adjustOnce()
                if not self._adjustAgain:
                    break
        finally:
            self._adjusting = False

    def _adjustOnce(self) -> None:
        timer, self._fairnessTimer = self._fairnessTimer, None
        _cancel(timer)
        self._unmet = 0
        options = self._options
        if not self._fair or not self._queue or len(self._active) < options.maxConnections:
            return
        now = self._clock.seconds()
        looks: list[float] = []
        candidates = [record for record in self._active if record.closingReason is None]
        need = len(self._queue) - len(self._reaping) - len(self._ending)
        if options.reapIdleAfter is not None:
            due, look = reapCandidates(candidates, now, options.reapIdleAfter, self._pollInterval)
            # Connections that are leaving anyway go first, whatever the need.
            for record in sorted(due, key=lambda r: r not in self._ending):
                if record not in self._ending and need <= 0:
                    break
                if record.state is not State.ACTIVE or record.closingReason is not None:
                    continue
                if self._mayReap(record):
                    leaving = record in self._ending
                    self._closeActive(record, "reaped")
                    need -= 0 if leaving else 1
                else:
                    looks.append(now + self._pollInterval)
            if look is not None and (need > 0 or self._ending):
                looks.append(look)
        if options.minTurn is not None and need > 0:
            ready, look = turnCandidates(
                candidates, now, options.minTurn, options.minTurnRequests, self._pollInterval
            )
            for record in ready:
                if need <= 0:
                    break
                if record.state is State.ACTIVE and record.closingReason is None:
                    if self._endTurn(record):
                        need -= 1
            if look is not None and need > 0:
                looks.append(look)
        if looks and self._queue:
            self._unmet = max(0, need)
            self._lookBy(min(looks))

    def _mayReap(self, record: ConnectionRecord) -> bool:
        """
        @return: Whether the connection's socket holds no unread bytes: a request that is
            already there is answered, not cut off.
        """
        fd = record.handle.descriptor()
        return fd is None or not hasPendingInput(fd)

    def _endTurn(self, record: ConnectionRecord) -> bool:
        """
        Ask a served connection to give up its slot at its next request boundary.

        @return: Whether its protocol will close it; if not, it is closed when idle.
        """
        probe = record.probe
        assert probe is not None
        record.turnEnded = True
        self._counters["turnsEnded"] += 1
        self._log.debug(
            "Turn of {peer} is over after {held:.3f}s",
            limiterEvent="turn-ended",
            peer=record.addr,
            held=self._clock.seconds() - record.servedAt,
        )
        try:
            leaves = bool(probe.endTurn())
        except Exception:
            self._log.failure("The probe of {peer} failed to end its turn", peer=record.addr)
            leaves = False
        if leaves and record.state is State.ACTIVE:
            record.leavesItself = True
            self._ending.add(record)
        return leaves

    def _lookBy(self, when: float) -> None:
        """
        Make sure room is looked for again no later than C{when}.
        """
        delay = max(0.0, when - self._clock.seconds())
        timer = self._fairnessTimer
        if timer is None:
            self._fairnessTimer = self._clock.callLater(delay, self._fairnessDue)
        elif timer.getTime() > when:
            timer.reset(delay)

    def _fairnessDue(self) -> None:
        self._fairnessTimer = None
        self._adjust()

    # Descriptors

    def _descriptorsShort(self) -> None:
        """
        An C{accept} failed for lack of descriptors: take on no more connections than are
        held now, until the gate says descriptors have recovered, and reap the best idle
        connection if reaping is on.
        """
        self._learnedBudget = self._held()
        reapIdleAfter = self._options.reapIdleAfter
        if reapIdleAfter is not None:
            due, _ = reapCandidates(
                self._active, self._clock.seconds(), reapIdleAfter, self._pollInterval
            )
            for record in due:
                if self._mayReap(record):
                    self._closeActive(record, "reaped")
                    break
        self._afterChange()

    def _descriptorsRecovered(self) -> None:
        self._learnedBudget = None
        self._afterChange()

    def _afterChange(self) -> None:
        """
        Bring the timers and the accept gate in line with the counts.
        """
        if not self._queue:
            self._unmet = 0
            for name in ("_queueTimer", "_fairnessTimer"):
                call = getattr(self, name)
                if call is not None:
                    setattr(self, name, None)
                    _cancel(call)
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
