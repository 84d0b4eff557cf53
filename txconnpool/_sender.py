"""
Sending requests on connections, and what their results say about the connections.

L{Sender} calls the protocol's method for each request handed to a connection, keeps the
requests in flight on each connection (oldest first), and, when one finishes, takes it off,
closes the connection if the result says it broke, or hands the connection back when it
carries nothing more. A request whose connection went away before any reply, and which is
safe to send twice, goes back to the pool's queue instead of failing. C{requestTimeout} and
the cancelling of requests in flight are carried out here too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from twisted.internet import error
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.python.failure import Failure

from . import _upkeep
from ._connections import Connections
from ._deadlines import RequestDeadlines
from ._options import PoolOptions
from ._records import Connection, Flight, Request, State
from .errors import ConnectionLostError, NoSuchCommand, RequestTimeoutError
from .stats import WINDOW, TimingWindow

WINDOW_MASK = WINDOW - 1


class Sender:
    """
    The requests in flight of one pool.

    @ivar requestTimes: How long requests took once sent.
    @ivar failed: Requests sent at once on a protocol that settles its own (see
        L{ICancellableRequests<txconnpool.interfaces.ICancellableRequests>}) that failed;
        the pool's core counts the others.
    """

    def __init__(
        self,
        connections: Connections,
        clock: Any,
        options: PoolOptions,
        address: str,
        brokenErrors: tuple[type[BaseException], ...],
        idempotent: frozenset[str],
        direct: bool,
        multiplexed: bool,
        waiters: Mapping[Request, None],
        dispatch: Callable[[], None],
        settle: Callable[[Request, Any], None],
        requeue: Callable[[Request], None],
        resend: Callable[[str, tuple[Any, ...], dict[str, Any]], Request],
    ) -> None:
        """
        @param waiters: The pool's queue, to tell whether anyone waits.
        @param dispatch: Serve waiting requests.
        @param settle: Fire a waiting request's L{Deferred} with a result.
        @param requeue: Put a request back at the head of the queue.
        @param resend: Queue a new request at the head of the queue, as the second sending
            of a request sent at once, and return it.
        """
        self.requestTimes = TimingWindow()
        self.failed = 0
        self._connections = connections
        self._accepting = connections.accepting
        self._clock = clock
        self._seconds = clock.seconds
        self._options = options
        self._address = address
        self._broken = brokenErrors
        self._idempotent = idempotent
        self._direct = direct
        self._multiplexed = multiplexed
        self._depth = options.maxRequestsPerClient
        self._waiters = waiters
        self._dispatch = dispatch
        self._settle = settle
        self._requeue = requeue
        self._resend = resend
        self._deadlines = (
            None
            if options.requestTimeout is None
            else RequestDeadlines(
                clock, options.requestTimeout, lambda: connections.open, self._expire
            )
        )

    def cancel(self, flight: Flight) -> None:
        """
        A waiting request cancelled by its caller was in flight: cancel the protocol's
        L{Deferred} if it can be, otherwise take the request off and, unless the protocol
        multiplexes, discard its connection, whose reply can no longer be trusted.
        """
        if self._direct and flight.deferred is not None:
            flight.deferred.cancel()
        elif self._takeOff(flight):
            if self._multiplexed:
                self._afterFlight(flight.connection, self._clock.seconds())
            else:
                self._connections.retire(flight.connection, "cancelled", abort=True)
        self._dispatch()

    def stop(self, result: object = None) -> object:
        """
        The pool is closed: stop the request timeout timer.

        @return: C{result}, so that this can be a callback.
        """
        if self._deadlines is not None:
            self._deadlines.stopped()
        return result

    def send(
        self,
        connection: Connection,
        method: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        request: Request | None,
        retried: bool,
        now: float,
    ) -> Deferred[Any]:
        """
        Send a request on a busy connection.

        @param request: The caller's L{Request}, or L{None} to give the caller the
            protocol's own L{Deferred}.
        @return: The caller's L{Deferred}.
        """
        flight = Flight(
            connection, method, args, kwargs, request, retried, now, connection.link.received
        )
        flights = connection.flights
        flights.append(flight)
        if self._depth > 1:
            if len(flights) >= self._depth:
                self._connections.refuse(connection)
            elif connection not in self._accepting:
                self._connections.accept(connection)
        if self._deadlines is not None:
            self._deadlines.sent(now)
        protocolMethod = getattr(connection.protocol, method, None)
        result: Any
        if not callable(protocolMethod):
            result = Failure(_noSuchCommand(type(connection.protocol), method))
        else:
            try:
                result = protocolMethod(*args, **kwargs)
            except Exception:
                result = Failure()
        if request is not None:
            request.flight = flight
            if isinstance(result, Deferred):
                flight.deferred = result
                result.addBoth(self._finished, flight)
            else:
                self._finished(result, flight)
            return request
        if isinstance(result, Deferred):
            flight.deferred = result
            result.addBoth(self._landed, flight)
            return result
        outcome = self._landed(result, flight)
        if isinstance(outcome, Deferred):
            return outcome
        return fail(outcome) if isinstance(outcome, Failure) else succeed(outcome)

    def _landed(self, result: Any, flight: Flight) -> Any:
        """
        The first callback of a protocol's L{Deferred} handed to the caller: account for the
        request, and turn a stale connection's failure into a second sending, which the
        caller's L{Deferred} then waits for.
        """
        self._flightDone(flight, result)
        if isinstance(result, Failure):
            outcome = self._judge(result, flight)
            if outcome is None:
                return self._resend(flight.method, flight.args, flight.kwargs)
            result = outcome
            self.failed += 1
        if self._waiters or self._connections.minClients:
            self._dispatch()
        return result

    def _finished(self, result: Any, flight: Flight) -> None:
        """
        A request that had waited in the queue got its result from the protocol.
        """
        self._flightDone(flight, result)
        request = flight.request
        if request is None or request.done:
            return
        if isinstance(result, Failure):
            outcome = self._judge(result, flight)
            if outcome is None:
                request.flight = None
                request.retried = True
                self._requeue(request)
                return
            result = outcome
        self._settle(request, result)

    def _judge(self, failure: Failure, flight: Flight) -> Failure | None:
        """
        @return: The failure a failed request fails with, or L{None} when it is to be sent
            again: its connection went away before any reply, and it is safe to resend.
        """
        if flight.timedOut:
            return Failure(self._timeoutError(flight))
        if failure.check(error.ConnectionClosed, ConnectionLostError):
            if self._mayRetry(flight):
                return None
            if not failure.check(ConnectionLostError):
                return Failure(self._lostError(failure))
        return failure

    def _flightDone(self, flight: Flight, result: Any) -> None:
        """
        Take a finished request off its connection, and judge the connection by the result:
        closed if the result says it broke, or if it is closing; otherwise back to the idle
        connections when it carries nothing more.
        """
        connection = flight.connection
        flights = connection.flights
        if flights and flights[0] is flight:
            flights.popleft()
        elif not self._takeOff(flight):
            return
        now = self._seconds()
        if not flight.timedOut:
            times = self.requestTimes
            times.samples[times.count & WINDOW_MASK] = now - flight.sentAt
            times.count += 1
        if not flights and self._deadlines is not None:
            self._deadlines.maybeIdle()
        if connection.state is State.GONE:
            return
        connections = self._connections
        if isinstance(result, Failure) and result.check(*self._broken):
            cancelled = result.check(CancelledError) is not None
            # After a cancel, a protocol that multiplexes drops the late reply, and one that
            # settles its own requests closes its connection itself if the reply could come.
            if not (
                cancelled
                and (self._multiplexed or (self._direct and not flight.timedOut))
                and not connections.closingNow(connection)
            ):
                if flight.timedOut:
                    reason = "timeout"
                elif cancelled:
                    reason = "cancelled"
                elif result.check(error.ConnectionClosed, ConnectionLostError):
                    reason = "lost"
                else:
                    reason = "protocolError"
                connections.retire(connection, reason, abort=True)
                if reason in ("lost", "protocolError") and not connection.proven:
                    # Broken before it proved usable: as good as a failed attempt.
                    connections.connectFailed(result)
                return
        elif not connection.proven:
            connections.prove(connection)
        if flights and connection in self._accepting and not connection.link.lost:
            # Pipelined and still taking requests: nothing changes.
            return
        self._afterFlight(connection, now)

    def _afterFlight(self, connection: Connection, now: float) -> None:
        """
        A request left a connection that is still open: hand the connection back when it
        carries nothing more, or let it take one more pipelined request.
        """
        connections = self._connections
        if connection.link.lost:
            connections.retire(connection, "lost", abort=True)
            return
        if connection.holder is not None:
            return
        flights = connection.flights
        if not flights:
            if connections.closingNow(connection):
                connections.retire(connection, "lost", abort=True)
                return
            connections.refuse(connection)
            connections.checkin(connection, now=now)
        elif (
            self._depth > 1
            and connection.retiring is None
            and connection not in connections.accepting
        ):
            if connections.closingNow(connection):
                connections.retire(connection, "lost", abort=True)
            elif _upkeep.expired(connection, now):
                connections.refuse(connection, retiring="lifetime")
            else:
                connections.accept(connection)

    def _mayRetry(self, flight: Flight) -> bool:
        """
        Whether a request that failed because its connection went away may be sent again:
        no reply to it had arrived, it is idempotent, and it was not retried already.
        """
        return (
            not flight.retried
            and not self._connections.closing
            and not self._connections.circuit.isOpen()
            and flight.method in self._idempotent
            and flight.connection.link.received == flight.mark
        )

    def _takeOff(self, flight: Flight) -> bool:
        """
        Remove a request from its connection's requests in flight.

        @return: Whether it was there.
        """
        flights = flight.connection.flights
        try:
            flights.remove(flight)
        except ValueError:
            return False
        if not flights and self._deadlines is not None:
            self._deadlines.maybeIdle()
        return True

    def _expire(self, flight: Flight) -> None:
        """
        Fail a request that had no reply within C{requestTimeout}, and drop its connection,
        whose late reply could not be trusted (unless the protocol multiplexes).
        """
        flight.timedOut = True
        if self._direct and flight.deferred is not None:
            flight.deferred.cancel()
            self._takeOff(flight)
            return
        self._takeOff(flight)
        if self._multiplexed:
            self._afterFlight(flight.connection, self._clock.seconds())
        else:
            self._connections.retire(flight.connection, "timeout", abort=True)
        request = flight.request
        if request is not None and not request.done:
            self._settle(request, Failure(self._timeoutError(flight)))
        else:
            self._dispatch()

    def connectionEnded(self, connection: Connection, reason: Failure) -> None:
        """
        A connection is gone with requests still in flight that its protocol did not fail.
        """
        lost = Failure(self._lostError(reason))
        for flight in list(connection.flights):
            if flight.request is not None:
                self._finished(lost, flight)
            elif self._direct and flight.deferred is not None and not flight.deferred.called:
                flight.deferred.errback(lost)
            else:
                self._takeOff(flight)

    def _timeoutError(self, flight: Flight) -> RequestTimeoutError:
        dropped = "" if self._multiplexed else "; the connection was dropped"
        return RequestTimeoutError(
            f"no reply to {flight.method} from {self._address} within "
            f"{self._options.requestTimeout}s{dropped}"
        )

    def _lostError(self, reason: Failure) -> ConnectionLostError:
        lost = ConnectionLostError(
            f"connection to {self._address} was lost before the reply: {reason.value}"
        )
        lost.__cause__ = reason.value
        return lost


def _noSuchCommand(protocolClass: type, method: str) -> NoSuchCommand:
    return NoSuchCommand(f"{protocolClass.__name__} has no method {method!r}")
