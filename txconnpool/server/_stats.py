"""
Snapshots of what a L{LimitConnectionsFactory<txconnpool.server.LimitConnectionsFactory>} is
doing, as immutable values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType

import attrs

COUNTERS = (
    "served",
    "overflowed",
    "timedOutQueued",
    "leftQueued",
    "reaped",
    "idleClosed",
    "requestTimedOut",
    "headerTimedOut",
)
"""
The counters of L{LimiterStats} a limiter's core keeps itself.
"""


def _frozenMapping(value: Mapping[str, PeerStats]) -> Mapping[str, PeerStats]:
    return MappingProxyType(dict(value))


@attrs.frozen
class PeerStats:
    """
    How many connections one peer address holds.

    @ivar active: Connections from this address being served.
    @ivar queued: Connections from this address waiting for a slot.
    """

    active: int
    queued: int


@attrs.frozen
class LimiterStats:
    """
    A snapshot of a connection limiter, taken by
    L{LimitConnectionsFactory.stats<txconnpool.server.LimitConnectionsFactory.stats>}.

    The first group of fields are current values; the counters after them only ever grow.

    @ivar maxConnections: The configured number of slots.
    @ivar maxQueued: The configured queue length, or L{None} when only descriptors bound it.
    @ivar active: Connections holding a slot (being served, or closing).
    @ivar queued: Connections accepted, paused and waiting for a slot.
    @ivar overflowing: Connections currently handled by the overflow behaviour.
    @ivar served: Connections that were given a slot.
    @ivar overflowed: Connections refused because the queue was full.
    @ivar timedOutQueued: Queued connections closed because they waited longer than
        C{queueTimeout}.
    @ivar leftQueued: Queued connections whose client went away before being served.
    @ivar reaped: Idle connections closed to make room for a queued one, or to free
        descriptors after a failed C{accept}.
    @ivar idleClosed: Served connections closed after C{idleTimeout} without traffic.
    @ivar requestTimedOut: Served connections closed because a request took longer than
        C{requestTimeout} to arrive (slow senders).
    @ivar headerTimedOut: Served connections closed because the head of a request took longer
        than C{headerTimeout} to arrive (slow senders).
    @ivar turnsEnded: Served connections asked to give up their slot at their next request
        boundary because clients were waiting.
    @ivar acceptPauses: Times the listening ports were paused because descriptors ran short.
    @ivar peers: Current counts per peer address (IP connections only), for addresses that
        hold at least one connection.
    """

    maxConnections: int
    maxQueued: int | None
    active: int
    queued: int
    overflowing: int
    served: int
    overflowed: int
    timedOutQueued: int
    leftQueued: int
    reaped: int
    idleClosed: int
    requestTimedOut: int
    acceptPauses: int
    peers: Mapping[str, PeerStats] = attrs.field(converter=_frozenMapping, factory=dict)
    headerTimedOut: int = 0
    turnsEnded: int = 0


def peerCounts(
    active: Mapping[str, int], queued: Iterable[str], countQueued: Callable[[str], int]
) -> dict[str, PeerStats]:
    """
    @param active: The connections served per peer address, for addresses with any.
    @param queued: The addresses with waiting connections.
    @param countQueued: Says how many connections of an address wait.

    @return: The counts of every address holding a connection.
    """
    peers = {
        key: PeerStats(active=count, queued=countQueued(key)) for key, count in active.items()
    }
    for key in queued:
        if key not in peers:
            peers[key] = PeerStats(active=0, queued=countQueued(key))
    return peers
