"""
The transaction of a connection: whether C{MULTI} is open, the commands queued since, the
keys watched, and what the replies to queued commands, C{EXEC} and C{DISCARD} do to them.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..errors import ProtocolError
from ._replies import Reply, ReplyMismatch
from ._waiting import DISCARD, EXEC, Waiting
from .errors import ResponseError, TransactionDiscardedError, WatchError


class Transaction:
    """
    The transaction state of one connection, as the commands sent so far leave it.

    @ivar open: Whether C{MULTI} was sent without C{EXEC} or C{DISCARD} after it.
    @ivar queued: The commands sent since C{MULTI}.
    @ivar watching: Whether keys are watched.
    """

    def __init__(self) -> None:
        self.open = False
        self.queued: list[Waiting] = []
        self.watching = False

    def close(self) -> list[Waiting]:
        """
        C{EXEC} or C{DISCARD} was sent: the transaction is over, and the watched keys are
        forgotten.

        @return: The commands it queued.
        """
        queued, self.queued = self.queued, []
        self.open = self.watching = False
        return queued

    def queuedReply(
        self, head: Waiting, reply: Reply, waiting: Iterable[Waiting]
    ) -> ReplyMismatch | None:
        """
        The reply to a command sent inside a transaction: C{QUEUED}, or an error (the
        command fails now and will not run), or an ordinary reply when C{MULTI} was refused.

        @param waiting: The commands still waiting, whose C{EXEC} or C{DISCARD} may hold it.
        @return: The mismatch, when the reply does not fit the command.
        """
        if reply == "QUEUED":
            return None
        if head in self.queued:
            self.queued.remove(head)
        for entry in waiting:
            if entry.kind in (EXEC, DISCARD) and head in entry.extra:
                entry.extra.remove(head)
        if type(reply) is ResponseError:
            head.deferred.errback(reply)
            return None
        try:
            value = head.convert(reply)
        except ReplyMismatch as e:
            return e
        head.deferred.callback(value)
        return None

    def executed(self, head: Waiting, reply: Reply) -> ReplyMismatch | None:
        """
        The reply to C{EXEC}: each queued command fires with its own result; a null reply
        (a watched key changed) fails them all with L{WatchError}, an error reply with it.

        @return: The mismatch, when the reply is none of these.
        """
        queued: list[Waiting] = head.extra
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
                return e
            head.deferred.callback(value)
            return None
        error: Exception
        if reply is None:
            error = WatchError("EXEC did not run the transaction: a watched key changed")
        elif type(reply) is ResponseError:
            error = reply
        else:
            return ReplyMismatch(f"EXEC gave {reply!r:.200}")
        for entry in queued:
            entry.deferred.errback(error)
        head.deferred.errback(error)
        return None

    def discarded(self, head: Waiting, reply: Reply) -> ReplyMismatch | None:
        """
        The reply to C{DISCARD}: the queued commands fail with
        L{TransactionDiscardedError}.

        @return: The mismatch, when the reply is neither C{OK} nor an error.
        """
        for entry in head.extra:
            entry.deferred.errback(TransactionDiscardedError("the transaction was discarded"))
        if type(reply) is ResponseError:
            head.deferred.errback(reply)
        elif reply == "OK":
            head.deferred.callback(None)
        else:
            return ReplyMismatch(f"DISCARD gave {reply!r:.200}")
        return None

    def fail(self, error: Exception) -> None:
        """
        The connection is gone: fail the queued commands not answered yet.
        """
        for entry in self.close():
            if not entry.deferred.called:
                entry.deferred.errback(error)
