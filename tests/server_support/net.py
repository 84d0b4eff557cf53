"""
Helpers for the server tests on real sockets: served and client protocols that report what
happens through Deferreds, a limiter that reports arrivals, a log observer that reports the
limiter's events, and subprocesses whose output arrives as a Deferred.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, connectProtocol
from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import Factory, ProcessProtocol, Protocol, connectionDone
from twisted.logger import LogEvent, globalLogPublisher
from twisted.python.failure import Failure

from txconnpool.server import LimitConnectionsFactory, LimitedProtocol

SUPPORT = Path(__file__).parent
ROOT = SUPPORT.parent.parent


class ServedProtocol(Protocol):
    """
    Served side: records what it receives; echoes it back when the factory says so.  L{lost}
    fires a turn after the connection is lost, once the limiter has released the slot.
    """

    factory: ServedFactory

    def __init__(self) -> None:
        self.received = b""
        self.reason: Failure | None = None
        self.lost: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        self.factory.madeCalls.append(self)
        waiter, self.factory.nextMade = self.factory.nextMade, Deferred()
        waiter.callback(self)

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if self.factory.echo:
            self.transport.write(data)  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.reason = reason
        # Fire once the limiter has released the slot too, which it does after this returns.
        reactor.callLater(0, self.lost.callback, None)  # type: ignore[attr-defined]


class ServedFactory(Factory[ServedProtocol]):
    """
    Builds L{ServedProtocol}s, in order, and fires L{nextMade} for each connection made.
    """

    protocol = ServedProtocol
    noisy = False

    def __init__(self, echo: bool = True) -> None:
        self.echo = echo
        self.madeCalls: list[ServedProtocol] = []
        self.nextMade: Deferred[ServedProtocol] = Deferred()


class ClientProtocol(Protocol):
    """
    Client side: collects what the server sends; L{lost} fires when the connection closes,
    after which L{reason} says why.
    """

    def __init__(self) -> None:
        self.received = b""
        self.reason: Failure | None = None
        self.lost: Deferred[None] = Deferred()
        self._waiting: list[tuple[int, Deferred[bytes]]] = []
        self._markers: list[tuple[bytes, int, Deferred[bytes]]] = []

    def _check(self) -> None:
        for entry in list(self._markers):
            marker, count, waiter = entry
            if self.received.count(marker) >= count:
                self._markers.remove(entry)
                waiter.callback(self.received)

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        self._check()
        still = []
        for size, waiter in self._waiting:
            if len(self.received) >= size:
                waiter.callback(self.received)
            else:
                still.append((size, waiter))
        self._waiting = still

    def receivedContaining(self, marker: bytes, count: int = 1) -> Deferred[bytes]:
        """
        @return: A Deferred that fires with everything received once C{marker} has come
            C{count} times.
        """
        waiter: Deferred[bytes] = Deferred()
        self._markers.append((marker, count, waiter))
        self._check()
        return waiter

    def receivedAtLeast(self, size: int) -> Deferred[bytes]:
        """
        @return: A Deferred that fires with everything received once C{size} bytes have come.
        """
        waiter: Deferred[bytes] = Deferred()
        if len(self.received) >= size:
            waiter.callback(self.received)
        else:
            self._waiting.append((size, waiter))
        return waiter

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.reason = reason
        self.lost.callback(None)


class ObservedLimiter(LimitConnectionsFactory):
    """
    A limiter that fires L{nextArrival} one reactor turn after each accepted connection, by
    which time it has been served, queued or refused.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.nextArrival: Deferred[LimitedProtocol] = Deferred()
        self.wrappers: list[LimitedProtocol] = []

    def buildProtocol(self, addr: IAddress | None) -> LimitedProtocol:
        wrapper = super().buildProtocol(addr)
        self.wrappers.append(wrapper)
        waiter, self.nextArrival = self.nextArrival, Deferred()
        reactor.callLater(0, waiter.callback, wrapper)  # type: ignore[attr-defined]
        return wrapper


def tcpClient(
    host: str,
    port: int,
    bindAddress: str | None = None,
    protocol: type[ClientProtocol] = ClientProtocol,
) -> Deferred[Any]:
    """
    Connect a client protocol over TCP (IPv6 if C{host} has a colon).
    """
    endpointType = TCP6ClientEndpoint if ":" in host else TCP4ClientEndpoint
    bind = None if bindAddress is None else (bindAddress, 0)
    endpoint = endpointType(reactor, host, port, bindAddress=bind)
    return connectProtocol(endpoint, protocol())


