"""
The waiting line of a connection limiter, as its core owns it: the queue in order of arrival,
the watch on the waiting clients' sockets for departures, and the queue timeout.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from ._departure import departureWatcherFor, hasDeparted, watchDeparture
from ._queue import ConnectionQueue
from ._record import ConnectionRecord


class WaitingLine:
    """
    Connections waiting for a slot.

    @ivar _onTimedOut: Called with each connection that waited C{queueTimeout} seconds, once
        it has left the line.
    @ivar _onDeparted: Called with a waiting connection whose client closed or reset it, while
        it is still in the line.
    """

    def __init__(
        self,
        clock: IReactorTime,
        queueTimeout: float | None,
        hasRoom: Callable[[str | None], bool],
        onTimedOut: Callable[[ConnectionRecord], None],
        onDeparted: Callable[[ConnectionRecord], None],
    ) -> None:
        self._clock = clock
        self._queueTimeout = queueTimeout
        self._queue: ConnectionQueue[ConnectionRecord] = ConnectionQueue(hasRoom)
        self._watcher = departureWatcherFor(clock)
        self._onTimedOut = onTimedOut
        self._onDeparted = onDeparted
        self._timer: IDelayedCall | None = None

    def __len__(self) -> int:
        return len(self._queue)

    def countFor(self, peerKey: str) -> int:
        """
        @return: How many connections from C{peerKey} wait.
        """
        return self._queue.countFor(peerKey)

    def peerKeys(self) -> Iterator[str]:
        """
        Iterate over the addresses with waiting connections.
        """
        return self._queue.peerKeys()

    def peerHasRoom(self, peerKey: str | None) -> None:
        """
        A slot of C{peerKey} was released: its oldest waiting connection may go next.
        """
        self._queue.peerHasRoom(peerKey)

    def join(self, record: ConnectionRecord) -> None:
        """
        Put a connection at the end of the line and watch its socket.
        """
        record.enqueuedAt = self._clock.seconds()
        self._queue.append(record)
        onDeparture = record.onDeparture = partial(self._onDeparted, record)
        fd = record.handle.descriptor()
        if watchDeparture(self._watcher, fd, onDeparture):
            record.watchedFd = fd
        self._schedule()

    def leave(self, record: ConnectionRecord) -> bool:
        """
        Take a connection out of the line wherever it stands.

        @return: Whether it was waiting.
        """
        self._unwatch(record)
        left = self._queue.remove(record)
        self._idle()
        return left

    def takeNext(self) -> tuple[ConnectionRecord, bool] | None:
        """
        Take the connection that may be served next out of the line.

        @return: It and whether its client has already gone (closed or reset, looked at right
            now without reading), or L{None} if no waiting connection may be served.
        """
        record = self._queue.popNext()
        if record is None:
            return None
        fd = record.watchedFd
        self._unwatch(record)
        self._idle()
        departed = fd is not None and self._watcher is not None and hasDeparted(fd)
        return record, departed

    def _unwatch(self, record: ConnectionRecord) -> None:
        fd, record.watchedFd = record.watchedFd, None
        onDeparture, record.onDeparture = record.onDeparture, None
        if fd is not None and onDeparture is not None and self._watcher is not None:
            self._watcher.unwatch(fd, onDeparture)

    def _schedule(self) -> None:
        queueTimeout = self._queueTimeout
        if queueTimeout is None or self._timer is not None:
            return
        oldest = self._queue.oldest()
        if oldest is not None:
            delay = max(0.0, oldest.enqueuedAt + queueTimeout - self._clock.seconds())
            self._timer = self._clock.callLater(delay, self._due)

    def _idle(self) -> None:
        """
        Cancel the queue timer once nobody waits.
        """
        timer = self._timer
        if not self._queue and timer is not None:
            self._timer = None
            if timer.active():
                timer.cancel()

    def _due(self) -> None:
        self._timer = None
        queueTimeout = self._queueTimeout
        assert queueTimeout is not None
        now = self._clock.seconds()
        while True:
            oldest = self._queue.oldest()
            if oldest is None or oldest.enqueuedAt + queueTimeout > now:
                break
            self.leave(oldest)
            self._onTimedOut(oldest)
        self._schedule()
