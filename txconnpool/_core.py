"""
The core of a pool: the only code that changes its state (L{PoolState}).

Its entry points are the events of a pool's life: a request submitted, a connection made,
ready, failed or lost, a request settled, a checkout released, a timer due, a resize, a close.
Each changes the state and then runs L{PoolCore._dispatch}, the one step that hands waiting
requests to connections, first in, first out, and opens connections within C{maxClients}.
Dispatch is a loop: callbacks that re-enter the core meanwhile mark work and return, and the
loop does it, so 100,000 queued requests whose callbacks release synchronously do not
recurse. The connection driver does the I/O.
"""

from __future__ import annotations

import random
import traceback
from collections.abc import Callable
from typing import Any

from attrs import frozen
from twisted.internet import error
from twisted.internet.defer import CancelledError, Deferred, fail, maybeDeferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from . import _upkeep
from ._circuit import Circuit
from ._driver import ConnectionDriver
from ._options import PoolOptions
from ._records import Connection, Counters, Flight, Ping, PoolState, Request, State
from .errors import (
    ConnectionLostError,
    NoSuchCommand,
    PoolClosedError,
    PoolFullError,
    PoolTimeoutError,
    RequestTimeoutError,
    ServerUnavailableError,
)
from .stats import WINDOW, TimingWindow

WINDOW_MASK = WINDOW - 1


@frozen
class Hooks:
    """
    What the core asks of the pool's public face.

    @ivar describe: The pool's C{repr}, for error messages.
    @ivar closing: Whether a protocol has closed or started closing its connection.
    @ivar ping: Ping a protocol's connection.
    @ivar brokenErrors: Errors meaning a connection can no longer be trusted.
    @ivar idempotent: Names of the methods that are safe to send twice.
    @ivar direct: Whether the protocol settles each L{Deferred} it returns exactly once and
        supports cancelling them, so that callers get those L{Deferred}s themselves.
    @ivar multiplexed: Whether the protocol matches replies to requests by an id, so that a
        request abandoned in flight leaves its connection usable.
    """

    describe: Callable[[], str]
    closing: Callable[[Any], bool]
    ping: Callable[[Any], Deferred[object]]
    brokenErrors: tuple[type[BaseException], ...]
    idempotent: frozenset[str]
    direct: bool
    multiplexed: bool


