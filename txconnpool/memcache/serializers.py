"""
Serializers: how L{MemCachePool<txconnpool.memcache.MemCachePool>} turns values into the
bytes and flags memcached stores, and back.

A serializer is any object with the two methods of L{Serializer}. Two come with txconnpool:

  - L{BytesSerializer}, the default: values are C{bytes}, stored as they are with flags 0.
  - L{PythonMemcacheSerializer}: the convention of python-memcached, which pymemcache's
    C{python_memcache} serializer (and its C{pickle_serde} and C{compressed_serde}) and
    pylibmc follow, so that a Twisted application shares cached values with the
    applications beside it that use those clients. Flags 0 is C{bytes}, 1 a pickle, 2 and
    4 an C{int} in decimal, 16 C{str} in UTF-8, and 8 marks a value compressed with zlib.

L{Serializer} is a C{typing.Protocol} rather than a zope interface because it is generic in
the type of its values: that type is what a pool's C{get} fires with.
"""

from __future__ import annotations

import pickle
import zlib
from typing import Protocol, cast, runtime_checkable

from typing_extensions import TypeVar

from txconnpool.memcache.errors import (
    InvalidArgumentError,
    InvalidTypeError,
    InvalidValueError,
    SerializationError,
)

__all__ = [
    "FLAG_BYTES",
    "FLAG_INTEGER",
    "FLAG_LONG",
    "FLAG_PICKLE",
    "FLAG_TEXT",
    "FLAG_ZLIB",
    "BytesSerializer",
    "PythonMemcacheSerializer",
    "Serializer",
]

FLAG_BYTES = 0
"""python-memcached's flags for C{bytes}, stored as they are."""
FLAG_PICKLE = 1 << 0
"""python-memcached's flag for a pickled object."""
FLAG_INTEGER = 1 << 1
"""python-memcached's flag for an C{int} in decimal digits."""
FLAG_LONG = 1 << 2
"""The flag Python 2 used for a C{long} in decimal digits (pylibmc still writes it for C{int})."""
FLAG_ZLIB = 1 << 3
"""The flag of a value compressed with zlib, combined with the flag of its type."""
FLAG_TEXT = 1 << 4
"""The flag of a C{str} in UTF-8."""

_V = TypeVar("_V", default=bytes)


@runtime_checkable
class Serializer(Protocol[_V]):
    """
    Turns values into stored bytes and flags, and back.
    """

    def dumps(self, key: bytes | str, value: _V) -> tuple[bytes, int]:
        """
        @param key: The key the value is stored under, as the caller gave it.
        @param value: The value to store.
        @return: The bytes to store and their flags (0 to 2**32-1).
        @raise InvalidRequestError: C{value} cannot be stored (an L{InvalidTypeError} or
            L{InvalidValueError}); nothing is sent.
        """

    def loads(self, key: bytes | str, data: bytes, flags: int) -> _V:
        """
        @param key: The key the value was stored under, as the caller gave it.
        @param data: The bytes stored.
        @param flags: Their flags.
        @return: The value.
        @raise SerializationError: C{data} and C{flags} do not make a value.
        """


class BytesSerializer:
    """
    Values are C{bytes}, stored as they are, with flags 0; every stored value reads back as
    its C{bytes}, whatever its flags.
    """

    def dumps(self, key: bytes | str, value: bytes) -> tuple[bytes, int]:
        """
        @return: C{(value, 0)}.
        @raise InvalidTypeError: C{value} is not C{bytes}.
        """
        if not isinstance(value, bytes):
            raise InvalidTypeError(f"memcached value must be bytes, not {type(value).__name__}")
        return value, 0

    def loads(self, key: bytes | str, data: bytes, flags: int) -> bytes:
        """
        @return: C{data}.
        """
        return data


