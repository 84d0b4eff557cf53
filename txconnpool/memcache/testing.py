"""
A real memcached server for integration tests and demonstrations: started on a free loopback
port (or a unix socket), ready once it says it is listening, stopped by its PID::

    server = MemcachedProcess(Path("memcached.log"))
    server.start()
    pool = MemCachePool(server.endpoint)
    ...
    server.stop()

It needs the C{memcached} binary on the C{PATH}.
"""

from __future__ import annotations

__all__ = ["MemcachedProcess", "freePort"]

import os
import shutil
import signal
import socket
import subprocess
import threading
from pathlib import Path
from typing import IO


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
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert self.process.stderr is not None
        log = self.logPath.open("wb")
        for line in self.process.stderr:
            log.write(line)
            if b"server listening" in line:
                break
        else:
            log.close()
            code = self.process.wait()
            raise RuntimeError(
                f"memcached exited with {code} before listening; see {self.logPath}"
            )
        threading.Thread(target=_drain, args=(self.process.stderr, log), daemon=True).start()

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
        if self.process is None or self.process.poll() is not None:
            return
        os.kill(self.process.pid, signal.SIGCONT)
        os.kill(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()


def _drain(stream: IO[bytes], log: IO[bytes]) -> None:
    """
    Copy what memcached prints into its log, so its pipe never fills.
    """
    with log:
        for line in stream:
            log.write(line)
