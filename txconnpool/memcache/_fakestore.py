"""
The items of L{FakeMemcached<txconnpool.memcache.testing.FakeMemcached>} and what memcached's
text commands do to them, as pure data operations on a clock; the wire is in
L{txconnpool.memcache._fakeserver}.
"""

from __future__ import annotations

import os

import attrs
from twisted.internet.interfaces import IReactorTime

REALTIME_MAXDELTA = 60 * 60 * 24 * 30
"""An expiry time above this many seconds is a Unix time, as memcached reads it."""


@attrs.define
class Item:
    """
    One stored item.

    @ivar expiresAt: the clock time it expires at, or 0 for never.
    @ivar updatedAt: the clock time it was last stored, for C{flush_all} with a delay.
    """

    value: bytes
    flags: int
    expiresAt: float
    cas: int
    updatedAt: float


class FakeStore:
    """
    The items of a fake memcached, their expiry on C{clock}, and the counters C{stats}
    reports.

    @ivar counters: C{stats} counters by name.
    """

    def __init__(self, clock: IReactorTime, maxItemSize: int, version: str) -> None:
        self.clock = clock
        self.maxItemSize = maxItemSize
        self.version = version
        self.startedAt = clock.seconds()
        self._items: dict[bytes, Item] = {}
        self._lastCas = 0
        self._flushAt: float | None = None
        self.counters: dict[str, int] = dict.fromkeys(
            "cmd_get cmd_set cmd_flush cmd_touch get_hits get_misses get_expired delete_misses "
            "delete_hits incr_misses incr_hits decr_misses decr_hits cas_misses cas_hits "
            "cas_badval touch_hits touch_misses total_items curr_connections "
            "total_connections".split(),
            0,
        )

    def expiry(self, exptime: int) -> float:
        """
        Return the clock time at which an item given C{exptime} expires, as memcached reads
        it: 0 for never, a negative time for at once, a Unix time above 30 days, otherwise
        seconds from now.
        """
        now = self.clock.seconds()
        if exptime == 0:
            return 0
        if exptime < 0:
            return now - 1
        if exptime > REALTIME_MAXDELTA:
            return float(exptime)
        return now + exptime

    def _live(self, key: bytes) -> Item | None:
        item = self._items.get(key)
        if item is None:
            return None
        now = self.clock.seconds()
        flushAt = self._flushAt
        if (item.expiresAt and item.expiresAt <= now) or (
            flushAt is not None and flushAt <= now and item.updatedAt <= flushAt
        ):
            del self._items[key]
            return None
        return item

    def _nextCas(self) -> int:
        self._lastCas += 1
        return self._lastCas

    def tooLarge(self, key: bytes, length: int) -> bool:
        """
        Tell whether an item of C{key} and C{length} bytes is over the item size limit,
        counting memcached's item header as 48 bytes and the key with its terminator.
        """
        return 48 + len(key) + 1 + length + 2 > self.maxItemSize

    def get(self, key: bytes, touchTo: int | None = None) -> Item | None:
        """
        Return the live item of C{key}, giving it a new expiry time with C{touchTo}.
        """
        item = self._live(key)
        self.counters["cmd_get"] += 1
        if touchTo is not None:
            self.counters["cmd_touch"] += 1
        if item is None:
            self.counters["get_misses"] += 1
            if touchTo is not None:
                self.counters["touch_misses"] += 1
            return None
        self.counters["get_hits"] += 1
        if touchTo is not None:
            self.counters["touch_hits"] += 1
            item.expiresAt = self.expiry(touchTo)
        return item

    def store(
        self, command: str, key: bytes, value: bytes, flags: int, exptime: int, cas: int
    ) -> bytes:
        """
        Carry out a storage command; return memcached's reply word.
        """
        self.counters["cmd_set"] += 1
        item = self._live(key)
        if command == "cas":
            if item is None:
                self.counters["cas_misses"] += 1
                return b"NOT_FOUND"
            if item.cas != cas:
                self.counters["cas_badval"] += 1
                return b"EXISTS"
            self.counters["cas_hits"] += 1
        elif command == "add" and item is not None:
            return b"NOT_STORED"
        elif command in ("replace", "append", "prepend") and item is None:
            return b"NOT_STORED"
        now = self.clock.seconds()
        if command in ("append", "prepend"):
            assert item is not None
            joined = item.value + value if command == "append" else value + item.value
            if self.tooLarge(key, len(joined)):
                return b"SERVER_ERROR out of memory storing object"
            item.value = joined
            item.cas = self._nextCas()
            item.updatedAt = now
            return b"STORED"
        self._items[key] = Item(value, flags, self.expiry(exptime), self._nextCas(), now)
        self.counters["total_items"] += 1
        return b"STORED"

    def delete(self, key: bytes) -> bytes:
        """
        Delete C{key}; return memcached's reply word.
        """
        if self._live(key) is None:
            self.counters["delete_misses"] += 1
            return b"NOT_FOUND"
        del self._items[key]
        self.counters["delete_hits"] += 1
        return b"DELETED"

    def touch(self, key: bytes, exptime: int) -> bytes:
        """
        Give C{key} a new expiry time; return memcached's reply word.
        """
        self.counters["cmd_touch"] += 1
        item = self._live(key)
        if item is None:
            self.counters["touch_misses"] += 1
            return b"NOT_FOUND"
        self.counters["touch_hits"] += 1
        item.expiresAt = self.expiry(exptime)
        return b"TOUCHED"

    def delta(self, command: str, key: bytes, amount: int) -> bytes:
        """
        Carry out C{incr} or C{decr}; return memcached's reply.

        As memcached does, a result no longer than the stored digits replaces them in
        place, padded with spaces: C{decr} of C{b"10"} by 1 answers C{9} and leaves
        C{b"9 "}.
        """
        item = self._live(key)
        if item is None:
            self.counters[f"{command}_misses"] += 1
            return b"NOT_FOUND"
        digits = item.value.rstrip(b" ")
        if not digits.isdigit() or len(digits) > 20 or int(digits) >= 2**64:
            return b"CLIENT_ERROR cannot increment or decrement non-numeric value"
        self.counters[f"{command}_hits"] += 1
        number = int(digits)
        number = (number + amount) % 2**64 if command == "incr" else max(0, number - amount)
        result = b"%d" % (number,)
        if len(result) <= len(item.value):
            item.value = result.ljust(len(item.value), b" ")
        else:
            item.value = result
        item.cas = self._nextCas()
        return result

    def flushAll(self, delay: int) -> None:
        """
        Invalidate every item stored up to now, or up to C{delay} seconds from now.
        """
        self.counters["cmd_flush"] += 1
        self._flushAt = self.expiry(delay) if delay else self.clock.seconds()
        if not delay:
            self._items.clear()

    def itemCount(self) -> int:
        """
        How many items are stored and live.
        """
        return sum(1 for key in list(self._items) if self._live(key) is not None)

    def stats(self) -> list[tuple[str, str]]:
        """
        The name and value of each general statistic.
        """
        now = self.clock.seconds()
        values = [
            ("pid", str(os.getpid())),
            ("uptime", str(int(now - self.startedAt))),
            ("time", str(int(now))),
            ("version", self.version),
            ("curr_items", str(self.itemCount())),
            ("bytes", str(sum(len(item.value) for item in self._items.values()))),
            ("limit_maxbytes", str(64 * 1024 * 1024)),
        ]
        return values + [(name, str(count)) for name, count in self.counters.items()]

    def cachedump(self, limit: int) -> list[tuple[bytes, int, int]]:
        """
        The key, value length and expiry (a Unix time, or 0) of up to C{limit} live items
        (all of them for 0).
        """
        dumped = []
        for key in list(self._items):
            item = self._live(key)
            if item is not None:
                dumped.append((key, len(item.value), int(item.expiresAt)))
                if len(dumped) == limit:
                    break
        return dumped

    def resetStats(self) -> None:
        """
        Zero the counters, as C{stats reset} does.
        """
        for name in self.counters:
            if name not in ("curr_connections", "total_items"):
                self.counters[name] = 0
