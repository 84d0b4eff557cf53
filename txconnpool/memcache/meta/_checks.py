"""
Checks of the arguments that only the meta protocol has, as pure functions: keys as they are
written on a meta command line (as they are, after the text protocol's checks, or
base64-encoded behind the C{b} flag), TTLs in seconds from now, and durations.
"""

from __future__ import annotations

from base64 import b64encode
from collections.abc import Callable
from functools import partial

from txconnpool.memcache import _validate as _v
from txconnpool.memcache.errors import (
    InvalidArgumentError,
    InvalidKeyError,
    InvalidTypeError,
)

MAX_BINARY_KEY_LENGTH = 186
"""
Longest key sent base64-encoded, in bytes: memcached limits the key as written on the command
line to 250 bytes, and 186 bytes take 248 in base64 (187 would take 252).
"""


def checkKey(key: object, base64Keys: bool) -> bytes:
    """
    Return the key as it is written on a meta command line, or raise.

    Without C{base64Keys}, the key is checked as the text protocol checks it (see
    L{txconnpool.memcache._validate.checkKey}). With it, any byte may appear in the key, which
    is sent base64-encoded (the caller adds the C{b} flag).

    @param key: C{bytes}, or C{str} encoded as UTF-8.
    @raise InvalidTypeError: C{key} is neither C{bytes} nor C{str}.
    @raise InvalidKeyError: C{key} is empty, too long, or (without C{base64Keys}) contains
        whitespace or control characters.
    """
    if not base64Keys:
        return _v.checkKey(key)
    return checkBinaryKey(key)


def keyChecker(prefix: bytes, base64Keys: bool) -> Callable[[object], bytes]:
    """
    The function that turns a key into its form on a meta command line, with C{prefix} in
    front of it, as L{checkKey} does; the length limit applies to the prefixed key.

    @param prefix: A key prefix checked by L{txconnpool.memcache._validate.checkKeyPrefix}.
    @raise InvalidKeyError: With C{base64Keys}, C{prefix} leaves no room for a key.
    """
    if not base64Keys:
        return _v.PrefixedKeys(prefix) if prefix else _v.checkKey
    if not prefix:
        return checkBinaryKey
    if len(prefix) >= MAX_BINARY_KEY_LENGTH:
        raise InvalidKeyError(
            f"keyPrefix must be at most {MAX_BINARY_KEY_LENGTH - 1} bytes with base64Keys, "
            f"got {len(prefix)}"
        )
    return partial(_prefixedBinaryKey, prefix)


def checkBinaryKey(key: object) -> bytes:
    """
    Return the key base64-encoded, as C{checkKey(key, base64Keys=True)} does, or raise.
    """
    return _encoded(_rawKey(key), "")


def _prefixedBinaryKey(prefix: bytes, key: object) -> bytes:
    return _encoded(prefix + _rawKey(key), " (keyPrefix included)")


def _rawKey(key: object) -> bytes:
    """
    Return a key as bytes, a C{str} encoded as UTF-8; refuse what is no key or is empty.
    """
    if isinstance(key, bytes):
        raw = key
    elif isinstance(key, str):
        try:
            raw = key.encode("utf-8")
        except UnicodeEncodeError as e:
            raise InvalidKeyError(
                f"memcached key must be encodable as UTF-8, got {_v.show(key)}"
            ) from e
    else:
        raise InvalidTypeError(f"memcached key must be bytes or str, not {type(key).__name__}")
    if not raw:
        raise InvalidKeyError("memcached key must not be empty")
    return raw


def _encoded(raw: bytes, what: str) -> bytes:
    if len(raw) > MAX_BINARY_KEY_LENGTH:
        raise InvalidKeyError(
            f"memcached key must be at most {MAX_BINARY_KEY_LENGTH} bytes with base64Keys "
            f"(250 once encoded){what}, got {len(raw)}"
        )
    return b64encode(raw)


MAX_RELATIVE_TTL = 60 * 60 * 24 * 30
"""Longest TTL memcached reads as seconds from now (30 days); longer ones are Unix times."""


def checkTtl(name: str, value: object, minimum: int) -> int:
    """
    Return a TTL in seconds from now, from C{minimum} to 30 days, or raise. Longer TTLs are
    refused because memcached would read them as Unix times, which the sum of two TTLs must
    not turn into.

    @param name: the argument's name, for the message.
    @raise InvalidTypeError: C{value} is not an C{int}, or is a C{bool}.
    @raise InvalidArgumentError: C{value} is out of range.
    """
    ttl = _v.checkInt(name, value, MAX_RELATIVE_TTL)
    if ttl < minimum:
        raise InvalidArgumentError(
            f"{name} must be from {minimum} to {MAX_RELATIVE_TTL}, got {ttl}"
        )
    return ttl


def checkSeconds(name: str, value: object) -> float:
    """
    Return a positive duration in seconds, or raise.

    @raise InvalidTypeError: C{value} is not a number, or is a C{bool}.
    @raise InvalidArgumentError: C{value} is not more than 0.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidTypeError(
            f"{name} must be a number of seconds, not {type(value).__name__}"
        )
    if not value > 0:
        raise InvalidArgumentError(f"{name} must be more than 0, got {value!r}")
    return float(value)
