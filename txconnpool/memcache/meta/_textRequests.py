"""
The requests whose replies carry no opaque token: the text commands the meta protocol has no
form of (C{version}, C{flush_all}, C{stats}), C{mn}, and the probe of a new connection.
"""

from __future__ import annotations

from txconnpool.memcache.errors import MemCacheError
from txconnpool.memcache.meta._replies import DONE, MORE, MetaRequest, Mismatch

MAX_STATS = 100_000
"""Most C{STAT} lines accepted in one reply to C{stats}."""


class TextRequest(MetaRequest):
    """
    A text-protocol command, which has no meta form (C{version}, C{flush_all}, C{mn}): its
    reply is one line starting with C{prefix}, and carries no opaque token.
    """

    __slots__ = ("prefix", "whole")

    def __init__(self, command: str, prefix: bytes, whole: bool) -> None:
        """
        @param whole: The line must be exactly C{prefix} (C{OK}, C{MN}), and the result is
            C{True}; otherwise the result is what follows C{prefix}.
        """
        MetaRequest.__init__(self, command)
        self.prefix = prefix
        self.whole = whole

    def feedLine(self, line: bytes) -> int:
        if self.whole:
            if line != self.prefix:
                raise Mismatch("is not a reply to it")
            self.result = True
        else:
            if not line.startswith(self.prefix):
                raise Mismatch("is not a reply to it")
            self.result = line[len(self.prefix) :]
        return DONE


class StatsRequest(MetaRequest):
    """
    C{stats}: C{STAT <name> <value>} lines ended by C{END} (or C{RESET}, C{OK} for the
    subcommands that answer so).
    """

    __slots__ = ("values",)

    def __init__(self) -> None:
        MetaRequest.__init__(self, "stats")
        self.values: dict[bytes, bytes] = {}

    def feedLine(self, line: bytes) -> int:
        if line[:5] == b"STAT ":
            name, _, value = line[5:].partition(b" ")
            if name:
                if len(self.values) >= MAX_STATS:
                    raise Mismatch(f"comes after {MAX_STATS} others, more than accepted")
                self.values[name] = value
                return MORE
        elif line in (b"END", b"RESET", b"OK"):
            self.result = self.values
            return DONE
        raise Mismatch("is not a reply to it")


class ProbeRequest(MetaRequest):
    """
    The first request on a connection, C{version}, C{mn} and a quiet-less C{mg} of a key
    nobody uses: it takes any three reply lines, error lines included, for the protocol to
    judge what the server speaks.
    """

    __slots__ = ("lines",)

    def __init__(self) -> None:
        MetaRequest.__init__(self, "version, mn, mg")
        self.lines: list[bytes] = []

    def feedLine(self, line: bytes) -> int:
        self.lines.append(line)
        self.result = self.lines
        return DONE if len(self.lines) == 3 else MORE

    def feedError(self, error: MemCacheError, line: bytes) -> int:
        return self.feedLine(line)
