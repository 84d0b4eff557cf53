"""
L{RedisProtocol}: a Redis client protocol for one connection, with the common commands as
typed methods, the generic L{RedisProtocol.execute}, and the commands that need a connection
of their own: blocking pops, transactions, C{SELECT}, publish and subscribe.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, fail
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure

from ..errors import ConnectionLostError, ProtocolError
from . import _replies as r
from ._args import (
    BLOCKING,
    Key,
    checkSupported,
    commandName,
    encodeArg,
    encodeArgs,
    isResetting,
)
from ._collections import CollectionCommands
from ._pubsub import Confirmation, Message, Subscriptions
from ._replies import Reply, ReplyMismatch
from ._sender import refuse
from ._strings import StringCommands
from ._wire import MAX_LINE_LENGTH, MAX_REPLY_LENGTH, RedisWire
from .errors import (
    InvalidArgumentError,
    InvalidRequestError,
    ResponseError,
    TransactionDiscardedError,
    WatchError,
)

_T = TypeVar("_T")

_NORMAL, _QUEUED, _EXEC, _DISCARD, _SUBSCRIPTION = range(5)


class _Waiting:
    """
    A command sent, waiting for its reply.
    """

    __slots__ = ("blocking", "convert", "deferred", "extra", "kind")

    def __init__(
        self, deferred: Deferred[Any], convert: Callable[[Reply], Any], kind: int, extra: Any
    ) -> None:
        self.deferred = deferred
        self.convert = convert
        self.kind = kind
        self.extra = extra
        self.blocking = False


class RedisProtocol(Protocol, StringCommands, CollectionCommands):
    """
    A Redis client connection. Commands are sent at once, several may be in flight, and each
    reply goes to its command in order.

    Every method returns a C{Deferred} that fires with the command's reply, typed as the
    method says. It fails with L{ResponseError<txconnpool.redis.errors.ResponseError>} for an
    error reply; with an L{InvalidRequestError<txconnpool.redis.errors.InvalidRequestError>}
    leaf, before anything is sent, for an argument that cannot be sent; with
    L{ConnectionLostError<txconnpool.errors.ConnectionLostError>} when the connection is lost
    first; with L{ProtocolError<txconnpool.errors.ProtocolError>} when the server sends
    something that cannot be read or does not fit the command (every command in flight then
    fails with it, and the connection is dropped).

    Inside a transaction (after L{multi}), the commands' C{Deferred}s fire when L{exec}
    has run them, each with its own typed result.
    """

    def __init__(
        self,
        *,
        maxMessages: int = 1000,
        maxLineLength: int = MAX_LINE_LENGTH,
        maxReplyLength: int = MAX_REPLY_LENGTH,
    ) -> None:
        """
        @param maxMessages: How many published messages may wait to be read with
            L{nextMessage}; past that, the connection stops reading until half are read.
        @param maxLineLength: The longest simple string or error reply read, in bytes.
        @param maxReplyLength: The most bytes one reply may take.
        """
        self._wire = RedisWire(self._replyReceived, self._unreadable, maxLineLength,
                               maxReplyLength)
        self._encode = self._wire.encode
        self._waiting: deque[_Waiting] = deque()
        self._closed = False
        self._lostWith: Exception | None = None
        self._inMulti = False
        self._queued: list[_Waiting] = []
        self._watching = False
        self._selected = False
        self._reset = False
        self._blocking = 0
        self._pubsub = Subscriptions(maxMessages, self._pauseReading, self._resumeReading)

    @property
    def closed(self) -> bool:
        """
        Whether the connection is lost, or being dropped after a protocol error.
        """
        return self._closed

    # Sending

    def _send(
        self,
        args: Sequence[bytes],
        convert: Callable[[Reply], _T],
        kind: int = _NORMAL,
        extra: Any = None,
    ) -> Deferred[_T]:
        if self._closed or self.transport is None:
            return fail(self._closedError())
        self.transport.write(self._encode(args))
        deferred: Deferred[_T] = Deferred()
        waiting = _Waiting(deferred, convert, kind, extra)
        if self._inMulti and kind == _NORMAL:
            waiting.kind = _QUEUED
            self._queued.append(waiting)
        self._waiting.append(waiting)
        return deferred

    def _run(
        self, convert: Callable[[Reply], _T], idempotent: bool, args: list[bytes]
    ) -> Deferred[_T]:
        return self._send(args, convert)

    def sendCommand(
        self, convert: Callable[[Reply], _T], args: Sequence[bytes]
    ) -> Deferred[_T]:
        """
        Send an encoded command; the entry point of L{RedisPool
        <txconnpool.redis.RedisPool>}'s requests.

        @param convert: Checks the reply and gives it its type (raising
            C{ReplyMismatch} if it does not fit).
        @param args: The command's name and arguments, as C{bytes}.
        """
        return self._send(args, convert)

    def sendIdempotentCommand(
        self, convert: Callable[[Reply], _T], args: Sequence[bytes]
    ) -> Deferred[_T]:
        """
        L{sendCommand}, for a command safe to send twice (which a pool may send again on
        another connection when the first turned out closed).
        """
        return self._send(args, convert)

    def execute(self, command: bytes | str, *args: object) -> Deferred[Reply]:
        """
        Send any command, the exclusive ones included (this connection is the caller's).

        @param command: The command's name, such as C{"OBJECT"} or C{b"ZUNIONSTORE"}.
        @param args: Its arguments: C{bytes}, C{str} (sent as UTF-8), C{int} or C{float}.
        @return: A C{Deferred} firing with the reply as it came (see L{Reply
            <txconnpool.redis.Reply>}). Transaction, C{SELECT} and (un)subscribe commands
            are tracked as by their own methods. It fails with L{UnsupportedCommandError
            <txconnpool.redis.errors.UnsupportedCommandError>} for C{MONITOR},
            replication, C{CLIENT REPLY} and C{HELLO 3}.
        """
        try:
            name = commandName(command)
            encoded = encodeArgs(args)
            checkSupported(name, encoded)
        except InvalidRequestError:
            return fail()
        full = [encodeArg(command), *encoded]
        if name == b"MULTI" and not args:
            return self._multi(full)
        if name == b"EXEC" and not args:
            return self._exec(full, r.anyReply)
        if name == b"DISCARD" and not args:
            return self._discard(full).addCallback(lambda _: "OK")
        if name == b"WATCH":
            self._watching = True
        elif name == b"UNWATCH":
            self._watching = False
        elif name == b"SELECT":
            self._selected = True
        elif name[-9:] == b"SUBSCRIBE":
            return self._subscription(name.lower(), full).addCallback(lambda count: count)
        if isResetting(name, encoded):
            self._reset = True
        if name in BLOCKING or (name in (b"XREAD", b"XREADGROUP") and b"BLOCK" in
                                [arg.upper() for arg in encoded]):
            return self._blockingSend(full, r.anyReply)
        return self._send(full, r.anyReply)

    # Blocking pops

    def _blockingSend(self, args: Sequence[bytes], convert: Callable[[Reply], _T]) -> Deferred[_T]:
        deferred = self._send(args, convert)
        if self._waiting and self._waiting[-1].deferred is deferred:
            self._waiting[-1].blocking = True
            self._blocking += 1
        return deferred

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
        self._selected = True
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
        self._watching = True
        return self._call(r.ok, False, b"WATCH", *keys)

    def unwatch(self) -> Deferred[None]:
        """
        C{UNWATCH}: forget the keys watched.

        @return: A C{Deferred} firing with L{None}.
        """
        self._watching = False
        return self._send([b"UNWATCH"], r.ok)

    def multi(self) -> Deferred[None]:
        """
        C{MULTI}: start a transaction. The commands sent until L{exec} are queued by the
        server; their C{Deferred}s fire once L{exec} has run them (do not wait for them
        before calling L{exec}).

        @return: A C{Deferred} firing with L{None}.
        """
        return self._multi([b"MULTI"]).addCallback(lambda _: None)

    def _multi(self, args: list[bytes]) -> Deferred[Reply]:
        if self._inMulti:
            return self._send(args, r.anyReply)
        deferred = self._send(args, r.anyReply)
        self._inMulti = True
        return deferred

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

    def _exec(self, args: list[bytes], convert: Callable[[Reply], _T]) -> Deferred[_T]:
        queued, self._queued = self._queued, []
        self._inMulti = self._watching = False
        return self._send(args, convert, _EXEC, queued)

    def discard(self) -> Deferred[None]:
        """
        C{DISCARD}: abandon the transaction; the queued commands fail with
        L{TransactionDiscardedError<txconnpool.redis.errors.TransactionDiscardedError>}.

        @return: A C{Deferred} firing with L{None}.
        """
        return self._discard([b"DISCARD"])

    def _discard(self, args: list[bytes]) -> Deferred[None]:
        queued, self._queued = self._queued, []
        self._inMulti = self._watching = False
        return self._send(args, r.ok, _DISCARD, queued)

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

    def _subscription(self, command: bytes, args: list[bytes]) -> Deferred[int]:
        if self._closed or self.transport is None:
            return fail(self._closedError())
        self._reset = True
        confirmation = self._pubsub.started(command, len(args) - 1 or None)
        self._send(args, r.anyReply, _SUBSCRIPTION, confirmation)
        return confirmation.deferred

    def nextMessage(self) -> Deferred[Message]:
        """
        @return: A C{Deferred} firing with the oldest message not read yet (a L{Message
            <txconnpool.redis.Message>}), at once or when one comes. It fails with
            L{InvalidRequestError<txconnpool.redis.errors.InvalidRequestError>} when the
            connection is not subscribed, and with L{ConnectionLostError
            <txconnpool.errors.ConnectionLostError>} once the connection is lost.
        """
        return self._pubsub.nextMessage()

    def _pauseReading(self) -> None:
        if self.transport is not None:
            self.transport.pauseProducing()  # type: ignore[attr-defined]

    def _resumeReading(self) -> None:
        if self.transport is not None and not self._closed:
            self.transport.resumeProducing()  # type: ignore[attr-defined]

    # Giving a checked-out connection back

    def restore(self, db: int) -> bool:
        """
        Undo what the commands of a checkout left on the connection, before it serves
        others: discard an open transaction (its queued commands fail with
        L{TransactionDiscardedError<txconnpool.redis.errors.TransactionDiscardedError>}),
        forget watched keys, and select database C{db} again if another was selected.

        @return: C{False} when the connection cannot serve others (it is closed, subscribed,
            blocked in a blocking pop, or was changed by C{AUTH}, C{HELLO}, C{RESET},
            C{CLIENT SETNAME} and the like) and must be closed instead.
        """
        if self._closed or self._reset or self._blocking or self._pubsub.active():
            return False
        if self._inMulti:
            self._discard([b"DISCARD"]).addErrback(_ignore)
        elif self._watching:
            self.unwatch().addErrback(_ignore)
        if self._selected:
            self._selected = False
            self._send([b"SELECT", b"%d" % (db,)], r.ok).addErrback(_ignore)
        return True

    # Replies

    def dataReceived(self, data: bytes) -> None:
        """
        Read replies.
        """
        self._wire.feed(data)

    def _replyReceived(self, reply: Reply) -> None:
        if self._pubsub.count and self._pubsub.isMessage(reply):
            if not self._pubsub.received(reply):  # type: ignore[arg-type]
                self._unreadable(ProtocolError(f"a malformed message: {reply!r:.200}"))
            return
        waiting = self._waiting
        if not waiting:
            self._unreadable(ProtocolError(f"a reply nobody asked for: {reply!r:.200}"))
            return
        head = waiting[0]
        kind = head.kind
        if kind == _NORMAL:
            waiting.popleft()
            if head.blocking:
                self._blocking -= 1
            if type(reply) is ResponseError:
                head.deferred.errback(reply)
                return
            try:
                value = head.convert(reply)
            except ReplyMismatch as e:
                self._outOfStep(head, e)
                return
            head.deferred.callback(value)
        elif kind == _SUBSCRIPTION:
            self._confirmed(head, reply)
        else:
            waiting.popleft()
            if kind == _QUEUED:
                self._queuedReply(head, reply)
            elif kind == _EXEC:
                self._executed(head, reply)
            else:
                self._discarded(head, reply)

    def _confirmed(self, head: _Waiting, reply: Reply) -> None:
        confirmation: Confirmation = head.extra
        if type(reply) is ResponseError:
            self._waiting.popleft()
            self._pubsub.abandon(confirmation, reply)
            return
        done = self._pubsub.confirm(confirmation, reply)
        if done is None:
            self._outOfStep(head, ReplyMismatch(f"not a confirmation: {reply!r:.200}"))
        elif done:
            self._waiting.popleft()

    def _queuedReply(self, head: _Waiting, reply: Reply) -> None:
        if reply == "QUEUED":
            return
        if head in self._queued:
            self._queued.remove(head)
        for entry in self._waiting:
            if entry.kind in (_EXEC, _DISCARD) and head in entry.extra:
                entry.extra.remove(head)
        if type(reply) is ResponseError:
            head.deferred.errback(reply)
            return
        # No transaction was open after all (MULTI was refused): an ordinary reply.
        try:
            value = head.convert(reply)
        except ReplyMismatch as e:
            self._outOfStep(head, e)
            return
        head.deferred.callback(value)

    def _executed(self, head: _Waiting, reply: Reply) -> None:
        queued: list[_Waiting] = head.extra
        if type(reply) is list and len(reply) == len(queued):
            for entry, result in zip(queued, reply):
                if type(result) is ResponseError:
                    entry.deferred.errback(result)
                    continue
                try:
                    value = entry.convert(result)
                except ReplyMismatch as e:
                    entry.deferred.errback(ProtocolError(f"a result of EXEC does not fit: {e}"))
                else:
                    entry.deferred.callback(value)
            try:
                value = head.convert(reply)
            except ReplyMismatch as e:
                self._outOfStep(head, e)
                return
            head.deferred.callback(value)
            return
        error: Exception
        if reply is None:
            error = WatchError("EXEC did not run the transaction: a watched key changed")
        elif type(reply) is ResponseError:
            error = reply
        else:
            self._outOfStep(head, ReplyMismatch(f"EXEC gave {reply!r:.200}"))
            return
        for entry in queued:
            entry.deferred.errback(error)
        head.deferred.errback(error)

    def _discarded(self, head: _Waiting, reply: Reply) -> None:
        for entry in head.extra:
            entry.deferred.errback(TransactionDiscardedError("the transaction was discarded"))
        if type(reply) is ResponseError:
            head.deferred.errback(reply)
        elif reply == "OK":
            head.deferred.callback(None)
        else:
            self._outOfStep(head, ReplyMismatch(f"DISCARD gave {reply!r:.200}"))

    # Failures

    def _outOfStep(self, head: _Waiting, mismatch: ReplyMismatch) -> None:
        """
        A reply does not fit its command: the stream is out of step.
        """
        if self._waiting and self._waiting[0] is head:
            self._waiting.popleft()
        error = ProtocolError(f"a reply of Redis does not fit its command: {mismatch}")
        self._failOne(head, error)
        self._unreadable(error)

    def _unreadable(self, error: ProtocolError) -> None:
        """
        The stream cannot be read: fail everything and drop the connection.
        """
        if self._closed:
            return
        self._closed = True
        self._lostWith = error
        self._failAll(error)
        if self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """
        Fail every command in flight with L{ConnectionLostError}.
        """
        self._closed = True
        if self._lostWith is None:
            lost = ConnectionLostError(
                f"the connection to Redis was lost before the reply: {reason.value}"
            )
            lost.__cause__ = reason.value
            self._lostWith = lost
        self._failAll(self._lostWith)

    def _failAll(self, error: Exception) -> None:
        waiting, self._waiting = self._waiting, deque()
        queued, self._queued = self._queued, []
        self._blocking = 0
        for entry in waiting:
            self._failOne(entry, error)
        for entry in queued:
            if not entry.deferred.called:
                entry.deferred.errback(error)
        self._pubsub.close(error)

    def _failOne(self, entry: _Waiting, error: Exception) -> None:
        if entry.kind == _SUBSCRIPTION:
            self._pubsub.abandon(entry.extra, error)
        elif entry.kind in (_EXEC, _DISCARD):
            for queued in entry.extra:
                if not queued.deferred.called:
                    queued.deferred.errback(error)
            entry.deferred.errback(error)
        elif not entry.deferred.called:
            entry.deferred.errback(error)

    def _closedError(self) -> Exception:
        if self._lostWith is not None:
            return self._lostWith
        return ConnectionLostError("the connection to Redis is not open")


def _list(reply: Reply) -> list[Reply]:
    if type(reply) is list:
        return reply
    raise ReplyMismatch(f"expected an array, got {reply!r:.200}")


def _ignore(failure: Failure) -> None:
    """
    Consume the failure of a command the pool sent for itself: the connection's own fate
    tells the pool what it needs.
    """
