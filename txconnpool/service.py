"""
L{PoolService}: a pool as a Twisted service, so that it lives in a C{twistd} application or a
L{MultiService<twisted.application.service.MultiService>} like any other service::

    pool = MemCachePool("tcp:127.0.0.1:11211", maxClients=20, minClients=2)
    PoolService(pool, name="cache", failFast=True).setServiceParent(application)
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ReactorNotRunning
from twisted.internet.interfaces import IReactorCore
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from .errors import PoolClosedError
from .pool import Pool

__all__ = ["PoolService"]

_PENDING = object()


class PoolService(Service):
    """
    A service that waits for its pool's C{minClients} connections when started and closes the
    pool when stopped.

    The pool opens its connections as soon as it is made; starting the service waits for
    them with C{pool.whenReady(whenReadyTimeout)}. If they are not up in time, the service
    logs the error (the last connection error included) and stays running, so the pool keeps
    trying in the background; with C{failFast}, it logs it as critical and stops the reactor,
    so that the process exits instead of running without its backend (C{twistd} then exits
    with status 0: it has no other way for a service to end it; the log says why). A pool
    closed while the service is being stopped is not an error.

    Stopping the service closes the pool: requests in flight may finish during the pool's
    C{shutdownTimeout}, then their connections are dropped.

    @ivar pool: The pool.
    @ivar whenReadyTimeout: Seconds to wait for C{minClients} connections at start.
    @ivar failFast: Whether to stop the reactor when they are not up in time.
    """

    _log = Logger()

    def __init__(
        self, pool: Pool[Any], *, whenReadyTimeout: float = 30.0, failFast: bool = False,
        name: str | None = None,
    ) -> None:
        """
        @param pool: The pool the service starts and closes.
        @param whenReadyTimeout: Seconds to wait for C{minClients} connections at start.
        @param failFast: Stop the reactor if they are not up after C{whenReadyTimeout}.
        @param name: The service's name in its parent
            (C{parent.getServiceNamed(name)}); none by default.

        @raise TypeError: An argument has the wrong type.
        @raise ValueError: C{whenReadyTimeout} is not positive.
        """
        if not isinstance(pool, Pool):
            raise TypeError(f"pool must be a txconnpool Pool, not {pool!r}")
        if isinstance(whenReadyTimeout, bool) or not isinstance(whenReadyTimeout, int | float):
            raise TypeError(f"whenReadyTimeout must be a number, not {whenReadyTimeout!r}")
        if not whenReadyTimeout > 0:
            raise ValueError(f"whenReadyTimeout must be more than 0, not {whenReadyTimeout!r}")
        if not isinstance(failFast, bool):
            raise TypeError(f"failFast must be True or False, not {failFast!r}")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str or None, not {name!r}")
        self.pool = pool
        self.whenReadyTimeout = float(whenReadyTimeout)
        self.failFast = failFast
        self.name = name
        self._outcome: object = _PENDING
        self._waiters: list[Deferred[None]] = []

    @property
    def ready(self) -> Deferred[None]:
        """
        A new L{Deferred} on each access, firing with L{None} once the service has started and
        the pool has C{minClients} connections up, or failing as C{pool.whenReady()} did (with
        L{ServerUnavailableError<txconnpool.errors.ServerUnavailableError>},
        L{PoolTimeoutError<txconnpool.errors.PoolTimeoutError>} or L{PoolClosedError}). Only
        those who ask get a L{Deferred} that can fail, so an unobserved failure is logged once,
        by the service, and never as an unhandled error.
        """
        if self._outcome is _PENDING:
            waiter: Deferred[None] = Deferred(self._waiters.remove)
            self._waiters.append(waiter)
            return waiter
        if isinstance(self._outcome, Failure):
            return fail(self._outcome)
        return succeed(None)

    def startService(self) -> None:
        """
        Start the service and wait, in the background, for the pool to be ready.
        """
        Service.startService(self)  # type: ignore[no-untyped-call]
        self._outcome = _PENDING
        self.pool.whenReady(self.whenReadyTimeout).addBoth(self._settled)

    def stopService(self) -> Deferred[None]:
        """
        Stop the service and close the pool.

        @return: A L{Deferred} firing with L{None} once every connection is closed; it never
            fails.
        """
        Service.stopService(self)  # type: ignore[no-untyped-call]
        return self.pool.close(timeout=self.pool._options.shutdownTimeout)  # as at shutdown

    def _settled(self, result: object) -> None:
        if not isinstance(result, Failure):
            self._log.info("{pool!r} is ready", pool=self.pool, txconnpoolEvent="ready")
        elif result.check(PoolClosedError) and not self.running:
            self._log.info("{pool!r} was closed before it was ready", pool=self.pool)
        else:
            self._log.failure(
                "{pool!r} did not become ready (whenReadyTimeout={timeout}s){action}",
                result,
                level=LogLevel.critical if self.failFast else LogLevel.error,
                pool=self.pool,
                timeout=self.whenReadyTimeout,
                action="; stopping the reactor (failFast)" if self.failFast else "",
                txconnpoolEvent="notReady",
            )
            if self.failFast:
                self._stopReactor()
        self._outcome = result
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if isinstance(result, Failure):
                waiter.errback(result)
            else:
                waiter.callback(None)

    def _stopReactor(self) -> None:
        reactor = self.pool.reactor
        if not IReactorCore.providedBy(reactor):
            return
        try:
            reactor.stop()
        except ReactorNotRunning:
            reactor.callWhenRunning(reactor.stop)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<{type(self).__name__} {self.name!r} {state} {self.pool!r}>"
