"""
The exceptions txconnpool raises.

Every error the pool produces is a L{PoolError}, so callers can catch the whole family at once.
L{NoSuchCommand} is kept under its txconnpool 0.1.1 name for compatibility.
"""

from __future__ import annotations

__all__ = [
    "ConnectionLostError",
    "NoSuchCommand",
    "PoolClosedError",
    "PoolError",
    "PoolFullError",
    "PoolTimeoutError",
    "ProtocolError",
    "RequestTimeoutError",
    "ServerUnavailableError",
]


class PoolError(Exception):
    """
    Base class of every error raised by txconnpool.
    """


class PoolClosedError(PoolError):
    """
    The pool was closed: the request was refused, or was waiting and was abandoned.
    """


class PoolTimeoutError(PoolError):
    """
    A request waited longer than the pool allows for a connection (C{acquireTimeout}).
    """


class RequestTimeoutError(PoolTimeoutError):
    """
    A request sent on a connection had no complete reply within C{requestTimeout}; the
    connection was dropped, since a late reply could no longer be matched to its request.
    """


class PoolFullError(PoolError):
    """
    Too many requests are already waiting for a connection; this one was refused at once.
    """


class ServerUnavailableError(PoolError):
    """
    The server could not be reached, so the request was not attempted.
    """


class ConnectionLostError(PoolError):
    """
    The connection carrying the request was lost before the request completed.

    The original reason, when there is one, is the exception's C{__cause__}.
    """


class ProtocolError(PoolError):
    """
    The server sent something the client protocol cannot make sense of; the connection was
    dropped because later replies can no longer be matched to their requests.
    """


class NoSuchCommand(PoolError, AttributeError):
    """
    The pooled protocol has no method of the requested name.

    It is also an C{AttributeError}, which is what calling a missing method raises.
    """
