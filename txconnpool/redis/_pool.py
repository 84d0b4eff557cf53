"""
L{RedisPool}: a pool of Redis connections with the common commands as methods, and its
factory, whose handshake sends C{AUTH} and C{SELECT}.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

from twisted.internet.defer import Deferred, fail, gatherResults
from twisted.python.failure import Failure

from ..errors import ServerUnavailableError
from ..pool import Pool, PooledClientFactory
from . import _replies as r
from ._args import checkSupported, commandName, encodeArg, encodeArgs, isExclusive
from ._collections import CollectionCommands
from ._replies import Reply
from ._strings import StringCommands
from .errors import AuthenticationError, ExclusiveCommandError, InvalidRequestError, ResponseError
from .protocol import RedisProtocol

_T = TypeVar("_T")


class RedisClientFactory(PooledClientFactory):
    """
    Builds the L{RedisProtocol} of each pooled connection, and readies it with C{AUTH} and
    C{SELECT} when the pool has a password or a database other than 0.
    """

    protocol = RedisProtocol

    def buildProtocol(self, addr: object) -> RedisProtocol:
        """
        Build a protocol with the pool's bound on unread published messages.
        """
        pool = self.connectionPool
        maxMessages = getattr(pool, "maxMessages", 1000)
        protocol = self.protocol(maxMessages=maxMessages)
        protocol.factory = self
        return protocol

    def prepareConnection(self, protocol: RedisProtocol) -> Deferred[object] | None:
        """
        Send C{AUTH} and C{SELECT} as the pool says, both at once.

        @return: L{None} when there is nothing to send, or a C{Deferred} that fires when
            both were accepted. It fails with L{AuthenticationError} when the password was
            refused, or with the L{ResponseError} of C{SELECT}.
        """
        pool = self.connectionPool
        if not isinstance(pool, RedisPool) or pool.handshake is None:
            return None
        replies = []
        for args in pool.handshake:
            reply = protocol.sendCommand(r.ok, args)
            replies.append(reply.addErrback(_refused, args[0] == b"AUTH"))
        return gatherResults(replies, consumeErrors=True).addCallbacks(
            lambda _: None, _handshakeFailed, errbackArgs=(pool,)
        )


def _refused(failure: Failure, authenticating: bool) -> Failure:
    """
    Tell a refused password from other errors: any error reply to C{AUTH}, and C{NOAUTH}
    to C{SELECT} (a server that wants a password when none was given).
    """
    error = failure.value
    if isinstance(error, ResponseError) and (authenticating or error.code == "NOAUTH"):
        return Failure(AuthenticationError(error.serverMessage))
    return failure


def _handshakeFailed(failure: Failure, pool: RedisPool) -> Failure:
    """
    Unwrap the first error of the handshake, and tell the pool of a refused password.
    """
    first: Failure = getattr(failure.value, "subFailure", failure)
    if isinstance(first.value, AuthenticationError):
        pool._authenticationFailed(first.value)
    return first


class RedisPool(Pool[RedisProtocol], StringCommands, CollectionCommands):
    """
    A Redis client backed by a pool of connections::

        pool = RedisPool("tcp:127.0.0.1:6379", maxClients=10)
        await pool.set(b"greeting", b"hello")
        value = await pool.get(b"greeting")

    Each command method is a request to the first connection with room for it (requests
    are pipelined: see L{defaultMaxRequestsPerClient}); it takes the arguments and gives the
    results of the L{RedisProtocol} method of the same name. On top of that protocol's
    failures, every method can fail like L{Pool.performRequest}: with
    L{ConnectionLostError<txconnpool.errors.ConnectionLostError>},
    L{PoolClosedError<txconnpool.errors.PoolClosedError>},
    L{ServerUnavailableError<txconnpool.errors.ServerUnavailableError>} or
    L{CancelledError<twisted.internet.defer.CancelledError>}.

    Commands that block their connection or change its state (C{BLPOP}, C{SUBSCRIBE},
    C{MULTI}, C{WATCH}, C{SELECT}, C{AUTH}...) are not methods of the pool: they run on a
    connection checked out for them, C{async with pool.connection() as redis:}, whose
    L{RedisProtocol} has them. Sent through L{execute}, they fail at once with
    L{ExclusiveCommandError}. Leaving the block gives the connection back after discarding
    any transaction left open, forgetting watched keys and selecting the pool's database
    again; a connection left subscribed, blocked, or changed for good (C{AUTH}, C{HELLO},
    C{RESET}, C{CLIENT SETNAME}...) is closed instead.

    @cvar defaultMaxRequestsPerClient: 32. With 100 callers on 4 connections, the sweep of
        C{python -m benchmarks.redis --sweep} found the client's CPU time per command falling
        steeply up to depth 32 (a third of depth 1's) and by a tenth more at most beyond, and
        throughput best at 32 to 64; a deeper pipeline piles the requests on fewer
        connections, each slow reply then holding up more of them.
    @ivar password: The password sent with C{AUTH}, or L{None}.
    @ivar username: The user name sent with C{AUTH}, or L{None}.
    @ivar db: The database selected on every connection.
    @ivar handshake: The commands that ready a new connection, or L{None} for none.
    @ivar maxMessages: The bound on unread published messages of each connection.
    """

    clientFactory = RedisClientFactory
    defaultMaxRequestsPerClient = 32
    idempotentMethods = frozenset({"sendIdempotentCommand"})

    def __init__(
        self,
        *args: Any,
        password: str | bytes | None = None,
        username: str | bytes | None = None,
        db: int = 0,
        maxMessages: int = 1000,
        **kwargs: Any,
    ) -> None:
        """
        Take the arguments of L{Pool}, and:

        @param password: Send C{AUTH} with this password on every new connection.
        @param username: The user name for C{AUTH} (Redis 6 ACLs), with C{password}.
        @param db: Send C{SELECT} with this database on every new connection (unless 0).
        @param maxMessages: How many published messages a subscribed connection keeps
            unread before it stops reading (see L{RedisProtocol.nextMessage}).
        @raise TypeError: An argument has the wrong type.
        @raise ValueError: C{db} is negative, C{maxMessages} less than 1, or C{username} is
            given without C{password}.
        """
        if password is not None and not isinstance(password, str | bytes):
            raise TypeError(f"password must be str or bytes, not {password!r}")
        if username is not None and not isinstance(username, str | bytes):
            raise TypeError(f"username must be str or bytes, not {username!r}")
        if username is not None and password is None:
            raise ValueError("username needs a password")
        if isinstance(db, bool) or not isinstance(db, int):
            raise TypeError(f"db must be an int, not {db!r}")
        if db < 0:
            raise ValueError(f"db must not be negative, not {db!r}")
        if isinstance(maxMessages, bool) or not isinstance(maxMessages, int):
            raise TypeError(f"maxMessages must be an int, not {maxMessages!r}")
        if maxMessages < 1:
            raise ValueError(f"maxMessages must be at least 1, not {maxMessages!r}")
        self.password = password
        self.username = username
        self.db = db
        self.maxMessages = maxMessages
        handshake: list[list[bytes]] = []
        if password is not None:
            auth = [b"AUTH", encodeArg(password)]
            if username is not None:
                auth.insert(1, encodeArg(username))
            handshake.append(auth)
        if db:
            handshake.append([b"SELECT", b"%d" % (db,)])
        self.handshake: list[list[bytes]] | None = handshake or None
        self._earlyReady: list[Deferred[None]] = []
        Pool.__init__(self, *args, **kwargs)

    def __repr__(self) -> str:
        base = Pool.__repr__(self)
        return base if not self.db else base[:-1] + f" db={self.db}>"

    # Requests

    def _run(
        self, convert: Callable[[Reply], _T], idempotent: bool, args: list[bytes]
    ) -> Deferred[_T]:
        return self.performRequest(
            "sendIdempotentCommand" if idempotent else "sendCommand", convert, args
        )

    def execute(self, command: bytes | str, *args: object) -> Deferred[Reply]:
        """
        Send any command that does not need a connection of its own.

        @param command: The command's name, such as C{"OBJECT"} or C{b"ZUNIONSTORE"}.
        @param args: Its arguments: C{bytes}, C{str} (sent as UTF-8), C{int} or C{float}.
        @return: A C{Deferred} firing with the reply as it came (see L{Reply
            <txconnpool.redis.Reply>}). It fails at once, with nothing sent, with
            L{ExclusiveCommandError} for a command that blocks or changes the state of its
            connection (run it on C{pool.connection()}), with L{UnsupportedCommandError
            <txconnpool.redis.errors.UnsupportedCommandError>} for one this client cannot
            carry, and with an L{InvalidRequestError} leaf for an argument that cannot be
            sent. A command is never sent twice.
        """
        try:
            name = commandName(command)
            encoded = encodeArgs(args)
            checkSupported(name, encoded)
        except InvalidRequestError:
            return fail()
        if isExclusive(name, encoded):
            text = name.decode("ascii", "replace")
            return fail(
                ExclusiveCommandError(
                    f"{text} blocks its connection or changes its state, so it runs on a "
                    "connection of its own: async with pool.connection() as redis: "
                    f"await redis.execute({text!r}, ...)"
                )
            )
        return self.performRequest("sendCommand", r.anyReply, [encodeArg(command), *encoded])

    # The pool's hooks

    def connectionClosing(self, protocol: RedisProtocol) -> bool:
        """
        @return: Whether the protocol dropped its connection (after a protocol error).
        """
        return protocol.closed

    def pingConnection(self, protocol: RedisProtocol) -> Deferred[object]:
        """
        Ping a connection with C{PING}.

        @return: A C{Deferred} firing with C{"PONG"}.
        """
        return cast("Deferred[object]", protocol.ping())

    def release(self, protocol: RedisProtocol) -> None:
        """
        Give back a connection checked out with L{acquire<Pool.acquire>}, after undoing what
        its commands left (see L{RedisProtocol.restore}); one that cannot be undone is closed
        (as with L{discard<Pool.discard>}).

        @raise ValueError: C{protocol} is not checked out from this pool.
        """
        if protocol.restore(self.db):
            Pool.release(self, protocol)
        else:
            Pool.discard(self, protocol)

    def whenReady(self, timeout: float = 30.0) -> Deferred[None]:
        """
        As L{Pool.whenReady}, and fail at once, with L{ServerUnavailableError} caused by an
        L{AuthenticationError}, when the server refuses the password.
        """
        ready = Pool.whenReady(self, timeout)
        if ready.called:
            return ready
        early: Deferred[None] = Deferred()
        self._earlyReady.append(early)

        def done(result: object) -> None:
            if early not in self._earlyReady:
                return
            self._earlyReady.remove(early)
            if isinstance(result, Failure):
                early.errback(result)
            else:
                early.callback(None)

        ready.addBoth(done)
        return early

    def _authenticationFailed(self, error: AuthenticationError) -> None:
        """
        The server refused the password: fail those waiting in L{whenReady}.
        """
        waiters, self._earlyReady = self._earlyReady, []
        for waiter in waiters:
            unavailable = ServerUnavailableError(
                f"Redis at {self._address} refused the password: {error}"
            )
            unavailable.__cause__ = error
            waiter.errback(unavailable)
