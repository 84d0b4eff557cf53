"""
The commands that need a connection of their own, as typed methods of L{ExclusiveCommands}
(which L{RedisProtocol<txconnpool.redis.protocol.RedisProtocol>} has, and the pool has not):
blocking pops, C{SELECT}, transactions, and (un)subscribing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from twisted.internet.defer import Deferred, fail

from . import _replies as r
from ._args import Key, encodeArgs
from ._replies import Reply, ReplyMismatch
from ._sender import CommandSender, refuse
from .errors import InvalidArgumentError, InvalidRequestError

_T = TypeVar("_T")


class ExclusiveCommands(CommandSender):
    """
    Typed methods for blocking pops, C{SELECT}, transactions and (un)subscribing, over the
    primitives the protocol provides for them.
    """

    # The primitives, provided by the protocol.

    def _blockingSend(
        self, args: Sequence[bytes], convert: Callable[[Reply], _T]
    ) -> Deferred[_T]:
        """
        Send a command that can block the connection.
        """
        raise NotImplementedError()

    def _selecting(self) -> None:
        """
        Note that another database is being selected.
        """
        raise NotImplementedError()

    def _watched(self, watching: bool) -> None:
        """
        Note that keys are now watched, or no longer.
        """
        raise NotImplementedError()

    def _multi(self, args: list[bytes]) -> Deferred[Reply]:
        """
        Send C{MULTI} and open the transaction.
        """
        raise NotImplementedError()

    def _exec(self, args: list[bytes], convert: Callable[[Reply], _T]) -> Deferred[_T]:
        """
        Send C{EXEC} for the commands queued.
        """
        raise NotImplementedError()

    def _discard(self, args: list[bytes]) -> Deferred[None]:
        """
        Send C{DISCARD} for the commands queued.
        """
        raise NotImplementedError()

    def _subscription(self, command: bytes, args: list[bytes]) -> Deferred[int]:
        """
        Send an (un)subscribe command and wait for its confirmations.
        """
        raise NotImplementedError()

    # Blocking pops

    def _pop(self, command: bytes, keys: tuple[Key, ...], timeout: float) -> Deferred[
        tuple[bytes, bytes] | None
    ]:
        if not keys:
            return refuse(InvalidArgumentError(f"{command.decode()} needs at least one key"))
        if timeout < 0:
            return refuse(InvalidArgumentError(f"a timeout must not be negative: {timeout!r}"))
        try:
            args = encodeArgs((command, *keys, timeout))
        except InvalidRequestError:
            return fail()
        return self._blockingSend(args, r.popped)

    def blpop(self, *keys: Key, timeout: float = 0) -> Deferred[tuple[bytes, bytes] | None]:
        """
        C{BLPOP}: remove the first value of the first non-empty list of C{keys}, waiting for
        one up to C{timeout} seconds (0: for ever). The connection carries nothing else
        meanwhile.

        @return: A C{Deferred} firing with C{(key, value)}, or L{None} on a timeout.
        """
        return self._pop(b"BLPOP", keys, timeout)

    def brpop(self, *keys: Key, timeout: float = 0) -> Deferred[tuple[bytes, bytes] | None]:
        """
        C{BRPOP}: as L{blpop}, from the tail of the lists.

        @return: A C{Deferred} firing with C{(key, value)}, or L{None} on a timeout.
        """
        return self._pop(b"BRPOP", keys, timeout)

    # Databases

    def select(self, db: int) -> Deferred[None]:
        """
        C{SELECT}: use another database on this connection. A pool's connection is put back
        on the pool's own database when given back.

        @return: A C{Deferred} firing with L{None}.
        """
        self._selecting()
        return self._call(r.ok, False, b"SELECT", db)

    # Transactions

    def watch(self, *keys: Key) -> Deferred[None]:
        """
        C{WATCH}: make the next L{exec} fail with L{WatchError
        <txconnpool.redis.errors.WatchError>} if one of C{keys} changes before it.

        @return: A C{Deferred} firing with L{None}.
        """
        if not keys:
            return refuse(InvalidArgumentError("WATCH needs at least one key"))
        self._watched(True)
        return self._call(r.ok, False, b"WATCH", *keys)

    def unwatch(self) -> Deferred[None]:
        """
        C{UNWATCH}: forget the keys watched.

        @return: A C{Deferred} firing with L{None}.
        """
        self._watched(False)
        return self._call(r.ok, False, b"UNWATCH")

    def multi(self) -> Deferred[None]:
        """
        C{MULTI}: start a transaction. The commands sent until L{exec} are queued by the
        server; their C{Deferred}s fire once L{exec} has run them (do not wait for them
        before calling L{exec}).

        @return: A C{Deferred} firing with L{None}.
        """
        return self._multi([b"MULTI"]).addCallback(lambda _: None)

    def exec(self) -> Deferred[list[Reply]]:
        """
        C{EXEC}: run the commands queued since L{multi}; each of their C{Deferred}s fires
        with its result (or fails with its error).

        @return: A C{Deferred} firing with the list of the raw results. It fails with
            L{WatchError<txconnpool.redis.errors.WatchError>} (and so do the queued
            commands) when a watched key changed, and with L{ResponseError
            <txconnpool.redis.errors.ResponseError>} (C{EXECABORT}) when a command was
            refused while queued.
        """
        return self._exec([b"EXEC"], _list)

    def discard(self) -> Deferred[None]:
        """
        C{DISCARD}: abandon the transaction; the queued commands fail with
        L{TransactionDiscardedError<txconnpool.redis.errors.TransactionDiscardedError>}.

        @return: A C{Deferred} firing with L{None}.
        """
        return self._discard([b"DISCARD"])

    # Publish and subscribe

    def subscribe(self, *channels: Key) -> Deferred[int]:
        """
        C{SUBSCRIBE}: receive the messages published to C{channels}, with L{nextMessage}.
        Once subscribed, the connection takes only (un)subscribe commands and C{ping()}, and
        is closed rather than reused when given back to a pool.

        @return: A C{Deferred} firing with the number of subscriptions once each channel is
            confirmed.
        """
        return self._subscribeTo(b"subscribe", channels, needed=True)

    def psubscribe(self, *patterns: Key) -> Deferred[int]:
        """
        C{PSUBSCRIBE}: as L{subscribe}, for the channels matching glob-style C{patterns}.

        @return: A C{Deferred} firing with the number of subscriptions.
        """
        return self._subscribeTo(b"psubscribe", patterns, needed=True)

    def unsubscribe(self, *channels: Key) -> Deferred[int]:
        """
        C{UNSUBSCRIBE}: stop receiving the messages of C{channels} (of every channel if none
        is given).

        @return: A C{Deferred} firing with the number of subscriptions left.
        """
        return self._subscribeTo(b"unsubscribe", channels, needed=False)

    def punsubscribe(self, *patterns: Key) -> Deferred[int]:
        """
        C{PUNSUBSCRIBE}: as L{unsubscribe}, for patterns.

        @return: A C{Deferred} firing with the number of subscriptions left.
        """
        return self._subscribeTo(b"punsubscribe", patterns, needed=False)

    def _subscribeTo(self, command: bytes, names: tuple[Key, ...], needed: bool) -> Deferred[int]:
        if needed and not names:
            return refuse(InvalidArgumentError(f"{command.decode().upper()} needs a name"))
        try:
            args = encodeArgs((command.upper(), *names))
        except InvalidRequestError:
            return fail()
        return self._subscription(command, args)


def _list(reply: Reply) -> list[Reply]:
    if type(reply) is list:
        return reply
    raise ReplyMismatch(f"expected an array, got {reply!r:.200}")
