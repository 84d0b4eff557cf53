"""
Commands sent with C{noreply}: meta commands in quiet mode (the C{q} flag), closed by C{mn}.

In quiet mode memcached leaves out the reply that says a command did what it was asked
(C{HD} to C{ms}, C{md} and C{ma}, C{EN} to C{mg}) and still sends the others: C{NS}, C{EX},
C{NF}, the C{HD} of a C{mg} that found its key, and error lines. So a quiet command may or
may not be answered. Its caller does not wait (its C{Deferred} fired once the command was
written), but the connection must still read those replies, and tell them from the replies
of the requests sent after it: the quiet commands written one after another are followed by
one C{mn}, as memcached documents for pipelines of quiet commands, before anything else is
written, and L{QuietRun} reads every reply up to its C{MN}. An error line, which carries no
opaque token, then answers one of the quiet commands, never a later request.
"""

from __future__ import annotations

from collections.abc import Mapping

from twisted.logger import Logger

from txconnpool.memcache import _validate as _v
from txconnpool.memcache.errors import ClientError, MemCacheError, ServerError
from txconnpool.memcache.meta._replies import (
    DONE,
    MORE,
    WON,
    MetaRequest,
    Mismatch,
    readFlags,
)

_log = Logger()

MAX_QUIET = 1024
"""Most quiet commands in one run; a full run is closed at once."""


class QuietRun(MetaRequest):
    """
    The quiet commands written one after another on a connection, and the C{mn} that closes
    them, once written (C{fenced}); it reads their replies, the ones quiet mode still sends,
    and ends at C{MN}.

    @ivar commands: Each command's name, for messages.
    @ivar replies: The statuses each command may be answered with.
    @ivar keys: The key of each C{mg} (a C{touch}), which a read of a stale item may hand a
        lease to give back; C{None} for the others.
    @ivar carriesData: Whether each command was followed by a data block (C{ms}).
    @ivar fenced: Whether the closing C{mn} was written.
    """

    __slots__ = ("_index", "_pos", "carriesData", "commands", "fenced", "keys", "replies")

    def __init__(self) -> None:
        MetaRequest.__init__(self, "mn")
        self.commands: list[str] = []
        self.replies: list[Mapping[bytes, object]] = []
        self.keys: list[bytes | None] = []
        self.carriesData: list[bool] = []
        self.fenced = False
        self._index: dict[bytes, int] = {}
        self._pos = 0

    def __len__(self) -> int:
        return len(self.commands)

    def add(
        self,
        command: str,
        opaque: bytes,
        replies: Mapping[bytes, object],
        hasData: bool,
        key: bytes | None,
    ) -> None:
        """
        Add a quiet command just written, with its opaque token.
        """
        self._index[opaque] = len(self.commands)
        self.commands.append(command)
        self.replies.append(replies)
        self.keys.append(key)
        self.carriesData.append(hasData)

    def feedLine(self, line: bytes) -> int:
        if line == b"MN":
            if not self.fenced:
                raise Mismatch("came before the mn closing the noreply commands was sent")
            return DONE
        parts = line.split(b" ")
        code = parts[0]
        opaque, flags, cas, marks = readFlags(parts[1:])
        i = self._index.get(opaque or b"", -1)
        if i < self._pos:
            shown = "no opaque token" if opaque is None else opaque.decode("latin-1")
            raise Mismatch(f"carries {shown}, which no noreply command still waiting has")
        command = self.commands[i]
        if code not in self.replies[i] or flags is not None or cas is not None:
            raise Mismatch(f"is not a reply to a noreply {command}")
        key = self.keys[i]
        if marks:
            if key is None:
                raise Mismatch(f"has flags a reply to a noreply {command} does not carry")
            if marks & WON:
                if self.wins is None:
                    self.wins = []
                self.wins.append(key)
        self._pos = i + 1
        _log.debug(
            "memcached answered {status} to a noreply {command}",
            status=code.decode("latin-1"),
            command=command,
        )
        return MORE

    def feedError(self, error: MemCacheError, line: bytes) -> int:
        """
        An error answers one of the commands not answered yet: log it. After a C{CLIENT_ERROR}
        or C{ERROR}, if one of those commands was followed by a data block, the server may
        read the block as a command: the run fails, and the connection must be dropped;
        unless the error is the one memcached gives an C{ma} of a value that is not a
        number and one of the commands waiting is an C{ma}, which it then answers.

        @raise Mismatch: Every command of the run was answered already.
        """
        waiting = range(self._pos, len(self.commands))
        if not waiting:
            raise Mismatch("comes after every noreply command before it was answered")
        withData = any(self.carriesData[i] for i in waiting)
        if withData and _risky(error, any(self.commands[i] in _ARITHMETIC for i in waiting)):
            self.hasData = True
            self.failure = error
            return DONE
        _log.warn(
            "memcached answered {reply} to one of {count} noreply commands ({commands})",
            reply=_v.show(line),
            count=len(waiting),
            commands=", ".join(dict.fromkeys(self.commands[i] for i in waiting)),
        )
        return MORE


_ARITHMETIC = ("increment", "decrement")
_NOT_A_NUMBER = "cannot increment or decrement non-numeric value"


def _risky(error: MemCacheError, arithmetic: bool) -> bool:
    """
    Whether C{error} may answer a command followed by a data block: it is no
    C{SERVER_ERROR}, and not the C{CLIENT_ERROR} of an C{ma} on a value that is not a number
    while an C{ma} is among the commands it may answer (C{arithmetic}).
    """
    if isinstance(error, ServerError):
        return False
    if isinstance(error, ClientError) and error.serverMessage == _NOT_A_NUMBER:
        return not arithmetic
    return True
