"""
Shared fixtures: real memcached servers. Every test runs; a skipped test fails the run.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from txconnpool.memcache.testing import MemcachedProcess

_skipped: list[str] = []


@pytest.fixture(scope="session")
def memcached(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MemcachedProcess]:
    """
    A memcached server on a free loopback TCP port, shared by the session.
    """
    server = MemcachedProcess(tmp_path_factory.mktemp("memcached") / "memcached.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def memcachedUnix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MemcachedProcess]:
    """
    A memcached server on a unix socket, shared by the session.
    """
    directory = tmp_path_factory.mktemp("memcached-unix")
    server = MemcachedProcess(directory / "memcached.log", socketPath=str(directory / "mc.sock"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def freshMemcached(tmp_path: Path) -> Iterator[MemcachedProcess]:
    """
    A memcached server of the test's own, for tests that stop, pause or restart it.
    """
    server = MemcachedProcess(tmp_path / "memcached.log")
    server.start()
    yield server
    server.stop()


def pytest_runtest_logreport(report: Any) -> None:
    """
    Remember skipped tests.
    """
    if report.skipped:
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """
    Fail the run if any test was skipped: every test must run.
    """
    if _skipped and exitstatus == 0:
        session.exitstatus = 1
        print(f"\n{len(_skipped)} test(s) skipped, which this project does not allow:")
        for nodeid in _skipped:
            print(f"  {nodeid}")
