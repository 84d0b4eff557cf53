"""
The state machine of a pool: requests waiting and in flight, and the dispatch loop that brings
them to connections (whose half of the state is L{ConnectionMachine}).
L{txconnpool.pool.Pool} is its public face.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.internet import error
from twisted.internet.defer import Deferred, fail
from twisted.python.failure import Failure

from ._connection import Connection, Request, State
from ._housekeeping import Housekeeping
from ._options import PoolOptions
from .errors import (
    ConnectionLostError,
    NoSuchCommand,
    PoolClosedError,
    PoolFullError,
    PoolTimeoutError,
    RequestTimeoutError,
)
from .stats import WINDOW, TimingWindow

WINDOW_MASK = WINDOW - 1


class PoolMachine(Housekeeping):
    """
    The pool's state and every change to it. Requests and connections meet in one place,
    L{_dispatch}, a loop that callbacks re-entering the pool never recurse into.

    Subclasses provide C{clientFactory}, C{brokenConnectionErrors} and C{idempotentMethods}.
    """

    brokenConnectionErrors: tuple[type[BaseException], ...]
    idempotentMethods: frozenset[str]
    multiplexed: bool

    def __init__(
        self, reactor: Any, endpoint: Any, address: str, maxClients: int, options: PoolOptions
    ) -> None:
        Housekeeping.__init__(self, reactor, endpoint, address, maxClients, options)
        self._waiters: deque[Request] = deque()
        self._waiting = 0
        self._cancelledWaiters = 0
        self._dispatching = False
        self._depth = options.maxRequestsPerClient
        self._canceller = self._cancelDeferred
        self._validating = options.validateAfterIdle is not None
        self._accepting: list[Connection] = []
        self._requests = 0
        self._failedRequests = 0
        self._requestsWaited = 0
        self._waitTimes = TimingWindow()
        self._requestTimes = TimingWindow()

    def _submit(
        self,
        method: str | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        origin: str | None = None,
    ) -> Deferred[Any]:
        self._requests += 1
        if self._closing or self._circuit.failures or self._options.maxWaiters is not None:
            refusal = self._refusal()
            if refusal is not None:
                self._failedRequests += 1
                return fail(refusal)
        request = Request(method, args, kwargs, self._canceller)
        request.queuedAt = now = self._reactor.seconds()
        request.origin = origin
        if not (self._waiting or self._dispatching):
            connection = self._availableFor(method)
            if connection is not None:
                # The common case: a connection is free for it. Dispatch is held off while the
                # request runs, so that requests its callbacks make queue instead of recursing.
                self._dispatching = True
                try:
                    self._assign(request, connection, now)
                finally:
                    self._dispatching = False
                if self._waiting:
                    self._dispatch()
                return request
        self._waiters.append(request)
        self._waiting += 1
        self._dispatch()
        if request.connection is None and not request.done:
            self._requestsWaited += 1
            timeout = self._options.acquireTimeout
            if timeout is not None:
                request.timer = self._reactor.callLater(timeout, self._waitTimedOut, request)
        return request

    def _availableFor(self, method: str | None) -> Connection | None:
        """
        Find a connection for a new request when none is waiting: a busy connection with room
        for one more pipelined request, or else an idle one (made busy). L{None} if there is
        none, or if the idle one must first be checked (closing or to validate): dispatch
        handles those.
        """
        if method is not None and self._accepting:
            connection = self._accepting[-1]
            if connection.expiresAt is None and not self._closingConnection(connection):
                return connection
            return None
        if self._idle and not self._validating:
            connection = self._idle[-1]
            if not self._closingConnection(connection):
                self._idle.pop()
                connection.state = State.BUSY
                self._busy += 1
                return connection
        return None

    def _refusal(self) -> Exception | None:
        """
        @return: Why a new request must fail at once, or L{None} if it may wait.
        """
        if self._closing:
            return PoolClosedError(f"{self!r} is closed")
        if self._circuit.isOpen() and not (self._busy or self._idle):
            return self._unavailable()
        maxWaiters = self._options.maxWaiters
        if (
            maxWaiters is not None
            and self._total() >= self._maxClients
            and self._waiting - len(self._connecting) * self._depth >= maxWaiters
        ):
            return PoolFullError(
                f"too many requests waiting for a connection to {self._address} "
                f"(maxWaiters={maxWaiters}; {self._counts()})"
            )
        return None

    def _dispatch(self) -> None:
        """
        Hand waiting requests to connections, first in, first out, and open connections for
        the rest within C{maxClients}. Re-entrant calls (from callbacks run meanwhile) return
        at once, and this loop picks up the work they made.
        """
        if self._dispatching or not (self._waiting or self._busy + len(self._idle) < self._min):
            return
        self._dispatching = True
        try:
            while True:
                self._serveWaiters()
                depth = self._depth
                while (
                    (
                        self._waiting > (len(self._connecting) + self._pinging) * depth
                        or self._total() < self._min
                    )
                    and self._total() < self._maxClients
                    and not self._closing
                    and self._circuit.mayConnect(len(self._connecting))
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
        validating = self._validating
        waiters = self._waiters
        while self._waiting:
            request = waiters[0]
            if request.done:
                waiters.popleft()
                self._cancelledWaiters -= 1
                continue
            if request.method is not None and self._accepting:
                connection = self._accepting[-1]
                if (
                    connection.expiresAt is not None and self._expired(connection)
                ) or self._closingConnection(connection):
                    self._stopAccepting(connection)
                    continue
            elif self._idle:
                connection = self._idle[-1]
                if self._closingConnection(connection):
                    self._retire(connection, "lost")
                    continue
                if validating and self._needsValidation(connection):
                    self._ping(connection, "validation")
                    continue
                self._idle.pop()
                connection.state = State.BUSY
                self._busy += 1
            else:
                return
            waiters.popleft()
            self._waiting -= 1
            self._assign(request, connection, self._reactor.seconds())

    def _canServe(self) -> bool:
        """
        @return: Whether the oldest waiting request could be given a connection now.
        """
        waiters = self._waiters
        while waiters and waiters[0].done:
            waiters.popleft()
            self._cancelledWaiters -= 1
        if not self._waiting:
            return False
        return bool(self._idle) or (waiters[0].method is not None and bool(self._accepting))

    def _closingConnection(self, connection: Connection) -> bool:
        """
        Whether a connection is being closed, by its transport or by its protocol.
        """
        return getattr(connection.transport, "disconnecting", False) or self.connectionClosing(
            connection.protocol
        )

    def connectionClosing(self, protocol: Any) -> bool:
        raise NotImplementedError()

    def _stopAccepting(self, connection: Connection) -> None:
        """
        Take a busy connection off the list of those that can take one more request.
        """
        connection.accepting = False
        accepting = self._accepting
        if accepting and accepting[-1] is connection:
            accepting.pop()
        else:
            accepting.remove(connection)

    def _assign(self, request: Request, connection: Connection, now: float) -> None:
        """
        Send a request on a busy connection, or hand it the connection for itself.
        """
        request.connection = connection
        connection.validated = False
        if request.timer is not None:
            request.timer.cancel()
            request.timer = None
        waits = self._waitTimes
        waits.samples[waits.count & WINDOW_MASK] = now - request.queuedAt
        waits.count += 1
        if request.method is None:
            connection.holder = request
            self._checkedOutNow(connection, request)
            self._settle(request, connection.protocol)
            return
        requests = connection.requests
        requests.append(request)
        depth = self._depth
        if depth > 1:
            if len(requests) >= depth:
                if connection.accepting:
                    self._stopAccepting(connection)
            elif not connection.accepting:
                connection.accepting = True
                self._accepting.append(connection)
        request.sentAt = now
        request.mark = connection.received
        timeout = self._options.requestTimeout
        if timeout is not None:
            request.timer = self._reactor.callLater(timeout, self._requestTimedOut, request)
        method = getattr(connection.protocol, request.method, None)
        if not callable(method):
            result: Any = Failure(self._noSuchCommand(type(connection.protocol), request.method))
        else:
            try:
                result = method(*request.args, **request.kwargs)
            except Exception:
                result = Failure()
        if isinstance(result, Deferred):
            result.addBoth(self._finished, connection, request)
        else:
            self._finished(result, connection, request)

    def _takeOff(self, connection: Connection, request: Request) -> bool:
        """
        Remove a request from its connection's requests in flight.

        @return: Whether it was there.
        """
        requests = connection.requests
        if requests and requests[0] is request:
            requests.popleft()
            return True
        if request in requests:
            requests.remove(request)
            return True
        return False

    def _finished(self, result: Any, connection: Connection, request: Request) -> None:
        failed = isinstance(result, Failure)
        requests = connection.requests
        if requests and requests[0] is request:
            requests.popleft()
            onConnection = True
        else:
            onConnection = self._takeOff(connection, request)
        if onConnection:
            now = self._reactor.seconds()
            times = self._requestTimes
            times.samples[times.count & WINDOW_MASK] = now - request.sentAt
            times.count += 1
            if connection.lost or self._closingConnection(connection):
                self._retire(connection, "lost", abort=True)
            elif failed and result.check(*self.brokenConnectionErrors):
                self._retire(connection, "protocolError", abort=True)
            else:
                if not connection.proven:
                    self._prove(connection)
                if not connection.requests:
                    if connection.accepting:
                        self._stopAccepting(connection)
                    self._checkin(connection, now=now)
                elif not connection.accepting and len(connection.requests) < self._depth:
                    if connection.expiresAt is None or not self._expired(connection):
                        connection.accepting = True
                        self._accepting.append(connection)
        if request.done:
            return None
        if failed and result.check(error.ConnectionClosed, ConnectionLostError):
            if self._mayRetry(request, connection):
                self._requeue(request)
                self._dispatch()
                return None
            if not result.check(ConnectionLostError):
                result = Failure(self._lostError(result))
        self._settle(request, result)
        return None

    def _failWaiters(self, makeError: Callable[[], Exception]) -> None:
        """
        Fail every waiting request with an error from C{makeError}.
        """
        waiters, self._waiters = self._waiters, deque()
        self._waiting = self._cancelledWaiters = 0
        for request in waiters:
            if not request.done:
                self._settle(request, Failure(makeError()))

    def _mayRetry(self, request: Request, connection: Connection) -> bool:
        """
        Whether a request that failed because its connection went away may be sent again: it
        never was answered (no data arrived after it was sent), it is idempotent, and it was
        not retried already.
        """
        return (
            not request.retried
            and not self._closing
            and not self._circuit.isOpen()
            and request.method in self.idempotentMethods
            and connection.received == request.mark
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
        if request.timer is not None:
            request.timer.cancel()
            request.timer = None
        request.retried = True
        request.connection = None
        self._waiters.appendleft(request)
        self._waiting += 1
        timeout = self._options.acquireTimeout
        if timeout is not None:
            request.timer = self._reactor.callLater(timeout, self._waitTimedOut, request)

    def _settle(self, request: Request, result: Any) -> None:
        """
        Fire a request's L{Deferred}, then serve waiting requests. Requests that its callbacks
        make queue behind those already waiting.
        """
        request.done = True
        if request.timer is not None:
            request.timer.cancel()
            request.timer = None
        if isinstance(result, Failure):
            self._failedRequests += 1
        request.callback(result)
        if self._waiting or self._min:
            self._dispatch()

    def _cancelDeferred(self, deferred: Deferred[Any]) -> None:
        assert isinstance(deferred, Request)
        self._cancel(deferred)

    def _cancel(self, request: Request) -> None:
        """
        The canceller of a request's L{Deferred}, which then fails with
        L{CancelledError<twisted.internet.defer.CancelledError>}.
        """
        request.done = True
        self._failedRequests += 1
        if request.timer is not None:
            request.timer.cancel()
            request.timer = None
        connection = request.connection
        if connection is None:
            self._dequeue(request)
        elif self._takeOff(connection, request):
            if self.multiplexed:
                self._leftInFlight(connection)
            else:
                self._retire(connection, "cancelled", abort=True)
            self._dispatch()

    def _leftInFlight(self, connection: Connection) -> None:
        """
        A request of a multiplexed protocol was taken off its connection before its reply:
        the connection goes on as if the request had finished.
        """
        if connection.state is not State.BUSY:
            return
        if not connection.requests:
            if connection.accepting:
                self._stopAccepting(connection)
            self._checkin(connection)
        elif not connection.accepting and len(connection.requests) < self._depth:
            if connection.expiresAt is None or not self._expired(connection):
                connection.accepting = True
                self._accepting.append(connection)

    def _dequeue(self, request: Request) -> None:
        """
        Forget a waiting request that was cancelled or timed out (it stays in the queue until
        the dispatch loop or a compaction skips it), and cancel a connection attempt that no
        request needs any more.
        """
        self._waiting -= 1
        self._cancelledWaiters += 1
        if self._cancelledWaiters > 32 and self._cancelledWaiters > self._waiting:
            self._waiters = deque(r for r in self._waiters if not r.done)
            self._cancelledWaiters = 0
        if len(self._connecting) > self._waiting:
            surplus = self._connecting[-1]
            if surplus.attempt is not None:
                self._retire(surplus, "connect")

    def _waitTimedOut(self, request: Request) -> None:
        """
        A request waited C{acquireTimeout} seconds for a connection: fail it with
        L{PoolTimeoutError}.
        """
        request.timer = None
        if request.done or request.connection is not None:
            return
        request.done = True
        self._dequeue(request)
        self._settle(
            request,
            Failure(
                PoolTimeoutError(
                    f"timed out after {self._options.acquireTimeout}s waiting for a connection "
                    f"to {self._address} ({self._counts()})"
                )
            ),
        )

    def _requestTimedOut(self, request: Request) -> None:
        """
        A request had no reply within C{requestTimeout} seconds: fail it with
        L{RequestTimeoutError} and drop its connection, whose late reply cannot be trusted
        (unless the protocol is multiplexed, whose late reply is matched to nothing).
        """
        request.timer = None
        connection = request.connection
        if request.done or connection is None:
            return
        multiplexed = self.multiplexed
        if self._takeOff(connection, request):
            if multiplexed:
                self._leftInFlight(connection)
            else:
                self._retire(connection, "timeout", abort=True)
        self._settle(
            request,
            Failure(
                RequestTimeoutError(
                    f"no reply to {request.method} from {self._address} within "
                    f"{self._options.requestTimeout}s"
                    + ("" if multiplexed else "; the connection was dropped")
                )
            ),
        )

    def _noSuchCommand(self, protocolClass: type, method: str) -> NoSuchCommand:
        return NoSuchCommand(f"{protocolClass.__name__} has no method {method!r}")

