"""
memcached servers for tests.

L{FakeMemcached} is an in-memory fake that speaks memcached's text protocol as memcached 1.6
answers it, for unit tests of code that uses a L{MemCachePool<txconnpool.memcache.MemCachePool>}
(or any memcached client) without a memcached binary. Connect through its in-memory
L{endpoint<FakeMemcached.endpoint>}, on the global reactor or a
L{Clock<twisted.internet.task.Clock>} (whose C{advance(0)} then delivers the bytes), or
L{listen<FakeMemcached.listen>} on a loopback port for clients of other kinds::

    fake = FakeMemcached(clock)
    pool = MemCachePool(fake.endpoint(), reactor=clock)
    d = pool.set(b"k", b"v")
    clock.advance(0)  # connect
    clock.advance(0)  # the server reads the set and answers
    clock.advance(0)  # the client reads STORED

L{MemcachedProcess} is a real memcached server for integration tests and demonstrations:
started on a free loopback port (or a unix socket), ready once it says it is listening,
stopped by its PID::

    server = MemcachedProcess(Path("memcached.log"))
    server.start()
    pool = MemCachePool(server.endpoint)
    ...
    server.stop()

It needs the C{memcached} binary on the C{PATH}.
"""

from __future__ import annotations

__all__ = ["FakeMemcached", "MemcachedProcess", "freePort"]

import os
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any, cast

from twisted.internet.interfaces import IListeningPort, IReactorTime, IStreamClientEndpoint

from txconnpool._serverprocess import launch
from txconnpool._serverprocess import stop as stopProcess
from txconnpool.memcache._fakeserver import FakeMemcacheServerFactory
from txconnpool.memcache._fakestore import FakeStore
from txconnpool.memcache._memorytransport import MemoryEndpoint


class FakeMemcached:
    """
    An in-memory memcached: its items live in this object, and expire on C{clock}.

    It answers every command of memcached's text protocol that
    L{MemCacheProtocol<txconnpool.memcache.protocol.MemCacheProtocol>} sends (the storage
    commands, C{get}/C{gets}/C{gat}/C{gats}, C{delete}, C{incr}/C{decr}, C{touch},
    C{flush_all}, C{version}, C{verbosity}, C{stats} and its subcommands, C{quit}) with the
    replies memcached 1.6 sends, errors and C{noreply} included, and keeps memcached's
    quirks (a C{decr} that shortens a number pads it with spaces). Unlike memcached, it
    never evicts (its memory is bounded only by what the test stores), it counts an item's
    size as its value, key and a 48-byte header (memcached's exact limit depends on its
    slab sizes), and a C{get} of a key longer than 250 bytes does not drop the replies of
    the commands before it that memcached has not sent yet.

    @ivar clock: The clock items expire on and in-memory connections deliver bytes on.
    @ivar maxItemSize: memcached's C{-I}: the largest item, header and key included.
    """

    def __init__(
        self,
        clock: IReactorTime | None = None,
        *,
        maxItemSize: int = 1024 * 1024,
        version: str = "1.6.18",
    ) -> None:
        """
        @param clock: The clock items expire on and connections deliver on; the global
            reactor if L{None}.
        @param maxItemSize: The largest item stored, in bytes, as memcached's C{-I}.
        @param version: What C{version} answers.
        """
        if clock is None:
            from twisted.internet import reactor

            clock = cast(IReactorTime, reactor)
        self.clock = clock
        self.maxItemSize = maxItemSize
        self._store = FakeStore(clock, maxItemSize, version)
        self._factory = FakeMemcacheServerFactory(self._store)

    def __repr__(self) -> str:
        return f"<FakeMemcached {self._store.itemCount()} items>"

    def endpoint(self) -> IStreamClientEndpoint:
        """
        @return: An endpoint whose connections reach this server in memory, on C{clock}.
        """
        return MemoryEndpoint(self.clock, self._factory)

    def serverFactory(self) -> FakeMemcacheServerFactory:
        """
        @return: The server factory, to listen with on any server endpoint.
        """
        return self._factory

    def listen(
        self, reactor: Any = None, port: int = 0, interface: str = "127.0.0.1"
    ) -> IListeningPort:
        """
        Listen on a TCP port (a free loopback port by default) with C{reactor} (the global
        reactor if L{None}).

        @return: The listening port; stop it with C{stopListening()}.
        """
        if reactor is None:
            from twisted.internet import reactor as globalReactor

            reactor = globalReactor
        listening: IListeningPort = reactor.listenTCP(port, self._factory, interface=interface)
        return listening

    @property
    def connectionCount(self) -> int:
        """
        How many connections are open now.
        """
        return len(self._factory.connections)

    def keys(self) -> list[bytes]:
        """
        @return: The keys of the items stored and not expired.
        """
        return [key for key, _, _ in self._store.cachedump(0)]

    def dropConnections(self) -> None:
        """
        Close every open connection from the server side, as a restarted memcached does;
        the items stay.
        """
        for connection in list(self._factory.connections):
            if connection.transport is not None:
                connection.transport.loseConnection()


