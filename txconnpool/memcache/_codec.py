"""
What L{MemCachePool<txconnpool.memcache.MemCachePool>} does to values around a request when
it has a serializer other than the default: values to bytes and flags before, and back
after.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Generic

from typing_extensions import TypeVar

from txconnpool.memcache import _validate as _v
from txconnpool.memcache.serializers import Serializer

_V = TypeVar("_V", default=bytes)


class Codec(Generic[_V]):
    """
    Applies a L{Serializer} to the values of requests and replies.
    """

    __slots__ = ("serializer",)

    def __init__(self, serializer: Serializer[_V]) -> None:
        self.serializer = serializer

    def encode(self, key: object, value: _V, flags: object) -> tuple[bytes, int]:
        """
        @return: The bytes to store for C{value} and their flags: the serializer's, with
            the bits of C{flags} added.
        @raise InvalidRequestError: C{key} or C{flags} is unusable, or the serializer
            refused C{value}.
        """
        extra = _v.checkInt("flags", flags, _v.MAX_FLAGS)
        wireKey = _v.checkKeyType(key)
        data, serialized = self.serializer.dumps(wireKey, value)
        return data, serialized | extra

    def encodeMultiple(
        self, values: Mapping[Any, _V], flags: object
    ) -> dict[Any, tuple[int, bytes]]:
        """
        @return: Each key's C{(flags, bytes)}, as the protocol's C{setMultiple} takes them.
        """
        encoded = {}
        for key, value in values.items():
            data, itemFlags = self.encode(key, value, flags)
            encoded[key] = (itemFlags, data)
        return encoded

    def decode(self, result: tuple[Any, ...], key: bytes | str) -> tuple[Any, ...]:
        """
        Turn the value of a C{get}-style result into the serializer's.
        """
        data = result[-1]
        if data is None:
            return result
        return (*result[:-1], self.serializer.loads(key, data, result[0]))

    def decodeMultiple(self, results: dict[Any, tuple[Any, ...]]) -> dict[Any, tuple[Any, ...]]:
        """
        Turn the values of a C{getMultiple} result into the serializer's.
        """
        return {key: self.decode(result, key) for key, result in results.items()}
