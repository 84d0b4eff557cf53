"""
Choosing which served connections make room for waiting clients: idle connections to reap, and
busy connections whose turn is over.  Pure functions of the connections' records and the time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable

from ._record import ConnectionRecord


def idleFor(record: ConnectionRecord, now: float) -> float | None:
    """
    @return: How long the connection has been idle (between requests and silent), or L{None}
        if it is busy, already closing, or not observed.
    """
    probe = record.probe
    if record.closingReason is not None or probe is None or not probe.isIdle():
        return None
    return now - record.lastActivity


def reapOrder(record: ConnectionRecord) -> tuple[float, float, int]:
    """
    The sort key of reaping: the shortest announced keep-alive first (none announced counts as
    the longest), then the one idle longest, then the oldest.
    """
    probe = record.probe
    keepAlive = None if probe is None else probe.keepAliveTimeout()
    return (math.inf if keepAlive is None else keepAlive, record.lastActivity, record.arrival)


def reapCandidates(
    served: Iterable[ConnectionRecord], now: float, reapIdleAfter: float, pollInterval: float
) -> tuple[list[ConnectionRecord], float | None]:
    """
    Find the served connections that may be reaped.

    A connection may be reaped when its protocol says it is between requests and it has been
    silent for at least C{reapIdleAfter} seconds.

    @param pollInterval: The longest time to wait before looking again when connections are
        busy (they may turn idle at any moment, unannounced).

    @return: The connections that may be reaped, in the order of L{reapOrder}, and when to
        look again for more (L{None} if no connection could ever be).
    """
    due = []
    nextLook: float | None = None
    for record in served:
        if record.closingReason is not None:
            continue
        idle = idleFor(record, now)
        if idle is None:
            look = now + pollInterval
        elif idle >= reapIdleAfter:
            due.append(record)
            continue
        else:
            look = now + max(reapIdleAfter - idle, 0.001)
        nextLook = look if nextLook is None else min(nextLook, look)
    due.sort(key=reapOrder)
    return due, nextLook


def turnCandidates(
    served: Iterable[ConnectionRecord],
    now: float,
    minTurn: float,
    minTurnRequests: int | None,
    pollInterval: float,
) -> tuple[list[ConnectionRecord], float | None]:
    """
    Find the served connections whose turn is over: they have held their slot for at least
    C{minTurn} seconds and answered at least C{minTurnRequests} requests, and were not asked
    to end their turn yet.

    @return: Those connections, the one served longest first, and when the next turn will be
        over (L{None} if no other connection could end its turn).
    """
    ready = []
    nextLook: float | None = None
    for record in served:
        if record.turnEnded or record.closingReason is not None:
            continue
        if minTurnRequests is not None and record.exchanges < minTurnRequests:
            look = now + pollInterval
        else:
            look = record.servedAt + minTurn
            if look <= now:
                ready.append(record)
                continue
        nextLook = look if nextLook is None else min(nextLook, look)
    ready.sort(key=lambda record: (record.servedAt, record.arrival))
    return ready, nextLook


class RoomPlan:
    """
    How to make room for waiting clients, as L{planRoom} found.

    @ivar reap: The idle connections to close, in order.
    @ivar endTurns: The connections whose turn may be ended, in order, for as long as clients
        still need room.
    @ivar need: How many clients still need room once C{reap} are closed.
    @ivar nextLook: When to look again, if anything may change by then.
    @ivar turnLook: When the next turn will be over, to look then if clients still need room.
    """

    def __init__(
        self,
        reap: list[ConnectionRecord],
        endTurns: list[ConnectionRecord],
        need: int,
        nextLook: float | None,
        turnLook: float | None,
    ) -> None:
        self.reap = reap
        self.endTurns = endTurns
        self.need = need
        self.nextLook = nextLook
        self.turnLook = turnLook


def planRoom(
    served: Iterable[ConnectionRecord],
    ending: Collection[ConnectionRecord],
    need: int,
    now: float,
    *,
    reapIdleAfter: float | None,
    minTurn: float | None,
    minTurnRequests: int | None,
    pollInterval: float,
    mayReap: Callable[[ConnectionRecord], bool],
) -> RoomPlan:
    """
    Decide how to make room for C{need} waiting clients (beyond those already being made room
    for): first reap idle connections whose turn already ended, whatever the need, then other
    idle connections, then end turns.

    @param ending: The connections whose protocol will close them at their next request
        boundary.
    @param mayReap: Says whether an idle connection may be closed right now (no unread bytes
        of a next request on its socket); one that may not is looked at again soon.
    """
    candidates = [record for record in served if record.closingReason is None]
    looks: list[float] = []
    reap: list[ConnectionRecord] = []
    if reapIdleAfter is not None:
        due, look = reapCandidates(candidates, now, reapIdleAfter, pollInterval)
        for record in sorted(due, key=lambda r: r not in ending):
            leaving = record in ending
            if not leaving and need <= 0:
                break
            if mayReap(record):
                reap.append(record)
                need -= 0 if leaving else 1
            else:
                looks.append(now + pollInterval)
        if look is not None and (need > 0 or ending):
            looks.append(look)
    endTurns: list[ConnectionRecord] = []
    turnLook = None
    if minTurn is not None and need > 0:
        endTurns, turnLook = turnCandidates(
            (record for record in candidates if record not in reap),
            now,
            minTurn,
            minTurnRequests,
            pollInterval,
        )
    return RoomPlan(reap, endTurns, need, min(looks) if looks else None, turnLook)
