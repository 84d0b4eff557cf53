"""
Statistics snapshots of a pool.
"""

from __future__ import annotations

from attrs import frozen

__all__ = ["PoolStats"]


@frozen
class PoolStats:
    """
    An immutable snapshot of a pool's counters, as returned by C{Pool.poolStats()}.

    @ivar busy: Connections carrying a request or checked out with C{acquire()}.
    @ivar idle: Connections ready and unused.
    @ivar connecting: Connection attempts in progress, including connections still running
        their handshake (see C{PooledClientFactory.prepareConnection}).
    @ivar waiting: Requests waiting for a connection: every connection is busy, or the ones
        they wait for are still opening.
    @ivar maxClients: The most connections the pool opens at once.
    @ivar created: Connections that became ready, since the pool was made.
    @ivar closed: Ready connections that have since left the pool (closed, lost or discarded).
    @ivar requests: Requests accepted (C{performRequest} and C{acquire} calls), since the pool
        was made.
    @ivar failedRequests: Accepted requests whose L{Deferred<twisted.internet.defer.Deferred>}
        failed, cancellations included.
    """

    busy: int
    idle: int
    connecting: int
    waiting: int
    maxClients: int
    created: int
    closed: int
    requests: int
    failedRequests: int
