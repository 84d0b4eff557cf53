"""
C{ignoreErrors}: failed reads become misses and failed writes C{False}, logged and counted.
"""

from __future__ import annotations

from twisted.internet.defer import CancelledError
from twisted.logger import Logger
from twisted.python.failure import Failure

from txconnpool.memcache.errors import InvalidRequestError

_log = Logger()


class ErrorsAsMisses:
    """
    Turns the failure of a request into the result of a miss or a failed write.

    A request refused before anything was sent (L{InvalidRequestError}: a bug in the
    caller) and a cancelled one still fail.

    @ivar count: How many failures were turned into results so far.
    """

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0

    def __call__(
        self, reason: Failure, command: str, result: object, read: bool | None = None
    ) -> object:
        """
        An errback: return C{result} instead of C{reason}, unless C{reason} must stay.

        @param read: Whether C{command} reads (its failure counts as a miss) or writes; by
            default, whether its name starts with C{"get"}.
        """
        if reason.check(InvalidRequestError, CancelledError):
            return reason
        self.count += 1
        if read is None:
            read = command.startswith("get")
        _log.warn(
            "memcached {command} failed and counts as a {outcome}: {error}",
            command=command,
            outcome="miss" if read else "failed write",
            error=reason.getErrorMessage(),
            txconnpoolEvent="errorIgnored",
        )
        return result
