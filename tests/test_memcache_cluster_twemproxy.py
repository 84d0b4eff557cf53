"""
Unit tests of MemCachePool's twemproxy mode over a fake endpoint: the commands nutcracker would
close the connection on are refused without writing, and gets it fails because a backend is down
are sent again key by key.
"""

from __future__ import annotations

from typing import Any

import pytest

from txconnpool.errors import ConnectionLostError
from txconnpool.memcache import (
    InvalidKeyError,
    MemCachePool,
    PartialResultError,
    ServerError,
    UnsupportedCommandError,
)
from txconnpool.testing import FakeEndpoint

from .helpers import FakeReactor, assertNoResult, failureOf, resultOf


class Proxied:
    """
    A pool in twemproxy mode over a fake endpoint, with one connection.
    """

    def __init__(self) -> None:
        self.clock = FakeReactor()
        self.endpoint = FakeEndpoint(self.clock)
        self.pool = MemCachePool(
            self.endpoint, maxClients=1, reactor=self.clock, proxy="twemproxy",
            retryPolicy=lambda n: 0.5,
        )

    def connect(self) -> tuple[Any, Any]:
        attempt = self.endpoint.pending()[-1]
        protocol = attempt.succeed()
        return protocol, attempt.transport

    def close(self) -> None:
        d = self.pool.close()
        self.clock.advance(0)
        resultOf(d)
        assert self.clock.getDelayedCalls() == []


def test_unsupportedCommandsFailAtOnceAndWriteNothing() -> None:
    """
    stats, flushAll and any command nutcracker does not answer fail with
    UnsupportedCommandError without a byte written; the requests in flight go on.
    """
    p = Proxied()
    pending = p.pool.get(b"a")
    protocol, transport = p.connect()
    transport.clear()
    for d in (p.pool.stats(), p.pool.flushAll(), p.pool.performRequest("verbosity", 1)):
        error = failureOf(d, UnsupportedCommandError).value
        assert "nutcracker does not support" in str(error)
        assert isinstance(error, ValueError)
    assert transport.value() == b""
    protocol.dataReceived(b"END\r\n")
    assert resultOf(pending) == (0, None)
    assert p.pool.poolStats().discarded.lost == 0
    p.close()


def test_supportedCommandsGoThrough() -> None:
    """
    The commands nutcracker answers are sent as usual, version included.
    """
    p = Proxied()
    d = p.pool.version()
    protocol, transport = p.connect()
    s = p.pool.set(b"k", b"v")
    t = p.pool.touch(b"k", 5)
    assert transport.value() == b"version\r\nset k 0 0 1\r\nv\r\ntouch k 5\r\n"
    protocol.dataReceived(b"VERSION 1.6.18\r\nSTORED\r\nTOUCHED\r\n")
    assert (resultOf(d), resultOf(s), resultOf(t)) == (b"1.6.18", True, True)
    p.close()


def test_keysOver250BytesAreRefused() -> None:
    """
    A key longer than 250 bytes once encoded fails with InvalidKeyError naming nutcracker's
    limit, for single keys and in a getMultiple; nothing is sent.
    """
    p = Proxied()
    for d in (
        p.pool.get(b"x" * 251),
        p.pool.set("é" * 126, b"v"),
        p.pool.getMultiple([b"fine", b"y" * 300]),
    ):
        assert "nutcracker" in str(failureOf(d, InvalidKeyError).value)
    assert p.endpoint.attempts == []
    p.close()


def test_anUnknownProxyIsRefused() -> None:
    """
    proxy must be None or "twemproxy".
    """
    with pytest.raises(ValueError, match="proxy must be None or one of 'twemproxy'"):
        MemCachePool("tcp:127.0.0.1:11211", proxy="mcrouter")


def test_aMultiGetFailedByABackendIsRetriedKeyByKey() -> None:
    """
    A getMultiple answered SERVER_ERROR is sent again one single-key get per key; only the keys
    whose get fails again fail, with PartialResultError carrying the others.
    """
    p = Proxied()
    d = p.pool.getMultiple([b"k1", b"k2", b"k3"])
    protocol, transport = p.connect()
    assert transport.value() == b"get k1 k2 k3\r\n"
    transport.clear()
    protocol.dataReceived(b"SERVER_ERROR Connection refused\r\n")
    assert transport.value() == b"get k1\r\nget k2\r\nget k3\r\n"
    protocol.dataReceived(
        b"VALUE k1 0 1\r\na\r\nEND\r\nSERVER_ERROR Connection refused\r\nEND\r\n"
    )
    error = failureOf(d, PartialResultError).value
    assert error.results == {b"k1": (0, b"a"), b"k3": (0, None)}
    assert list(error.errors) == [b"k2"] and isinstance(error.errors[b"k2"], ServerError)
    p.close()


