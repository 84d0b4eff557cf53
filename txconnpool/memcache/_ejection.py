"""
Ejection of unreachable nodes from a cluster's continuum, and their re-admission, as
libmemcached's C{auto_eject} and twemproxy's C{auto_eject_hosts} do.

A request failing because its server is unreachable (L{ServerUnavailableError},
L{ConnectionLostError}, L{RequestTimeoutError}) counts one failure of its node; any answer from
the server, an error reply included, resets the count. C{ejectAfter} failures in a row take the
node out of the continuum, which is rebuilt over the other nodes exactly as libmemcached and
twemproxy rebuild theirs. Every C{retryTimeout} seconds after that, a C{version} request is sent
to the node through its pool; once one succeeds, the node is back in the continuum.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..errors import ConnectionLostError, RequestTimeoutError, ServerUnavailableError
from ._node import ClusterNode
from ._ring import Ring
from .errors import MemCacheError

__all__ = ["UNREACHABLE_ERRORS", "Ejector"]

_T = TypeVar("_T")

UNREACHABLE_ERRORS: tuple[type[BaseException], ...] = (
    ServerUnavailableError,
    ConnectionLostError,
    RequestTimeoutError,
)
"""The failures that count against a node: its server could not be reached or did not answer."""


class Ejector:
    """
    Counts each node's failures, ejects and re-admits nodes, and rebuilds the ring when it does.
    """

    _log = Logger()

    def __init__(
        self,
        reactor: Any,
        ring: Ring[ClusterNode],
        nodes: Sequence[ClusterNode],
        ejectAfter: int,
        retryTimeout: float,
    ) -> None:
        self._reactor = reactor
        self._ring = ring
        self._nodes = list(nodes)
        self.ejectAfter = ejectAfter
        self.retryTimeout = retryTimeout
        self._timers: dict[int, IDelayedCall] = {}
        self._stopped = False

    def watch(self, node: ClusterNode, d: Deferred[_T]) -> Deferred[_T]:
        """
        Count the outcome of a request sent to C{node}.

        @return: C{d}, which fires as it would have.
        """
        d.addCallbacks(self._answered, self._failed, callbackArgs=(node,), errbackArgs=(node,))
        return d

    def _answered(self, result: _T, node: ClusterNode) -> _T:
        node.consecutiveFailures = 0
        return result

    def _failed(self, failure: Failure, node: ClusterNode) -> Failure:
        if failure.check(*UNREACHABLE_ERRORS):
            node.consecutiveFailures += 1
            if node.consecutiveFailures >= self.ejectAfter and not node.ejected:
                self._eject(node, failure)
        elif failure.check(MemCacheError):
            node.consecutiveFailures = 0
        return failure

    def _eject(self, node: ClusterNode, failure: Failure) -> None:
        if self._stopped:
            return
        node.ejected = True
        node.ejections += 1
        self._rebuild()
        self._log.warn(
            "memcached node {node} ejected after {failures} consecutive failures ({error}); "
            "its keys go to the other nodes until it answers again, tried every "
            "{retryTimeout}s",
            node=node.name,
            failures=node.consecutiveFailures,
            error=failure.getErrorMessage(),
            retryTimeout=self.retryTimeout,
            txconnpoolEvent="nodeEjected",
        )
        self._schedule(node)

    def _schedule(self, node: ClusterNode) -> None:
        self._timers[id(node)] = self._reactor.callLater(self.retryTimeout, self._probe, node)

    def _probe(self, node: ClusterNode) -> None:
        del self._timers[id(node)]
        node.pool.version().addCallbacks(
            self._readmit, self._stillDown, callbackArgs=(node,), errbackArgs=(node,)
        )

    def _readmit(self, version: bytes, node: ClusterNode) -> None:
        if self._stopped:
            return
        node.ejected = False
        node.consecutiveFailures = 0
        node.readmissions += 1
        self._rebuild()
        self._log.info(
            "memcached node {node} answered again and is back in the continuum",
            node=node.name,
            txconnpoolEvent="nodeReadmitted",
        )

    def _stillDown(self, failure: Failure, node: ClusterNode) -> None:
        if self._stopped:
            return
        self._log.debug(
            "memcached node {node} is still unreachable ({error})",
            node=node.name,
            error=failure.getErrorMessage(),
            txconnpoolEvent="nodeStillDown",
        )
        self._schedule(node)

    def _rebuild(self) -> None:
        self._ring.rebuild([node for node in self._nodes if not node.ejected])

    def stop(self) -> None:
        """
        Stop probing ejected nodes: the cluster is closing.
        """
        self._stopped = True
        for timer in self._timers.values():
            if timer.active():
                timer.cancel()
        self._timers.clear()
