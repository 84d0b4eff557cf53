"""
The exceptions specific to the memcached client protocol.

Two families, both L{txconnpool.errors.PoolError}s:

  - L{InvalidRequestError} and its leaves: a request was refused before anything was
    written, because a key or an argument is unusable. They are also C{ValueError} or
    C{TypeError}, as a Python programmer expects of a bad argument.
  - L{MemCacheError} leaves for an error reply from the server: L{UnknownCommandError}
    (C{ERROR}), L{ClientError} (C{CLIENT_ERROR}) and L{ServerError} (C{SERVER_ERROR}). They
    also subclass the exceptions of the same meaning in L{twisted.protocols.memcache}, so code
    written against Twisted's client keeps catching them.

A reply that cannot be matched to its request is a L{txconnpool.errors.ProtocolError}; a
reply larger than the protocol accepts is a L{ReplyTooLargeError}, which is one too. A
connection that went away is a L{txconnpool.errors.ConnectionLostError}. A value that a
serializer cannot turn back into an object is a L{SerializationError}.
"""

from __future__ import annotations

from twisted.protocols import memcache as _twistedMemcache

from txconnpool.errors import PoolError, ProtocolError

__all__ = [
    "ClientError",
    "InvalidArgumentError",
    "InvalidKeyError",
    "InvalidRequestError",
    "InvalidTypeError",
    "InvalidValueError",
    "MemCacheError",
    "ReplyTooLargeError",
    "SerializationError",
    "ServerError",
    "UnknownCommandError",
]


class MemCacheError(PoolError):
    """
    Base class of every memcached-specific error.
    """


class InvalidRequestError(MemCacheError):
    """
    A request was refused before anything was written to the connection.

    The connection is unaffected and can carry further requests.
    """


class InvalidKeyError(InvalidRequestError, ValueError):
    """
    A key is empty, longer than 250 bytes once encoded, or contains whitespace or control
    characters (which memcached's text protocol cannot carry).
    """


class InvalidValueError(InvalidRequestError, ValueError):
    """
    A value is larger than the protocol's C{maxValueSize}.
    """


class InvalidArgumentError(InvalidRequestError, ValueError):
    """
    A numeric argument (flags, expiry time, CAS token, increment) or a C{stats} argument is
    out of the range memcached accepts.
    """


class InvalidTypeError(InvalidRequestError, TypeError):
    """
    A key, value or argument has the wrong type (for example a C{str} value, or a C{bool}
    where an C{int} is required).
    """


class ReplyTooLargeError(MemCacheError, ProtocolError):
    """
    A reply was larger than the protocol accepts: a C{VALUE} longer than C{maxValueSize},
    the values of one C{get} reply together longer than C{maxReplySize}, or the lines of one
    C{stats} reply together longer than C{maxStatsSize}.

    The request it answered fails with it and the connection is dropped (the rest of the
    reply is not read); the other requests pending on that connection fail with
    L{ConnectionLostError<txconnpool.errors.ConnectionLostError>}. It is a
    L{ProtocolError<txconnpool.errors.ProtocolError>}, so a pool never reuses that
    connection.
    """


class SerializationError(MemCacheError, ValueError):
    """
    A serializer could not turn a stored value back into an object: its flags name no
    format the serializer knows, or the data does not decode in that format.
    """


class _ErrorReply(MemCacheError):
    """
    Common shape of an error reply from the server.

    @ivar command: the command the server answered, e.g. C{"set"}.
    @ivar serverMessage: the text the server sent after the error keyword, decoded as UTF-8
        with replacement; empty when there was none.
    """

    keyword = ""

    def __init__(self, command: str, serverMessage: str = "") -> None:
        self.command = command
        self.serverMessage = serverMessage
        text = f"{self.keyword} {serverMessage}" if serverMessage else self.keyword
        super().__init__(f"memcached replied {text!r} to {command}")


class UnknownCommandError(_ErrorReply, _twistedMemcache.NoSuchCommand):
    """
    The server answered C{ERROR}: it does not know the command that was sent (for example
    C{touch} on a very old memcached, or a proxy that does not pass it on).
    """

    keyword = "ERROR"


class ClientError(_ErrorReply, _twistedMemcache.ClientError):
    """
    The server answered C{CLIENT_ERROR}: it rejected the request as malformed or unusable
    (for example incrementing a value that is not a number).
    """

    keyword = "CLIENT_ERROR"


class ServerError(_ErrorReply, _twistedMemcache.ServerError):
    """
    The server answered C{SERVER_ERROR}: it could not carry out the request (for example
    C{object too large for cache} or C{out of memory storing object}).
    """

    keyword = "SERVER_ERROR"
