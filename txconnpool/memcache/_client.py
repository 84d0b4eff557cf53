"""
What L{MemCachePool<txconnpool.memcache.MemCachePool>} and
L{MetaMemCachePool<txconnpool.memcache.meta.MetaMemCachePool>} share on top of their
connections: the commands, typed by the serializer's values, and the options that act around
each request (the serializer, the default of C{noreply}, C{ignoreErrors}).
"""

from __future__ import annotations

from typing import Any, cast

from typing_extensions import TypeVar

from ._codec import Codec
from ._lenient import ErrorsAsMisses
from ._reads import ReadCommands
from ._writes import WriteCommands
from .protocol import DEFAULT_MAX_STATS_SIZE, DEFAULT_MAX_VALUE_SIZE
from .serializers import BytesSerializer, Serializer

_V = TypeVar("_V", default=bytes)

DEFAULT_REQUEST_TIMEOUT = 5.0
"""
The C{requestTimeout} of a L{MemCachePool<txconnpool.memcache.MemCachePool>} or
L{MetaMemCachePool<txconnpool.memcache.meta.MetaMemCachePool>} not given one: 5 seconds,
the poll timeout of libmemcached (and so of pylibmc).
"""


_CONNECTION_DEFAULTS: dict[str, object] = {
    "timeOut": 60,
    "maxValueSize": DEFAULT_MAX_VALUE_SIZE,
    "maxReplySize": None,
    "maxStatsSize": DEFAULT_MAX_STATS_SIZE,
    "keyPrefix": b"",
    "requestTimeout": None,
}


def changedOptions(options: dict[str, Any]) -> dict[str, Any]:
    """
    The options of a pool's connections that differ from the defaults of both protocols
    (C{timeOut}, C{maxValueSize}, C{maxReplySize}, C{maxStatsSize}, C{keyPrefix},
    C{requestTimeout}): the ones the pool's factory gives each protocol, so that a protocol
    subclass taking fewer arguments keeps working with the defaults.
    """
    return {name: value for name, value in options.items() if value != _CONNECTION_DEFAULTS[name]}


class MemCacheClient(ReadCommands[_V], WriteCommands[_V]):
    """
    The commands of a memcached pool, and what its options do around them.

    @ivar serializer: What turns values into bytes and flags and back.
    """

    serializer: Serializer[_V]

    def _setUpValues(
        self, serializer: Serializer[_V] | None, noreply: bool, ignoreErrors: bool
    ) -> None:
        """
        Take the options of the pool's constructor that act around each request.

        @raise TypeError: C{serializer} is not a L{Serializer}.
        """
        if serializer is not None and not isinstance(serializer, Serializer):
            raise TypeError(
                f"serializer must have dumps(key, value) and loads(key, data, flags) methods, "
                f"not {serializer!r}"
            )
        if serializer is None or isinstance(serializer, BytesSerializer):
            self._codec: Codec[_V] | None = None
        else:
            self._codec = Codec(serializer)
        self.serializer = serializer or cast(Serializer[_V], BytesSerializer())
        self._noreply = bool(noreply)
        self._lenient = ErrorsAsMisses() if ignoreErrors else None
        # Nothing to do around a request: the default.
        self._plain = self._codec is None and self._lenient is None

    @property
    def ignoredErrors(self) -> int:
        """
        How many failed requests C{ignoreErrors} turned into misses or failed writes.
        """
        return 0 if self._lenient is None else self._lenient.count
