"""
The key hashes of libhashkit (libmemcached) and twemproxy, bit for bit as they compute them on
x86-64.

Both read keys as C{char}, which is signed on x86-64: in C{one_at_a_time} and the FNV hashes, a
byte of 0x80 or more enters the arithmetic sign-extended (0xFFFFFF80 and up), not as its
unsigned value. Each function takes the key as C{bytes} and returns an unsigned 32-bit C{int}.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable

__all__ = ["KEY_HASHES", "KeyHash", "crc", "fnv1a32", "fnv1a64", "md5", "oneAtATime"]

KeyHash = Callable[[bytes], int]
"""A key hash: C{bytes} in, an unsigned 32-bit C{int} out."""

_MASK = 0xFFFFFFFF

_SIGNED = tuple(b if b < 0x80 else b | 0xFFFFFF00 for b in range(256))
"""Each byte as C{(uint32_t)(char)byte} gives it on x86-64."""

_FNV32_BASIS = 2166136261
_FNV32_PRIME = 16777619
_FNV64_BASIS_LOW = 0xCBF29CE484222325 & _MASK
"""twemproxy's C{fnv1a_64} keeps a 32-bit state: the 64-bit basis and prime, truncated."""
_FNV64_PRIME_LOW = 0x100000001B3 & _MASK


def md5(key: bytes) -> int:
    """
    libhashkit's C{md5}: the first four bytes of the key's MD5 digest, little-endian.
    """
    return int.from_bytes(hashlib.md5(key).digest()[:4], "little")


def oneAtATime(key: bytes) -> int:
    """
    Jenkins' one-at-a-time hash, libmemcached's default key hash, with signed bytes.
    """
    value = 0
    signed = _SIGNED
    for byte in key:
        value = (value + signed[byte]) & _MASK
        value = (value + (value << 10)) & _MASK
        value ^= value >> 6
    value = (value + (value << 3)) & _MASK
    value ^= value >> 11
    return (value + (value << 15)) & _MASK


def _fnv1a(key: bytes, basis: int, prime: int) -> int:
    value = basis
    signed = _SIGNED
    for byte in key:
        value = ((value ^ signed[byte]) * prime) & _MASK
    return value


def fnv1a32(key: bytes) -> int:
    """
    32-bit FNV-1a, with signed bytes.
    """
    return _fnv1a(key, _FNV32_BASIS, _FNV32_PRIME)


def fnv1a64(key: bytes) -> int:
    """
    C{fnv1a_64} as libhashkit and twemproxy compute it: the 64-bit basis and prime, but a result
    (and, in twemproxy, a state) of 32 bits, with signed bytes. The low 32 bits of a product
    depend only on the low 32 bits of its factors, so both give the same value.
    """
    return _fnv1a(key, _FNV64_BASIS_LOW, _FNV64_PRIME_LOW)


def crc(key: bytes) -> int:
    """
    libhashkit's C{crc} (twemproxy's C{crc32}): bits 16 to 30 of the key's CRC-32, a number from
    0 to 32767. (The table lookup masks each byte, so signedness does not matter here.)
    """
    return (zlib.crc32(key) >> 16) & 0x7FFF


KEY_HASHES: dict[str, KeyHash] = {
    "md5": md5,
    "one_at_a_time": oneAtATime,
    "fnv1a_32": fnv1a32,
    "fnv1a_64": fnv1a64,
    "crc": crc,
}
"""The key hashes by the names C{MemCacheCluster} takes (libmemcached's and pylibmc's names)."""
