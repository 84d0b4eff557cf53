"""
The exceptions specific to Redis.

Two families, both L{txconnpool.errors.PoolError}s under L{RedisError}:

  - L{InvalidRequestError} and its leaves: a command was refused before anything was
    written: an argument of the wrong type (L{InvalidTypeError}, also a C{TypeError}) or
    value (L{InvalidArgumentError}, also a C{ValueError}), a command that needs a connection
    of its own called on the pool (L{ExclusiveCommandError}), or one that this client cannot
    carry (L{UnsupportedCommandError}).
  - Errors the server reported: L{ResponseError} (an error reply, with its code), and its
    leaf L{AuthenticationError} (the handshake's C{AUTH} was refused); L{WatchError} (a
    transaction aborted because a watched key changed) and L{TransactionDiscardedError} (a
    queued command whose transaction was discarded).

L{ResponseError} and L{WatchError} also subclass the exceptions of the same meaning in
C{txredisapi}, so code written against txredisapi keeps catching them.

A reply that cannot be parsed or matched to its command is a
L{txconnpool.errors.ProtocolError}; a connection that went away is a
L{txconnpool.errors.ConnectionLostError}.
"""

from __future__ import annotations

import txredisapi  # type: ignore[import-untyped]

from txconnpool.errors import PoolError

__all__ = [
    "AuthenticationError",
    "ExclusiveCommandError",
    "InvalidArgumentError",
    "InvalidRequestError",
    "InvalidTypeError",
    "RedisError",
    "ResponseError",
    "TransactionDiscardedError",
    "UnsupportedCommandError",
    "WatchError",
]


class RedisError(PoolError):
    """
    Base class of every Redis-specific error.
    """


class InvalidRequestError(RedisError):
    """
    A command was refused before anything was written to the connection, which is unaffected.
    """


class InvalidTypeError(InvalidRequestError, TypeError):
    """
    An argument has a type Redis cannot take: arguments are C{bytes}, C{str} (sent as UTF-8),
    C{int} (not C{bool}) or a finite C{float}.
    """


class InvalidArgumentError(InvalidRequestError, ValueError):
    """
    An argument has an impossible value: an empty command name, a NaN, a negative timeout.
    """


class ExclusiveCommandError(InvalidRequestError):
    """
    A command that blocks its connection or changes its state (C{BLPOP}, C{SUBSCRIBE},
    C{MULTI}, C{WATCH}, C{SELECT}...) was called on the pool. Run it on a connection of its
    own: C{async with pool.connection() as redis: ...}.
    """


class UnsupportedCommandError(InvalidRequestError):
    """
    A command that turns the connection into something other than a request and reply
    stream (C{MONITOR}, C{CLIENT REPLY}, C{HELLO 3}, replication) was refused, even on a
    checked-out connection.
    """


class ResponseError(RedisError, txredisapi.ResponseError):  # type: ignore[misc]
    """
    The server answered a command with an error reply.

    @ivar code: The error's code, the first word of the reply (C{"ERR"}, C{"WRONGTYPE"},
        C{"NOAUTH"}...).
    @ivar serverMessage: The whole reply text, code included, decoded as UTF-8 (bytes that
        are not are shown as backslash escapes).
    """

    def __init__(self, serverMessage: str) -> None:
        self.serverMessage = serverMessage
        code = serverMessage.split(" ", 1)[0]
        self.code = code if code.isupper() else "ERR"
        super().__init__(serverMessage)

    def __reduce__(self) -> tuple[type[ResponseError], tuple[str]]:
        return (type(self), (self.serverMessage,))


class AuthenticationError(ResponseError):
    """
    The server refused the password (or user name and password) sent when connecting, or
    asked for one and none was given.
    """


class WatchError(RedisError, txredisapi.WatchError):  # type: ignore[misc]
    """
    C{EXEC} did not run the transaction: a key watched with C{WATCH} changed since.
    """


class TransactionDiscardedError(RedisError):
    """
    A command queued in a transaction never ran: the transaction was discarded (with
    C{DISCARD}, or because the block of its checked-out connection was left before C{EXEC}).
    """