def test_aRetriedMultiGetThatSucceedsFiresWithTheValues() -> None:
    """
    When every single-key get of the retry succeeds, getMultiple fires with all the values.
    """
    p = Proxied()
    d = p.pool.getMultiple(iter([b"k1", "k2"]), True)
    protocol, _ = p.connect()
    protocol.dataReceived(b"SERVER_ERROR timeout\r\n")
    protocol.dataReceived(b"VALUE k1 0 1 7\r\na\r\nEND\r\nEND\r\n")
    assert resultOf(d) == {b"k1": (0, b"7", b"a"), "k2": (0, b"", None)}
    p.close()


def test_batchedGetsFailedByABackendAreRetriedOneByOne() -> None:
    """
    Gets batched into one multi-key get that nutcracker fails are each sent again alone:
    only the dead backend's key fails.
    """
    p = Proxied()
    first = p.pool.get(b"a")
    protocol, transport = p.connect()
    batched = [p.pool.get(b"b"), p.pool.get(b"c")]
    p.clock.advance(0)
    assert transport.value() == b"get a\r\nget b c\r\n"
    transport.clear()
    protocol.dataReceived(b"END\r\nSERVER_ERROR Connection refused\r\n")
    assert resultOf(first) == (0, None)
    assert transport.value() == b"get b\r\nget c\r\n"
    protocol.dataReceived(b"SERVER_ERROR Connection refused\r\nVALUE c 0 1\r\nC\r\nEND\r\n")
    failureOf(batched[0], ServerError)
    assert resultOf(batched[1]) == (0, b"C")
    p.close()


def test_getsLostWhenNutcrackerClosesAreRetried() -> None:
    """
    Nutcracker closes the connection after failing a multi-get; the gets in flight behind it
    are sent again on a new connection, and writes are not.
    """
    p = Proxied()
    multi = p.pool.getMultiple([b"dead", b"live"])
    protocol, transport = p.connect()
    behind = p.pool.get(b"other")
    written = p.pool.set(b"w", b"v")
    protocol.dataReceived(b"SERVER_ERROR Connection refused\r\n")
    p.endpoint.attempts[0].lose()
    p.clock.advance(0)
    failureOf(written, ConnectionLostError)
    assertNoResult(behind)
    p.clock.advance(1)
    protocol, transport = p.connect()
    assert sorted(transport.value().split(b"\r\n")) == [b"", b"get dead", b"get live",
                                                        b"get other"]
    replies = {b"dead": b"SERVER_ERROR Connection refused\r\n",
               b"live": b"VALUE live 0 1\r\nL\r\nEND\r\n", b"other": b"END\r\n"}
    for line in transport.value().split(b"\r\n")[:-1]:
        protocol.dataReceived(replies[line[4:]])
    assert resultOf(behind) == (0, None)
    error = failureOf(multi, PartialResultError).value
    assert error.results == {b"live": (0, b"L")} and list(error.errors) == [b"dead"]
    p.close()


def test_withoutProxyStatsIsSent() -> None:
    """
    A pool without proxy sends stats as usual.
    """
    clock = FakeReactor()
    endpoint = FakeEndpoint(clock)
    pool = MemCachePool(endpoint, reactor=clock)
    d = pool.stats()
    attempt = endpoint.attempts[0]
    protocol = attempt.succeed()
    assert attempt.transport is not None and attempt.transport.value() == b"stats\r\n"
    protocol.dataReceived(b"END\r\n")
    assert resultOf(d) == {}
    assert pool.proxy is None


def test_aPingAnsweredWithServerErrorProvesTheConnection() -> None:
    """
    In twemproxy mode a ping whose version nutcracker answers SERVER_ERROR (the backend it
    chose is down) still succeeds: the proxy answered.
    """
    p = Proxied()
    d = p.pool.acquire()
    _, transport = p.connect()
    protocol = resultOf(d)
    ping = p.pool.pingConnection(protocol)
    assert transport.value() == b"version\r\n"
    protocol.dataReceived(b"SERVER_ERROR Connection refused\r\n")
    assert isinstance(resultOf(ping), ServerError)
    p.pool.release(protocol)
    p.close()
