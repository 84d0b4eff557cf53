"""
Checks of memcached keys, arguments and replies, as pure functions.

Each C{check*} function returns the value in its wire form (C{bytes} or C{int}) or raises an
L{InvalidRequestError} whose message names the argument and the problem. The protocol runs
them before writing anything, so a rejected request writes zero bytes. L{parseValueHeader}
and L{errorForReply} interpret reply lines.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from txconnpool.memcache.errors import (
    ClientError,
    InvalidArgumentError,
    InvalidKeyError,
    InvalidTypeError,
    InvalidValueError,
    MemCacheError,
    ServerError,
    UnknownCommandError,
)

MAX_KEY_LENGTH = 250
"""Longest key memcached accepts, in bytes."""

MAX_FLAGS = 2**32 - 1
"""Flags are an unsigned 32-bit number."""

MAX_EXPIRE_TIME = 2**31 - 1
"""memcached reads the expiry time as a signed 32-bit number; larger values wrap around."""

MAX_UINT64 = 2**64 - 1
"""CAS tokens and increments are unsigned 64-bit numbers."""

MAX_STATS_ARG_LENGTH = 1024
"""Longest argument sent with C{stats}."""

_BAD_KEY_BYTE = re.compile(rb"[\x00-\x20\x7f]")
# Every character for which str.isspace() is true (U+0085, U+00A0, U+3000, ...) and every
# control character (Unicode category Cc: U+0000-U+001F, U+007F-U+009F).
_BAD_KEY_CHAR = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")
_BAD_ARG_BYTE = re.compile(rb"[\x00-\x1f\x7f]")


def show(obj: object, limit: int = 60) -> str:
    """
    Return C{repr(obj)}, cut to about C{limit} characters, for error messages.
    """
    text = repr(obj)
    if len(text) > limit:
        return text[:limit] + "..."
    return text


def checkKey(key: object) -> bytes:
    """
    Return C{key} as bytes (a C{str} is encoded as UTF-8), or raise.

    @raise InvalidTypeError: C{key} is neither C{bytes} nor C{str}.
    @raise InvalidKeyError: C{key} is empty, longer than 250 bytes, contains whitespace or
        control characters (in a C{str}, any Unicode whitespace or control character, such
        as U+0085, U+00A0 or U+3000), or cannot be encoded.
    """
    if type(key) is bytes or isinstance(key, bytes):
        encoded = key
    elif isinstance(key, str):
        if not key.isascii() and _BAD_KEY_CHAR.search(key) is not None:
            raise InvalidKeyError(
                f"memcached key must not contain whitespace or control characters, got {show(key)}"
            )
        try:
            encoded = key.encode("utf-8")
        except UnicodeEncodeError as e:
            raise InvalidKeyError(
                f"memcached key must be encodable as UTF-8, got {show(key)}"
            ) from e
    else:
        raise InvalidTypeError(f"memcached key must be bytes or str, not {type(key).__name__}")
    length = len(encoded)
    if length > MAX_KEY_LENGTH:
        raise InvalidKeyError(
            f"memcached key must be at most {MAX_KEY_LENGTH} bytes, got {length}"
        )
    if not length:
        raise InvalidKeyError("memcached key must not be empty")
    if _BAD_KEY_BYTE.search(encoded) is not None:
        raise InvalidKeyError(
            f"memcached key must not contain whitespace or control characters, got {show(key)}"
        )
    return encoded


def checkKeyType(key: object) -> bytes | str:
    """
    Return C{key} if it is C{bytes} or C{str}, or raise L{InvalidTypeError}.
    """
    if not isinstance(key, (bytes, str)):
        raise InvalidTypeError(f"memcached key must be bytes or str, not {type(key).__name__}")
    return key


class PrefixedKeys:
    """
    A key checker that puts C{prefix} in front of every key, and checks the whole.
    """

    __slots__ = ("prefix",)

    def __init__(self, prefix: bytes) -> None:
        self.prefix = prefix

    def __call__(self, key: object) -> bytes:
        """
        Return the prefix and C{key} as bytes, or raise as L{checkKey} does; the 250-byte
        limit applies to the whole.
        """
        if isinstance(key, str):
            key = checkKey(key)
        elif not isinstance(key, bytes):
            raise InvalidTypeError(
                f"memcached key must be bytes or str, not {type(key).__name__}"
            )
        elif not key:
            raise InvalidKeyError("memcached key must not be empty")
        return checkKey(self.prefix + key)


def checkKeyPrefix(prefix: object) -> bytes:
    """
    Return a key prefix as bytes (a C{str} is encoded as UTF-8), or raise.

    @raise InvalidTypeError: C{prefix} is neither C{bytes} nor C{str}.
    @raise InvalidKeyError: C{prefix} is longer than 249 bytes or contains whitespace or
        control characters.
    """
    if isinstance(prefix, (bytes, str)) and not prefix:
        return b""
    if not isinstance(prefix, (bytes, str)):
        raise InvalidTypeError(
            f"keyPrefix must be bytes or str, not {type(prefix).__name__}"
        )
    try:
        encoded = checkKey(prefix)
    except InvalidKeyError as e:
        raise InvalidKeyError(f"keyPrefix is not usable: {e}") from e
    if len(encoded) >= MAX_KEY_LENGTH:
        raise InvalidKeyError(
            f"keyPrefix must be at most {MAX_KEY_LENGTH - 1} bytes, got {len(encoded)}"
        )
    return encoded


def checkValue(value: object, maxValueSize: int) -> bytes:
    """
    Return C{value} if it is C{bytes} no longer than C{maxValueSize}, or raise.

    @raise InvalidTypeError: C{value} is not C{bytes}.
    @raise InvalidValueError: C{value} is too large.
    """
    if not isinstance(value, bytes):
        raise InvalidTypeError(f"memcached value must be bytes, not {type(value).__name__}")
    if len(value) > maxValueSize:
        raise InvalidValueError(
            f"memcached value must be at most {maxValueSize} bytes (maxValueSize), "
            f"got {len(value)}"
        )
    return value


def itemsToStore(values: object, flags: object) -> list[tuple[Any, object, object]]:
    """
    Split the argument of C{setMultiple} into C{(key, flags, value)} triples: a value is
    stored with C{flags}, or is a C{(flags, value)} tuple as C{get} returns it. The keys,
    flags and values themselves are left for the caller to check.

    @raise InvalidTypeError: C{values} is not a mapping, or one of its tuples is not a pair.
    """
    if not isinstance(values, Mapping):
        raise InvalidTypeError(
            f"values must be a mapping of keys to values, not {type(values).__name__}"
        )
    items = []
    for key, item in values.items():
        if isinstance(item, tuple):
            if len(item) != 2:
                raise InvalidTypeError(
                    f"a value must be bytes or a (flags, bytes) tuple, not {show(item)}"
                )
            items.append((key, item[0], item[1]))
        else:
            items.append((key, flags, item))
    return items


def checkInt(name: str, value: object, maximum: int) -> int:
    """
    Return C{value} if it is an C{int} (not a C{bool}) from 0 to C{maximum}, or raise.

    @param name: the argument's name, for the message.
    @raise InvalidTypeError: C{value} is not an C{int}, or is a C{bool}.
    @raise InvalidArgumentError: C{value} is out of range.
    """
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidTypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < 0 or value > maximum:
        raise InvalidArgumentError(f"{name} must be from 0 to {maximum}, got {value}")
    return value


def checkTimeout(name: str, seconds: object) -> float | None:
    """
    Return a timeout of a connection: a positive number of seconds, or C{None} for none.

    @raise InvalidArgumentError: C{seconds} is something else.
    """
    if seconds is None:
        return None
    if isinstance(seconds, (int, float)) and not isinstance(seconds, bool) and seconds > 0:
        return seconds
    raise InvalidArgumentError(f"{name} must be a positive number or None, not {seconds!r}")


def checkReplyLimits(
    maxValueSize: object, maxReplySize: object, maxStatsSize: object, defaultReplySize: int
) -> tuple[int, int, int]:
    """
    Return the size limits of a connection's replies, C{(maxValueSize, maxReplySize,
    maxStatsSize)}, or raise.

    @param maxReplySize: L{None} for C{defaultReplySize}, or C{maxValueSize} if that is
        larger; it may not be less than C{maxValueSize}.
    @raise InvalidTypeError: A limit is not an C{int}.
    @raise InvalidArgumentError: A limit is out of range.
    """
    valueSize = checkInt("maxValueSize", maxValueSize, 2**62)
    if maxReplySize is None:
        maxReplySize = max(defaultReplySize, valueSize)
    replySize = checkInt("maxReplySize", maxReplySize, 2**62)
    if replySize < valueSize:
        raise InvalidArgumentError(
            f"maxReplySize ({maxReplySize}) must not be less than maxValueSize "
            f"({maxValueSize})"
        )
    return valueSize, replySize, checkInt("maxStatsSize", maxStatsSize, 2**62)


def checkCas(cas: object) -> bytes:
    """
    Return a CAS token in its wire form (decimal digits), or raise.

    @param cas: an C{int} from 0 to 2**64-1, or those decimal digits as C{bytes} (what
        C{get(key, withIdentifier=True)} returns).
    @raise InvalidTypeError: C{cas} is neither C{int} nor C{bytes}.
    @raise InvalidArgumentError: C{cas} is out of range or not decimal digits.
    """
    if isinstance(cas, bytes):
        if not cas.isdigit() or len(cas) > 20 or int(cas) > MAX_UINT64:
            raise InvalidArgumentError(
                f"cas must be the decimal digits of a number from 0 to {MAX_UINT64}, "
                f"got {show(cas)}"
            )
        return cas
    if isinstance(cas, int) and not isinstance(cas, bool):
        return b"%d" % (checkInt("cas", cas, MAX_UINT64),)
    raise InvalidTypeError(f"cas must be an int or bytes, not {type(cas).__name__}")


def checkStatsArg(arg: object) -> bytes | None:
    """
    Return the argument of C{stats} as bytes, or C{None} when there is none, or raise.

    Spaces are allowed (C{b"detail on"}); control characters are not.

    @raise InvalidTypeError: C{arg} is not C{None}, C{bytes} or C{str}.
    @raise InvalidArgumentError: C{arg} contains control characters or is too long.
    """
    if arg is None:
        return None
    if isinstance(arg, str):
        try:
            arg = arg.encode("utf-8")
        except UnicodeEncodeError as e:
            raise InvalidArgumentError(
                f"stats argument must be encodable as UTF-8, got {show(arg)}"
            ) from e
    if not isinstance(arg, bytes):
        raise InvalidTypeError(f"stats argument must be bytes or str, not {type(arg).__name__}")
    if not arg:
        return None
    if len(arg) > MAX_STATS_ARG_LENGTH:
        raise InvalidArgumentError(
            f"stats argument must be at most {MAX_STATS_ARG_LENGTH} bytes, got {len(arg)}"
        )
    if _BAD_ARG_BYTE.search(arg) is not None:
        raise InvalidArgumentError(
            f"stats argument must not contain control characters, got {show(arg)}"
        )
    return arg


def parseValueHeader(line: bytes, withCas: bool) -> tuple[bytes, int, int, bytes] | None:
    """
    Split a C{VALUE <key> <flags> <bytes>[ <cas>]} reply line (the CAS token only when
    C{withCas}) into C{(key, flags, length, cas)}; C{cas} is C{b""} without C{withCas}.

    @return: the fields, or C{None} if the line is malformed: wrong field count, or
        flags, length or CAS token not decimal numbers in range.
    """
    parts = line.split(b" ")
    if len(parts) != (5 if withCas else 4):
        return None
    flags = parts[2]
    length = parts[3]
    if not (flags.isdigit() and length.isdigit()) or int(flags) > MAX_FLAGS:
        return None
    if withCas:
        cas = parts[4]
        if not cas.isdigit() or len(cas) > 20 or int(cas) > MAX_UINT64:
            return None
    else:
        cas = b""
    return parts[1], int(flags), int(length), cas


def errorForReply(command: str, line: bytes) -> MemCacheError | None:
    """
    Return the exception for an C{ERROR}, C{CLIENT_ERROR} or C{SERVER_ERROR} reply line to
    C{command}, or C{None} if C{line} is none of them.
    """
    if line == b"ERROR":
        return UnknownCommandError(command)
    keyword = line[:12]
    if line[12:13] in (b"", b" "):
        if keyword == b"CLIENT_ERROR":
            return ClientError(command, line[13:].decode("utf-8", "replace"))
        if keyword == b"SERVER_ERROR":
            return ServerError(command, line[13:].decode("utf-8", "replace"))
    return None
