"""
The key hashes and the ketama continuum, checked against libmemcached itself: pylibmc (which
bundles libmemcached) computes the expected values when the tests run.

pylibmc does not expose a key's hash, but with C{distribution: modula} over C{n} servers its
C{hash(key)} is the key's hash modulo C{n}. Agreeing modulo 7, 997, 1009 and 1013, whose
product exceeds 2**32, means agreeing on the 32-bit hash itself.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable

import pylibmc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from txconnpool.memcache._hashkit import KEY_HASHES, fnv1a32, oneAtATime
from txconnpool.memcache._ketama import Continuum, pointsPerServer
from txconnpool.memcache._ring import hashTagged

MODULI = (7, 997, 1009, 1013)

PYLIBMC_NAMES = {
    "md5": "md5",
    "one_at_a_time": "default",
    "fnv1a_32": "fnv1a_32",
    "fnv1a_64": "fnv1a_64",
    "crc": "crc",
}
"""Our hash names, and the C{hash} behaviour pylibmc gives the same function."""

KEYS = [
    b"a",
    b"key-1",
    b"user:42:profile",
    bytes(range(0x21, 0x7F)),
    bytes(range(0x80, 0x100)),
    b"\xff" * 250,
    "ключ-€-😀".encode(),
    b"x" * 250,
]


def _oracles() -> dict[str, list[tuple[int, Callable[[bytes], int]]]]:
    oracles: dict[str, list[tuple[int, Callable[[bytes], int]]]] = {}
    for name, behaviour in PYLIBMC_NAMES.items():
        oracles[name] = []
        for n in MODULI:
            client = pylibmc.Client(
                [f"127.0.0.1:{port}" for port in range(1, n + 1)],
                behaviors={"hash": behaviour, "distribution": "modula"},
            )
            oracles[name].append((n, client.hash))
    return oracles


ORACLES = _oracles()


@pytest.mark.parametrize("name", sorted(KEY_HASHES))
def test_keyHashesMatchLibhashkit(name: str) -> None:
    """
    Each key hash gives libmemcached's value for keys of every byte, signed bytes and UTF-8
    included.
    """
    ours = KEY_HASHES[name]
    for key in KEYS:
        for n, theirs in ORACLES[name]:
            assert ours(key) % n == theirs(key), (name, key, n)


@settings(max_examples=150, deadline=None)
@given(key=st.binary(min_size=1, max_size=250), name=st.sampled_from(sorted(KEY_HASHES)))
def test_keyHashesMatchLibhashkitOnAnyKey(key: bytes, name: str) -> None:
    """
    For any key, each key hash agrees with libmemcached's modulo numbers whose product
    exceeds 2**32, so on the whole 32-bit value.
    """
    ours = KEY_HASHES[name](key)
    assert 0 <= ours < 2**32
    for n, theirs in ORACLES[name]:
        assert ours % n == theirs(key)


def test_signExtensionChangesTheHighBytes() -> None:
    """
    A byte of 0x80 or more enters one_at_a_time and FNV-1a sign-extended: the hash differs
    from the one of the unsigned byte.
    """
    unsigned = 2166136261
    unsigned = ((unsigned ^ 0x80) * 16777619) & 0xFFFFFFFF
    assert fnv1a32(b"\x80") != unsigned
    assert fnv1a32(b"\x80") == ((2166136261 ^ 0xFFFFFF80) * 16777619) & 0xFFFFFFFF
    assert oneAtATime(b"\x80") != oneAtATime(b"\x7f")


def test_weightedPointsFollowTheSingleFloatFormula() -> None:
    """
    The weighted continuum gives each server 160 / 4 * share * n points rounded down to a
    multiple of 4, so equal weights give 160 each and weights 1, 2, 3 give 80, 160, 240.
    """
    assert [pointsPerServer(1, 3, 3)] * 3 == [160, 160, 160]
    assert [pointsPerServer(w, 6, 3) for w in (1, 2, 3)] == [80, 160, 240]
    assert pointsPerServer(1, 1000, 1) == 0
    continuum = Continuum.weighted([(b"a", 1), (b"b", 2), (b"c", 3)])
    assert len(continuum) == 480


def test_weightedPointsAreTheMd5WordsOfTheNames() -> None:
    """
    Each MD5 digest of C{"<name>-<i>"} gives four points, its words read little-endian.
    """
    continuum = Continuum.weighted([(b"10.0.0.1", 1)])
    expected = sorted(
        word
        for i in range(40)
        for word in struct.unpack("<4I", hashlib.md5(b"10.0.0.1-%d" % i).digest())
    )
    assert continuum.values == expected
    assert set(continuum.owners) == {0}


def test_lookupTakesTheFirstPointAtOrAboveAndWraps() -> None:
    """
    A hash belongs to the first point at or above it; above the last point it wraps to the
    first.
    """
    continuum = Continuum([(100, 0), (200, 1), (300, 2)])
    assert [continuum.lookup(h) for h in (0, 100, 101, 200, 250, 300, 301, 2**32 - 1)] == [
        0, 0, 1, 1, 2, 2, 0, 0,
    ]
    assert continuum.shares() == [(2**32 - 200) / 2**32, 100 / 2**32, 100 / 2**32]


def test_equalPointsAreOrderedByServer() -> None:
    """
    Two servers with the same point: the one given first owns it, as libmemcached orders them.
    """
    continuum = Continuum([(100, 1), (100, 0)])
    assert continuum.lookup(50) == 0


def test_anEmptyContinuumIsRefused() -> None:
    """
    A continuum without points is refused with a ValueError.
    """
    with pytest.raises(ValueError, match="at least one point"):
        Continuum([])


@pytest.mark.parametrize(
    ("key", "hashed"),
    [
        (b"user:{42}:name", b"42"),
        (b"{a}{b}", b"a"),
        (b"no-tag", b"no-tag"),
        (b"empty{}tag", b"empty{}tag"),
        (b"open{only", b"open{only"),
        (b"}{x}", b"x"),
    ],
)
def test_hashTagSelectsTheTaggedPart(key: bytes, hashed: bytes) -> None:
    """
    A hash tag hashes what lies between its first opening byte and the next closing byte,
    when that is not empty, as twemproxy's hash_tag does; else the whole key.
    """
    assert hashTagged(key, b"{}") == hashed
