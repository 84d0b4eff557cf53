"""
The ketama continuum of libmemcached 1.0/1.1 (C{hosts.cc}) and twemproxy 0.5
(C{nc_ketama.c}), point for point.

A continuum is a sorted ring of 32-bit points, each owned by a server. A key belongs to the
owner of the first point at or above the key's hash, or of the first point when the hash is
above them all. Two constructions exist:

  - weighted (libmemcached's C{KETAMA_WEIGHTED}, twemproxy's C{distribution: ketama}): a server
    gets C{floor(share * 160 / 4 * n + 1e-10) * 4} points, computed in single precision as the
    C code does, where C{share} is its weight over the total weight and C{n} the number of
    servers; the points are the four little-endian words of the MD5 digests of C{"<name>-0"},
    C{"<name>-1"}, and so on;
  - unweighted (libmemcached's C{KETAMA} with every weight 1): 100 points per server, the key
    hash of C{"<name>-0"} to C{"<name>-99"}.

Equal points are ordered by server, as libmemcached's comparison does (twemproxy leaves their
order to C{qsort}; equal 32-bit points are rare).
"""

from __future__ import annotations

import hashlib
import math
import struct
from bisect import bisect_left
from collections.abc import Sequence

from ._hashkit import KeyHash

__all__ = ["Continuum", "pointsPerServer"]

POINTS_PER_SERVER_WEIGHTED = 160
"""C{MEMCACHED_POINTS_PER_SERVER_KETAMA} and twemproxy's C{KETAMA_POINTS_PER_SERVER}."""

POINTS_PER_SERVER_UNWEIGHTED = 100
"""C{MEMCACHED_POINTS_PER_SERVER}."""

_FLOAT = struct.Struct("f")


def _f32(value: float) -> float:
    """
    Round to the nearest single-precision C{float}. Rounding the double-precision result of one
    operation on two floats gives the single-precision result exactly.
    """
    result: float = _FLOAT.unpack(_FLOAT.pack(value))[0]
    return result


def pointsPerServer(weight: int, totalWeight: int, servers: int) -> int:
    """
    How many points a server of C{weight} gets on a weighted continuum of C{servers} servers
    weighing C{totalWeight} together: C{floor(pct * 160 / 4 * servers + 1e-10) * 4}, each step in
    C{float} as libmemcached and twemproxy compute it.
    """
    pct = _f32(_f32(weight) / _f32(totalWeight))
    scaled = _f32(_f32(_f32(pct * POINTS_PER_SERVER_WEIGHTED) / 4) * _f32(servers))
    return math.floor(_f32(scaled + 0.0000000001)) * 4


class Continuum:
    """
    A ketama continuum over servers numbered from 0 in the order given.

    @ivar values: The points, in ascending order.
    @ivar owners: The server owning each point of C{values}, by number.
    """

    __slots__ = ("owners", "values")

    def __init__(self, points: Sequence[tuple[int, int]]) -> None:
        """
        @param points: C{(value, server)} pairs, in any order.
        @raise ValueError: There are no points.
        """
        if not points:
            raise ValueError("a continuum needs at least one point")
        ordered = sorted(points)
        self.values = [value for value, _ in ordered]
        self.owners = [owner for _, owner in ordered]

    @classmethod
    def weighted(cls, servers: Sequence[tuple[bytes, int]]) -> Continuum:
        """
        The weighted continuum of C{(name, weight)} servers.

        @raise ValueError: No server gets a point.
        """
        total = sum(weight for _, weight in servers)
        points: list[tuple[int, int]] = []
        for index, (name, weight) in enumerate(servers):
            for i in range(pointsPerServer(weight, total, len(servers)) // 4):
                digest = hashlib.md5(b"%s-%d" % (name, i)).digest()
                for word in struct.unpack("<4I", digest):
                    points.append((word, index))
        return cls(points)

    @classmethod
    def unweighted(cls, names: Sequence[bytes], keyHash: KeyHash) -> Continuum:
        """
        The unweighted continuum of the servers called C{names}, whose points are hashed with
        C{keyHash}.
        """
        return cls(
            [
                (keyHash(b"%s-%d" % (name, i)), index)
                for index, name in enumerate(names)
                for i in range(POINTS_PER_SERVER_UNWEIGHTED)
            ]
        )

    def __len__(self) -> int:
        """
        The number of points.
        """
        return len(self.values)

    def lookup(self, hashValue: int) -> int:
        """
        @return: The server owning the first point at or above C{hashValue}, or the first point.
        """
        index = bisect_left(self.values, hashValue)
        if index == len(self.values):
            index = 0
        return self.owners[index]

    def shares(self) -> list[float]:
        """
        @return: For each server that has points, by number, the fraction of the 32-bit hash
            space it owns (a server's arc ends at its point).
        """
        count = max(self.owners) + 1
        owned = [0] * count
        previous = self.values[-1] - 2**32
        for value, owner in zip(self.values, self.owners):
            owned[owner] += value - previous
            previous = value
        return [arc / 2**32 for arc in owned]
