"""
A hypothesis state machine of the pool's core on a clock: requests, checkouts and their
release, cancellation, resizing, close, connection failures and losses, and timers, in any
order, with the accounting of every request checked after every step.
"""

from __future__ import annotations

import weakref
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionLost
from twisted.python.failure import Failure

from txconnpool import PoolClosedError

from .helpers import Recorder, makePool
from .test_pool_defects import Settling


class Tracked:
    """
    What the model knows of one request or checkout: whether and how often it fired, and,
    once it fired, only a weak reference to its L{Deferred}.
    """

    def __init__(self, d: Deferred[Any], checkout: bool) -> None:
        self.deferred: Deferred[Any] | None = d
        self.ref = weakref.ref(d)
        self.checkout = checkout
        self.fired = 0
        self.failed = False


class CoreMachine(RuleBasedStateMachine):
    """
    Requests and checkouts against a pool of at most three pipelined connections, with
    request and acquire timeouts.
    """

    protocolClass: type[Any] = Recorder
    options: dict[str, Any] = {
        "maxRequestsPerClient": 2,
        "requestTimeout": 3.0,
        "acquireTimeout": 4.0,
    }

    def __init__(self) -> None:
        super().__init__()
        self.h = makePool(maxClients=3, protocolClass=self.protocolClass, **self.options)
        self.tracked: list[Tracked] = []
        self.checkedOut: list[Any] = []
        self.closing: Deferred[None] | None = None
        self.attemptsAtClose = 0
        self.callsAtClose = 0
        self.ceiling = 3

    # Making requests

    def _track(self, d: Deferred[Any], checkout: bool) -> None:
        entry = Tracked(d, checkout)
        self.tracked.append(entry)

        def fired(result: Any) -> None:
            entry.fired += 1
            entry.deferred = None
            entry.failed = isinstance(result, Failure)
            if checkout and not entry.failed:
                self.checkedOut.append(result)
            if entry.failed:
                result.trap(Exception)

        d.addBoth(fired)

    @rule(value=st.integers(0, 1000))
    def request(self, value: int) -> None:
        self._track(self.h.pool.performRequest("ask", value), checkout=False)

    @rule()
    def acquire(self) -> None:
        self._track(self.h.pool.acquire(), checkout=True)

    @rule(index=st.integers(0, 200))
    def cancel(self, index: int) -> None:
        pending = [entry for entry in self.tracked if entry.deferred is not None]
        if pending:
            deferred = pending[index % len(pending)].deferred
            assert deferred is not None
            deferred.cancel()

    @rule(index=st.integers(0, 20), broken=st.booleans())
    def giveBack(self, index: int, broken: bool) -> None:
        if self.checkedOut:
            proto = self.checkedOut.pop(index % len(self.checkedOut))
            if broken:
                self.h.pool.discard(proto)
            else:
                self.h.pool.release(proto)

    # The server and the network

    @rule(index=st.integers(0, 20), succeed=st.booleans())
    def completeAttempt(self, index: int, succeed: bool) -> None:
        pending = self.h.endpoint.pending()
        if pending:
            attempt = pending[index % len(pending)]
            if succeed:
                self.h.connect(attempt)
            else:
                attempt.fail()

    @rule(index=st.integers(0, 20), ok=st.booleans())
    def reply(self, index: int, ok: bool) -> None:
        busy = [p for p in self.h.built if p.asked]
        if busy:
            proto = busy[index % len(busy)]
            if ok:
                proto.answer()
            else:
                proto.reject(KeyError("no"))

    @rule(index=st.integers(0, 20))
    def serverClosesConnection(self, index: int) -> None:
        open_ = [p for p in self.h.built if not self.h.attemptFor(p).transport.lost]
        if open_:
            proto = open_[index % len(open_)]
            self.h.attemptFor(proto).lose(ConnectionLost("reset"))

    @rule(seconds=st.sampled_from([0, 0.5, 1.0, 3.0, 5.0]))
    def clockTurns(self, seconds: float) -> None:
        self.h.clock.advance(seconds)

    # The pool's owner

    @rule(size=st.integers(1, 4))
    def resize(self, size: int) -> None:
        stats = self.h.pool.poolStats()
        self.ceiling = max(size, stats.busy + stats.idle + stats.connecting)
        self.h.pool.suggestMaxClients(size)

    @precondition(lambda self: self.closing is None)
    @rule()
    def close(self) -> None:
        self.closing = self.h.pool.close()
        self.attemptsAtClose = len(self.h.endpoint.attempts)
        self.callsAtClose = sum(len(p.transport.value()) for p in self.h.built if p.transport)

    # Invariants

    @invariant()
    def everyRequestFiresAtMostOnce(self) -> None:
        assert all(entry.fired <= 1 for entry in self.tracked)

    @invariant()
    def countsAgreeWithPoolStats(self) -> None:
        stats = self.h.pool.poolStats()
        assert stats.requests == len(self.tracked)
        assert stats.failedRequests == sum(entry.failed for entry in self.tracked)
        pending = sum(entry.fired == 0 for entry in self.tracked)
        assert stats.waiting <= pending
        assert min(stats.busy, stats.idle, stats.connecting, stats.waiting) >= 0

    @invariant()
    def atMostMaxClientsOpen(self) -> None:
        stats = self.h.pool.poolStats()
        total = stats.busy + stats.idle + stats.connecting
        if total <= stats.maxClients:
            self.ceiling = stats.maxClients
        assert total <= self.ceiling

    @invariant()
    def noIdleConnectionWhileSomeoneWaits(self) -> None:
        stats = self.h.pool.poolStats()
        assert not (stats.waiting and stats.idle)

    @invariant()
    def nothingDispatchedOnceClosed(self) -> None:
        if self.closing is not None:
            assert len(self.h.endpoint.attempts) == self.attemptsAtClose

    @invariant()
    def noReferenceToSettledRequests(self) -> None:
        for entry in self.tracked:
            if entry.fired:
                assert entry.ref() is None, entry

    def teardown(self) -> None:
        """
        Close the pool and drive every connection to its end: every request has fired
        exactly once, nothing is left busy, and no timer is left behind.
        """
        if self.closing is None:
            self.closing = self.h.pool.close(timeout=1.0)
        for attempt in self.h.endpoint.pending():
            attempt.fail()
        for proto in list(self.checkedOut):
            self.h.pool.release(proto)
        for _ in range(3):
            for proto in self.h.built:
                while proto.asked:
                    proto.answer()
            self.h.clock.advance(0)
        self.h.clock.advance(5.0)
        self.h.clock.advance(0)
        closed: list[object] = []
        self.closing.addBoth(closed.append)
        assert closed == [None]
        assert all(entry.fired == 1 for entry in self.tracked)
        stats = self.h.pool.poolStats()
        assert (stats.busy, stats.idle, stats.connecting, stats.waiting) == (0, 0, 0, 0)
        assert stats.failedRequests == sum(entry.failed for entry in self.tracked)
        assert self.h.clock.getDelayedCalls() == []
        late = self.h.pool.performRequest("ask", 1)
        late.addErrback(lambda f: f.trap(PoolClosedError))


CoreMachine.TestCase.settings = settings(max_examples=500, stateful_step_count=30, deadline=None)
TestCoreMachine = CoreMachine.TestCase
TestCoreMachine.__doc__ = "The pool accounts for every request under any sequence of events."


class DirectCoreMachine(CoreMachine):
    """
    The same, over a protocol whose Deferreds the pool hands to callers directly.
    """

    protocolClass = Settling


DirectCoreMachine.TestCase.settings = settings(
    max_examples=500, stateful_step_count=30, deadline=None
)
TestDirectCoreMachine = DirectCoreMachine.TestCase
TestDirectCoreMachine.__doc__ = (
    "The pool accounts for every request when callers get the protocol's Deferreds."
)
