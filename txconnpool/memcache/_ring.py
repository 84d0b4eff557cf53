"""
Placement: which server of a cluster a key belongs to, given the servers still in the ring.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from typing import Generic, TypeVar

from ._hashkit import KEY_HASHES, KeyHash
from ._ketama import Continuum
from ._servers import ServerSpec

__all__ = ["DISTRIBUTIONS", "Ring", "hashTagged"]

DISTRIBUTIONS = ("ketama", "ketama-unweighted")
"""The C{distribution} names L{MemCacheCluster} takes."""

_N = TypeVar("_N")


def hashTagged(key: bytes, tag: bytes) -> bytes:
    """
    The part of C{key} that twemproxy's C{hash_tag} hashes: what lies between the first
    C{tag[0]} and the next C{tag[1]} after it, when that is not empty; else the whole key.
    """
    start = key.find(tag[0:1])
    if start >= 0:
        end = key.find(tag[1:2], start + 1)
        if end > start + 1:
            return key[start + 1 : end]
    return key


class Ring(Generic[_N]):
    """
    The continuum of the live members of a fixed list of servers, each standing for a node
    object.
    """

    def __init__(
        self,
        members: Sequence[tuple[ServerSpec, _N]],
        distribution: str,
        hash: str,
        hashTag: bytes | None,
    ) -> None:
        """
        @param members: Each server with the node that serves it, in the order given to the
            cluster (equal points are ordered by it).
        @param distribution: One of L{DISTRIBUTIONS}.
        @param hash: One of the names in L{KEY_HASHES}.
        @param hashTag: Two bytes, or L{None} to hash whole keys.
        @raise ValueError: An argument is none of those.
        @raise TypeError: An argument has the wrong type.
        """
        if distribution not in DISTRIBUTIONS:
            raise ValueError(
                f"distribution must be one of {', '.join(map(repr, DISTRIBUTIONS))}, "
                f"not {distribution!r}"
            )
        if hash not in KEY_HASHES:
            raise ValueError(
                f"hash must be one of {', '.join(map(repr, KEY_HASHES))}, not {hash!r}"
            )
        if hashTag is not None:
            if not isinstance(hashTag, bytes):
                raise TypeError(f"hashTag must be two bytes or None, not {hashTag!r}")
            if len(hashTag) != 2:
                raise ValueError(f"hashTag must be two bytes, like b'{{}}', not {hashTag!r}")
        self.distribution = distribution
        self.hashName = hash
        self.hashTag = hashTag
        self.keyHash: KeyHash = KEY_HASHES[hash]
        self._members = list(members)
        self._live: list[_N] = []
        self._values: list[int] = []
        self._owners: list[_N] = []
        self.rebuild([node for _, node in self._members])

    def rebuild(self, live: Sequence[_N]) -> None:
        """
        Rebuild the continuum over the members whose node is in C{live}, as libmemcached and
        twemproxy rebuild it when servers are ejected: the weighted points are recomputed from
        the live servers' total weight and number.
        """
        alive = set(map(id, live))
        members = [(spec, node) for spec, node in self._members if id(node) in alive]
        self._live = [node for _, node in members]
        if not members:
            self._values, self._owners = [], []
            return
        if self.distribution == "ketama":
            continuum = Continuum.weighted([(spec.pointName, spec.weight) for spec, _ in members])
        else:
            continuum = Continuum.unweighted([spec.pointName for spec, _ in members], self.keyHash)
        self._values = continuum.values
        self._owners = [self._live[index] for index in continuum.owners]

    @property
    def live(self) -> list[_N]:
        """
        The nodes in the continuum, in the order given.
        """
        return list(self._live)

    def keyHashOf(self, key: bytes) -> int:
        """
        The hash of C{key} that the continuum is searched with.
        """
        if self.hashTag is not None:
            key = hashTagged(key, self.hashTag)
        return self.keyHash(key)

    def nodeFor(self, key: bytes) -> _N | None:
        """
        The node C{key} belongs to, or L{None} when no node is live.
        """
        values = self._values
        if not values:
            return None
        if len(self._live) == 1:
            return self._live[0]
        index = bisect_left(values, self.keyHashOf(key))
        return self._owners[index if index < len(values) else 0]
