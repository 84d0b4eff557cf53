"""
A limited server in a subprocess under a lowered descriptor limit survives a flood that makes
accept fail with EMFILE, backs off instead of spinning, and recovers.
"""

from __future__ import annotations

import json
from collections.abc import Generator
from typing import Any

import pytest_twisted

from tests.server_support.net import SUPPORT, Subprocess, runLoadgen

Gen = Generator[Any, Any, Any]

FLOOD = 300
AFTER = 50


@pytest_twisted.inlineCallbacks
def test_serverSurvivesEmfileFloodAndRecovers() -> Gen:
    """
    A flood against a server with almost no descriptors left makes accept fail; the server
    pauses its port instead of spinning, keeps serving within the descriptors it has with
    hardly another failure, serves every client, and once descriptors are back serves new
    clients without failures.
    """
    server = Subprocess(SUPPORT / "emfile_server.py", 64, 4, 6)
    try:
        port = int((yield server.line(b"PORT ")).split()[1])
        hogged = server.line(b"HOGGED ")
        server.write(b"hog\n")
        assert int((yield hogged).split()[1]) > 0

        failed = server.line(b"ACCEPT-FAILED")
        flood = runLoadgen("127.0.0.1", port, FLOOD, 300, 90, retry=True)
        yield failed
        reached = server.line(b"REACHED ")
        server.write(b"notify %d\n" % (FLOOD // 2,))
        yield reached
        statsLine = server.line(b"STATS ")
        server.write(b"stats\n")
        underPressure = json.loads((yield statsLine)[len(b"STATS ") :])
        assert underPressure["served"] >= FLOOD // 2
        assert 1 <= underPressure["acceptFailures"] <= 5, underPressure
        released = server.line(b"RELEASED")
        server.write(b"release\n")
        yield released
        report = yield flood
        assert report["ok"] == FLOOD and report["unfinished"] == 0, report

        after = yield runLoadgen("127.0.0.1", port, AFTER, 300, 60)
        assert after["ok"] == AFTER and after["retries"] == 0, after

        statsLine = server.line(b"STATS ")
        server.write(b"stats\n")
        stats = json.loads((yield statsLine)[len(b"STATS ") :])
        assert stats["served"] == FLOOD + AFTER
        assert (stats["active"], stats["queued"]) == (0, 0)
        assert stats["acceptPauses"] >= 1
        assert stats["acceptFailures"] == underPressure["acceptFailures"], stats
        server.write(b"quit\n")
        code, _, err = yield server.done
        assert code == 0, err.decode()
    finally:
        server.kill()
