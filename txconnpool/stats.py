"""
Statistics snapshots of a pool, and the sliding windows of timings behind them.
"""

from __future__ import annotations

from attrs import frozen

__all__ = ["DiscardCounts", "LatencySummary", "PoolStats"]


@frozen
class LatencySummary:
    """
    A summary of recent timings, in seconds: the latest 1024 samples at most.

    @ivar count: How many samples the summary covers.
    @ivar p50: The median, or 0.0 without samples.
    @ivar p99: The 99th percentile, or 0.0 without samples.
    @ivar max: The largest sample, or 0.0 without samples.
    """

    count: int = 0
    p50: float = 0.0
    p99: float = 0.0
    max: float = 0.0


@frozen
class DiscardCounts:
    """
    How many ready connections left the pool, by reason, since it was made.

    @ivar lost: The connection was lost: the server closed it, or the network failed.
    @ivar timeout: A request on it had no reply within C{requestTimeout}.
    @ivar protocolError: A request on it failed with one of the pool's
        C{brokenConnectionErrors}: a protocol error, or a protocol's own timeout.
    @ivar cancelled: A request in flight on it was cancelled.
    @ivar caller: The caller gave it back as broken: C{discard()}, C{clientGone()}, or a
        C{connection()} block left with a connection error.
    @ivar idle: It stayed idle longer than C{idleTimeout}, above C{minClients}.
    @ivar lifetime: It reached C{maxLifetime}.
    @ivar keepalive: A keepalive or validation ping failed or timed out.
    @ivar surplus: The pool had more connections than C{maxClients}, after a resize.
    @ivar closed: The pool was closed.
    """

    lost: int = 0
    timeout: int = 0
    protocolError: int = 0
    cancelled: int = 0
    caller: int = 0
    idle: int = 0
    lifetime: int = 0
    keepalive: int = 0
    surplus: int = 0
    closed: int = 0


@frozen
class PoolStats:
    """
    An immutable snapshot of a pool's counters, as returned by C{Pool.poolStats()}.

    @ivar busy: Connections carrying a request, checked out with C{acquire()}, or being
        pinged.
    @ivar idle: Connections ready and unused.
    @ivar connecting: Connection attempts in progress, including connections still running
        their handshake (see C{PooledClientFactory.prepareConnection}).
    @ivar waiting: Requests waiting for a connection: every connection is busy, or the ones
        they wait for are still opening.
    @ivar maxClients: The most connections the pool opens at once.
    @ivar minClients: The connections the pool keeps open even when idle.
    @ivar created: Connections that became ready, since the pool was made.
    @ivar closed: Ready connections that have since left the pool (closed, lost or discarded).
    @ivar requests: Requests accepted (C{performRequest} and C{acquire} calls), since the pool
        was made.
    @ivar failedRequests: Accepted requests whose L{Deferred<twisted.internet.defer.Deferred>}
        failed, cancellations included.
    @ivar requestsWaited: Requests that could not be served at once and waited in the queue.
    @ivar connectsAttempted: Connection attempts started.
    @ivar connectsFailed: Connection attempts that failed or timed out, and new connections
        lost during their first request.
    @ivar discarded: Connections closed or lost, by reason.
    @ivar waitTime: How long recent requests waited for a connection.
    @ivar requestTime: How long recent requests took once sent, until their reply.
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
    minClients: int = 0
    requestsWaited: int = 0
    connectsAttempted: int = 0
    connectsFailed: int = 0
    discarded: DiscardCounts = DiscardCounts()
    waitTime: LatencySummary = LatencySummary()
    requestTime: LatencySummary = LatencySummary()


WINDOW = 1024
"""
How many of the latest timings a L{TimingWindow} keeps: a power of two.
"""


class TimingWindow:
    """
    The latest L{WINDOW} timings of one kind, kept in a ring.

    @ivar count: How many timings were ever recorded. The pool records one, on its hot path,
        by writing it at C{samples[count & (WINDOW - 1)]} and adding 1 to C{count}, which
        forgets the oldest once the window is full.
    """

    __slots__ = ("count", "samples")

    def __init__(self) -> None:
        self.samples = [0.0] * WINDOW
        self.count = 0

    def summary(self) -> LatencySummary:
        """
        @return: The median, 99th percentile and maximum of the timings in the window.
        """
        if not self.count:
            return LatencySummary()
        ordered = sorted(self.samples[: min(self.count, WINDOW)])
        last = len(ordered) - 1
        return LatencySummary(
            count=len(ordered),
            p50=ordered[last // 2],
            p99=ordered[min(last, round(0.99 * last))],
            max=ordered[last],
        )
