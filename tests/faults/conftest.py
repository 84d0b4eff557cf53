"""
Fixtures of the fault-injection tests: a fault proxy in front of the shared memcached, and a
check that no test logs an error (an unhandled failure in a Deferred, an exception raised
in a callback or a protocol).
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_twisted
from twisted.logger import LogEvent, formatEvent, globalLogPublisher

from tests.faults.proxy import FaultProxy
from txconnpool.memcache.testing import MemcachedProcess


@pytest_twisted.async_yield_fixture
async def proxy(memcached: MemcachedProcess) -> AsyncIterator[FaultProxy]:
    """
    A fault proxy of the test's own, forwarding to the shared memcached.
    """
    assert memcached.port is not None
    faultProxy = FaultProxy(memcached.port)
    faultProxy.listen()
    yield faultProxy
    await faultProxy.close()


@pytest.fixture(autouse=True)
def noLoggedErrors() -> Iterator[None]:
    """
    Fail the test if anything logs a failure while it runs, including Deferreds garbage
    collected with an unhandled failure.
    """
    errors: list[LogEvent] = []

    def observe(event: LogEvent) -> None:
        if event.get("log_failure") is not None or event.get("isError"):
            errors.append(event)

    gc.collect()
    globalLogPublisher.addObserver(observe)
    try:
        yield
        gc.collect()
    finally:
        globalLogPublisher.removeObserver(observe)
    assert not errors, [formatEvent(e) + str(e.get("log_failure", "")) for e in errors]