class PythonMemcacheSerializer:
    """
    The python-memcached convention, as pymemcache and pylibmc use it.

    Storing: C{bytes} as they are (flags 0), C{str} as UTF-8 (16), C{int} as decimal digits
    (2), and anything else, C{bool} included, pickled (1). With C{minCompressLength}, data
    longer than that is compressed with zlib (flag 8 added) when that makes it smaller.

    Reading: flag 8 decompresses first (to at most C{maxDecompressedSize} bytes); then 0 is
    C{bytes}, 16 C{str}, 2 or 4 (pylibmc's flag for C{int}) an C{int}, 1 a pickle. pylibmc
    stores a C{bool} with flag 2, which therefore reads back as C{0} or C{1}.

    Unpickling runs code named by the data: only use this serializer with a memcached that
    only trusted clients can write to.
    """

    def __init__(
        self,
        *,
        pickleProtocol: int = pickle.HIGHEST_PROTOCOL,
        minCompressLength: int | None = None,
        compressLevel: int = -1,
        maxDecompressedSize: int = 64 * 1024 * 1024,
    ) -> None:
        """
        @param pickleProtocol: The pickle protocol of pickled values; the highest by
            default, as pymemcache and pylibmc use.
        @param minCompressLength: Compress data longer than this many bytes (pymemcache's
            C{min_compress_len}, pylibmc's C{min_compress_len}); L{None} never compresses.
        @param compressLevel: zlib's compression level, 0 to 9, or -1 for its default.
        @param maxDecompressedSize: The most bytes a compressed value may decompress to;
            more fails the read with L{SerializationError}.
        @raise TypeError: An argument is not an C{int}.
        @raise ValueError: An argument is out of range.
        """
        for name, number in (
            ("pickleProtocol", pickleProtocol),
            ("compressLevel", compressLevel),
            ("maxDecompressedSize", maxDecompressedSize),
            ("minCompressLength", 0 if minCompressLength is None else minCompressLength),
        ):
            if not isinstance(number, int) or isinstance(number, bool):
                raise InvalidTypeError(f"{name} must be an int, not {type(number).__name__}")
        if not 0 <= pickleProtocol <= pickle.HIGHEST_PROTOCOL:
            raise InvalidArgumentError(
                f"pickleProtocol must be from 0 to {pickle.HIGHEST_PROTOCOL}, "
                f"got {pickleProtocol}"
            )
        if not -1 <= compressLevel <= 9:
            raise InvalidArgumentError(f"compressLevel must be from -1 to 9, got {compressLevel}")
        if minCompressLength is not None and minCompressLength < 0:
            raise InvalidArgumentError(
                f"minCompressLength must be 0 or more, or None, got {minCompressLength}"
            )
        if maxDecompressedSize < 1:
            raise InvalidArgumentError(
                f"maxDecompressedSize must be at least 1, got {maxDecompressedSize}"
            )
        self.pickleProtocol = pickleProtocol
        self.minCompressLength = minCompressLength
        self.compressLevel = compressLevel
        self.maxDecompressedSize = maxDecompressedSize

    def __repr__(self) -> str:
        return (
            f"PythonMemcacheSerializer(pickleProtocol={self.pickleProtocol}, "
            f"minCompressLength={self.minCompressLength}, compressLevel={self.compressLevel})"
        )

    def dumps(self, key: bytes | str, value: object) -> tuple[bytes, int]:
        """
        @return: The bytes and flags of C{value}, compressed if long enough.
        @raise InvalidValueError: C{value} cannot be pickled.
        """
        kind = type(value)
        data: bytes
        # Exact types, as pymemcache checks them: a subclass (a bool, an IntEnum) is pickled.
        if kind is bytes:
            data, flags = cast(bytes, value), FLAG_BYTES
        elif kind is str:
            data, flags = cast(str, value).encode("utf-8"), FLAG_TEXT
        elif kind is int:
            data, flags = b"%d" % (cast(int, value),), FLAG_INTEGER
        else:
            try:
                data = pickle.dumps(value, self.pickleProtocol)
            except Exception as e:
                raise InvalidValueError(
                    f"memcached value of type {kind.__name__} cannot be pickled: {e}"
                ) from e
            flags = FLAG_PICKLE
        threshold = self.minCompressLength
        if threshold is not None and len(data) > threshold:
            compressed = zlib.compress(data, self.compressLevel)
            if len(compressed) < len(data):
                data, flags = compressed, flags | FLAG_ZLIB
        return data, flags

    def loads(self, key: bytes | str, data: bytes, flags: int) -> object:
        """
        @return: The value C{data} and C{flags} stand for.
        @raise SerializationError: The flags name no format of the convention, or the data
            does not decode in its format.
        """
        if flags & FLAG_ZLIB:
            data = self._decompress(key, data)
        kind = flags & ~FLAG_ZLIB
        try:
            if kind == FLAG_BYTES:
                return data
            if kind == FLAG_TEXT:
                return data.decode("utf-8")
            if kind == FLAG_INTEGER or kind == FLAG_LONG:
                return int(data)
            if kind == FLAG_PICKLE:
                return pickle.loads(data)
        except Exception as e:
            raise SerializationError(
                f"the value of {key!r} (flags {flags}) does not decode: {e}"
            ) from e
        raise SerializationError(
            f"the value of {key!r} has flags {flags}, which name no format of the "
            "python-memcached convention"
        )

    def _decompress(self, key: bytes | str, data: bytes) -> bytes:
        decompressor = zlib.decompressobj()
        try:
            result = decompressor.decompress(data, self.maxDecompressedSize)
        except zlib.error as e:
            raise SerializationError(
                f"the value of {key!r} is marked compressed but does not decompress: {e}"
            ) from e
        if decompressor.unconsumed_tail:
            raise SerializationError(
                f"the value of {key!r} decompresses to more than maxDecompressedSize "
                f"({self.maxDecompressedSize} bytes)"
            )
        if not decompressor.eof:
            raise SerializationError(
                f"the value of {key!r} is marked compressed but its zlib stream is truncated"
            )
        return result
