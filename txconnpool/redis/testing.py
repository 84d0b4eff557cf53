"""
A real Redis server for integration tests and demonstrations: started on a free loopback
port, with nothing saved to disk, ready once it says it accepts connections, stopped by its
PID::

    server = RedisProcess(Path("redis.log"))
    server.start()
    pool = RedisPool(server.endpoint)
    ...
    server.stop()

It needs the C{redis-server} binary on the C{PATH}.
"""

from __future__ import annotations

__all__ = ["RedisProcess"]

import os
import shutil
import subprocess
from pathlib import Path

from .._serverprocess import launch
from .._serverprocess import stop as stopProcess
from ..memcache.testing import freePort


class RedisProcess:
    """
    One redis-server process, run with C{--save ''} and C{--appendonly no} (nothing written
    to disk), in the foreground, logging to its standard output.

    @ivar host: The loopback address it listens on.
    @ivar port: Its TCP port, kept across restarts.
    @ivar password: The password it requires (C{requirepass}), or L{None}.
    """

    def __init__(
        self,
        logPath: Path,
        *,
        host: str = "127.0.0.1",
        password: str | None = None,
        extraArgs: tuple[str, ...] = (),
    ) -> None:
        self.host = host
        self.port = freePort(host)
        self.password = password
        self.logPath = logPath
        self.extraArgs = extraArgs
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        """
        The client endpoint description of this server.
        """
        if ":" in self.host:
            return f"tcp6:host={self.host}:port={self.port}"
        return f"tcp:{self.host}:{self.port}"

    def start(self) -> None:
        """
        Start redis-server and return once it accepts connections (it says so on its
        standard output, which is then copied to C{logPath}).

        @raise RuntimeError: redis-server is not installed, or exited before it was ready.
        """
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(
                "the redis-server binary is not installed; the test command installs it "
                "(apt-get install redis-server)"
            )
        args = [
            binary, "--port", str(self.port), "--bind", self.host, "--save", "",
            "--appendonly", "no", "--daemonize", "no", "--logfile", "",
            "--databases", "16", "--dir", str(self.logPath.parent),
        ]
        if self.password is not None:
            args += ["--requirepass", self.password]
        args += list(self.extraArgs)
        self.process = launch(
            args, self.logPath, b"Ready to accept connections", "redis-server", "stdout"
        )

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

