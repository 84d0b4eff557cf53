"""
The requests of a L{MemCachePool} made with C{proxy="twemproxy"}, as nutcracker (twemproxy
0.5) can take them.

Nutcracker answers the storage commands, C{get}/C{gets}, C{incr}/C{decr}, C{delete}, C{touch}
and C{version}. On anything else (C{stats}, C{flush_all}, C{verbosity}, C{gat}/C{gats}, the
meta commands) and on a key longer than 250 bytes, it closes the connection without a reply,
losing every request in flight on it. So here:

  - C{version}, which nutcracker forwards to one backend, answers a keepalive or validation
    ping even when it comes back C{SERVER_ERROR}: the proxy did answer;
  - a command outside that list fails at once with L{UnsupportedCommandError}, and a key over
    250 bytes with L{InvalidKeyError}; nothing is written;
  - nutcracker splits a multi-key get by backend, and when one backend is down it answers the
    whole get with C{SERVER_ERROR} and then closes the connection, losing the requests sent
    after it. A C{getMultiple} (or a C{get}, which the protocol may have batched with others)
    that fails with L{ServerError} or L{ConnectionLostError} is sent again one key at a time,
    as single-key gets that nutcracker answers without closing; a key whose get is lost again
    is tried up to L{RETRIES} times. Only the keys of the dead backend fail then; a
    C{getMultiple} with some keys failed fails with L{PartialResultError}, carrying the others.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.python.failure import Failure

from ..errors import ConnectionLostError
from ._clustererrors import UnsupportedCommandError
from ._gather import gather
from .errors import InvalidKeyError, ServerError

__all__ = ["PROXIES", "RETRIES", "TwemproxyRequests", "proxyRequests"]

PROXIES = ("twemproxy",)
"""The values C{MemCachePool}'s C{proxy} takes, besides L{None}."""

SUPPORTED = frozenset(
    {
        "get",
        "getMultiple",
        "set",
        "add",
        "replace",
        "append",
        "prepend",
        "checkAndSet",
        "increment",
        "decrement",
        "delete",
        "touch",
        "version",
    }
)
"""The L{MemCachePool} methods whose commands nutcracker answers."""

MAX_KEY_LENGTH = 250
"""The longest key nutcracker accepts, in bytes."""

RETRIES = 3
"""How many times a key's single get is sent again after its connection was lost."""

Send = Callable[..., "Deferred[Any]"]


def proxyRequests(proxy: object, send: Send) -> TwemproxyRequests | None:
    """
    The request filter for a pool's C{proxy} argument.

    @param send: The pool's own L{Pool.performRequest<txconnpool.pool.Pool.performRequest>}.
    @return: L{None} for no proxy.
    @raise ValueError: C{proxy} is not one of L{PROXIES} or L{None}.
    """
    if proxy is None:
        return None
    if proxy not in PROXIES:
        raise ValueError(
            f"proxy must be None or one of {', '.join(map(repr, PROXIES))}, not {proxy!r}"
        )
    return TwemproxyRequests(send)


def _encodedLength(key: object) -> int:
    """
    The length of a key once encoded (a C{str} as UTF-8), or 0 for what is not a key (left
    for the protocol to refuse).
    """
    if isinstance(key, str):
        # A str of at most 62 characters is at most 248 bytes in UTF-8: no need to encode it.
        return len(key) if len(key) <= 62 else len(key.encode("utf-8", "replace"))
    return len(key) if isinstance(key, bytes) else 0


def _tooLong(key: object) -> bool:
    return _encodedLength(key) > MAX_KEY_LENGTH


class TwemproxyRequests:
    """
    Sends a pool's requests as nutcracker can take them.
    """

    def __init__(self, send: Send) -> None:
        self._send = send

    def performRequest(self, method: str, *args: Any, **kwargs: Any) -> Deferred[Any]:
        """
        Send a request as L{Pool.performRequest<txconnpool.pool.Pool.performRequest>} does,
        unless nutcracker cannot take it.
        """
        if method not in SUPPORTED:
            return fail(
                UnsupportedCommandError(
                    f"nutcracker does not support {method}: it would close the connection and "
                    "every request in flight on it"
                )
            )
        if method == "version":
            return self._send(method, *args, **kwargs)
        if method == "getMultiple":
            keys = args[0] if args else kwargs.pop("keys", ())
            withIdentifier = args[1] if len(args) > 1 else kwargs.pop("withIdentifier", False)
            if not isinstance(keys, (bytes, str)):
                keys = list(keys)
                long = [key for key in keys if _tooLong(key)]
                if long:
                    return fail(_keyError(long[0]))
            d = self._send(method, keys, withIdentifier, *args[2:], **kwargs)
            return d.addErrback(self._retryKeys, keys, withIdentifier)
        key = args[0] if args else kwargs.get("key")
        if _tooLong(key):
            return fail(_keyError(key))
        d = self._send(method, *args, **kwargs)
        if method == "get":
            withIdentifier = args[1] if len(args) > 1 else kwargs.get("withIdentifier", False)
            d.addErrback(self._retryGet, key, withIdentifier)
        return d

    def ping(self, protocol: Any) -> Deferred[object]:
        """
        Ping a connection to nutcracker with C{version}, which nutcracker forwards to one of
        its backends: a C{SERVER_ERROR} reply (that backend is down) still proves that the
        connection answers.

        @param protocol: The connection's L{MemCacheProtocol<txconnpool.memcache.protocol.
            MemCacheProtocol>}.
        @return: A L{Deferred} firing with the version, or with the L{ServerError}.
        """
        d: Deferred[object] = protocol.version()
        return d.addErrback(lambda failure: failure.trap(ServerError) and failure.value)

    def _single(self, key: Any, withIdentifier: bool, retries: int) -> Deferred[Any]:
        """
        Get one key with a single-key multi-get (never batched with other gets).

        @return: A L{Deferred} firing with C{{key: result}}.
        """
        d = self._send("getMultiple", [key], withIdentifier)

        def lost(failure: Failure) -> Deferred[Any] | Failure:
            if retries and failure.check(ConnectionLostError):
                return self._single(key, withIdentifier, retries - 1)
            return failure

        return d.addErrback(lost)

    def _retryGet(self, failure: Failure, key: Any, withIdentifier: bool) -> Any:
        if not failure.check(ServerError, ConnectionLostError):
            return failure
        return self._single(key, withIdentifier, RETRIES).addCallback(
            lambda result: result[key]
        )

    def _retryKeys(self, failure: Failure, keys: Any, withIdentifier: bool) -> Any:
        if not failure.check(ServerError, ConnectionLostError) or isinstance(keys, (bytes, str)):
            return failure
        distinct = list(dict.fromkeys(keys))
        return gather(
            f"getMultiple of {len(distinct)} keys through nutcracker, retried key by key",
            [(self._single(key, withIdentifier, RETRIES), [key]) for key in distinct],
        )


def _keyError(key: object) -> InvalidKeyError:
    return InvalidKeyError(
        f"nutcracker closes the connection on keys longer than {MAX_KEY_LENGTH} bytes; "
        f"this one has {_encodedLength(key)}"
    )