class PoolCore:
    """
    The state of one pool and every change to it.

    @ivar state: The state record.
    """

    _log = Logger()

    def __init__(
        self,
        driver: ConnectionDriver,
        options: PoolOptions,
        maxClients: int,
        address: str,
        hooks: Hooks,
    ) -> None:
        self.state = PoolState(
            maxClients,
            min(options.minClients, maxClients),
            Counters(TimingWindow(), TimingWindow()),
        )
        self._driver = driver
        driver.events = self
        self._clock = driver.clock
        self._options = options
        self._address = address
        self._hooks = hooks
        self._closingHook = hooks.closing
        self._broken = hooks.brokenErrors
        self._direct = hooks.direct
        self._multiplexed = hooks.multiplexed
        self._depth = options.maxRequestsPerClient
        self._requestTimeout = options.requestTimeout
        self._validating = options.validateAfterIdle is not None
        self._timed = (
            options.idleTimeout is not None
            or options.keepaliveInterval is not None
            or options.maxLifetime is not None
        )
        self._idleInterval = min(
            (t for t in (options.idleTimeout, options.keepaliveInterval) if t is not None),
            default=0.0,
        )
        self._circuit = Circuit(
            self._clock, options.retryPolicy, options.failFastAfter, onRetry=self._dispatch
        )
        self._canceller = self._cancelRequest
        self._dispatching = False
        self._leaks = _upkeep.LeakWatch()
        self._readyWaiters = _upkeep.ReadyWaiters()
        self._sweepTimer: Any = None
        self._sweepAt = 0.0
        self._flightTimer: Any = None
        self._closeWaiters: list[Deferred[None]] = []
        self._closeTimer: Any = None

    def start(self) -> None:
        """
        The pool was made: open the C{minClients} connections.
        """
        self._dispatch()

    # Requests

    def submit(
        self,
        method: str | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        origin: str | None = None,
    ) -> Deferred[Any]:
        """
        A request (C{method} named) or a checkout (C{method} is L{None}) was made.

        @return: The caller's L{Deferred}.
        """
        state = self.state
        state.counters.requests += 1
        if state.closing or self._circuit.failures or self._options.maxWaiters is not None:
            refusal = self._refusal()
            if refusal is not None:
                state.counters.failedRequests += 1
                return fail(refusal)
        now = self._clock.seconds()
        if not (state.waiters or self._dispatching):
            connection = self._free(method, now)
            if connection is not None:
                self._dispatching = True
                try:
                    if method is not None and self._direct:
                        result = self._send(connection, method, args, kwargs, None, False, now)
                    else:
                        result = request = Request(method, args, kwargs, self._canceller)
                        request.queuedAt = now
                        request.origin = origin
                        self._assign(request, connection, now)
                finally:
                    self._dispatching = False
                if state.waiters:
                    self._dispatch()
                return result
        request = Request(method, args, kwargs, self._canceller)
        request.queuedAt = now
        request.origin = origin
        request.waiting = True
        state.waiters[request] = None
        self._dispatch()
        if request.waiting:
            state.counters.requestsWaited += 1
            timeout = self._options.acquireTimeout
            if timeout is not None:
                request.timer = self._clock.callLater(timeout, self._waitTimedOut, request)
        return request

    def _free(self, method: str | None, now: float) -> Connection | None:
        """
        Find a connection that can take a request at once, with no one waiting: a busy one
        with room for one more pipelined request, or else an idle one (which this makes
        busy). L{None} if there is none, or if the candidate must first be looked at (past
        its lifetime, closing or to be validated): dispatch does that.
        """
        state = self.state
        if method is not None and state.accepting:
            connection = next(reversed(state.accepting))
            expiresAt = connection.expiresAt
            if (expiresAt is None or now < expiresAt) and not self._closingConnection(connection):
                return connection
            return None
        if state.idle and not self._validating:
            connection = state.idle[-1]
            if not self._closingConnection(connection):
                state.idle.pop()
                connection.state = State.BUSY
                return connection
        return None

    def _assign(self, request: Request, connection: Connection, now: float) -> None:
        """
        Hand a waiting request its connection: send it, or, for a checkout, fire it with
        the protocol.
        """
        waits = self.state.counters.waitTimes
        waits.samples[waits.count & WINDOW_MASK] = now - request.queuedAt
        waits.count += 1
        if request.timer is not None:
            request.timer.cancel()
            request.timer = None
        method = request.method
        if method is None:
            connection.holder = request
            connection.validated = False
            threshold = self._options.leakDetectionThreshold
            if threshold is not None:
                self._leaks.watch(connection, now + threshold)
                self._sweepBy(now + threshold)
            self._settle(request, connection.protocol)
        else:
            self._send(connection, method, request.args, request.kwargs, request,
                       request.retried, now)

    def _send(
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
        connection.validated = False
        flight = Flight(connection, method, args, kwargs, request, retried, now,
                        connection.link.received)
        flights = connection.flights
        flights.append(flight)
        if self._depth > 1:
            accepting = self.state.accepting
            if len(flights) >= self._depth:
                accepting.pop(connection, None)
            elif connection.retiring is None and connection not in accepting:
                accepting[connection] = None
        if self._requestTimeout is not None and self._flightTimer is None:
            self._flightTimer = self._clock.callLater(self._requestTimeout, self._flightsDue)
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
            if flight.timedOut:
                result = Failure(self._timeoutError(flight))
            elif result.check(error.ConnectionClosed, ConnectionLostError):
                if self._mayRetry(flight):
                    request = Request(flight.method, flight.args, flight.kwargs, self._canceller)
                    request.queuedAt = self._clock.seconds()
                    request.retried = True
                    self._requeue(request)
                    self._dispatch()
                    return request
                if not result.check(ConnectionLostError):
                    result = Failure(self._lostError(result))
            self.state.counters.failedRequests += 1
        if self.state.waiters or self.state.minClients:
            self._dispatch()
        return result

    def _finished(self, result: Any, flight: Flight) -> None:
        """
        A request that had waited in the queue got its result from the protocol.
        """
        self._flightDone(flight, result)
        request = flight.request
        assert request is not None
        if request.done:
            return None
        if isinstance(result, Failure):
            if flight.timedOut:
                result = Failure(self._timeoutError(flight))
            elif result.check(error.ConnectionClosed, ConnectionLostError):
                if self._mayRetry(flight):
                    request.flight = None
                    request.retried = True
                    self._requeue(request)
                    self._dispatch()
                    return None
                if not result.check(ConnectionLostError):
                    result = Failure(self._lostError(result))
        self._settle(request, result)
        return None

    def _flightDone(self, flight: Flight, result: Any) -> bool:
        """
        Take a finished request off its connection, and judge the connection by the result:
        closed if the result says it broke, or if it is closing; otherwise back to the idle
        connections when it carries nothing more.

        @return: Whether the request was still on its connection.
        """
        connection = flight.connection
        flights = connection.flights
        if flights and flights[0] is flight:
            flights.popleft()
        else:
            try:
                flights.remove(flight)
            except ValueError:
                return False
        now = self._clock.seconds()
        times = self.state.counters.requestTimes
        times.samples[times.count & WINDOW_MASK] = now - flight.sentAt
        times.count += 1
        if not flights and self._flightTimer is not None:
            self._stopFlightTimerIfIdle()
        if connection.state is State.GONE:
            return True
        if isinstance(result, Failure) and result.check(*self._broken):
            if not (
                result.check(CancelledError)
                and not flight.timedOut
                and self._direct
                and not self._closingConnection(connection)
            ):
                if flight.timedOut:
                    reason = "timeout"
                elif result.check(CancelledError):
                    reason = "cancelled"
                else:
                    reason = "protocolError"
                self._retire(connection, reason, abort=True)
                if not connection.proven and reason == "protocolError":
                    self._connectFailed(result)
                return True
        if connection.link.lost or self._closingConnection(connection):
            self._retire(connection, "lost", abort=True)
            return True
        if not connection.proven:
            self._prove(connection)
        if connection.holder is not None:
            return True
        if not flights:
            self.state.accepting.pop(connection, None)
            self._checkin(connection, now=now)
        elif (
            self._depth > 1
            and connection.retiring is None
            and connection not in self.state.accepting
        ):
            if _upkeep.expired(connection, now):
                connection.retiring = "lifetime"
            else:
                self.state.accepting[connection] = None
        return True

    def _mayRetry(self, flight: Flight) -> bool:
        """
        Whether a request that failed because its connection went away may be sent again:
        no reply to it had arrived, it is idempotent, and it was not retried already.
        """
        return (
            not flight.retried
            and not self.state.closing
            and not self._circuit.isOpen()
            and flight.method in self._hooks.idempotent
            and flight.connection.link.received == flight.mark
        )

    def _requeue(self, request: Request) -> None:
        """
        Put a request back at the head of the queue, to be sent on another connection.
        """
        self._log.info(
            "Retrying {method} on a new connection to {address}: the connection it was sent "
            "on had been closed",
            method=request.method,
            address=self._address,
            txconnpoolEvent="retry",
        )
        waiters = self.state.waiters
        request.waiting = True
        waiters[request] = None
        waiters.move_to_end(request, last=False)
        timeout = self._options.acquireTimeout
        if timeout is not None:
            request.timer = self._clock.callLater(timeout, self._waitTimedOut, request)

    def _settle(self, request: Request, result: Any) -> None:
        """
        Fire a request's L{Deferred}, then serve waiting requests. Requests that its
        callbacks make queue behind those already waiting.
        """
        request.done = True
        if request.timer is not None:
            request.timer.cancel()
            request.timer = None
        state = self.state
        if isinstance(result, Failure):
            state.counters.failedRequests += 1
        request.callback(result)
        if state.waiters or state.minClients:
            self._dispatch()

    def _cancelRequest(self, deferred: Deferred[Any]) -> None:
        """
        The canceller of a L{Request}, which then fails with C{CancelledError}.
        """
        assert isinstance(deferred, Request)
        request = deferred
        request.done = True
        self.state.counters.failedRequests += 1
        if request.timer is not None:
            request.timer.cancel()
            request.timer = None
        flight = request.flight
        if request.waiting:
            self._dequeue(request)
        elif flight is not None:
            if self._direct and flight.deferred is not None:
                flight.deferred.cancel()
            elif self._takeOff(flight) and not self._multiplexed:
                self._retire(flight.connection, "cancelled", abort=True)
            self._dispatch()

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
        if not flights and self._flightTimer is not None:
            self._stopFlightTimerIfIdle()
        return True

    def _stopFlightTimerIfIdle(self) -> None:
        """
        Cancel the request timeout timer when no request is in flight any more.
        """
        if not any(connection.flights for connection in self.state.open):
            self._flightTimer.cancel()
            self._flightTimer = None

    def _dequeue(self, request: Request) -> None:
        """
        Forget a waiting request that was cancelled or timed out, and cancel a connection
        attempt that no request needs any more.
        """
        state = self.state
        request.waiting = False
        del state.waiters[request]
        connecting = state.connecting
        if (
            len(connecting) > len(state.waiters)
            and state.total() > state.minClients
            and connecting[-1].link.attempt is not None
        ):
            self._retire(connecting[-1], "connect")

    def _waitTimedOut(self, request: Request) -> None:
        """
        A request waited C{acquireTimeout} seconds for a connection.
        """
        request.timer = None
        if request.done or not request.waiting:
            return
        request.done = True
        self._dequeue(request)
        self._settle(
            request,
            Failure(
                PoolTimeoutError(
                    f"timed out after {self._options.acquireTimeout}s waiting for a connection "
                    f"to {self._address} ({self.counts()})"
                )
            ),
        )

    def _flightsDue(self) -> None:
        """
        The earliest request in flight may have outlived C{requestTimeout}: fail those that
        have, and wait for the next.
        """
        self._flightTimer = None
        timeout = self._requestTimeout
        assert timeout is not None
        now = self._clock.seconds()
        nearest: float | None = None
        for connection in list(self.state.open):
            flights = connection.flights
            while flights:
                flight = flights[0]
                deadline = flight.sentAt + timeout
                if deadline > now:
                    nearest = deadline if nearest is None else min(nearest, deadline)
                    break
                self._expire(flight)
        if nearest is not None and self._flightTimer is None:
            self._flightTimer = self._clock.callLater(nearest - now, self._flightsDue)

    def _expire(self, flight: Flight) -> None:
        """
        Fail a request that had no reply within C{requestTimeout}, and drop its connection,
        whose late reply could not be trusted (unless the protocol multiplexes).
        """
        flight.timedOut = True
        if self._direct and flight.deferred is not None:
            flight.deferred.cancel()
            if flight in flight.connection.flights:
                self._takeOff(flight)
            return
        self._takeOff(flight)
        if not self._multiplexed:
            self._retire(flight.connection, "timeout", abort=True)
        request = flight.request
        if request is not None and not request.done:
            self._settle(request, Failure(self._timeoutError(flight)))
        else:
            self._dispatch()

    def _timeoutError(self, flight: Flight) -> RequestTimeoutError:
        dropped = "" if self._multiplexed else "; the connection was dropped"
        return RequestTimeoutError(
            f"no reply to {flight.method} from {self._address} within "
            f"{self._requestTimeout}s{dropped}"
        )

    def _refusal(self) -> Exception | None:
        """
        @return: Why a new request must fail at once, or L{None} if it may wait.
        """
        state = self.state
        if state.closing:
            return PoolClosedError(f"{self._hooks.describe()} is closed")
        if self._circuit.isOpen() and not state.open:
            return self._unavailable()
        maxWaiters = self._options.maxWaiters
        if (
            maxWaiters is not None
            and state.total() >= state.maxClients
            and len(state.waiters) - len(state.connecting) * self._depth >= maxWaiters
        ):
            return PoolFullError(
                f"too many requests waiting for a connection to {self._address} "
                f"(maxWaiters={maxWaiters}; {self.counts()})"
            )
        return None

    # Dispatch

    def _dispatch(self) -> None:
        """
        Hand waiting requests to connections, first in, first out, and open connections
        for the rest within C{maxClients}. Re-entrant calls return at once; this loop picks
        up the work they made.
        """
        state = self.state
        if self._dispatching or not (state.waiters or len(state.open) < state.minClients):
            return
        self._dispatching = True
        try:
            depth = self._depth
            circuit = self._circuit
            while True:
                self._serveWaiters()
                while (
                    (
                        len(state.waiters) > (len(state.connecting) + state.pinging) * depth
                        or state.total() < state.minClients
                    )
                    and state.total() < state.maxClients
                    and not state.closing
                    and circuit.mayConnect(len(state.connecting))
                ):
                    if not self._connect():
                        break
                if not self._canServe():
                    break
        finally:
            self._dispatching = False

    def _serveWaiters(self) -> None:
        """
        Give waiting requests, oldest first, to connections that can take them: a pipelined
        request to a busy connection with room for it, or else to an idle connection; a
        checkout only to an idle connection. Stop at the first request that must wait.
        """
        state = self.state
        waiters = state.waiters
        accepting = state.accepting
        idle = state.idle
        limit = self._options.validateAfterIdle
        while waiters:
            request = next(iter(waiters))
            now = self._clock.seconds()
            if request.method is not None and accepting:
                connection = next(reversed(accepting))
                if _upkeep.expired(connection, now):
                    del accepting[connection]
                    connection.retiring = "lifetime"
                    continue
                if self._closingConnection(connection):
                    del accepting[connection]
                    continue
            elif idle:
                connection = idle[-1]
                if self._closingConnection(connection):
                    self._retire(connection, "lost")
                    continue
                if self._validating and _upkeep.needsValidation(connection, now, limit):
                    self._ping(connection, "validation")
                    continue
                idle.pop()
                connection.state = State.BUSY
            else:
                return
            waiters.popitem(last=False)
            request.waiting = False
            self._assign(request, connection, now)

    def _canServe(self) -> bool:
        """
        @return: Whether the oldest waiting request could be given a connection now.
        """
        state = self.state
        if not state.waiters:
            return False
        if state.idle:
            return True
        return bool(state.accepting) and next(iter(state.waiters)).method is not None

    def _closingConnection(self, connection: Connection) -> bool:
        """
        Whether a connection is being closed, by its transport or by its protocol.
        """
        return getattr(connection.link.transport, "disconnecting", False) or self._closingHook(
            connection.protocol
        )

    # Connections

    def _connect(self) -> bool:
        """
        Start a connection attempt.

        @return: Whether it is still in progress or succeeded; C{False} when it failed at
            once.
        """
        self.state.counters.connectsAttempted += 1
        connection = self._driver.prepare()
        self.state.connecting.append(connection)
        self._driver.start(connection)
        return connection.state is not State.GONE

    def made(self, connection: Connection, protocol: Any) -> None:
        """
        A connection's transport is connected and its protocol built.
        """
        connection.protocol = protocol
        self.state.byProtocol[protocol] = connection

    def ready(self, connection: Connection) -> None:
        """
        A connection is ready for requests.
        """
        if connection.state is not State.CONNECTING:
            return
        state = self.state
        state.connecting.remove(connection)
        state.counters.created += 1
        self._log.info("Connected to {address}", address=self._address, txconnpoolEvent="connect")
        state.open.add(connection)
        connection.state = State.BUSY
        now = self._clock.seconds()
        connection.lastUsed = connection.lastActive = now
        connection.expiresAt = _upkeep.expiry(now, self._options.maxLifetime, random.random())
        self._checkin(connection)
        if self._readyWaiters and len(state.open) >= state.minClients:
            for waiter in self._readyWaiters.takeAll():
                waiter.callback(None)
        self._dispatch()

    def failed(self, connection: Connection, reason: Failure) -> None:
        """
        A connection attempt failed, timed out, or its handshake failed.
        """
        if connection.state is not State.CONNECTING:
            return
        # Dispatch is held off until the failure is counted, so that no replacement starts
        # before the backoff does.
        held, self._dispatching = self._dispatching, True
        try:
            self._retire(connection, "connect", abort=True)
            self._connectFailed(reason)
        finally:
            self._dispatching = held
        self._dispatch()

    def lost(self, connection: Connection, reason: Failure) -> None:
        """
        A ready connection's transport is gone.
        """
        if connection.state is State.GONE:
            return
        self._log.info(
            "Connection to {address} lost: {reason}",
            address=self._address,
            reason=reason.value,
            txconnpoolEvent="lost",
        )
        unproven = not connection.proven and (connection.flights or connection.link.received)
        self._retire(connection, "lost")
        if unproven:
            self._connectFailed(reason)

    def ended(self, connection: Connection, reason: Failure) -> None:
        """
        Nothing of a connection is left open: fail what the protocol left in flight.
        """
        lost: Failure | None = None
        for flight in list(connection.flights):
            lost = lost or Failure(self._lostError(reason))
            if flight.request is not None:
                self._finished(lost, flight)
            elif flight.deferred is not None and not flight.deferred.called:
                flight.deferred.errback(lost)
            else:
                self._takeOff(flight)
        self._dispatch()
        self._maybeClosed()

    def _checkin(
        self, connection: Connection, used: bool = True, now: float | None = None
    ) -> None:
        """
        Return a busy connection to the idle ones, or close it: when the pool is closing,
        over its size, or the connection is retiring or past its lifetime.

        @param used: Whether the connection served a request (rather than a ping).
        """
        state = self.state
        if state.closing:
            self._retire(connection, "closed")
            return
        if connection.retiring is not None:
            self._retire(connection, connection.retiring)
            return
        if state.total() > state.maxClients:
            self._retire(connection, "surplus")
            return
        if now is None:
            now = self._clock.seconds()
        if _upkeep.expired(connection, now):
            self._retire(connection, "lifetime")
            return
        if used:
            connection.lastUsed = connection.lastActive = now
        connection.state = State.IDLE
        state.idle.append(connection)
        # Skip the deadline arithmetic when the pending sweep comes first anyway.
        if self._timed and (
            self._sweepTimer is None
            or connection.expiresAt is not None
            or self._sweepAt > now + self._idleInterval
        ):
            deadline = _upkeep.nextIdleDeadline(connection, now, self._options)
            if deadline is not None:
                self._sweepBy(deadline)

    def _retire(self, connection: Connection, reason: str, abort: bool = False) -> None:
        """
        Take a connection out of service for good and close it (or cancel its attempt).

        @param reason: Why, as named in L{DiscardCounts<txconnpool.stats.DiscardCounts>}.
        @param abort: Drop the connection rather than close it after pending writes.
        """
        previous = connection.state
        if previous is State.GONE:
            return
        connection.state = State.GONE
        state = self.state
        if previous is State.CONNECTING:
            state.connecting.remove(connection)
        else:
            if previous is State.IDLE:
                state.idle.remove(connection)
            state.open.discard(connection)
            state.accepting.pop(connection, None)
            state.counters.closed += 1
            discards = state.counters.discards
            discards[reason] = discards.get(reason, 0) + 1
            self._log.debug(
                "Closing a connection to {address}: {reason}",
                address=self._address,
                reason=reason,
                txconnpoolEvent="discard",
            )
        if not _isCheckout(connection.holder):
            state.byProtocol.pop(connection.protocol, None)
        self._leaks.unwatch(connection)
        self._driver.close(connection, abort)

    def _connectFailed(self, reason: Failure) -> None:
        """
        A connection attempt failed, or a new connection broke before it proved usable. The
        next attempt waits for the backoff delay; after C{failFastAfter} consecutive
        failures, with no connection open, the waiting requests fail with
        L{ServerUnavailableError} rather than wait on a server out of reach.
        """
        state = self.state
        if state.closing:
            return
        state.counters.connectsFailed += 1
        delay, policyError = self._circuit.failed(reason.value)
        if policyError is not None:
            self._log.error(
                "retryPolicy of the pool for {address} failed ({problem}); waiting "
                "requests fail, and the next attempt is in {delay:.2f}s",
                address=self._address,
                problem=policyError,
                delay=delay,
                txconnpoolEvent="retryPolicyFailed",
            )
            self._failWaiters(lambda: self._policyFailure(policyError))
            return
        self._log.warn(
            "Could not connect to {address} ({failures} consecutive failures): {reason}; "
            "next attempt in {delay:.2f}s",
            address=self._address,
            failures=self._circuit.failures,
            reason=reason.value,
            delay=delay,
            txconnpoolEvent="connectFailed",
        )
        if not self._circuit.exhausted() or state.open:
            return
        if self._circuit.failures == self._options.failFastAfter:
            self._log.warn(
                "Circuit to {address} open: requests fail fast until a connection succeeds",
                address=self._address,
                txconnpoolEvent="circuitOpen",
            )
        self._failWaiters(self._unavailable)

    def _policyFailure(self, problem: Exception) -> ServerUnavailableError:
        unavailable = ServerUnavailableError(
            f"cannot connect to {self._address} (the last attempt failed with: "
            f"{self._circuit.lastError}), and the pool's retryPolicy failed: {problem}"
        )
        unavailable.__cause__ = problem
        return unavailable

    def _failWaiters(self, makeError: Callable[[], Exception]) -> None:
        """
        Fail every waiting request with an error from C{makeError}.
        """
        waiters = list(self.state.waiters)
        self.state.waiters.clear()
        for request in waiters:
            request.waiting = False
            if not request.done:
                self._settle(request, Failure(makeError()))

    def _prove(self, connection: Connection) -> None:
        """
        A connection carried a request without breaking: the server is reachable again.
        """
        connection.proven = True
        if self._circuit.succeeded():
            self._log.info(
                "Circuit to {address} closed",
                address=self._address,
                txconnpoolEvent="circuitClosed",
            )

    # Checkouts

    def checkedOut(self, protocol: Any) -> Connection | None:
        """
        Find the connection that C{protocol} was checked out on; L{None} when it was lost
        meanwhile and there is nothing to do.

        @raise ValueError: C{protocol} is not checked out.
        """
        state = self.state
        connection = state.byProtocol.get(protocol)
        if connection is not None and connection.state is State.GONE:
            del state.byProtocol[protocol]
            return None
        if connection is None or not _isCheckout(connection.holder):
            raise ValueError(f"{protocol!r} is not checked out from {self._hooks.describe()}")
        return connection

    def release(self, connection: Connection) -> None:
        """
        A checked-out connection is given back.
        """
        connection.holder = None
        self._leaks.unwatch(connection)
        if not connection.proven:
            self._prove(connection)
        self._checkin(connection)
        self._dispatch()

    def discard(self, connection: Connection, reason: str = "caller") -> None:
        """
        A connection is given back as broken, or removed by its owner.
        """
        if _isCheckout(connection.holder):
            connection.holder = None
        self._retire(connection, reason, abort=True)
        self._dispatch()

    def holdIdle(self, protocol: Any) -> None:
        """
        Take an idle connection out of service as if checked out (0.1.1's C{clientBusy}).
        """
        connection = self.state.byProtocol.get(protocol)
        if connection is not None and connection.state is State.IDLE:
            self.state.idle.remove(connection)
            connection.state = State.BUSY
            checkout = Request(None, (), {})
            checkout.done = True
            connection.holder = checkout

    def freed(self, protocol: Any) -> None:
        """
        0.1.1's C{clientFree}: a connecting connection is ready, a held one comes back.
        """
        state = self.state
        connection = state.byProtocol.get(protocol)
        if connection is None:
            return
        if connection.state is State.CONNECTING:
            if not connection.link.settled:
                self._driver.markReady(connection)
        elif connection.state is State.GONE:
            del state.byProtocol[protocol]
        elif _isCheckout(connection.holder):
            self.release(connection)

    def gone(self, protocol: Any) -> None:
        """
        0.1.1's C{clientGone}: remove a connection for good.
        """
        connection = self.state.byProtocol.pop(protocol, None)
        if connection is not None and connection.state is not State.GONE:
            self.discard(connection)

    # Resizing, readiness and closing

    def resize(self, maxClients: int) -> None:
        """
        Change C{maxClients}: idle connections over it close now, busy ones once done.
        """
        state = self.state
        state.maxClients = maxClients
        state.minClients = min(self._options.minClients, maxClients)
        while state.idle and state.total() > maxClients:
            self._retire(state.idle[0], "surplus")
        excess = state.total() - maxClients
        if excess > 0 and self._depth > 1:
            # Without this, pipelined connections would keep taking new requests and never
            # come back to be closed; unpipelined ones are closed as they come back.
            busy = [c for c in state.open if c.state is State.BUSY and c.retiring is None]
            busy.sort(key=lambda c: len(c.flights))
            for connection in busy[:excess]:
                connection.retiring = "surplus"
                state.accepting.pop(connection, None)
        self._dispatch()

    def whenReady(self, timeout: float) -> Deferred[None]:
        """
        Wait until C{minClients} connections are up.
        """
        state = self.state
        if state.closing:
            return fail(PoolClosedError(f"{self._hooks.describe()} is closed"))
        if len(state.open) >= state.minClients:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        timer = self._clock.callLater(timeout, self._notReady, waiter, timeout)
        self._readyWaiters.add(waiter, timer)
        self._dispatch()
        return waiter

    def _notReady(self, waiter: Deferred[None], timeout: float) -> None:
        self._readyWaiters.remove(waiter)
        state = self.state
        ready = len(state.open)
        lastError = self._circuit.lastError
        failure: Exception
        if lastError is not None:
            failure = ServerUnavailableError(
                f"only {ready} of {state.minClients} connections to {self._address} are up "
                f"after {timeout}s; the last connection attempt failed with: {lastError}"
            )
            failure.__cause__ = lastError
        else:
            failure = PoolTimeoutError(
                f"only {ready} of {state.minClients} connections to {self._address} are up "
                f"after {timeout}s"
            )
        waiter.errback(failure)

    def close(self, timeout: float | None) -> Deferred[None]:
        """
        Close the pool; see C{Pool.close}.
        """
        state = self.state
        if state.closing:
            if not self._driver.live:
                return succeed(None)
            waiter: Deferred[None] = Deferred()
            self._closeWaiters.append(waiter)
            return waiter
        state.closing = True
        self._circuit.stop()
        self._stopSweeping()
        closed = PoolClosedError(f"{self._hooks.describe()} was closed")
        for readyWaiter in self._readyWaiters.takeAll():
            readyWaiter.errback(closed)
        self._failWaiters(lambda: PoolClosedError(f"{self._hooks.describe()} was closed"))
        for connection in state.connecting + state.idle:
            self._retire(connection, "closed")
        waiter = Deferred()
        self._closeWaiters.append(waiter)
        if timeout is not None and self._driver.live:
            self._closeTimer = self._clock.callLater(timeout, self._driver.dropAll)
        self._maybeClosed()
        return waiter

    def _maybeClosed(self) -> None:
        if not self.state.closing or self._driver.live:
            return
        if self._closeTimer is not None:
            if self._closeTimer.active():
                self._closeTimer.cancel()
            self._closeTimer = None
        if self._flightTimer is not None:
            self._flightTimer.cancel()
            self._flightTimer = None
        waiters, self._closeWaiters = self._closeWaiters, []
        for waiter in waiters:
            waiter.callback(None)

    # Housekeeping

    def _sweepBy(self, deadline: float) -> None:
        """
        Have the sweep run no later than C{deadline}.
        """
        if self.state.closing:
            return
        if self._sweepTimer is not None:
            if self._sweepAt <= deadline:
                return
            self._sweepTimer.cancel()
        self._sweepAt = deadline
        self._sweepTimer = self._clock.callLater(
            max(0.0, deadline - self._clock.seconds()), self._sweep
        )

    def _stopSweeping(self) -> None:
        if self._sweepTimer is not None:
            self._sweepTimer.cancel()
            self._sweepTimer = None

    def _sweep(self) -> None:
        """
        Handle every deadline that has come, then set the timer for the next one.
        """
        self._sweepTimer = None
        state = self.state
        now = self._clock.seconds()
        for connection in list(state.idle):
            if connection.state is not State.IDLE:
                continue
            verdict = _upkeep.idleVerdict(
                connection, now, self._options, state.total() > state.minClients
            )
            if verdict == "keepalive":
                self._ping(connection, "keepalive")
            elif verdict is not None:
                self._retire(connection, verdict)
        for connection in self._leaks.due(now):
            self._warnLeak(connection)
        deadline = _upkeep.nearestDeadline(
            [_upkeep.nextIdleDeadline(c, now, self._options) for c in state.idle]
            + [self._leaks.nextDeadline()]
        )
        if deadline is not None:
            self._sweepBy(deadline)
        self._dispatch()

    def _ping(self, connection: Connection, purpose: str) -> None:
        """
        Take an idle connection out of service and ping it: back to idle if it answers
        within C{pingTimeout}, discarded otherwise.
        """
        state = self.state
        state.idle.remove(connection)
        connection.state = State.BUSY
        state.pinging += 1
        marker = Ping(purpose)
        connection.holder = marker
        d = maybeDeferred(self._hooks.ping, connection.protocol)
        d.addTimeout(self._options.pingTimeout, self._clock)
        d.addBoth(self._pinged, connection, marker)

    def _pinged(self, result: object, connection: Connection, marker: Ping) -> None:
        self.state.pinging -= 1
        if connection.holder is not marker:
            return
        connection.holder = None
        if isinstance(result, Failure) or connection.link.lost:
            self._log.warn(
                "{purpose} ping of a connection to {address} failed: {reason}",
                purpose=marker.purpose,
                address=self._address,
                reason=getattr(result, "value", "connection lost"),
                txconnpoolEvent="pingFailed",
            )
            self._retire(connection, "keepalive", abort=True)
        else:
            connection.lastActive = self._clock.seconds()
            connection.validated = marker.purpose == "validation"
            if not connection.proven:
                self._prove(connection)
            self._checkin(connection, used=False)
        self._dispatch()

    def checkoutOrigin(self) -> str | None:
        """
        @return: Where a checkout is being made, when leak detection is on.
        """
        if self._options.leakDetectionThreshold is None:
            return None
        return "".join(traceback.format_stack(limit=16)[:-2])

    def _warnLeak(self, connection: Connection) -> None:
        holder = connection.holder
        origin = holder.origin if isinstance(holder, Request) else None
        self._log.warn(
            "A connection to {address} has been checked out for more than {threshold}s, "
            "longer than leakDetectionThreshold; it was acquired at:\n{origin}",
            address=self._address,
            threshold=self._options.leakDetectionThreshold,
            origin=origin or "(unknown)",
            txconnpoolEvent="leak",
        )

    # Descriptions

    def counts(self) -> str:
        """
        @return: The pool's counts, for messages.
        """
        state = self.state
        return (
            f"{state.busy} busy, {len(state.idle)} idle, {len(state.connecting)} connecting, "
            f"{len(state.waiters)} waiting"
        )

    def _unavailable(self) -> ServerUnavailableError:
        unavailable = ServerUnavailableError(
            f"cannot connect to {self._address}: {self._circuit.failures} consecutive "
            f"attempts failed, the last with: {self._circuit.lastError}"
        )
        unavailable.__cause__ = self._circuit.lastError
        return unavailable

    def _lostError(self, reason: Failure) -> ConnectionLostError:
        lost = ConnectionLostError(
            f"connection to {self._address} was lost before the reply: {reason.value}"
        )
        lost.__cause__ = reason.value
        return lost


def _isCheckout(holder: Request | Ping | None) -> bool:
    return isinstance(holder, Request) and holder.method is None


def _noSuchCommand(protocolClass: type, method: str) -> NoSuchCommand:
    return NoSuchCommand(f"{protocolClass.__name__} has no method {method!r}")
