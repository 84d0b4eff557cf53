"""
Choosing which idle served connections give way to waiting clients.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from ._protocol import LimitedProtocol


def _reapOrder(conn: LimitedProtocol) -> tuple[float, float, int]:
    keepAlive = conn.keepAliveTimeout()
    return (math.inf if keepAlive is None else keepAlive, conn.lastActivity, conn.arrival)


def reapCandidates(
    served: Iterable[LimitedProtocol], now: float, reapIdleAfter: float, pollInterval: float
) -> tuple[list[LimitedProtocol], float]:
    """
    Find the served connections that may be reaped.

    A connection may be reaped when its protocol says it is between requests and it has been
    silent for at least C{reapIdleAfter} seconds.  They come in the order they should be
    reaped: the shortest announced keep-alive first (none announced counts as the longest),
    then the one idle longest, then the oldest.

    @param pollInterval: The longest time to wait before looking again when connections are
        busy (they may turn idle at any moment, unannounced).

    @return: The connections that may be reaped, in order, and when to look again for more.
    """
    due = []
    nextLook = now + max(reapIdleAfter, pollInterval)
    for conn in served:
        idle = conn.idleFor(now)
        if idle is None:
            continue
        if idle >= reapIdleAfter:
            due.append(conn)
        else:
            nextLook = min(nextLook, now + max(reapIdleAfter - idle, 0.001))
    due.sort(key=_reapOrder)
    return due, nextLook
