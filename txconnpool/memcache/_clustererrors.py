"""
The errors of requests that span several memcached servers (L{MemCacheCluster}) or go through
a proxy (L{MemCachePool} with C{proxy}).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Generic, TypeVar

from .errors import InvalidRequestError, MemCacheError

_K = TypeVar("_K")


class PartialResultError(MemCacheError, Generic[_K]):
    """
    A request made of several parts (the keys of a C{getMultiple}, or one request per server
    for C{stats}, C{version} and C{flushAll}) where some parts failed and the others succeeded.

    Catch it to use what did arrive::

        try:
            values = await cluster.getMultiple(keys)
        except PartialResultError as e:
            values = e.results          # the keys whose server answered
            for key, error in e.errors.items():
                ...                     # the others, with the reason each failed

    @ivar results: What the request fires with when every part succeeds, restricted to the
        parts that did: for C{getMultiple}, a C{dict} from each key whose server answered to
        its C{get}-style tuple (misses included); for the per-server requests, a C{dict} from
        server name to that server's answer.
    @ivar errors: A C{dict} from each failed key (or server name) to its exception.
    """

    def __init__(self, what: str, results: Mapping[_K, Any], errors: Mapping[_K, BaseException]):
        self.results: dict[_K, Any] = dict(results)
        self.errors: dict[_K, BaseException] = dict(errors)
        kinds = sorted({type(e).__name__ for e in self.errors.values()})
        first = next(iter(self.errors.values()), None)
        super().__init__(
            f"{what}: {len(self.errors)} of {len(self.errors) + len(self.results)} failed "
            f"({', '.join(kinds)}; first: {first})"
        )


class UnsupportedCommandError(InvalidRequestError, ValueError):
    """
    The command cannot go through the proxy the pool talks to (L{MemCachePool}'s C{proxy}):
    the proxy would close the connection, with every request in flight on it, instead of
    answering. Nothing was sent.
    """
