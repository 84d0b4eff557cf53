"""
The core of a connection limiter: the one object that owns its state (the records of the
connections, the slots, the counters, and the components it drives: the waiting line, the turn
keeper, the descriptor guard, each connection's deadlines) and the only code that changes it.
Connections report events to it through L{LimiterEvents}; it tells them what to do through
L{ConnectionHandle}.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime
from twisted.logger import Logger

from ._deadlines import Deadlines, requestClocks
from ._fd import DescriptorGuard
from ._options import LimiterOptions
from ._probe import probeFor
from ._record import ConnectionHandle, ConnectionRecord, State
from ._stats import COUNTERS, LimiterStats, peerCounts
from ._turns import TurnKeeper
from ._waiting import WaitingLine

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
    recurse: the outer loop of L{_dispatch} does the work they ask for.
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
        self._closeGracePeriod = closeGracePeriod
        self._timing = (
            options.idleTimeout is not None
            or options.headerTimeout is not None
            or options.requestTimeout is not None
        )
        self._requestClocks = (
            options.headerTimeout is not None or options.requestTimeout is not None
        )
        fair = options.minTurn is not None or options.reapIdleAfter is not None
        self._reportTraffic = self._timing or fair

        self._arrivals = 0
        self._active: dict[ConnectionRecord, None] = {}
        self._peerActive: dict[str, int] = {}
        self._overflowing: set[ConnectionRecord] = set()
        self._dispatching = self._dispatchAgain = False
        self._counters = dict.fromkeys(COUNTERS, 0)
        self._queue = WaitingLine(
            clock, options.queueTimeout, self._peerHasRoom, self._timedOut, self.clientDeparted
        )
        self._turns = TurnKeeper(
            options, clock, reapPollInterval, self._active, self._queue, self._closeActive
        )
        self._descriptors = DescriptorGuard(
            clock, ownsFactory, descriptorBudget, self._held, self._descriptorsShort
        )

    # Lifetime and observation

    def start(self) -> None:
        """
        Start watching for failed accepts.
        """
        self._descriptors.start()

    def stop(self) -> None:
        """
        Stop watching for failed accepts and resume any paused port.
        """
        self._descriptors.stop()

    def stats(self) -> LimiterStats:
        """
        @return: A snapshot of the current counts and of the counters since creation.
        """
        queue = self._queue
        return LimiterStats(
            maxConnections=self._options.maxConnections,
            maxQueued=self._options.maxQueued,
            active=len(self._active),
            queued=len(queue),
            overflowing=len(self._overflowing),
            acceptPauses=self._descriptors.pauses,
            peers=peerCounts(self._peerActive, queue.peerKeys(), queue.countFor),
            turnsEnded=self._turns.turnsEnded,
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
            record.handle.enterQueue()
            queue.join(record)
            self._dispatch()
            if record.state is State.QUEUED:
                self._turns.waiterArrived()
        self._afterChange()

    def dataArriving(self, record: ConnectionRecord) -> None:
        probe = record.probe
        if probe is not None:
            record.lastActivity = self._clock.seconds()
            record.clientSpoke = True
            probe.bytesReceived()

    def dataDelivered(self, record: ConnectionRecord) -> None:
        probe = record.probe
        if probe is None or not self._requestClocks or record.closingReason is not None:
            return
        if not probe.isReceivingRequest():
            record.requestStart = record.headStart = None
            return
        requestBefore, headBefore = record.requestStart, record.headStart
        record.requestStart, record.headStart = requestClocks(record, record.lastActivity)
        deadlines = record.deadlines
        if deadlines is not None and (
            (requestBefore is None and record.requestStart is not None)
            or (headBefore is None and record.headStart is not None)
        ):
            deadlines.advance()

    def dataSent(self, record: ConnectionRecord) -> None:
        probe = record.probe
        if probe is None:
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
        if record.state is State.QUEUED and self._queue.leave(record):
            self._countLeft(record)
            self._drop(record)
            self._afterChange()

    def connectionLost(self, record: ConnectionRecord) -> None:
        self._cancelTimers(record)
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
            self._turns.forget(record)
            record.state = State.CLOSED
            self._dispatch()
        elif state is State.QUEUED and self._queue.leave(record):
            self._countLeft(record)
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
                    taken = self._queue.takeNext()
                    if taken is None:
                        break
                    record, departed = taken
                    if departed:
                        self._countLeft(record)
                        self._drop(record)
                    else:
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
                record.deadlines = Deadlines(record, self._options, self._clock, self._closeActive)
                record.deadlines.start()
            self._turns.admitted(record)

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
        self._log.info(
            "Closing {peer} ({reason}); silent for {idle:.3f}s",
            limiterEvent="closing",
            peer=record.addr,
            reason=reason,
            idle=self._clock.seconds() - record.lastActivity,
        )
        record.closingReason = reason
        if record.deadlines is not None:
            record.deadlines.cancel()
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
        self._cancelTimers(record)
        record.handle.abortConnection()

    def _cancelTimers(self, record: ConnectionRecord) -> None:
        deadlines, record.deadlines = record.deadlines, None
        if deadlines is not None:
            deadlines.cancel()
        _cancel(record.abortCall)
        record.abortCall = None

    # The queue

    def _countLeft(self, record: ConnectionRecord) -> None:
        self._counters["leftQueued"] += 1
        self._log.debug("Queued client {peer} went away", limiterEvent="left", peer=record.addr)

    def _timedOut(self, record: ConnectionRecord) -> None:
        """
        A connection waited C{queueTimeout} seconds and has left the line.
        """
        self._counters["timedOutQueued"] += 1
        self._log.info(
            "{peer} waited {waited:.3f}s for a slot: giving up on it",
            limiterEvent="queue-timeout",
            peer=record.addr,
            waited=self._clock.seconds() - record.enqueuedAt,
        )
        self._overflow(record)
        self._afterChange()

    # Descriptors

    def _descriptorsShort(self) -> None:
        """
        An C{accept} failed for lack of descriptors (the guard now takes on no more
        connections than are held, for a while): reap the best idle connection.
        """
        self._turns.reapForDescriptors()
        self._afterChange()

    def _afterChange(self) -> None:
        """
        Bring the timers and the accept gate in line with the counts.
        """
        if not self._queue:
            self._turns.nobodyWaits()
        self._descriptors.update()

    def _held(self) -> int:
        """
        @return: How many connections (so descriptors) the limiter holds.
        """
        return len(self._active) + len(self._queue) + len(self._overflowing)
