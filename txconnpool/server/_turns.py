"""
Making room for waiting clients: the part of a limiter's core that ends turns and reaps idle
connections while every slot is taken and clients wait.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sized

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from ._departure import hasPendingInput
from ._fairness import planRoom, reapCandidates
from ._options import LimiterOptions
from ._record import ConnectionRecord, State


class TurnKeeper:
    """
    Ends the turns of served connections, and reaps idle ones, for as many clients as wait.

    It owns the connections on their way out for waiting clients (being reaped, or told to
    end their turn and close at their next request boundary) and the timer of its next look.
    The core tells it of arrivals in the queue, of connections given a slot and of lost ones;
    it closes connections through C{close}.

    Re-entrant calls (a close that completes at once, say) do not recurse: the outer loop of
    L{adjust} does the work they ask for.
    """

    _log = Logger()

    def __init__(
        self,
        options: LimiterOptions,
        clock: IReactorTime,
        pollInterval: float,
        served: Collection[ConnectionRecord],
        waiting: Sized,
        close: Callable[[ConnectionRecord, str], None],
    ) -> None:
        """
        @param served: The connections holding a slot (the core's, read here).
        @param waiting: The waiting line (the core's, read here).
        @param close: Closes a served connection in order, for a reason.
        """
        self._options = options
        self._clock = clock
        self._pollInterval = pollInterval
        self._served = served
        self._waiting = waiting
        self._close = close
        self._on = options.minTurn is not None or options.reapIdleAfter is not None
        self._reaping: set[ConnectionRecord] = set()
        self._ending: set[ConnectionRecord] = set()
        self._unmet = 0
        self._adjusting = self._again = False
        self._timer: IDelayedCall | None = None
        self.turnsEnded = 0

    def waiterArrived(self) -> None:
        """
        A client joined the queue.  Look for room at once, unless the last look already used
        every connection that could make room (its next look is scheduled then).
        """
        if not self._unmet:
            self.adjust()

    def admitted(self, record: ConnectionRecord) -> None:
        """
        A connection got a slot: while clients wait, look again when its turn is over.
        """
        minTurn = self._options.minTurn
        if minTurn is not None and len(self._waiting):
            self._lookBy(record.servedAt + minTurn)

    def forget(self, record: ConnectionRecord) -> None:
        """
        A served connection is gone.
        """
        self._reaping.discard(record)
        self._ending.discard(record)

    def nobodyWaits(self) -> None:
        """
        The queue is empty: stop looking.
        """
        self._unmet = 0
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def reapForDescriptors(self) -> None:
        """
        An C{accept} failed for lack of descriptors: reap the best idle connection, if reaping
        is on, whether or not clients wait.
        """
        reapIdleAfter = self._options.reapIdleAfter
        if reapIdleAfter is None:
            return
        due, _ = reapCandidates(
            self._served, self._clock.seconds(), reapIdleAfter, self._pollInterval
        )
        for record in due:
            if self._mayReap(record):
                self._reap(record)
                return

    def adjust(self) -> None:
        """
        Make room for waiting clients, if every slot is taken: reap idle connections and end
        the turns of connections that have had theirs, no more than clients wait.
        """
        if self._adjusting:
            self._again = True
            return
        self._adjusting = True
        try:
            while True:
                self._again = False
                self._adjustOnce()
                if not self._again:
                    break
        finally:
            self._adjusting = False

    def _adjustOnce(self) -> None:
        self._unmet = 0
        options = self._options
        waiting = len(self._waiting)
        if not self._on or not waiting or len(self._served) < options.maxConnections:
            self.nobodyWaits()
            return
        plan = planRoom(
            self._served,
            self._ending,
            waiting - len(self._reaping) - len(self._ending),
            self._clock.seconds(),
            reapIdleAfter=options.reapIdleAfter,
            minTurn=options.minTurn,
            minTurnRequests=options.minTurnRequests,
            pollInterval=self._pollInterval,
            mayReap=self._mayReap,
        )
        for record in plan.reap:
            if record.state is State.ACTIVE and record.closingReason is None:
                self._reap(record)
        need = plan.need
        for record in plan.endTurns:
            if need <= 0:
                break
            if record.state is State.ACTIVE and record.closingReason is None:
                need -= self._endTurn(record)
        looks = [plan.nextLook] if plan.nextLook is not None else []
        if plan.turnLook is not None and need > 0:
            looks.append(plan.turnLook)
        if looks and len(self._waiting):
            self._unmet = max(0, need)
            self._lookAt(min(looks))
        else:
            self.nobodyWaits()

    def _reap(self, record: ConnectionRecord) -> None:
        self._ending.discard(record)
        self._reaping.add(record)
        self._close(record, "reaped")

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

        @return: Whether its protocol will close it; if not, it is reaped once idle.
        """
        probe = record.probe
        assert probe is not None
        record.turnEnded = True
        self.turnsEnded += 1
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
        timer = self._timer
        if timer is None or timer.getTime() > when:
            self._lookAt(when)

    def _lookAt(self, when: float) -> None:
        """
        Look for room again at C{when}, and not before.
        """
        delay = max(0.0, when - self._clock.seconds())
        timer = self._timer
        if timer is None:
            self._timer = self._clock.callLater(delay, self._due)
        elif timer.getTime() != when:
            timer.reset(delay)

    def _due(self) -> None:
        self._timer = None
        self.adjust()
