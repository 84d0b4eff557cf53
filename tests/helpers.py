"""
Helpers shared by the unit tests: reading fired Deferreds, and a pool over a hand-driven
protocol connected through a fake endpoint.
"""

from __future__ import annotations

from typing import Any

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure

from txconnpool import Pool, PooledClientFactory
from txconnpool.testing import FakeConnectAttempt, FakeEndpoint

_NOT_FIRED = object()


def resultOf(d: Deferred[Any]) -> Any:
    """
    Return what C{d} fired with, failing the test if it has not fired or failed.
    """
    box: list[Any] = []
    d.addBoth(box.append)
    assert box, f"{d!r} has not fired"
    assert not isinstance(box[0], Failure), f"{d!r} failed: {box[0]!r}"
    return box[0]


def failureOf(d: Deferred[Any], *errorTypes: type[BaseException]) -> Failure:
    """
    Return the L{Failure} C{d} failed with, checking its type; fail the test otherwise.
    """
    box: list[Any] = []
    d.addBoth(box.append)
    assert box, f"{d!r} has not fired"
    assert isinstance(box[0], Failure), f"{d!r} succeeded with {box[0]!r}"
    if errorTypes:
        assert box[0].check(*errorTypes), f"unexpected failure {box[0]!r}"
    return box[0]


def assertNoResult(d: Deferred[Any]) -> None:
    """
    Fail the test if C{d} has fired.
    """
    box: list[Any] = []

    def record(result: Any) -> Any:
        box.append(result)
        return result

    d.addBoth(record)
    assert not box, f"{d!r} fired with {box[0]!r}"


class Recorder(Protocol):
    """
    A client protocol whose C{ask} requests stay pending until the test answers them, and that
    fails its pending requests when the connection is lost.
    """

    def __init__(self) -> None:
        self.asked: list[tuple[Any, Deferred[Any]]] = []

    def ask(self, value: Any) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.asked.append((value, d))
        assert self.transport is not None
        self.transport.write(repr(value).encode() + b"\n")
        return d

    def answer(self, result: Any = None) -> None:
        """
        Fire the oldest pending request with C{result} (its own value if L{None}).
        """
        value, d = self.asked.pop(0)
        d.callback(value if result is None else result)

    def reject(self, exc: BaseException) -> None:
        """
        Fail the oldest pending request with C{exc}.
        """
        _, d = self.asked.pop(0)
        d.errback(exc)

    def ping(self) -> Deferred[Any]:
        return self.ask("<ping>")

    def echo(self, value: Any) -> Deferred[Any]:
        return succeed(value)

    def plain(self, value: Any) -> Any:
        return ("plain", value)

    def boom(self) -> Deferred[Any]:
        raise ValueError("boom")

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        pending, self.asked = self.asked, []
        for _, d in pending:
            d.errback(reason)


class FakeReactor(MemoryReactorClock):
    """
    A memory reactor and clock whose system event triggers can also be removed.
    """

    def addSystemEventTrigger(  # type: ignore[override]
        self, phase: str, eventType: str, f: Any, *args: Any, **kw: Any
    ) -> tuple[str, str, Any]:
        entry = (f, args, kw)
        self.triggers.setdefault(phase, {}).setdefault(eventType, []).append(entry)
        return (phase, eventType, entry)

    def removeSystemEventTrigger(self, triggerID: tuple[str, str, Any]) -> None:
        phase, eventType, entry = triggerID
        self.triggers[phase][eventType].remove(entry)


@attrs.define
class Harness:
    """
    A pool, its clock and fake endpoint, and the protocols it has built.
    """

    clock: MemoryReactorClock
    endpoint: FakeEndpoint
    pool: Pool[Any]
    built: list[Any]

    def connect(self, attempt: FakeConnectAttempt | None = None) -> Any:
        """
        Complete the oldest pending connection attempt (or C{attempt}) and return the protocol
        the pool's factory built.
        """
        if attempt is None:
            attempt = self.endpoint.pending()[0]
        attempt.succeed()
        return self.built[-1]

    def attemptFor(self, protocol: Any) -> FakeConnectAttempt:
        """
        Find the connection attempt that built C{protocol}.
        """
        for attempt in self.endpoint.attempts:
            if attempt.transport is not None and protocol.transport is attempt.transport:
                return attempt
        raise AssertionError(f"no attempt built {protocol!r}")


def makePool(
    maxClients: int = 2,
    protocolClass: type[Any] = Recorder,
    factoryBase: type[PooledClientFactory] = PooledClientFactory,
    poolClass: type[Pool[Any]] = Pool,
    **options: Any,
) -> Harness:
    """
    Make a pool of C{protocolClass} connections over a L{FakeEndpoint} and a clock. Unless
    told otherwise, the pool waits one second before reconnecting after a failure, and keeps
    idle connections open.
    """
    built: list[Any] = []

    class Factory(factoryBase):  # type: ignore[valid-type,misc]
        protocol = protocolClass

        def buildProtocol(self, addr: Any) -> Any:
            p = super().buildProtocol(addr)
            built.append(p)
            return p

    class TestPool(poolClass):  # type: ignore[valid-type,misc]
        clientFactory = Factory

    options.setdefault("retryPolicy", lambda attempt: 1.0)
    options.setdefault("idleTimeout", None)
    clock = FakeReactor()
    endpoint = FakeEndpoint(clock)
    pool = TestPool(endpoint, maxClients, reactor=clock, **options)
    return Harness(clock, endpoint, pool, built)
