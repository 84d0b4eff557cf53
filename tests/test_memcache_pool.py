"""
Unit tests of MemCachePool over a fake endpoint and a clock.
"""

from __future__ import annotations

from twisted.internet.defer import TimeoutError

from txconnpool.memcache import MemCachePool
from txconnpool.testing import FakeEndpoint

from .helpers import FakeReactor, failureOf, resultOf


def test_methodsSendTheirCommandAndFireWithTheReply() -> None:
    """
    A MemCachePool method sends its command on a pooled connection and fires with the parsed
    reply.
    """
    clock = FakeReactor()
    endpoint = FakeEndpoint(clock)
    pool = MemCachePool(endpoint, maxClients=1, reactor=clock)
    d = pool.get("clé")
    attempt = endpoint.attempts[0]
    proto = attempt.succeed()
    assert attempt.transport is not None
    assert attempt.transport.value() == "get clé\r\n".encode()
    proto.dataReceived("VALUE clé 3 2\r\nhi\r\nEND\r\n".encode())
    assert resultOf(d) == (3, b"hi")
    assert "<MemCachePool <FakeEndpoint> busy=0 idle=1" in repr(pool)


def test_silenceTimeoutRunsOnThePoolsReactor() -> None:
    """
    The protocol's silence timeout is scheduled on the pool's reactor, and a timed-out
    connection is discarded.
    """
    clock = FakeReactor()
    endpoint = FakeEndpoint(clock)
    pool = MemCachePool(endpoint, maxClients=1, reactor=clock, requestTimeout=None)
    d = pool.version()
    endpoint.attempts[0].succeed()
    clock.advance(60)
    failureOf(d, TimeoutError)
    clock.advance(0)
    stats = pool.poolStats()
    assert (stats.idle, stats.busy, stats.closed) == (0, 0, 1)
    resultOf(pool.close())
    assert clock.getDelayedCalls() == []
