"""
The requests whose replies carry no opaque token: the text commands the meta protocol has no
form of (C{version}, C{flush_all}, C{stats}), C{mn}, and the probe of a new connection.
"""

from __future__ import annotations

from txconnpool.memcache._requests import STATS_END, STATS_LINES
from txconnpool.memcache.errors import MemCacheError
from txconnpool.memcache.meta._replies import DONE, MORE, MetaRequest, Mismatch, TooLarge


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
    C{stats}: lines of a name and a value (C{STAT}, and the C{ITEM} lines of C{stats
    cachedump} and C{PREFIX} lines of C{stats detail dump}, as the text client reads them),
    ended by C{END} (or C{RESET}, C{OK} for the subcommands that answer so), at most
    C{maxSize} bytes of them.
    """

    __slots__ = ("maxSize", "size", "values")

    def __init__(self, maxSize: int) -> None:
        MetaRequest.__init__(self, "stats")
        self.values: dict[bytes, bytes] = {}
        self.maxSize = maxSize
        self.size = 0

    def feedLine(self, line: bytes) -> int:
        keyword, _, rest = line.partition(b" ")
        if keyword + b" " in STATS_LINES:
            name, _, value = rest.partition(b" ")
            if name:
                self.size += len(line) + 2
                if self.size > self.maxSize:
                    raise TooLarge(f"stats reply longer than maxStatsSize ({self.maxSize} bytes)")
                self.values[name] = value
                return MORE
        elif line in STATS_END:
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