@defer.inlineCallbacks
def arrive(limiter: ObservedLimiter, connecting: Deferred[Any]) -> Generator[Any, Any, Any]:
    """
    Wait until a client is connected and the limiter has decided what to do with it.

    @return: A Deferred firing with the client protocol.
    """
    arrival = limiter.nextArrival
    client = yield connecting
    yield arrival
    return client


@defer.inlineCallbacks
def closeClient(client: ClientProtocol) -> Generator[Any, Any, Any]:
    """
    Close a client's connection, if still open, and wait until it is closed.
    """
    if not client.lost.called:
        client.transport.loseConnection()  # type: ignore[union-attr]
    yield client.lost


@contextmanager
def limiterEvents() -> Iterator[Callable[[str, int], Deferred[list[LogEvent]]]]:
    """
    Observe the limiter's structured log events.

    Yields C{waitFor(name, count)}, which returns a Deferred that fires with the events once
    C{count} events whose C{limiterEvent} is C{name} have been logged.
    """
    seen: dict[str, list[LogEvent]] = {}
    waiting: list[tuple[str, int, Deferred[list[LogEvent]]]] = []

    def observe(event: LogEvent) -> None:
        name = event.get("limiterEvent")
        if name is None:
            return
        events = seen.setdefault(name, [])
        events.append(event)
        for entry in list(waiting):
            wanted, count, waiter = entry
            if wanted == name and len(events) >= count:
                waiting.remove(entry)
                waiter.callback(list(events))

    def waitFor(name: str, count: int = 1) -> Deferred[list[LogEvent]]:
        waiter: Deferred[list[LogEvent]] = Deferred()
        if len(seen.get(name, [])) >= count:
            waiter.callback(list(seen[name]))
        else:
            waiting.append((name, count, waiter))
        return waiter

    globalLogPublisher.addObserver(observe)
    try:
        yield waitFor
    finally:
        globalLogPublisher.removeObserver(observe)


class _Collector(ProcessProtocol):
    def __init__(self) -> None:
        self.out = b""
        self.err = b""
        self.done: Deferred[tuple[int, bytes, bytes]] = Deferred()
        self.lines: list[tuple[bytes, int, Deferred[bytes]]] = []

    def outReceived(self, data: bytes) -> None:
        self.out += data
        for entry in list(self.lines):
            prefix, start, waiter = entry
            for line in self.out[start:].split(b"\n")[:-1]:
                if line.startswith(prefix):
                    self.lines.remove(entry)
                    waiter.callback(line)
                    break

    def errReceived(self, data: bytes) -> None:
        self.err += data

    def processEnded(self, reason: Failure) -> None:
        code = getattr(reason.value, "exitCode", None)
        self.done.callback((-1 if code is None else code, self.out, self.err))


class Subprocess:
    """
    A Python subprocess run by the reactor.
    """

    def __init__(self, script: Path, *args: object) -> None:
        self._collector = _Collector()
        self.transport = reactor.spawnProcess(  # type: ignore[attr-defined]
            self._collector,
            sys.executable,
            [sys.executable, str(script), *map(str, args)],
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        self.done = self._collector.done

    def line(self, prefix: bytes) -> Deferred[bytes]:
        """
        @return: A Deferred that fires with the first output line starting with C{prefix}
            among the lines not yet complete when this is called.
        """
        waiter: Deferred[bytes] = Deferred()
        out = self._collector.out
        self._collector.lines.append((prefix, out.rfind(b"\n") + 1, waiter))
        return waiter

    def write(self, data: bytes) -> None:
        self.transport.write(data)

    def kill(self) -> None:
        try:
            self.transport.signalProcess("KILL")
        except Exception:
            pass


@defer.inlineCallbacks
def runLoadgen(
    host: str, port: int, clients: int, size: int, timeout: float, retry: bool = False
) -> Any:
    """
    Run the load generator against C{host:port}.

    @return: A Deferred firing with its JSON report.
    """
    extra = ["retry"] if retry else []
    process = Subprocess(SUPPORT / "loadgen.py", host, port, clients, size, timeout, *extra)
    code, out, err = yield process.done
    assert code == 0, err.decode()
    return json.loads(out)


@defer.inlineCallbacks
def runTurnLoad(host: str, port: int, clients: int, seconds: float, mode: str) -> Any:
    """
    Run the keep-alive load generator (C{turnload.py}) against C{host:port}.

    @return: A Deferred firing with its JSON report.
    """
    process = Subprocess(SUPPORT / "turnload.py", host, port, clients, seconds, mode)
    code, out, err = yield process.done
    assert code == 0, err.decode()
    return json.loads(out)
