"""
The commands of L{MetaMemCacheProtocol<txconnpool.memcache.meta.MetaMemCacheProtocol>} that
take, give back and revoke leases against cache stampedes, on memcached's C{N}, C{R}, C{W},
C{X} and C{Z} flags; the logic of C{getOrCompute} built on them is in
L{txconnpool.memcache.meta._stampede}.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, fail

from txconnpool.memcache import _validate as _v
from txconnpool.memcache.errors import InvalidRequestError
from txconnpool.memcache.meta._checks import checkTtl
from txconnpool.memcache.meta._replies import MetaRequest
from txconnpool.memcache.meta._requests import LeaseReply, LeaseRequest, StatusRequest

Key = bytes | str

_CAS_STORED = {b"HD": True, b"EX": False, b"NF": False}
_DELETED = {b"HD": True, b"NF": False}


class LeaseCommands:
    """
    The lease commands, for a protocol that has the wire of
    L{MetaWire<txconnpool.memcache.meta._wire.MetaWire>} and the key checks of
    L{MetaMemCacheProtocol<txconnpool.memcache.meta.MetaMemCacheProtocol>}.
    """

    maxValueSize: int
    _keyFlag: bytes
    _bareMisses: bool
    _key: Callable[[object], bytes]
    _opaque: Callable[[], bytes]
    _send: Callable[[MetaRequest, bytes], Deferred[Any]]

    def leaseGet(self, key: Key, lockTtl: int, recacheWithin: int = 0) -> Deferred[LeaseReply]:
        """
        Fetch C{key} and take its lease if the value is missing, stale, or (with
        C{recacheWithin}) about to expire: the lease goes to one caller at a time, across every
        client of the server, which is then the one to compute the value.

        On a miss the server creates an empty placeholder that holds the lease for
        C{lockTtl} seconds; later callers see it as leased. An item marked stale by
        L{invalidate} hands its lease to the first reader.

        @param lockTtl: seconds (1 to 30 days) the placeholder of a missing key lives.
        @param recacheWithin: hand the lease out while the value has fewer than this many
            seconds left to live (C{R}); 0 for never.
        @return: fires with a L{LeaseReply}.
        """
        try:
            wireKey = self._key(key)
            lock = checkTtl("lockTtl", lockTtl, 1)
            within = checkTtl("recacheWithin", recacheWithin, 0)
        except InvalidRequestError as e:
            return fail(e)
        opaque = self._opaque()
        recache = b" R%d" % (within,) if within else b""
        line = b"mg %s %s%s v f c N%d%s\r\n" % (wireKey, opaque, self._keyFlag, lock, recache)
        return self._send(LeaseRequest(opaque, self._bareMisses), line)

    def leaseStore(
        self, key: Key, val: bytes, ttl: int, cas: bytes | int | None, flags: int = 0
    ) -> Deferred[bool]:
        """
        Store the value computed under a lease, replacing the placeholder or the stale value
        whose CAS token L{leaseGet} gave. If the item was invalidated again meanwhile, the
        value is stored marked stale, so that it is recomputed once more (C{ms ... C I}).

        @param ttl: seconds the value lives (0 for ever, at most 30 days).
        @param cas: the item's CAS token from L{leaseGet}, or C{None} to store whatever is
            there (when the server could not hold a lease).
        @param flags: the client flags to store with the value (0 to 2**32-1).
        @return: fires with C{True} when stored, C{False} when the item changed otherwise
            meanwhile (C{EX}) or is gone (C{NF}), in which case nothing was stored.
        """
        try:
            wireKey = self._key(key)
            value = _v.checkValue(val, self.maxValueSize)
            life = checkTtl("ttl", ttl, 0)
            clientFlags = _v.checkInt("flags", flags, _v.MAX_FLAGS)
            compare = b"" if cas is None else b" C%s I" % (_v.checkCas(cas),)
        except InvalidRequestError as e:
            return fail(e)
        opaque = self._opaque()
        stored = b" F%d" % (clientFlags,) if clientFlags else b""
        line = b"ms %s %d %s%s T%d%s%s\r\n%s\r\n" % (
            wireKey, len(value), opaque, self._keyFlag, life, stored, compare, value
        )
        req = StatusRequest("getOrCompute", opaque, _CAS_STORED, hasData=True)
        return self._send(req, line)

    def leaseRelease(self, key: Key, cas: bytes | int, stale: bool) -> Deferred[bool]:
        """
        Give a lease back without a value, so that the next caller takes it: delete the
        placeholder of a missing key, or mark a value stale once more (C{stale}); only if
        the item still has the CAS token L{leaseGet} gave.

        @return: fires with C{True} if released, C{False} if the item changed or is gone.
        """
        try:
            wireKey = self._key(key)
            token = _v.checkCas(cas)
        except InvalidRequestError as e:
            return fail(e)
        opaque = self._opaque()
        line = b"md %s %s%s C%s%s\r\n" % (
            wireKey, opaque, self._keyFlag, token, b" I" if stale else b""
        )
        return self._send(StatusRequest("release", opaque, _CAS_STORED), line)

    def invalidate(self, key: Key, staleTtl: int | None = None) -> Deferred[bool]:
        """
        Mark the value of C{key} stale (C{md ... I}): readers keep getting it, and the first
        lease-taking read (L{leaseGet}) takes the lease to recompute it.

        @param staleTtl: seconds (1 to 30 days) the stale value may still live, at most;
            C{None} keeps its expiry time.
        @return: fires with C{True}, or C{False} if the key is missing.
        """
        try:
            wireKey = self._key(key)
            ttl = b"" if staleTtl is None else b" T%d" % (checkTtl("staleTtl", staleTtl, 1),)
        except InvalidRequestError as e:
            return fail(e)
        opaque = self._opaque()
        line = b"md %s %s%s I%s\r\n" % (wireKey, opaque, self._keyFlag, ttl)
        return self._send(StatusRequest("invalidate", opaque, _DELETED), line)