def freePort(host: str = "127.0.0.1") -> int:
    """
    Return a TCP port on C{host} that nothing listens on right now.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


class MemcachedProcess:
    """
    One memcached server process, run with C{-U 0} (no UDP) and 64 MB of memory.

    @ivar host: The loopback address it listens on (TCP), or L{None}.
    @ivar port: Its TCP port, or L{None}.
    @ivar socketPath: Its unix socket path, or L{None}.
    """

    def __init__(
        self,
        logPath: Path,
        *,
        host: str | None = "127.0.0.1",
        socketPath: str | None = None,
        extraArgs: tuple[str, ...] = (),
        port: int | None = None,
    ) -> None:
        """
        @param logPath: Where memcached's output goes.
        @param host: The loopback address to listen on, unless C{socketPath} is given.
        @param socketPath: A unix socket path to listen on instead of TCP.
        @param extraArgs: More memcached arguments.
        @param port: The TCP port to listen on (such as 11211 on C{127.0.0.2}); a free one if
            L{None}.
        """
        self.host = host if socketPath is None else None
        if self.host is None or host is None:
            self.port = None
        else:
            self.port = freePort(host) if port is None else port
        self.socketPath = socketPath
        self.logPath = logPath
        self.extraArgs = extraArgs
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        """
        The client endpoint description of this server.
        """
        if self.socketPath is not None:
            return f"unix:{self.socketPath}"
        if self.host is not None and ":" in self.host:
            return f"tcp6:host={self.host}:port={self.port}"
        return f"tcp:{self.host}:{self.port}"

    def start(self) -> None:
        """
        Start memcached and return once it is listening (it says so on its standard error,
        which is then copied to C{logPath}).

        @raise RuntimeError: memcached is not installed, or exited before listening.
        """
        binary = shutil.which("memcached")
        if binary is None:
            raise RuntimeError(
                "the memcached binary is not installed; the test command installs it "
                "(apt-get install memcached)"
            )
        args = [binary, "-vv", "-U", "0", "-m", "64", "-c", "4096", "-t", "2"]
        if os.geteuid() == 0:
            args += ["-u", "root"]
        if self.socketPath is not None:
            args += ["-s", self.socketPath]
        else:
            args += ["-l", str(self.host), "-p", str(self.port)]
        args += list(self.extraArgs)
        self.process = launch(args, self.logPath, b"server listening", "memcached", "stderr")

    @property
    def pid(self) -> int:
        """
        The server's process ID.
        """
        assert self.process is not None
        return self.process.pid

    def signal(self, signum: int) -> None:
        """
        Send a signal to the server process.
        """
        os.kill(self.pid, signum)

    def stop(self) -> None:
        """
        Stop the server by its PID and wait for it to exit.
        """
        stopProcess(self.process)

