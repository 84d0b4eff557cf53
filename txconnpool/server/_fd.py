"""
File descriptors: checking that a configuration fits under C{RLIMIT_NOFILE}, and pausing the
listening ports, instead of letting them spin or drop clients, when descriptors run short.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IReactorFDSet, IReactorTime
from twisted.logger import ILogObserver, LogEvent, Logger, globalLogPublisher
from zope.interface import provider

DESCRIPTOR_RESERVE = 16
"""
Descriptors kept free beyond the ones already open, for the process's other needs (log files,
outgoing connections, the departure watcher, Twisted's own accept reserve).
"""


def descriptorLimit() -> int | None:
    """
    @return: The soft C{RLIMIT_NOFILE} of this process, or L{None} if there is none to read
        (no C{resource} module, or an unlimited value).
    """
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return None
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return None
    return soft


def openDescriptorCount() -> int:
    """
    @return: How many descriptors this process has open (0 where that cannot be listed).
    """
    for directory in ("/proc/self/fd", "/dev/fd"):
        try:
            # The listing itself opens one descriptor.
            return max(0, len(os.listdir(directory)) - 1)
        except OSError:
            continue
    return 0  # pragma: no cover - neither directory exists


def checkDescriptorBudget(
    maxConnections: int,
    maxQueued: int | None,
    *,
    limit: int | None = None,
    inUse: int | None = None,
) -> int | None:
    """
    Check that C{maxConnections + maxQueued} connections fit under the descriptor limit,
    together with the descriptors already open and L{DESCRIPTOR_RESERVE}.

    @param limit: The limit to check against; by default the process's soft C{RLIMIT_NOFILE}.
    @param inUse: Descriptors already open; by default counted.

    @return: How many connections (active, queued and overflowing together) fit, or L{None}
        if there is no limit.

    @raise ValueError: If the configuration cannot fit; the message names the arguments, the
        limit and what to change.
    """
    if limit is None:
        limit = descriptorLimit()
    if limit is None:
        return None
    if inUse is None:
        inUse = openDescriptorCount()
    budget = limit - inUse - DESCRIPTOR_RESERVE
    wanted = maxConnections + (maxQueued or 0)
    if wanted > budget:
        what = (
            f"maxConnections ({maxConnections})"
            if maxQueued is None
            else f"maxConnections ({maxConnections}) + maxQueued ({maxQueued}) = {wanted}"
        )
        raise ValueError(
            f"{what} connections cannot fit under RLIMIT_NOFILE ({limit}): {inUse} descriptors "
            f"are already open and {DESCRIPTOR_RESERVE} are kept in reserve, leaving {budget}; "
            "lower them or raise the limit (ulimit -n)"
        )
    return budget


def factoryChainHolds(factory: object, target: object) -> bool:
    """
    @return: Whether C{target} is C{factory} or one of the factories it wraps (following
        C{wrappedFactory}, as TLS and other wrapping factories have).
    """
    while factory is not None:
        if factory is target:
            return True
        factory = getattr(factory, "wrappedFactory", None)
    return False


_ACCEPT_ERRORS = frozenset({"EMFILE", "ENFILE", "ENOBUFS", "ENOMEM"})
_EMFILE_FORMATS = frozenset(
    {
        "EMFILE encountered; releasing reserved file descriptor.",
        "Could not accept new connection ({acceptError})",
    }
)


def _isAcceptFailure(event: LogEvent) -> bool:
    if event.get("log_format") not in _EMFILE_FORMATS:
        return False
    error = event.get("acceptError")
    return error is None or error in _ACCEPT_ERRORS


class AcceptGate:
    """
    Pauses and resumes the listening ports that feed one factory.

    Ports are paused while the factory holds as many connections as descriptors allow, so
    further clients wait in the kernel's accept queue instead of failing C{accept}.  When
    C{accept} fails anyway for lack of descriptors (Twisted logs it, and may drop the clients it
    could not keep), the ports are paused for a back-off delay that doubles on each failure, up
    to C{maxBackoff}, and C{onFailure} is called so the factory can free descriptors and lower
    the number of connections it takes on.  After four back-off delays without a failure,
    C{onRecovered} is called and the next failure starts with a short delay again.

    Twisted's listening ports do not tell their factory about failed accepts; the gate learns of
    them from the log events the ports emit, through an observer on the global log publisher
    that is registered between L{start} and L{stop}.  Descriptors are shared by the whole
    process, so every gate reacts to any port's failure.
    """

    _log = Logger()

    def __init__(
        self,
        reactor: IReactorTime,
        ownsFactory: Callable[[object], bool],
        onFailure: Callable[[], None],
        onRecovered: Callable[[], None] = lambda: None,
        *,
        minBackoff: float = 0.05,
        maxBackoff: float = 2.0,
    ) -> None:
        self._reactor = reactor
        self._ownsFactory = ownsFactory
        self._onFailure = onFailure
        self._onRecovered = onRecovered
        self._minBackoff = minBackoff
        self._maxBackoff = maxBackoff
        self._backoff = 0.0
        self._full = False
        self._room: int | None = None
        self._paused: list[Any] = []
        self._resumeCall: IDelayedCall | None = None
        self._forgetCall: IDelayedCall | None = None
        self._capCall: IDelayedCall | None = None
        self._known: list[Any] = []
        self._observing = False
        self.pauses = 0

    def start(self) -> None:
        """
        Begin watching for failed accepts.
        """
        if not self._observing:
            self._observing = True
            globalLogPublisher.addObserver(self._observe)

    def stop(self) -> None:
        """
        Stop watching, resume any port still paused and cancel the pending resume.
        """
        if self._observing:
            self._observing = False
            globalLogPublisher.removeObserver(self._observe)
        for call in (self._resumeCall, self._forgetCall, self._capCall):
            if call is not None and call.active():
                call.cancel()
        self._resumeCall = self._forgetCall = self._capCall = None
        self._full = False
        self._room = None
        self._resume()

    @property
    def paused(self) -> bool:
        """
        Whether the ports are held paused.
        """
        return self._full or self._resumeCall is not None

    def setRoom(self, room: int | None, *, precise: bool = False) -> None:
        """
        Say how many more connections the factory can take on (L{None}: no known bound).

        The ports are held paused while there is no room.  When they resume, a Twisted port
        accepts at most C{room} connections in its next batch (its C{numberAccepts}), since a
        batch cannot be paused halfway.

        @param precise: Whether C{room} is tight (learned from a failed C{accept}): then the
            batch size of ports still reading is also capped, before their next batch.
        """
        self._room = room
        if precise and room is not None and room > 0 and self._capCall is None:
            self._capCall = self._reactor.callLater(0, self._capBatches)
        full = room is not None and room <= 0
        if full == self._full:
            return
        self._full = full
        if full:
            self._pause()
        elif self._resumeCall is None:
            self._resume()

    def acceptFailed(self) -> None:
        """
        React to an C{accept} that failed for lack of descriptors.
        """
        self._backoff = min(self._maxBackoff, max(self._minBackoff, self._backoff * 2))
        self._log.warn(
            "accept() failed for lack of file descriptors; pausing listening ports for {backoff}s",
            backoff=self._backoff,
        )
        forget, self._forgetCall = self._forgetCall, None
        if forget is not None and forget.active():
            forget.cancel()
        self._onFailure()
        self._pause()
        call = self._resumeCall
        if call is not None and call.active():
            call.reset(self._backoff)
        else:
            self._resumeCall = self._reactor.callLater(self._backoff, self._backoffOver)

    @provider(ILogObserver)
    def _observe(self, event: LogEvent) -> None:
        if _isAcceptFailure(event):
            self._reactor.callLater(0, self.acceptFailed)

    def _backoffOver(self) -> None:
        self._resumeCall = None
        if not self._full:
            self._resume()
        self._forgetCall = self._reactor.callLater(4 * self._backoff, self._forget)

    def _forget(self) -> None:
        self._forgetCall = None
        self._backoff = 0.0
        self._onRecovered()

    def _ports(self) -> Iterator[Any]:
        reactor = self._reactor
        if not IReactorFDSet.providedBy(reactor):
            return
        for reader in reactor.getReaders():
            if hasattr(reader, "stopListening") and hasattr(reader, "stopReading"):
                if self._ownsFactory(getattr(reader, "factory", None)):
                    yield reader

    def _capBatches(self) -> None:
        """
        Runs in the turn after a change, once the port has set its own next batch size.
        """
        self._capCall = None
        room = self._room
        if room is None:
            return
        for port in self._known:
            if hasattr(port, "numberAccepts"):
                port.numberAccepts = max(1, min(port.numberAccepts, room))

    def _pause(self) -> None:
        ports = list(self._ports())
        self._known.extend(p for p in ports if p not in self._known)
        for port in ports:
            port.stopReading()
        self._paused.extend(ports)
        if ports:
            self.pauses += 1

    def _resume(self) -> None:
        paused, self._paused = self._paused, []
        room = self._room
        for port in paused:
            if getattr(port, "connected", False) and not getattr(port, "disconnecting", False):
                if room is not None and hasattr(port, "numberAccepts"):
                    port.numberAccepts = max(1, min(port.numberAccepts, room))
                port.startReading()


class DescriptorGuard:
    """
    Keeps a limiter within the descriptors it may use: the budget checked at construction, and
    the lower one learned when an C{accept} fails for lack of descriptors, which holds until
    descriptors have been plentiful for a while.  It pauses the listening ports, through an
    L{AcceptGate}, while the limiter holds as many connections as the budget allows.
    """

    def __init__(
        self,
        reactor: IReactorTime,
        ownsFactory: Callable[[object], bool],
        budget: int | None,
        held: Callable[[], int],
        onShort: Callable[[], None],
    ) -> None:
        """
        @param budget: The connections descriptors allow (L{None}: no known bound).
        @param held: Says how many connections the limiter holds now.
        @param onShort: Called after an C{accept} failed for lack of descriptors.
        """
        self._budget = budget
        self._learned: int | None = None
        self._held = held
        self._onShort = onShort
        self._gate = AcceptGate(reactor, ownsFactory, self._failed, self._recovered)

    @property
    def pauses(self) -> int:
        """
        Times the listening ports were paused.
        """
        return self._gate.pauses

    def start(self) -> None:
        self._gate.start()

    def stop(self) -> None:
        self._gate.stop()

    def update(self) -> None:
        """
        Bring the ports in line with the connections held now.
        """
        budgets = [b for b in (self._budget, self._learned) if b is not None]
        self._gate.setRoom(
            min(budgets) - self._held() if budgets else None, precise=self._learned is not None
        )

    def _failed(self) -> None:
        self._learned = self._held()
        self._onShort()

    def _recovered(self) -> None:
        self._learned = None
        self.update()
