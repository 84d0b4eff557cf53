"""
Property tests against a real memcached: any key, value and flags given to C{set} are either
refused locally, writing nothing, or stored and read back exactly.

Whether a request is refused is checked on a protocol connected to a L{StringTransport} (which
records every byte written); the same request then goes to memcached over a real connection,
through L{MemCacheProtocol} directly and through a L{MemCachePool}. Each example runs as a
C{pytest_twisted.ensureDeferred} test on the global reactor.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Coroutine, Iterator
from typing import Any

import pytest
import pytest_twisted
from hypothesis import event, example, given, settings
from hypothesis import strategies as st
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import clientFromString, connectProtocol
from twisted.internet.protocol import connectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from txconnpool.memcache import InvalidRequestError, MemCachePool
from txconnpool.memcache.protocol import DEFAULT_MAX_VALUE_SIZE, MemCacheProtocol
from txconnpool.memcache.testing import MemcachedProcess

MAX_KEY_LENGTH = 250
BAD_KEY_BYTES = frozenset(range(0x21)) | {0x7F}
MAX_FLAGS = 2**32 - 1
WAIT = 30.0
"""Seconds of reactor time after which a request that has not settled fails the test."""


def wait(d: Deferred[Any]) -> Any:
    """
    Wait for C{d} on the global reactor, outside of a test function, and return its result.
    """
    return pytest_twisted.blockon(d.addTimeout(WAIT, reactor))


async def bounded(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """
    Await C{coroutine}, failing with C{TimeoutError} if it has not finished after C{WAIT}
    seconds of reactor time.
    """
    return await Deferred.fromCoroutine(coroutine).addTimeout(WAIT, reactor)


async def settle(d: Deferred[Any]) -> Any:
    """
    Wait for C{d} and return its result, or its L{Failure}.
    """
    try:
        return await d
    except Exception:
        return Failure()


class TrackedProtocol(MemCacheProtocol):
    """
    A protocol that tells when its connection has ended.
    """

    def __init__(self) -> None:
        super().__init__()
        self.lost: Deferred[None] = Deferred()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        super().connectionLost(reason)
        self.lost.callback(None)


class Connection:
    """
    One connection to memcached, made again if an example left it closed.
    """

    def __init__(self, endpoint: str) -> None:
        self.endpoint = clientFromString(reactor, endpoint)
        self.current: TrackedProtocol | None = None
        self.made = 0

    async def protocol(self) -> TrackedProtocol:
        """
        Return the open connection's protocol, connecting first if there is none.
        """
        if self.current is None or self.current.lost.called:
            connecting = connectProtocol(self.endpoint, TrackedProtocol())
            self.current = await connecting.addTimeout(WAIT, reactor)
            self.made += 1
        return self.current

    def close(self) -> None:
        """
        Close the connection and wait until it has ended.
        """
        current = self.current
        if current is not None and not current.lost.called:
            assert current.transport is not None
            current.transport.loseConnection()
            wait(current.lost)


@pytest.fixture(scope="module")
def connection(memcached: MemcachedProcess) -> Iterator[Connection]:
    """
    A connection to the shared memcached, for every example of the module.
    """
    conn = Connection(memcached.endpoint)
    yield conn
    conn.close()


@pytest.fixture(scope="module")
def pool(memcached: MemcachedProcess) -> Iterator[MemCachePool]:
    """
    A pool of one connection to the shared memcached, for every example of the module.
    """
    memcachePool = MemCachePool(memcached.endpoint, maxClients=1)
    yield memcachePool
    wait(memcachePool.close())


def accepted(key: object, value: object, flags: object) -> bool:
    """
    Tell whether C{set(key, value, flags)} is a request memcached can carry: a key of 1 to
    250 bytes (a str as UTF-8) without whitespace or control bytes (nor, in a str, Unicode
    whitespace or control characters), a bytes value of at most
    C{DEFAULT_MAX_VALUE_SIZE} bytes, and flags an int from 0 to 2**32-1.
    """
    if isinstance(key, str):
        if any(c.isspace() or unicodedata.category(c) == "Cc" for c in key):
            return False
        try:
            key = key.encode("utf-8")
        except UnicodeEncodeError:
            return False
    return (
        isinstance(key, bytes)
        and 1 <= len(key) <= MAX_KEY_LENGTH
        and not BAD_KEY_BYTES.intersection(key)
        and isinstance(value, bytes)
        and len(value) <= DEFAULT_MAX_VALUE_SIZE
        and type(flags) is int
        and 0 <= flags <= MAX_FLAGS
    )


def localSet(key: object, value: object, flags: object) -> tuple[bytes, list[Any]]:
    """
    Send C{set(key, value, flags)} on a protocol over a L{StringTransport} and return the bytes
    written and the outcomes its Deferred has had so far.
    """
    proto = MemCacheProtocol(clock=Clock())
    transport = StringTransport()
    proto.makeConnection(transport)  # type: ignore[no-untyped-call]
    outcomes: list[Any] = []
    proto.set(key, value, flags).addBoth(outcomes.append)  # type: ignore[arg-type]
    return transport.value(), outcomes


def checkLocally(key: object, value: object, flags: object) -> type[BaseException] | None:
    """
    Check that C{set(key, value, flags)} either writes exactly its command and waits for the
    reply, or writes nothing and fails at once with an L{InvalidRequestError}; return that
    error's type, or L{None} if the request was sent.
    """
    written, outcomes = localSet(key, value, flags)
    if accepted(key, value, flags):
        assert isinstance(key, (bytes, str)) and isinstance(value, bytes)
        assert isinstance(flags, int)
        wireKey = key.encode("utf-8") if isinstance(key, str) else key
        assert written == b"set %s %d 0 %d\r\n%s\r\n" % (wireKey, flags, len(value), value)
        assert outcomes == []
        return None
    assert written == b""
    assert len(outcomes) == 1 and isinstance(outcomes[0], Failure)
    error = outcomes[0].value
    assert isinstance(error, InvalidRequestError)
    return type(error)


async def roundTrip(
    client: MemCacheProtocol | MemCachePool, key: Any, value: Any, flags: Any
) -> None:
    """
    Check that C{client} refuses C{set(key, value, flags)} exactly as the local check does,
    or that memcached stores it and returns the same flags and value for the same key.
    """
    refusal = checkLocally(key, value, flags)
    event(f"refused with {refusal.__name__}" if refusal is not None else "stored")
    if isinstance(value, bytes) and len(value) > 2048:
        event(f"value of {len(value)} bytes")
    outcome = await settle(client.set(key, value, flags))
    if refusal is not None:
        assert isinstance(outcome, Failure) and outcome.check(refusal), outcome
        assert await client.version() > b""
        return
    assert outcome is True, outcome
    assert await client.get(key) == (flags, value)
    assert await client.getMultiple([key]) == {key: (flags, value)}
    assert await client.delete(key) is True


EDGE_KEYS = [
    b"",
    "",
    b"a",
    b"k" * MAX_KEY_LENGTH,
    b"k" * (MAX_KEY_LENGTH + 1),
    "\u00e9" * (MAX_KEY_LENGTH // 2),
    "\u00e9" * (MAX_KEY_LENGTH // 2) + "a",
    "\u20ac" * (MAX_KEY_LENGTH // 3),
    "\u20ac" * (MAX_KEY_LENGTH // 3 + 1),
    b"a b",
    b"a\tb",
    b"a\r\nget b",
    b"a\nb",
    b"a\rb",
    b"\x00",
    b"a\x7f",
    b"\x80\xff\xfe",
    b"END",
    b"VALUE",
    "cl\u00e9",
    "\u3000",
    "\u0085",
    "\ud800",
    "a\udcff",
    "\U0001f600",
]
NON_KEYS = [1, None, 1.5, bytearray(b"a"), memoryview(b"a"), [b"a"]]
KEYS = st.one_of(
    st.sampled_from(EDGE_KEYS),
    st.binary(max_size=MAX_KEY_LENGTH + 10),
    st.text(max_size=MAX_KEY_LENGTH // 2 + 5),
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=245, max_size=255),
    st.text(st.sampled_from("\u00e9\u20ac\U0001f600a"), min_size=60, max_size=130),
    st.sampled_from(NON_KEYS),
)
SMALL_VALUES = st.one_of(
    st.binary(max_size=40),
    st.sampled_from([b"", b"\r\n", b"END", b"END\r\n", b"\r\nEND\r\n", b"VALUE a 0 1\r\n"]),
)
FLAGS = st.one_of(
    st.integers(0, MAX_FLAGS),
    st.sampled_from([0, 1, MAX_FLAGS, MAX_FLAGS + 1, -1, True, 1.0, "1", None]),
)

SIZES = st.sampled_from(
    [
        0,
        1,
        2047,
        2048,
        2049,
        65536,
        DEFAULT_MAX_VALUE_SIZE - 1,
        DEFAULT_MAX_VALUE_SIZE,
        DEFAULT_MAX_VALUE_SIZE + 1,
        1024 * 1024,
        1024 * 1024 + 1,
    ]
)
PATTERNS = st.one_of(
    st.binary(min_size=1, max_size=16),
    st.sampled_from([b"\r\n", b"END\r\n", b"\r\nEND\r\n", b"VALUE k 0 1\r\n", b"\x00"]),
)
SIZED_VALUES = st.builds(
    lambda pattern, size: (pattern * (size // len(pattern) + 1))[:size], PATTERNS, SIZES
)
NON_VALUES = st.sampled_from(["text", "", bytearray(b"x"), memoryview(b"x"), 1, None, [b"x"]])
VALUES = st.one_of(SMALL_VALUES, SIZED_VALUES, SIZED_VALUES, NON_VALUES)
VALID_KEYS = st.sampled_from([b"v", b"k" * MAX_KEY_LENGTH, "\u00e9" * (MAX_KEY_LENGTH // 2)])


def propertySettings(examples: int) -> settings:
    """
    Hypothesis settings for C{examples} examples, without a per-example deadline (a round
    trip to memcached has no fixed duration).
    """
    return settings(max_examples=examples, deadline=None)


@propertySettings(400)
@given(key=KEYS, value=SMALL_VALUES, flags=FLAGS)
@pytest_twisted.ensureDeferred
async def test_anyKeyIsRefusedLocallyOrRoundTrips(
    connection: Connection, key: Any, value: bytes, flags: Any
) -> None:
    """
    A set with any key and flags writes nothing and fails with InvalidRequestError exactly
    when memcached could not carry it, and otherwise stores a value memcached returns exactly,
    over one connection that stays open throughout.
    """
    await bounded(roundTrip(await connection.protocol(), key, value, flags))
    assert connection.made == 1


@propertySettings(100)
@given(key=VALID_KEYS, value=VALUES, flags=st.sampled_from([0, MAX_FLAGS]))
@example(key=b"k" * MAX_KEY_LENGTH, value=b"\r\n" * (DEFAULT_MAX_VALUE_SIZE // 2), flags=0)
@example(key=b"k" * MAX_KEY_LENGTH, value=b"E" * DEFAULT_MAX_VALUE_SIZE, flags=MAX_FLAGS)
@example(key=b"k" * MAX_KEY_LENGTH, value=b"E" * (DEFAULT_MAX_VALUE_SIZE + 1), flags=0)
@example(key=b"v", value=b"E" * (1024 * 1024), flags=0)
@pytest_twisted.ensureDeferred
async def test_anyValueIsRefusedLocallyOrRoundTrips(
    connection: Connection, key: bytes | str, value: Any, flags: int
) -> None:
    """
    A set with any value, of any size around maxValueSize and with any bytes, is refused
    locally when it is not bytes or is too large, and otherwise round-trips exactly, even
    under a 250-byte key.
    """
    await bounded(roundTrip(await connection.protocol(), key, value, flags))
    assert connection.made == 1


@propertySettings(150)
@given(key=KEYS, value=VALUES, flags=FLAGS)
@pytest_twisted.ensureDeferred
async def test_anyRequestThroughThePool(
    pool: MemCachePool, key: Any, value: Any, flags: Any
) -> None:
    """
    Through a MemCachePool, a refused request fails with InvalidRequestError and leaves its
    connection in the pool, and an accepted one round-trips exactly.
    """
    await bounded(roundTrip(pool, key, value, flags))
    stats = pool.poolStats()
    assert (stats.created, stats.closed, stats.busy, stats.waiting) == (1, 0, 0, 0)
