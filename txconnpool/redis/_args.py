"""
Command arguments: their types, their encoding to bytes, and which commands need a
connection of their own.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from .errors import InvalidArgumentError, InvalidTypeError, UnsupportedCommandError

Key = bytes | str
"""
A key, channel or field name: C{bytes}, or C{str} sent encoded as UTF-8.
"""

Arg = bytes | str | int | float
"""
A command argument: C{bytes}, C{str} (sent as UTF-8), C{int} or C{float} (sent in decimal).
"""

BLOCKING = frozenset(
    {
        b"BLPOP", b"BRPOP", b"BRPOPLPUSH", b"BLMOVE", b"BLMPOP",
        b"BZPOPMIN", b"BZPOPMAX", b"BZMPOP", b"WAIT", b"WAITAOF",
    }
)
"""
Commands that can block their connection until the server has something to answer.
(C{XREAD} and C{XREADGROUP} block when given C{BLOCK}.)
"""

SUBSCRIBING = frozenset(
    {b"SUBSCRIBE", b"PSUBSCRIBE", b"SSUBSCRIBE", b"UNSUBSCRIBE", b"PUNSUBSCRIBE",
     b"SUNSUBSCRIBE"}
)

TRANSACTIONS = frozenset({b"MULTI", b"EXEC", b"DISCARD", b"WATCH", b"UNWATCH"})

RESETTING = frozenset(
    {b"AUTH", b"HELLO", b"RESET", b"QUIT", b"READONLY", b"READWRITE", b"ASKING"}
)
"""
Commands whose effect on the connection is not undone when a checked-out connection is
given back: the connection is closed instead.
"""

_CLIENT_STATE = frozenset(
    {b"SETNAME", b"SETINFO", b"TRACKING", b"CACHING", b"NO-EVICT", b"NO-TOUCH"}
)

UNSUPPORTED = frozenset({b"MONITOR", b"SYNC", b"PSYNC"})


def encodeArg(value: object) -> bytes:
    """
    Encode one argument of a command.

    @raise InvalidTypeError: C{value} is not C{bytes}, C{str}, C{int} or C{float} (a C{bool}
        is refused: Redis has no booleans).
    @raise InvalidArgumentError: C{value} is a NaN, or a C{str} that cannot be encoded.
    """
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        try:
            return value.encode("utf-8")
        except UnicodeEncodeError as e:
            raise InvalidArgumentError(f"cannot encode {value!r} as UTF-8: {e}") from None
    if isinstance(value, bool):
        raise InvalidTypeError(f"Redis has no booleans: send 1 or 0, not {value!r}")
    if isinstance(value, int):
        return b"%d" % (value,)
    if isinstance(value, float):
        if math.isnan(value):
            raise InvalidArgumentError("cannot send a NaN to Redis")
        return repr(value).encode("ascii")
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    raise InvalidTypeError(
        f"a Redis argument is bytes, str, int or float, not {type(value).__name__}: {value!r}"
    )


def encodeArgs(values: Iterable[object]) -> list[bytes]:
    """
    Encode several arguments with L{encodeArg}.
    """
    return [encodeArg(value) for value in values]


def commandName(command: object) -> bytes:
    """
    @return: The name of a command, upper-cased, for looking it up.
    @raise InvalidTypeError: It is not C{bytes} or C{str}.
    @raise InvalidArgumentError: It is empty.
    """
    if not isinstance(command, bytes | str):
        raise InvalidTypeError(f"a command name is bytes or str, not {command!r}")
    name = encodeArg(command).upper()
    if not name:
        raise InvalidArgumentError("a command name must not be empty")
    return name


def isExclusive(name: bytes, args: list[bytes]) -> bool:
    """
    Whether a command needs a connection of its own: it blocks, or changes the state of its
    connection for the commands after it.
    """
    if name in BLOCKING or name in SUBSCRIBING or name in TRANSACTIONS or name in RESETTING:
        return True
    if name == b"SELECT":
        return True
    if name in (b"XREAD", b"XREADGROUP"):
        return any(arg.upper() == b"BLOCK" for arg in args)
    if name == b"CLIENT":
        return bool(args) and args[0].upper() in _CLIENT_STATE
    return False


def isResetting(name: bytes, args: list[bytes]) -> bool:
    """
    Whether a command leaves its connection in a state that giving it back cannot undo.
    """
    if name in RESETTING or name in SUBSCRIBING:
        return True
    return name == b"CLIENT" and bool(args) and args[0].upper() in _CLIENT_STATE


def checkSupported(name: bytes, args: list[bytes]) -> None:
    """
    @raise UnsupportedCommandError: The command would make the server stop answering one
        reply per command.
    """
    if name in UNSUPPORTED:
        raise UnsupportedCommandError(
            f"{name.decode()} turns the connection into a stream this client does not read"
        )
    if name == b"CLIENT" and args and args[0].upper() == b"REPLY":
        raise UnsupportedCommandError("CLIENT REPLY would leave commands without replies")
    if name == b"HELLO" and args and args[0] != b"2":
        raise UnsupportedCommandError("this client speaks RESP2 only: HELLO 2, not HELLO 3")
