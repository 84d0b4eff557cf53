"""
The timed care of a pool's connections, as pure decisions: when an idle connection is due to
be closed or pinged, when a connection must be validated before use, when a connection's
lifetime ends, and when the next of these comes. L{LeakWatch} and L{ReadyWaiters} hold the two
small pieces of state that go with them. The pool's core carries the decisions out.
"""

from __future__ import annotations

from collections.abc import Iterable

from ._options import PoolOptions
from ._records import Connection

LIFETIME_VARIATION = 0.05
"""
Each connection's lifetime is C{maxLifetime} less a random part of up to this fraction of
it, so that connections made together are not all retired together.
"""


def expiry(now: float, maxLifetime: float | None, draw: float) -> float | None:
    """
    @param now: When the connection became ready.
    @param maxLifetime: The pool's C{maxLifetime}.
    @param draw: A random number in [0, 1).
    @return: When a connection made at C{now} reaches its lifetime, or L{None} for never.
    """
    if maxLifetime is None:
        return None
    return now + maxLifetime * (1 - LIFETIME_VARIATION * draw)


def expired(connection: Connection, now: float) -> bool:
    """
    @return: Whether C{connection} has reached its lifetime at C{now}.
    """
    expiresAt = connection.expiresAt
    return expiresAt is not None and now >= expiresAt


def idleVerdict(
    connection: Connection, now: float, options: PoolOptions, mayShrink: bool
) -> str | None:
    """
    Decide what to do with an idle connection at C{now}.

    @param mayShrink: Whether the pool has more connections than C{minClients}.
    @return: C{"lifetime"} or C{"idle"} to close it for that reason, C{"keepalive"} to ping
        it, or L{None} to leave it.
    """
    if expired(connection, now):
        return "lifetime"
    if (
        mayShrink
        and options.idleTimeout is not None
        and now - connection.lastUsed >= options.idleTimeout
    ):
        return "idle"
    if (
        options.keepaliveInterval is not None
        and now - connection.lastActive >= options.keepaliveInterval
    ):
        return "keepalive"
    return None


def nextIdleDeadline(connection: Connection, now: float, options: PoolOptions) -> float | None:
    """
    @return: The earliest moment after C{now} at which L{idleVerdict} may change its mind
        about the idle C{connection}, or L{None}. A deadline already past is one the pool
        chose to let pass (an idle connection kept for C{minClients}); the next look for
        another reason sees it again.
    """
    deadlines: list[float] = []
    if connection.expiresAt is not None:
        deadlines.append(connection.expiresAt)
    if options.idleTimeout is not None:
        deadlines.append(connection.lastUsed + options.idleTimeout)
    if options.keepaliveInterval is not None:
        deadlines.append(connection.lastActive + options.keepaliveInterval)
    future = [deadline for deadline in deadlines if deadline > now]
    return min(future) if future else None


def needsValidation(connection: Connection, now: float, validateAfterIdle: float | None) -> bool:
    """
    @return: Whether an idle connection about to be handed out must be pinged first.
    """
    if connection.validated or validateAfterIdle is None:
        return False
    return now - connection.lastActive > validateAfterIdle


def nearestDeadline(deadlines: Iterable[float | None]) -> float | None:
    """
    @return: The earliest of C{deadlines} that is not L{None}, or L{None}.
    """
    present = [deadline for deadline in deadlines if deadline is not None]
    return min(present) if present else None


class LeakWatch:
    """
    The checkouts watched by leak detection, each with the moment to warn about it.
    """

    def __init__(self) -> None:
        self._deadlines: dict[Connection, float] = {}

    def watch(self, connection: Connection, deadline: float) -> None:
        """
        Warn about C{connection} if it is still checked out at C{deadline}.
        """
        self._deadlines[connection] = deadline

    def unwatch(self, connection: Connection) -> None:
        """
        Stop watching C{connection}: it came back or went away.
        """
        self._deadlines.pop(connection, None)

    def due(self, now: float) -> list[Connection]:
        """
        @return: The connections whose deadline has come; they are no longer watched.
        """
        due = [c for c, deadline in self._deadlines.items() if now >= deadline]
        for connection in due:
            del self._deadlines[connection]
        return due

    def nextDeadline(self) -> float | None:
        """
        @return: The earliest deadline watched, or L{None}.
        """
        return min(self._deadlines.values(), default=None)
