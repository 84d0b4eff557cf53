"""
The record of a command sent on a connection and waiting for its reply, and the kinds of
reply handling it asks for.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred

from ._replies import Reply

NORMAL, QUEUED, EXEC, DISCARD, SUBSCRIPTION = range(5)
"""
What a reply does: fire its command (L{NORMAL}); acknowledge a command queued in a
transaction (L{QUEUED}); run or discard the queued commands (L{EXEC}, L{DISCARD}); confirm
one channel or pattern of an (un)subscribe command (L{SUBSCRIPTION}).
"""


class Waiting:
    """
    A command sent, waiting for its reply.

    @ivar deferred: Fires with the command's converted reply.
    @ivar convert: Checks the reply and gives it its type.
    @ivar kind: One of L{NORMAL}, L{QUEUED}, L{EXEC}, L{DISCARD} and L{SUBSCRIPTION}.
    @ivar extra: For L{EXEC} and L{DISCARD}, the queued commands; for L{SUBSCRIPTION}, the
        confirmation awaited.
    @ivar blocking: Whether the command can block the connection.
    """

    __slots__ = ("blocking", "convert", "deferred", "extra", "kind")

    def __init__(
        self, deferred: Deferred[Any], convert: Callable[[Reply], Any], kind: int, extra: Any
    ) -> None:
        self.deferred = deferred
        self.convert = convert
        self.kind = kind
        self.extra = extra
        self.blocking = False
