"""
Noticing that a client waiting in the queue has gone away, without reading what it sent.

A queued connection's transport is paused, so the reactor no longer watches its socket and would
only see the close once the connection is served.  L{EpollDepartureWatcher} keeps a separate
epoll set of the queued sockets, registered for hang-up events only (C{EPOLLRDHUP}, C{EPOLLHUP},
C{EPOLLERR}, never C{EPOLLIN}), and puts that set's own descriptor in the reactor: the reactor
wakes up as soon as any queued client closes or resets, and the unread data stays unread.
"""

from __future__ import annotations

import select
from collections.abc import Callable

from twisted.internet.interfaces import IReactorFDSet, IReadDescriptor
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

_log = Logger()

_HANGUP = (
    getattr(select, "EPOLLRDHUP", 0x2000)
    | getattr(select, "EPOLLHUP", 0x10)
    | getattr(select, "EPOLLERR", 0x8)
)


_POLL_HANGUP = (
    getattr(select, "POLLRDHUP", 0x2000) | getattr(select, "POLLHUP", 0x10) | select.POLLERR
)


@implementer(IReadDescriptor)
class EpollDepartureWatcher:
    """
    Calls back when a watched socket's peer closes or resets the connection.

    The epoll set exists, and is in the reactor, only while some socket is watched.  Each
    socket is reported at most once and is forgotten when reported.
    """

    _log = Logger()

    def __init__(self, reactor: IReactorFDSet) -> None:
        self._reactor = reactor
        self._epoll: select.epoll | None = None
        self._watched: dict[int, Callable[[], None]] = {}
        self._reading = False

    def __len__(self) -> int:
        return len(self._watched)

    def watch(self, fd: int, onDeparture: Callable[[], None]) -> None:
        """
        Call C{onDeparture} once the peer of socket C{fd} closes or resets.

        @raise OSError: If the socket cannot be watched (it is already closed, for example).
        """
        if self._epoll is None:
            self._epoll = select.epoll()
        self._epoll.register(fd, _HANGUP)
        self._watched[fd] = onDeparture
        if not self._reading:
            self._reading = True
            self._reactor.addReader(self)

    def unwatch(self, fd: int, onDeparture: Callable[[], None]) -> None:
        """
        Stop watching socket C{fd}, if it is still watched for C{onDeparture}.

        Call this before the socket is closed: the number of a closed descriptor can be given
        to a new socket.
        """
        if self._watched.get(fd) != onDeparture:
            return
        del self._watched[fd]
        if self._epoll is not None:
            try:
                self._epoll.unregister(fd)
            except OSError:
                pass
        self._idle()

    def hasDeparted(self, fd: int) -> bool:
        """
        @return: Whether the peer of socket C{fd} has closed or reset the connection, right
            now, without reading from it.
        """
        return hasDeparted(fd)

    def close(self) -> None:
        """
        Forget every socket and release the epoll set.
        """
        self._watched.clear()
        self._idle()

    def _idle(self) -> None:
        if self._watched:
            return
        if self._reading:
            self._reading = False
            self._reactor.removeReader(self)
        if self._epoll is not None:
            self._epoll.close()
            self._epoll = None

    # IReadDescriptor

    def fileno(self) -> int:
        return -1 if self._epoll is None else self._epoll.fileno()

    def doRead(self) -> None:
        epoll = self._epoll
        if epoll is None:
            return
        departed = []
        for fd, _events in epoll.poll(0):
            onDeparture = self._watched.pop(fd, None)
            try:
                epoll.unregister(fd)
            except OSError:
                pass
            if onDeparture is not None:
                departed.append(onDeparture)
        self._idle()
        for onDeparture in departed:
            try:
                onDeparture()
            except Exception:
                self._log.failure("While handling a queued client's departure")

    def connectionLost(self, reason: Failure) -> None:
        self._reading = False

    def logPrefix(self) -> str:
        return "EpollDepartureWatcher"


def hasDeparted(fd: int) -> bool:
    """
    @return: Whether the peer of socket C{fd} has closed or reset the connection, right now,
        without reading from it.
    """
    poller = select.poll()
    poller.register(fd, _POLL_HANGUP)
    return bool(poller.poll(0))


def hasPendingInput(fd: int) -> bool:
    """
    @return: Whether socket C{fd} holds bytes not read yet (or its peer has closed), right
        now, without reading them.
    """
    poller = select.poll()
    poller.register(fd, select.POLLIN | _POLL_HANGUP)
    return bool(poller.poll(0))


def watchDeparture(
    watcher: EpollDepartureWatcher | None, fd: int | None, onDeparture: Callable[[], None]
) -> bool:
    """
    Watch socket C{fd} for its peer's departure, if there is a watcher and a socket.

    @return: Whether the socket is watched.
    """
    if watcher is None or fd is None or fd < 0:
        return False
    try:
        watcher.watch(fd, onDeparture)
    except OSError:
        _log.failure("Cannot watch a queued connection's socket {fd}", fd=fd)
        return False
    return True


def departureWatcherFor(reactor: object) -> EpollDepartureWatcher | None:
    """
    @return: A watcher for C{reactor}, or L{None} where queued departures cannot be noticed
        early (no epoll, or a reactor without file descriptor support such as
        L{twisted.internet.task.Clock}); there a departed client is noticed when it is served.
    """
    if not hasattr(select, "epoll") or not IReactorFDSet.providedBy(reactor):
        return None
    return EpollDepartureWatcher(reactor)
