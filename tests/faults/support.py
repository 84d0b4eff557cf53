"""
Helpers of the fault-injection tests: waiting for Deferreds with a safety deadline, a retry
policy that says when the pool's next connection attempt is due, a listener whose accept queue
is full, and child processes whose output lines arrive as Deferreds.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from twisted.internet import error
from twisted.internet import reactor as globalReactor
from twisted.internet.defer import CancelledError, Deferred, TimeoutError, gatherResults
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure

from txconnpool import PoolError
from txconnpool.memcache.testing import MemcachedProcess

reactor: Any = globalReactor

ROOT = Path(__file__).resolve().parent.parent.parent

TYPED_ERRORS: tuple[type[BaseException], ...] = (
    PoolError,
    error.ConnectionClosed,
    CancelledError,
    TimeoutError,
)
"""
The errors a caller may see: txconnpool's own, and Twisted's for a lost connection, a
cancellation or a timeout.
"""


class Hung(Exception):
    """
    A Deferred did not fire before its safety deadline.
    """


def later(seconds: float) -> Deferred[None]:
    """
    @return: A L{Deferred} firing after C{seconds} of reactor time.
    """
    d: Deferred[None] = Deferred()
    reactor.callLater(seconds, d.callback, None)
    return d


def outcome(d: Deferred[Any], deadline: float = 10.0) -> Deferred[tuple[Any]]:
    """
    Wait for C{d} without altering it.

    @return: A L{Deferred} that never fails: it fires with a 1-tuple of C{d}'s result or
        L{Failure}, or of a L{Failure} of L{Hung} if C{d} has not fired after C{deadline}
        seconds (a safety net only: the tests expect every Deferred to fire well before).
    """
    result: Deferred[tuple[Any]] = Deferred()

    def timedOut() -> None:
        result.callback((Failure(Hung(f"{d!r} did not fire within {deadline}s")),))

    timer = reactor.callLater(deadline, timedOut)

    def fired(value: Any) -> None:
        if timer.active():
            timer.cancel()
            result.callback((value,))

    d.addBoth(fired)
    return result


async def outcomes(ds: Iterable[Deferred[Any]], deadline: float = 10.0) -> list[Any]:
    """
    Wait for every Deferred of C{ds} (each with the safety C{deadline}).

    @return: Their results or L{Failure}s, in order.
    @raise AssertionError: One of them hung.
    """
    boxes: list[tuple[Any]] = await gatherResults([outcome(d, deadline) for d in ds])
    results = [box[0] for box in boxes]
    hung = [r for r in results if isinstance(r, Failure) and r.check(Hung)]
    assert not hung, f"{len(hung)} of {len(results)} Deferreds never fired"
    return results


def errorNames(results: Iterable[Any]) -> set[str]:
    """
    @return: The class names of the failures among C{results}.
    """
    return {type(r.value).__name__ for r in results if isinstance(r, Failure)}


def untyped(results: Iterable[Any]) -> list[Failure]:
    """
    @return: The failures among C{results} that are not L{TYPED_ERRORS}.
    """
    return [r for r in results if isinstance(r, Failure) and not r.check(*TYPED_ERRORS)]


async def turnsUntil(predicate: Callable[[], bool], deadline: float = 5.0) -> None:
    """
    Let the reactor turn until C{predicate()} is true, for state that sends no event (such
    as the kernel's socket table); fail after C{deadline} seconds (a safety net).
    """
    give = reactor.seconds() + deadline
    while not predicate():
        assert reactor.seconds() < give, "condition not reached before the deadline"
        await later(0)


async def failureOf(d: Deferred[Any], deadline: float = 10.0) -> Failure:
    """
    Wait for C{d} to fail (with the safety C{deadline}) and return its L{Failure}.
    """
    (result,) = await outcome(d, deadline)
    assert isinstance(result, Failure), f"expected a failure, got {result!r}"
    assert not result.check(Hung), result.getErrorMessage()
    return result


class ObservedBackoff:
    """
    A retry policy wrapping another one, which records the delays it gave and says when
    the pool's next connection attempt is due.

    @ivar delays: The delays given, in order.
    """

    def __init__(self, policy: Callable[[int], float]) -> None:
        self._policy = policy
        self.delays: list[float] = []
        self._dueAt = 0.0
        self._watchers: list[tuple[int, Deferred[None]]] = []

    def __call__(self, attempt: int) -> float:
        delay = self._policy(attempt)
        self.delays.append(delay)
        self._dueAt = reactor.seconds() + delay
        ready = [w for w in self._watchers if len(self.delays) >= w[0]]
        self._watchers = [w for w in self._watchers if w not in ready]
        for _, d in ready:
            d.callback(None)
        return delay

    def failures(self, count: int) -> Deferred[None]:
        """
        @return: A L{Deferred} firing once the pool has asked for C{count} delays, that is
            once it has seen C{count} failed connections.
        """
        d: Deferred[None] = Deferred()
        if len(self.delays) >= count:
            d.callback(None)
        else:
            self._watchers.append((count, d))
        return d

    def due(self) -> Deferred[None]:
        """
        @return: A L{Deferred} firing just after the latest delay given has run out.
        """
        return later(max(0.0, self._dueAt - reactor.seconds()) + 0.02)


async def pause(server: MemcachedProcess) -> None:
    """
    Stop memcached with SIGSTOP and wait until every one of its threads has stopped (the
    signal takes effect asynchronously), as C{/proc} shows.
    """
    server.signal(signal.SIGSTOP)
    await turnsUntil(lambda: _allStopped(server.pid))


def _allStopped(pid: int) -> bool:
    """
    @return: Whether every thread of process C{pid} is stopped (state C{T}).
    """
    tasks = Path(f"/proc/{pid}/task")
    for task in tasks.iterdir():
        try:
            stat = (task / "stat").read_text()
        except FileNotFoundError:
            continue
        if stat[stat.rindex(")") + 2] != "T":
            return False
    return True


def kill(server: MemcachedProcess) -> None:
    """
    Kill memcached with SIGKILL and wait until it is gone.
    """
    server.signal(signal.SIGKILL)
    assert server.process is not None
    server.process.wait()


class FullListener:
    """
    A loopback TCP listener with an accept queue of one that never accepts, filled up: a
    connection attempt to it hangs (the kernel drops its SYNs).
    """

    def __init__(self) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(0)
        self.port: int = self.socket.getsockname()[1]
        self.fillers: list[socket.socket] = []
        for _ in range(3):
            filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", self.port))
            self.fillers.append(filler)

    @property
    def endpoint(self) -> str:
        return f"tcp:127.0.0.1:{self.port}"

    def halfOpen(self) -> int:
        """
        @return: How many sockets on this host are trying to connect to the listener (in
            state C{SYN_SENT}), as listed in C{/proc/net/tcp}.
        """
        count = 0
        with open("/proc/net/tcp") as table:
            next(table)
            for line in table:
                fields = line.split()
                remotePort = int(fields[2].split(":")[1], 16)
                if remotePort == self.port and fields[3] == "02":
                    count += 1
        return count

    def close(self) -> None:
        for filler in self.fillers:
            filler.close()
        self.socket.close()


class Child(ProcessProtocol):
    """
    A Python program run in a child process, whose output lines the test waits for.

    @ivar exited: Fires with C{(exitCode, stdout, stderr)} when the child has exited.
    """

    def __init__(self, program: str, *args: str) -> None:
        self.out = b""
        self.err = b""
        self.exited: Deferred[tuple[int | None, str, str]] = Deferred()
        self._waiting: list[tuple[bytes, Deferred[str]]] = []
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.process = reactor.spawnProcess(
            self, sys.executable, [sys.executable, "-c", program, *args], env=env
        )

    def line(self, prefix: str) -> Deferred[str]:
        """
        @return: A L{Deferred} firing with the first output line starting with C{prefix}
            (without the prefix), now or later.
        """
        d: Deferred[str] = Deferred()
        self._waiting.append((prefix.encode(), d))
        self._check()
        return d

    def write(self, text: str) -> None:
        self.transport.write(text.encode())  # type: ignore[union-attr]

    def outReceived(self, data: bytes) -> None:
        self.out += data
        self._check()

    def errReceived(self, data: bytes) -> None:
        self.err += data

    def _check(self) -> None:
        lines = self.out.split(b"\n")[:-1]
        for entry in list(self._waiting):
            prefix, d = entry
            for line in lines:
                if line.startswith(prefix):
                    self._waiting.remove(entry)
                    d.callback(line[len(prefix) :].decode())
                    break

    def processEnded(self, reason: Failure) -> None:
        code = getattr(reason.value, "exitCode", None)
        for _, d in self._waiting:
            d.errback(AssertionError(f"child exited ({code}) first:\n{self.err.decode()}"))
        self._waiting = []
        self.exited.callback((code, self.out.decode(), self.err.decode()))

    def kill(self) -> None:
        if not self.exited.called:
            self.process.signalProcess("KILL")
