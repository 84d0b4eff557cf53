"""
Support for the cluster's integration tests: several real memcached servers (on port 11211 of
other loopback addresses, or on free ports of 127.0.0.1), a real nutcracker in front of them,
and plain-socket probes asking each server which keys it holds.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from txconnpool.memcache.testing import MemcachedProcess, freePort

_CANDIDATES = [f"127.0.0.{i}" for i in range(2, 5)] + [
    f"127.0.{b}.{c}" for b in range(1, 4) for c in range(2, 12)
]


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def hostsWithPort11211(count: int) -> list[str]:
    """
    C{count} loopback addresses whose port 11211 is free: 127.0.0.2, 127.0.0.3 and 127.0.0.4
    when they are, else others of 127.0.0.0/8 (another run may hold them).
    """
    hosts = [h for h in _CANDIDATES if _bindable(h, 11211)][:count]
    if len(hosts) < count:
        raise RuntimeError(f"fewer than {count} loopback addresses have port 11211 free")
    return hosts


def startMemcacheds(directory: Path, addresses: Sequence[tuple[str, int | None]]
                    ) -> list[MemcachedProcess]:
    """
    Start one memcached per C{(host, port)} (a free port when L{None}).
    """
    servers: list[MemcachedProcess] = []
    try:
        for i, (host, port) in enumerate(addresses):
            server = MemcachedProcess(directory / f"memcached-{i}.log", host=host, port=port)
            server.start()
            servers.append(server)
    except BaseException:
        for server in servers:
            server.stop()
        raise
    return servers


def address(server: MemcachedProcess) -> tuple[str, int]:
    """
    The host and port of a TCP memcached.
    """
    assert server.host is not None and server.port is not None
    return server.host, server.port


def _ask(host: str, port: int, command: bytes, end: bytes) -> bytes:
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(command)
        reply = b""
        while not reply.endswith(end):
            chunk = s.recv(1 << 16)
            if not chunk:
                raise ConnectionError(f"{host}:{port} closed the connection after {reply!r}")
            reply += chunk
        return reply


def keysHeld(server: MemcachedProcess, keys: Iterable[bytes]) -> set[bytes]:
    """
    The keys among C{keys} that C{server} holds, asked with plain multi-gets.
    """
    keys = list(keys)
    held: set[bytes] = set()
    for start in range(0, len(keys), 100):
        reply = _ask(*address(server), b"get " + b" ".join(keys[start : start + 100]) + b"\r\n",
                     b"END\r\n")
        for line in reply.split(b"\r\n"):
            if line.startswith(b"VALUE "):
                held.add(line.split(b" ")[1])
    return held


def flush(servers: Iterable[MemcachedProcess]) -> None:
    """
    Empty every server.
    """
    for server in servers:
        assert _ask(*address(server), b"flush_all\r\n", b"\r\n") == b"OK\r\n"


class NutcrackerProcess:
    """
    A nutcracker (twemproxy) process with one memcache pool in front of the given servers,
    listening on a free port of 127.0.0.1 (its stats port too), stopped by its PID.

    nutcracker does not say when it is listening, so L{start} tries to connect until it can,
    for at most 10 seconds.
    """

    def __init__(
        self,
        directory: Path,
        servers: Sequence[str],
        *,
        hash: str = "fnv1a_64",
        distribution: str = "ketama",
        hashTag: str | None = None,
        autoEject: bool = False,
        timeoutMs: int = 2000,
    ) -> None:
        """
        @param servers: Its C{servers:} lines, such as C{"127.0.0.1:11212:1"} or
            C{"127.0.0.1:11212:1 alpha"}.
        """
        self.host = "127.0.0.1"
        self.port = freePort()
        self.statsPort = freePort()
        self.directory = directory
        self.configPath = directory / f"nutcracker-{self.port}.yml"
        self.logPath = directory / f"nutcracker-{self.port}.log"
        lines = [
            "pool:",
            f"  listen: {self.host}:{self.port}",
            f"  hash: {hash}",
            f"  distribution: {distribution}",
            f"  timeout: {timeoutMs}",
            f"  auto_eject_hosts: {'true' if autoEject else 'false'}",
            "  server_retry_timeout: 200",
            "  server_failure_limit: 1",
            "  servers:",
            *(f"   - {line}" for line in servers),
        ]
        if hashTag is not None:
            lines.insert(3, f'  hash_tag: "{hashTag}"')
        self.configPath.write_text("\n".join(lines) + "\n")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        """
        The client endpoint description of the proxy.
        """
        return f"tcp:{self.host}:{self.port}"

    def start(self) -> None:
        """
        Start nutcracker and return once it accepts connections.

        @raise RuntimeError: nutcracker is not installed, exited, or did not listen in time.
        """
        binary = shutil.which("nutcracker") or (
            "/usr/sbin/nutcracker" if os.path.exists("/usr/sbin/nutcracker") else None
        )
        if binary is None:
            raise RuntimeError("nutcracker is not installed (apt-get install nutcracker)")
        self.process = subprocess.Popen(
            [binary, "-c", str(self.configPath), "-s", str(self.statsPort), "-a", self.host,
             "-o", str(self.logPath), "-v", "5"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"nutcracker exited with {self.process.returncode}; "
                                   f"see {self.logPath}")
            try:
                socket.create_connection((self.host, self.port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("nutcracker did not listen within 10 s") from None
                time.sleep(0.01)

    def stop(self) -> None:
        """
        Stop nutcracker by its PID and wait for it to exit.
        """
        if self.process is None or self.process.poll() is not None:
            return
        os.kill(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()
