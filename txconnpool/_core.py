"""
The core of a pool: its requests, and the one step that brings them to connections.

L{PoolCore} owns the queue of waiting requests and holds the pool's L{Connections}, its
L{Housekeeper} and its L{Sender}. After every event, L{PoolCore._dispatch} hands waiting
requests to connections, first in, first out, and opens connections within C{maxClients}:
a loop, which callbacks re-entering the core never recurse into.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from attrs import frozen
from twisted.internet.defer import Deferred, fail
from twisted.logger import Logger
from twisted.python.failure import Failure

from . import _upkeep
from ._checkouts import Checkouts
from ._connections import Connections
from ._driver import ConnectionDriver
from ._housekeeper import Housekeeper
from ._options import PoolOptions
from ._records import Checkout, Connection, Request
from ._sender import Sender
from .errors import PoolClosedError, PoolFullError, PoolTimeoutError
from .stats import WINDOW, TimingWindow

WINDOW_MASK = WINDOW - 1


@frozen
class Hooks:
    """
    What the core asks of the pool's public face.

    @ivar describe: The pool's C{repr}, for error messages.
    @ivar closing: Whether a protocol has closed or started closing its connection; L{None}
        when the pool's protocols never close their connections themselves.
    @ivar ping: Ping a protocol's connection.
    @ivar brokenErrors: Errors meaning a connection can no longer be trusted.
    @ivar idempotent: Names of the methods that are safe to send twice.
    @ivar direct: Whether the protocol settles each L{Deferred} it returns exactly once and
        supports cancelling them, so that callers get those L{Deferred}s themselves.
    @ivar multiplexed: Whether the protocol matches replies to requests by an id, so that a
        request abandoned in flight leaves its connection usable.
    """

    describe: Callable[[], str]
    closing: Callable[[Any], bool] | None
    ping: Callable[[Any], Deferred[object]]
    brokenErrors: tuple[type[BaseException], ...]
    idempotent: frozenset[str]
    direct: bool
    multiplexed: bool


class PoolCore:
    """
    The requests of one pool, and every change to them.

    @ivar connections: The pool's connections.
    @ivar waiters: The requests waiting for a connection, oldest first (an ordered set).
    @ivar requests: Requests made.
    @ivar failedRequests: Requests that failed.
    @ivar requestsWaited: Requests that had to wait for a connection.
    @ivar waitTimes: How long requests waited for a connection.
    @ivar sender: The requests in flight.
    @ivar checkouts: The connections handed to callers, by protocol.
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
        self.waiters: OrderedDict[Request, None] = OrderedDict()
        self.requests = 0
        self.failedRequests = 0
        self.requestsWaited = 0
        self.waitTimes = TimingWindow()
        self.connections = connections = Connections(
            driver,
            options,
            maxClients,
            address,
            hooks.describe,
            hooks.closing,
            onChange=self._dispatch,
            onUnavailable=self._failWaiters,
            onEnded=lambda connection, reason: self.sender.connectionEnded(connection, reason),
        )
        self._clock = driver.clock
        self._seconds = driver.clock.seconds
        self._housekeeper = Housekeeper(
            connections, self._clock, options, address, hooks.ping, self._dispatch
        )
        self._options = options
        self._address = address
        self._hooks = hooks
        self._direct = hooks.direct
        self._depth = options.maxRequestsPerClient
        self._validating = options.validateAfterIdle is not None
        self.sender = Sender(
            connections,
            self._clock,
            options,
            address,
            hooks.brokenErrors,
            hooks.idempotent,
            hooks.direct,
            hooks.multiplexed,
            self.waiters,
            dispatch=self._dispatch,
            settle=self._settle,
            requeue=self._requeue,
            resend=self._resend,
        )
        self._send = self.sender.send
        self.checkouts = Checkouts(
            connections, driver, hooks.describe, self._housekeeper.checkedIn
        )
        self._canceller = self._cancelRequest
        self._dispatching = False

    def start(self) -> None:
        """The pool was made: open the C{minClients} connections."""
        self._dispatch()

    def refuse(self, error: Exception) -> Deferred[Any]:
        """
        A request is refused before it is made (the protocol has no such method).

        @return: A L{Deferred} that has failed with C{error}.
        """
        self.requests += 1
        self.failedRequests += 1
        return fail(error)

    def checkoutOrigin(self) -> str | None:
        """
        @return: Where a checkout is being made, when leak detection is on.
        """
        return self._housekeeper.checkoutOrigin()

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
        self.requests += 1
        connections = self.connections
        if connections.closing or connections.circuit.failures or (
            self._options.maxWaiters is not None
        ):
            refusal = self._refusal()
            if refusal is not None:
                self.failedRequests += 1
                return fail(refusal)
        now = self._seconds()
        if not (self.waiters or self._dispatching):
            connection = self._free(method, now)
            if connection is not None:
                self._dispatching = True
                try:
                    if method is not None and self._direct:
                        waits = self.waitTimes
                        waits.samples[waits.count & WINDOW_MASK] = 0.0
                        waits.count += 1
                        result = self._send(connection, method, args, kwargs, None, False, now)
                    else:
                        result = request = Request(method, args, kwargs, self._canceller)
                        request.queuedAt = now
                        request.origin = origin
                        self._assign(request, connection, now)
                finally:
                    self._dispatching = False
                if self.waiters:
                    self._dispatch()
                return result
        request = Request(method, args, kwargs, self._canceller)
        request.queuedAt = now
        request.origin = origin
        self.waiters[request] = None
        self._dispatch()
        if request in self.waiters:
            self.requestsWaited += 1
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
        connections = self.connections
        if method is not None and connections.accepting:
            connection = next(reversed(connections.accepting))
            expiresAt = connection.expiresAt
            if (expiresAt is None or now < expiresAt) and not connections.closingNow(connection):
                return connection
            return None
        idle = connections.idle
        if idle and not self._validating and not connections.closingNow(idle[-1]):
            return connections.takeIdle()
        return None

    def _assign(self, request: Request, connection: Connection, now: float) -> None:
        """
        Hand a waiting request its connection: send it, or, for a checkout, fire it with
        the protocol.
        """
        waits = self.waitTimes
        waits.samples[waits.count & WINDOW_MASK] = now - request.queuedAt
        waits.count += 1
        if request.timer is not None:
            request.timer.cancel()
            request.timer = None
        method = request.method
        if method is None:
            self.connections.hold(connection, Checkout(request.origin))
            self._housekeeper.checkedOut(connection, now)
            self._settle(request, connection.protocol)
        else:
            self._send(
                connection, method, request.args, request.kwargs, request, request.retried, now
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
        self.waiters[request] = None
        self.waiters.move_to_end(request, last=False)
        timeout = self._options.acquireTimeout
        if timeout is not None:
            request.timer = self._clock.callLater(timeout, self._waitTimedOut, request)
        self._dispatch()

    def _resend(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Request:
        """
        Queue the second sending of a request that was sent at once, at the head of the
        queue.
        """
        request = Request(method, args, kwargs, self._canceller)
        request.queuedAt = self._clock.seconds()
        request.retried = True
        self._requeue(request)
        return request

    def _settle(self, request: Request, result: Any) -> None:
        """
        Fire a request's L{Deferred}, then serve waiting requests. Requests that its
        callbacks make queue behind those already waiting.
        """
        request.done = True
        _unlink(request)
        if request.timer is not None:
            request.timer.cancel()
            request.timer = None
        if isinstance(result, Failure):
            self.failedRequests += 1
        request.callback(result)
        if self.waiters or self.connections.minClients:
            self._dispatch()

    def _cancelRequest(self, deferred: Deferred[Any]) -> None:
        """
        The canceller of a L{Request}, which then fails with C{CancelledError}. A request
        cancelled in flight discards its connection, unless the protocol multiplexes or
        settles its own requests (and then closes the connection itself if it must).
        """
        assert isinstance(deferred, Request)
        request = deferred
        request.done = True
        self.failedRequests += 1
        if request.timer is not None:
            request.timer.cancel()
            request.timer = None
        flight = request.flight
        if request in self.waiters:
            self._dequeue(request)
        elif flight is not None:
            _unlink(request)
            self.sender.cancel(flight)

    def _dequeue(self, request: Request) -> None:
        """
        Forget a waiting request that was cancelled or timed out, and cancel a connection
        attempt that no request needs any more.
        """
        del self.waiters[request]
        connections = self.connections
        connecting = connections.connecting
        if (
            len(connecting) > len(self.waiters)
            and connections.total() > connections.minClients
            and connecting[-1].link.attempt is not None
        ):
            connections.retire(connecting[-1], "connect")

    def _waitTimedOut(self, request: Request) -> None:
        """
        A request waited C{acquireTimeout} seconds for a connection.
        """
        request.timer = None
        if request.done or request not in self.waiters:
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

    def _refusal(self) -> Exception | None:
        """
        @return: Why a new request must fail at once, or L{None} if it may wait.
        """
        connections = self.connections
        if connections.closing:
            return PoolClosedError(f"{self._hooks.describe()} is closed")
        if connections.circuit.isOpen() and not connections.open:
            return connections.unavailable()
        maxWaiters = self._options.maxWaiters
        if (
            maxWaiters is not None
            and connections.total() >= connections.maxClients
            and len(self.waiters) - len(connections.connecting) * self._depth >= maxWaiters
        ):
            return PoolFullError(
                f"too many requests waiting for a connection to {self._address} "
                f"(maxWaiters={maxWaiters}; {self.counts()})"
            )
        return None

    def _failWaiters(self, makeError: Callable[[], Exception]) -> None:
        """
        Fail every waiting request with an error from C{makeError}.
        """
        waiters = list(self.waiters)
        self.waiters.clear()
        for request in waiters:
            if not request.done:
                self._settle(request, Failure(makeError()))

    # Dispatch

    def _dispatch(self) -> None:
        """
        Hand waiting requests to connections, first in, first out, and open connections
        for the rest within C{maxClients}. Re-entrant calls return at once; this loop picks
        up the work they made.
        """
        connections = self.connections
        if self._dispatching or not (
            self.waiters or len(connections.open) < connections.minClients
        ):
            return
        self._dispatching = True
        try:
            depth = self._depth
            while True:
                self._serveWaiters()
                while (
                    len(self.waiters) > (len(connections.connecting) + connections.pinging) * depth
                    or connections.total() < connections.minClients
                ) and connections.mayOpen():
                    if not connections.connect():
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
        connections = self.connections
        waiters = self.waiters
        accepting = connections.accepting
        idle = connections.idle
        limit = self._options.validateAfterIdle
        while waiters:
            request = next(iter(waiters))
            now = self._clock.seconds()
            if request.method is not None and accepting:
                connection = next(reversed(accepting))
                if _upkeep.expired(connection, now):
                    connections.refuse(connection, retiring="lifetime")
                    continue
                if connections.closingNow(connection):
                    connections.refuse(connection)
                    continue
            elif idle:
                connection = idle[-1]
                if connections.closingNow(connection):
                    connections.retire(connection, "lost")
                    continue
                if self._validating and _upkeep.needsValidation(connection, now, limit):
                    self._housekeeper.validate(connection)
                    continue
                connections.takeIdle()
            else:
                return
            waiters.popitem(last=False)
            self._assign(request, connection, now)

    def _canServe(self) -> bool:
        """
        @return: Whether the oldest waiting request could be given a connection now.
        """
        if not self.waiters:
            return False
        if self.connections.idle:
            return True
        return bool(self.connections.accepting) and next(iter(self.waiters)).method is not None

    # Checkouts, resizing and closing

    def resize(self, maxClients: int) -> None:
        """
        Change C{maxClients}.
        """
        self.connections.resize(maxClients, pipelined=self._depth > 1)
        self._dispatch()

    def close(self, timeout: float | None) -> Deferred[None]:
        """
        Close the pool; see C{Pool.close}.
        """
        connections = self.connections
        if connections.closing:
            return connections.whenClosed()
        connections.stopOpening()
        self._housekeeper.stop()
        self._failWaiters(lambda: PoolClosedError(f"{self._hooks.describe()} was closed"))
        return connections.closeAll(timeout).addBoth(self.sender.stop)

    # Descriptions

    def counts(self) -> str:
        """@return: The pool's counts, for messages."""
        connections = self.connections
        return (
            f"{connections.busy} busy, {len(connections.idle)} idle, "
            f"{len(connections.connecting)} connecting, {len(self.waiters)} waiting"
        )


def _unlink(request: Request) -> None:
    """
    Part a settled request from its flight, which the protocol may hold on to for a while.
    """
    flight = request.flight
    if flight is not None:
        flight.request = None
        request.flight = None
