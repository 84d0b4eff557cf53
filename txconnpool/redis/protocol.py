"""
L{RedisProtocol}: a Redis client protocol for one connection, with the common commands as
typed methods, the generic L{RedisProtocol.execute}, and the commands that need a connection
of their own: blocking pops, transactions, C{SELECT}, publish and subscribe.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

from twisted.internet.defer import Deferred, fail
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure

from ..errors import ConnectionLostError, ProtocolError
from . import _replies as r
from ._args import (
    BLOCKING,
    checkSupported,
    commandName,
    encodeArg,
    encodeArgs,
    isResetting,
)
from ._collections import CollectionCommands
from ._exclusive import ExclusiveCommands
from ._pubsub import Confirmation, Message, Subscriptions
from ._replies import Reply, ReplyMismatch
from ._strings import StringCommands
from ._transaction import Transaction
from ._waiting import DISCARD, EXEC, NORMAL, QUEUED, SUBSCRIPTION, Waiting
from ._wire import MAX_LINE_LENGTH, MAX_REPLY_LENGTH, RedisWire
from .errors import InvalidRequestError, ResponseError

_T = TypeVar("_T")

class RedisProtocol(Protocol, StringCommands, CollectionCommands, ExclusiveCommands):
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

    Inside a transaction (after C{multi()}), the commands' C{Deferred}s fire when C{exec()}
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
        self._waiting: deque[Waiting] = deque()
        self._closed = False
        self._lostWith: Exception | None = None
        self._tx = Transaction()
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
        kind: int = NORMAL,
        extra: Any = None,
    ) -> Deferred[_T]:
        if self._closed or self.transport is None:
            return fail(self._closedError())
        self.transport.write(self._encode(args))
        deferred: Deferred[_T] = Deferred()
        waiting = Waiting(deferred, convert, kind, extra)
        if self._tx.open and kind == NORMAL:
            waiting.kind = QUEUED
            self._tx.queued.append(waiting)
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
            self._tx.watching = True
        elif name == b"UNWATCH":
            self._tx.watching = False
        elif name == b"SELECT":
            self._selected = True
        elif name[-9:] == b"SUBSCRIBE":
            return cast("Deferred[Reply]", self._subscription(name.lower(), full))
        if isResetting(name, encoded):
            self._reset = True
        if name in BLOCKING or (name in (b"XREAD", b"XREADGROUP") and b"BLOCK" in
                                [arg.upper() for arg in encoded]):
            return self._blockingSend(full, r.anyReply)
        return self._send(full, r.anyReply)

    # What the exclusive commands stand on

    def _selecting(self) -> None:
        self._selected = True

    def _watched(self, watching: bool) -> None:
        self._tx.watching = watching

    def _blockingSend(self, args: Sequence[bytes], convert: Callable[[Reply], _T]) -> Deferred[_T]:
        deferred = self._send(args, convert)
        if self._waiting and self._waiting[-1].deferred is deferred:
            self._waiting[-1].blocking = True
            self._blocking += 1
        return deferred

    def _multi(self, args: list[bytes]) -> Deferred[Reply]:
        if self._tx.open:
            return self._send(args, r.anyReply)
        deferred = self._send(args, r.anyReply)
        self._tx.open = True
        return deferred

    def _exec(self, args: list[bytes], convert: Callable[[Reply], _T]) -> Deferred[_T]:
        return self._send(args, convert, EXEC, self._tx.close())

    def _discard(self, args: list[bytes]) -> Deferred[None]:
        return self._send(args, r.ok, DISCARD, self._tx.close())

    def _subscription(self, command: bytes, args: list[bytes]) -> Deferred[int]:
        if self._closed or self.transport is None:
            return fail(self._closedError())
        self._reset = True
        confirmation = self._pubsub.started(command, len(args) - 1 or None)
        self._send(args, r.anyReply, SUBSCRIPTION, confirmation)
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
        if self._tx.open:
            self._discard([b"DISCARD"]).addErrback(_ignore)
        elif self._tx.watching:
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
        if kind == NORMAL:
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
        elif kind == SUBSCRIPTION:
            self._confirmed(head, reply)
        else:
            waiting.popleft()
            if kind == QUEUED:
                mismatch = self._tx.queuedReply(head, reply, waiting)
            elif kind == EXEC:
                mismatch = self._tx.executed(head, reply)
            else:
                mismatch = self._tx.discarded(head, reply)
            if mismatch is not None:
                self._outOfStep(head, mismatch)

    def _confirmed(self, head: Waiting, reply: Reply) -> None:
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

    # Failures

    def _outOfStep(self, head: Waiting, mismatch: ReplyMismatch) -> None:
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
        self._blocking = 0
        for entry in waiting:
            self._failOne(entry, error)
        self._tx.fail(error)
        self._pubsub.close(error)

    def _failOne(self, entry: Waiting, error: Exception) -> None:
        if entry.kind == SUBSCRIPTION:
            self._pubsub.abandon(entry.extra, error)
        elif entry.kind in (EXEC, DISCARD):
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


def _ignore(failure: Failure) -> None:
    """
    Consume the failure of a command the pool sent for itself: the connection's own fate
    tells the pool what it needs.
    """
