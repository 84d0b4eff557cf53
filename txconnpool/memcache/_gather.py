"""
Gathering a request sent in parts (one multi-get per server, one C{stats} per server, or one
get per key) into one L{Deferred}, so that a failed part fails only its own keys.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any, TypeVar

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from ._clustererrors import PartialResultError

__all__ = ["gather"]

_K = TypeVar("_K", bound=Hashable)

def gather(
    what: str,
    parts: Sequence[tuple[Deferred[Mapping[_K, Any]], Sequence[_K]]],
    errors: Mapping[_K, BaseException] | None = None,
) -> Deferred[dict[_K, Any]]:
    """
    Merge the results of C{parts}.

    @param what: What the request was, for the message of a L{PartialResultError}.
    @param parts: Each part's L{Deferred}, firing with a C{dict} of results, and the keys that
        fail when it fails.
    @param errors: Keys that already failed, with their exceptions.
    @return: A L{Deferred} firing once every part has, with the merged C{dict} when none
        failed; else failing with L{PartialResultError}, whose C{results} are those of the
        parts that succeeded and whose C{errors} give each key of the failed parts (and of
        C{errors}) its part's exception. Cancelling it cancels every part still pending and
        fails it with L{CancelledError<twisted.internet.defer.CancelledError>}.
    """
    return _Gathering(what, parts, errors or {}).result


class _Gathering:
    """
    The state of one L{gather}: it fires C{result} once, when the last part is in.
    """

    def __init__(
        self,
        what: str,
        parts: Sequence[tuple[Deferred[Mapping[Any, Any]], Sequence[Any]]],
        errors: Mapping[Any, BaseException],
    ) -> None:
        self.what = what
        self.results: dict[Any, Any] = {}
        self.errors: dict[Any, BaseException] = dict(errors)
        self.pending = [d for d, _ in parts]
        self.remaining = len(parts)
        self.cancelled = False
        self.result: Deferred[dict[Any, Any]] = Deferred(self._cancel)
        for d, keys in parts:
            d.addCallbacks(self._partDone, self._partFailed, errbackArgs=(keys,))
        if not parts:
            self._finish()

    def _partDone(self, results: Mapping[Any, Any]) -> None:
        self.results.update(results)
        self._one()

    def _partFailed(self, failure: Failure, keys: Sequence[Any]) -> None:
        error = failure.value
        assert error is not None
        for key in keys:
            self.errors[key] = error
        self._one()

    def _one(self) -> None:
        self.remaining -= 1
        if not self.remaining:
            self._finish()

    def _finish(self) -> None:
        self.pending = []
        if self.cancelled:
            return
        if self.errors:
            self.result.errback(PartialResultError(self.what, self.results, self.errors))
        else:
            self.result.callback(self.results)

    def _cancel(self, result: Deferred[dict[Any, Any]]) -> None:
        self.cancelled = True
        for d in self.pending:
            d.cancel()
