"""
The Python snippets of the README run as written, against real servers on loopback ports.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.protocol import Factory
from twisted.protocols.basic import LineReceiver

from txconnpool.memcache.testing import MemcachedProcess

README = Path(__file__).resolve().parents[2] / "README.rst"


def pythonSnippets() -> list[str]:
    """
    The code of every C{.. code-block:: python} of the README, dedented.
    """
    snippets = []
    for block in re.findall(r"\.\. code-block:: python\n\n((?:    .*\n|\n)+)", README.read_text()):
        snippets.append("\n".join(line[4:] for line in block.splitlines()) + "\n")
    return snippets


def test_readmeHasTheSnippetsThisModuleRuns() -> None:
    """
    The README has two Python snippets: the quick start and the pool of one's own protocol.
    """
    snippets = pythonSnippets()
    assert len(snippets) == 2
    assert "MemCachePool(" in snippets[0] and "class MyPool(" in snippets[1]


def test_quickStartRuns(memcached: MemcachedProcess) -> None:
    """
    The quick start stores a value, reads it back and prints it with the pool's statistics,
    run as a program against a real memcached.
    """
    code = pythonSnippets()[0].replace('"tcp:127.0.0.1:11211"', repr(memcached.endpoint))
    assert code != pythonSnippets()[0]
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("b'hello' PoolStats(busy=0, idle=1")


class PongServer(LineReceiver):
    """
    Answers each PING line with PONG.
    """

    def lineReceived(self, line: bytes) -> None:
        self.sendLine(b"PONG" if line == b"PING" else b"ERROR")


@pytest_twisted.ensureDeferred
async def test_ownProtocolSnippetRuns(capsys: Any) -> None:
    """
    The "pool your own protocol" snippet defines its classes without error, and its main()
    pings a PING/PONG server through the pool.
    """
    listening = reactor.listenTCP(0, Factory.forProtocol(PongServer), interface="127.0.0.1")
    port = listening.getHost().port
    code = pythonSnippets()[1].replace("tcp:127.0.0.1:7000", f"tcp:127.0.0.1:{port}")
    namespace: dict[str, Any] = {"__name__": "readme_snippet"}
    try:
        exec(compile(code, str(README), "exec"), namespace)
        await namespace["main"](reactor)
    finally:
        await listening.stopListening()
    assert capsys.readouterr().out == "b'PONG'\n"
