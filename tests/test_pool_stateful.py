"""
A hypothesis state machine driving a pool through any sequence of requests, replies, errors,
cancellations, checkouts, connection failures and losses, resizes and close, checking the
pool's invariants after every step.
"""

from __future__ import annotations

from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionLost

from txconnpool import PoolClosedError

from .helpers import makePool


class PoolMachine(RuleBasedStateMachine):
    """
    Requests and checkouts against a pool of at most three connections.
    """

    options: dict[str, Any] = {}

    def __init__(self) -> None:
        super().__init__()
        self.h = makePool(maxClients=3, **self.options)
        self.fired: dict[int, int] = {}
        self.deferreds: list[Deferred[Any]] = []
        self.checkedOut: list[Any] = []
        self.closing: Deferred[None] | None = None
        self.closedFired = 0
        self.sent: list[int] = []

    def _track(self, d: Deferred[Any]) -> int:
        index = len(self.deferreds)
        self.deferreds.append(d)
        self.fired[index] = 0

        def count(result: Any) -> None:
            self.fired[index] += 1
            if not isinstance(result, Exception) and hasattr(result, "asked"):
                self.checkedOut.append(result)

        d.addBoth(count)
        return index

    def _protocols(self) -> list[Any]:
        return [p for p in self.h.built if not self.h.attemptFor(p).transport.disconnecting]

    @rule(value=st.integers(0, 1000))
    def request(self, value: int) -> None:
        self._track(self.h.pool.performRequest("ask", value))

    @rule()
    def acquire(self) -> None:
        self._track(self.h.pool.acquire())

    @rule(data=st.data())
    def completeAttempt(self, data: st.DataObject) -> None:
        pending = self.h.endpoint.pending()
        if pending:
            attempt = data.draw(st.sampled_from(pending))
            if data.draw(st.booleans()):
                self.h.connect(attempt)
            else:
                attempt.fail()

    @rule(data=st.data(), ok=st.booleans())
    def reply(self, data: st.DataObject, ok: bool) -> None:
        busy = [p for p in self.h.built if p.asked]
        if busy:
            proto = data.draw(st.sampled_from(busy))
            if ok:
                proto.answer()
            else:
                proto.reject(KeyError("no"))

    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        if self.deferreds:
            data.draw(st.sampled_from(self.deferreds)).cancel()

    @rule(data=st.data(), broken=st.booleans())
    def giveBack(self, data: st.DataObject, broken: bool) -> None:
        if self.checkedOut:
            proto = data.draw(st.sampled_from(self.checkedOut))
            self.checkedOut.remove(proto)
            if broken:
                self.h.pool.discard(proto)
            else:
                self.h.pool.release(proto)

    @rule(data=st.data())
    def serverClosesConnection(self, data: st.DataObject) -> None:
        open_ = [p for p in self.h.built if not self.h.attemptFor(p).transport.lost]
        if open_:
            proto = data.draw(st.sampled_from(open_))
            self.h.attemptFor(proto).lose(ConnectionLost("reset"))

    @rule(seconds=st.sampled_from([0, 0.5, 1.0, 5.0]))
    def clockTurns(self, seconds: float) -> None:
        self.h.clock.advance(seconds)

    @rule(size=st.integers(1, 4))
    def resize(self, size: int) -> None:
        self.h.pool.suggestMaxClients(max(size, self.options.get("minClients", 1)))

    @precondition(lambda self: self.closing is None)
    @rule()
    def close(self) -> None:
        self.closing = self.h.pool.close()

    @invariant()
    def everyDeferredFiresAtMostOnce(self) -> None:
        assert all(count <= 1 for count in self.fired.values())

    @invariant()
    def capacityRespected(self) -> None:
        stats = self.h.pool.poolStats()
        assert stats.busy + stats.idle + stats.connecting <= max(stats.maxClients, 4)
        assert min(stats.busy, stats.idle, stats.connecting, stats.waiting) >= 0

    @invariant()
    def noIdleConnectionWhileSomeoneWaits(self) -> None:
        stats = self.h.pool.poolStats()
        assert not (stats.waiting and stats.idle)

    @invariant()
    def waitersAreServedOrConnecting(self) -> None:
        stats = self.h.pool.poolStats()
        if stats.waiting and not self.closing:
            assert stats.connecting or stats.busy or self.h.clock.getDelayedCalls()

    @invariant()
    def requestsPerConnectionWithinDepth(self) -> None:
        depth = self.options.get("maxRequestsPerClient", 1)
        assert all(len(p.asked) <= depth for p in self.h.built)

    @invariant()
    def closedConnectionsAreNotUsed(self) -> None:
        for proto in self.h.built:
            if self.h.attemptFor(proto).transport.lost:
                assert proto.asked == []

    def teardown(self) -> None:
        """
        Close the pool and drive every connection to its end: every Deferred has fired exactly
        once, nothing is left busy, and no timer is left behind.
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
        self.h.clock.advance(1.0)
        self.h.clock.advance(0)
        closed: list[object] = []
        self.closing.addBoth(closed.append)
        assert closed == [None]
        assert set(self.fired.values()) <= {1}, self.fired
        stats = self.h.pool.poolStats()
        assert (stats.busy, stats.idle, stats.connecting, stats.waiting) == (0, 0, 0, 0)
        assert stats.failedRequests <= stats.requests
        assert self.h.clock.getDelayedCalls() == []
        late = self.h.pool.performRequest("ask", 1)
        late.addErrback(lambda f: f.trap(PoolClosedError))


PoolMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)
TestPoolMachine = PoolMachine.TestCase
TestPoolMachine.__doc__ = "The pool keeps its invariants under any sequence of events."


class TimedPoolMachine(PoolMachine):
    """
    The same, with every timer of the pool running: timeouts, idle and lifetime limits,
    keepalive and validation pings, and minClients.
    """

    options = {
        "minClients": 1,
        "connectTimeout": 2.0,
        "requestTimeout": 3.0,
        "acquireTimeout": 4.0,
        "idleTimeout": 2.0,
        "maxLifetime": 4.0,
        "keepaliveInterval": 1.5,
        "validateAfterIdle": 0.7,
        "pingTimeout": 1.0,
        "leakDetectionThreshold": 2.5,
    }


TimedPoolMachine.TestCase.settings = settings(
    max_examples=300, stateful_step_count=40, deadline=None
)
TestTimedPoolMachine = TimedPoolMachine.TestCase
TestTimedPoolMachine.__doc__ = "The pool keeps its invariants with all its timers running."


class PipelinedPoolMachine(PoolMachine):
    """
    The same, with up to three requests in flight on each connection.
    """

    options = {"maxRequestsPerClient": 3, "requestTimeout": 3.0, "acquireTimeout": 4.0}


PipelinedPoolMachine.TestCase.settings = settings(
    max_examples=300, stateful_step_count=40, deadline=None
)
TestPipelinedPoolMachine = PipelinedPoolMachine.TestCase
TestPipelinedPoolMachine.__doc__ = "The pool keeps its invariants with pipelined connections."
