"""
The waiting line of a connection limiter: first come, first served, with an optional limit per
peer address that lets a later client from another address go ahead of clients whose address
already holds its share of slots.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Generic, Protocol, TypeVar


class _Waiting(Protocol):
    """
    What the queue needs to know about a waiting connection.
    """

    @property
    def arrival(self) -> int:
        """
        Increasing number given when the connection arrived.
        """

    @property
    def peerKey(self) -> str | None:
        """
        The address the per-peer limit applies to, or L{None} for no limit.
        """


W = TypeVar("W", bound=_Waiting)


class ConnectionQueue(Generic[W]):
    """
    Waiting connections in order of arrival.

    Removal of any entry is O(1); taking the next eligible entry is O(log p) for p peers with
    waiting connections.

    @ivar _all: Every waiting entry, oldest first.
    @ivar _byPeer: The waiting entries of each peer, oldest first.
    @ivar _heads: A heap of C{(arrival, peer)} for peers that may be served, possibly holding
        stale rows (a peer whose head changed or that became full); rows are checked when
        popped.
    @ivar _hasRoom: Says whether a peer may take one more slot.
    """

    def __init__(self, hasRoom: Callable[[str | None], bool]) -> None:
        self._all: OrderedDict[W, None] = OrderedDict()
        self._byPeer: dict[str | None, OrderedDict[W, None]] = {}
        self._heads: list[tuple[int, str]] = []
        self._hasRoom = hasRoom

    def __len__(self) -> int:
        return len(self._all)

    def oldest(self) -> W | None:
        """
        @return: The entry that has waited longest, or L{None} if none waits.
        """
        for entry in self._all:
            return entry
        return None

    def countFor(self, peerKey: str) -> int:
        """
        @return: How many entries from C{peerKey} wait.
        """
        waiting = self._byPeer.get(peerKey)
        return 0 if waiting is None else len(waiting)

    def peerKeys(self) -> Iterator[str]:
        """
        Iterate over the addresses with waiting entries.
        """
        for key in self._byPeer:
            if key is not None:
                yield key

    def append(self, entry: W) -> None:
        """
        Add a newly arrived entry at the end of the line.
        """
        self._all[entry] = None
        key = entry.peerKey
        waiting = self._byPeer.get(key)
        if waiting is None:
            waiting = self._byPeer[key] = OrderedDict()
            waiting[entry] = None
            self._offerHead(key)
        else:
            waiting[entry] = None

    def remove(self, entry: W) -> bool:
        """
        Take an entry out of the line wherever it stands.

        @return: L{True} if it was waiting, L{False} if it was not.
        """
        if entry not in self._all:
            return False
        del self._all[entry]
        key = entry.peerKey
        waiting = self._byPeer[key]
        wasHead = next(iter(waiting)) is entry
        del waiting[entry]
        if not waiting:
            del self._byPeer[key]
        elif wasHead:
            self._offerHead(key)
        return True

    def peerHasRoom(self, peerKey: str | None) -> None:
        """
        Tell the queue that C{peerKey} may have room again (one of its slots was released), so
        its oldest entry can be considered.
        """
        if peerKey is not None and peerKey in self._byPeer:
            self._offerHead(peerKey)

    def popNext(self) -> W | None:
        """
        Take the oldest entry whose peer has room.

        @return: That entry, or L{None} if every waiting entry's peer is full (or none waits).
        """
        noPeer = self._byPeer.get(None)
        noPeerHead = None if noPeer is None else next(iter(noPeer))
        peerHead = self._peekPeerHead()
        if peerHead is None and noPeerHead is None:
            return None
        if noPeerHead is None or (peerHead is not None and peerHead.arrival < noPeerHead.arrival):
            assert peerHead is not None
            heapq.heappop(self._heads)
            chosen = peerHead
        else:
            chosen = noPeerHead
        self.remove(chosen)
        return chosen

    def _peekPeerHead(self) -> W | None:
        """
        Drop stale heap rows until the top one names the oldest entry of a peer with room.
        """
        heads = self._heads
        while heads:
            arrival, key = heads[0]
            waiting = self._byPeer.get(key)
            if waiting is not None:
                head = next(iter(waiting))
                if head.arrival == arrival and self._hasRoom(key):
                    return head
            heapq.heappop(heads)
        return None

    def _offerHead(self, key: str | None) -> None:
        if key is None:
            return
        waiting = self._byPeer[key]
        if self._hasRoom(key):
            heapq.heappush(self._heads, (next(iter(waiting)).arrival, key))
