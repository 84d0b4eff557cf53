"""
Cache stampede protection for L{MetaMemCachePool<txconnpool.memcache.meta.MetaMemCachePool>}:
C{getOrCompute}, built on memcached's leases.

Across processes, memcached decides who computes a missing or stale value: the first
lease-taking read (C{mg ... N}) of a missing key creates a placeholder and wins the lease (W),
later ones see it taken (Z); an invalidated value hands its lease to its first reader. Inside
one pool, the callers of the same key share one such read: a L{_Flight}, which the first
caller leads and the others join.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, Generic, Protocol, cast

from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from typing_extensions import TypeVar

from txconnpool.errors import PoolClosedError
from txconnpool.memcache import _validate as _v
from txconnpool.memcache._codec import Codec
from txconnpool.memcache._lenient import ErrorsAsMisses
from txconnpool.memcache.errors import (
    InvalidArgumentError,
    InvalidRequestError,
    InvalidTypeError,
)
from txconnpool.memcache.meta._checks import MAX_RELATIVE_TTL, checkSeconds, checkTtl
from txconnpool.memcache.meta._requests import LeaseReply
from txconnpool.memcache.meta.errors import LeaseTimeoutError

_log = Logger()

_V = TypeVar("_V", default=bytes)

Compute = Callable[[], _V | Deferred[_V] | Awaitable[_V]]
"""
What C{getOrCompute} calls to compute a value: a function of no arguments returning the
value (C{bytes}, or what the pool's serializer takes), a L{Deferred} firing with it, or a
coroutine returning it.
"""

NO_LEASE = LeaseReply(None, b"", won=False, stale=False, leased=False)
"""What a read that failed, with C{ignoreErrors}, counts as: no value, and no lease held."""


class Requester(Protocol):
    """
    What the stampede protection sends its requests through: the pool.
    """

    def performRequest(self, method: str, *args: Any, **kwargs: Any) -> Deferred[Any]:
        """
        Call C{method} of a connection's protocol.
        """


class _Flight(Generic[_V]):
    """
    The callers of one key waiting on the same lease-taking read: the leader, whose call
    started it, and the callers who joined it.

    @ivar fallback: The value in the cache (stale, or due for recaching) while the leader
        recomputes it; callers joining then get it at once.
    """

    def __init__(self, leader: Deferred[_V]) -> None:
        self.leader = leader
        self.joiners: list[Deferred[_V]] = []
        self.fallback: _V | None = None
        self.serving = False

    def join(self) -> Deferred[_V]:
        """
        A new caller of the same key: the value being recomputed if there is one, else a
        share of the outcome.
        """
        if self.serving:
            return succeed(cast(_V, self.fallback))
        d: Deferred[_V] = Deferred(self._leave)
        self.joiners.append(d)
        return d

    def _leave(self, d: Deferred[_V]) -> None:
        """
        A joiner cancelled its call: the flight goes on without it.
        """
        if d in self.joiners:
            self.joiners.remove(d)

    def serveFallback(self, value: _V) -> None:
        """
        The leader recomputes a value that is still in the cache: hand it to whoever joined.
        """
        self.fallback = value
        self.serving = True
        joiners, self.joiners = self.joiners, []
        for d in joiners:
            d.callback(value)

    def settle(self, outcome: _V | Failure) -> None:
        """
        Fire the leader and every joiner with the outcome.
        """
        joiners, self.joiners = self.joiners, []
        for d in [self.leader, *joiners]:
            if d.called:
                continue
            if isinstance(outcome, Failure):
                d.errback(outcome)
            else:
                d.callback(outcome)


class StampedeGuard(Generic[_V]):
    """
    The C{getOrCompute} of one pool: the flights in progress, and the timers of the callers
    waiting for another client's computation.

    @param requester: The pool, whose protocol has C{leaseGet}, C{leaseStore} and
        C{leaseRelease}.
    @param clock: The source of time for the waits.
    @param pollPolicy: The delay before poll number C{n} (0 for the first) of a value another
        client is computing.
    @param checkKey: Turns a key into the form that identifies it on the wire (raising
        L{InvalidRequestError}), so that C{b"k"} and C{"k"} share one flight.
    @param codec: The pool's serializer at work, or L{None} for values that are C{bytes}.
    @param lenient: With the pool's C{ignoreErrors}: a read that fails counts as a miss
        without a lease, and the caller computes the value.
    """

    def __init__(
        self,
        requester: Requester,
        clock: IReactorTime,
        pollPolicy: Callable[[int], float],
        checkKey: Callable[[object], bytes],
        codec: Codec[_V] | None = None,
        lenient: ErrorsAsMisses | None = None,
    ) -> None:
        self._requester = requester
        self._clock = clock
        self._pollPolicy = pollPolicy
        self._checkKey = checkKey
        self._codec = codec
        self._lenient = lenient
        self._flights: dict[bytes, _Flight[_V]] = {}
        self._sleeps: set[Deferred[None]] = set()
        self._closed = False

    def getOrCompute(
        self,
        key: object,
        compute: Compute[_V],
        ttl: object,
        lockTtl: object,
        staleTtl: object,
        earlyRecache: object,
        waitTimeout: object,
    ) -> Deferred[_V]:
        """
        See L{MetaMemCachePool.getOrCompute
        <txconnpool.memcache.meta.MetaMemCachePool.getOrCompute>}.
        """
        try:
            wireKey = self._checkKey(key)
            if not callable(compute):
                raise InvalidTypeError(
                    f"compute must be callable, not {type(compute).__name__}"
                )
            life = checkTtl("ttl", ttl, 0)
            lock = checkTtl("lockTtl", lockTtl, 1)
            stale = checkTtl("staleTtl", staleTtl, 0)
            early = checkTtl("earlyRecache", earlyRecache, 0)
            if not life and (stale or early):
                raise InvalidArgumentError(
                    "staleTtl and earlyRecache need a ttl: a value stored with ttl=0 never "
                    "expires"
                )
            if life + stale > MAX_RELATIVE_TTL:
                raise InvalidArgumentError(
                    f"ttl + staleTtl must be at most {MAX_RELATIVE_TTL} (30 days), "
                    f"got {life + stale}"
                )
            if life and early >= life:
                raise InvalidArgumentError(
                    f"earlyRecache must be less than ttl ({life}), got {early}"
                )
            wait = 2.0 * lock if waitTimeout is None else checkSeconds("waitTimeout", waitTimeout)
        except InvalidRequestError as e:
            return fail(e)
        if self._closed:
            return fail(PoolClosedError("the pool was closed; getOrCompute not started"))
        flight = self._flights.get(wireKey)
        if flight is not None:
            return flight.join()
        leader: Deferred[_V] = Deferred()
        flight = self._flights[wireKey] = _Flight(leader)
        recacheWithin = stale + early if life else 0
        stored = life + stale if life else 0
        run = Deferred.fromCoroutine(
            self._lead(flight, key, compute, stored, lock, recacheWithin, wait)
        )

        def settle(outcome: _V | Failure) -> None:
            if self._flights.get(wireKey) is flight:
                del self._flights[wireKey]
            flight.settle(outcome)

        run.addBoth(settle)
        return leader

    def close(self) -> None:
        """
        Stop: new calls fail with L{PoolClosedError}, and so do the callers waiting for another
        client's computation. Computations in progress run to their end.
        """
        self._closed = True
        for sleep in list(self._sleeps):
            sleep.cancel()

    async def _lead(
        self,
        flight: _Flight[_V],
        key: object,
        compute: Compute[_V],
        life: int,
        lockTtl: int,
        recacheWithin: int,
        waitTimeout: float,
    ) -> _V:
        """
        Read the key, taking its lease if it is there to take; compute the value under the
        lease, or wait for another client's computation.
        """
        request = self._requester.performRequest
        deadline = self._clock.seconds() + waitTimeout
        attempt = 0
        while True:
            try:
                reply: LeaseReply = await request("leaseGet", key, lockTtl, recacheWithin)
            except Exception as e:
                if not self._ignored(e):
                    raise
                return await self._compute(key, compute, life, NO_LEASE)
            holdsLease = reply.won or not reply.cas
            if reply.value is not None:
                try:
                    value = self._decoded(key, reply.value, reply.flags)
                except Exception as e:
                    if not self._ignored(e):
                        if holdsLease:
                            await self._release(key, reply)
                        raise
                    return await self._compute(
                        key, compute, life, reply if holdsLease else NO_LEASE
                    )
                if not holdsLease:
                    return value
                flight.serveFallback(value)
            if holdsLease:
                return await self._compute(key, compute, life, reply)
            now = self._clock.seconds()
            if now >= deadline:
                raise LeaseTimeoutError(
                    f"waited {waitTimeout}s for another client to compute the value of "
                    f"{_v.show(key)}, whose lease is still held; gave up"
                )
            await self._sleep(min(self._pollPolicy(attempt), deadline - now))
            attempt += 1

    def _ignored(self, error: Exception) -> bool:
        """
        Whether C{ignoreErrors} turns this failure of a read into a miss (logged and
        counted).
        """
        lenient = self._lenient
        if lenient is None:
            return False
        return lenient(Failure(error), "getOrCompute", NO_LEASE) is NO_LEASE

    def _decoded(self, key: object, data: bytes, flags: int) -> _V:
        """
        The value a lease-taking read found, through the serializer.
        """
        if self._codec is None:
            return cast(_V, data)
        return self._codec.serializer.loads(_v.checkKeyType(key), data, flags)

    async def _compute(
        self, key: object, compute: Compute[_V], life: int, reply: LeaseReply
    ) -> _V:
        """
        Compute and store the value under the lease; give the lease back if either fails.
        A value that could not be stored for want of the server is still returned.
        """
        try:
            result = compute()
            if isinstance(result, Deferred):
                value: object = await result
            elif inspect.isawaitable(result):
                value = await Deferred.fromCoroutine(_awaited(result))
            else:
                value = result
            if self._codec is not None:
                data, flags = self._codec.encode(key, cast(_V, value), 0)
            elif isinstance(value, bytes):
                data, flags = value, 0
            else:
                raise InvalidTypeError(
                    f"compute must give bytes to store, not {type(value).__name__}"
                )
        except Exception:
            await self._release(key, reply)
            raise
        try:
            stored = await self._requester.performRequest(
                "leaseStore", key, data, life, reply.cas or None, flags
            )
        except InvalidRequestError:
            await self._release(key, reply)
            raise
        except Exception as e:
            _log.warn("Could not store the value computed for {key}: {error}", key=key, error=e)
            await self._release(key, reply)
            return cast(_V, value)
        if not stored:
            _log.info(
                "The value computed for {key} was not stored: the item changed while it was "
                "computed (or its lease expired, lockTtl being shorter than the computation)",
                key=key,
            )
        return cast(_V, value)

    async def _release(self, key: object, reply: LeaseReply) -> None:
        """
        Give the lease back, so that the next caller takes it (there is none to give back
        when the server could not create the placeholder).
        """
        if not reply.cas:
            return
        try:
            await self._requester.performRequest(
                "leaseRelease", key, reply.cas, reply.value is not None
            )
        except Exception as e:
            _log.warn(
                "Could not give back the lease on {key} ({error}); it ends when the "
                "placeholder expires",
                key=key,
                error=e,
            )

    def _sleep(self, delay: float) -> Deferred[None]:
        """
        Wait C{delay} seconds, or until L{close}, which fails the wait with
        L{PoolClosedError}.
        """
        call: IDelayedCall | None = None

        def cancel(d: Deferred[None]) -> None:
            if call is not None and call.active():
                call.cancel()

        d: Deferred[None] = Deferred(cancel)
        call = self._clock.callLater(delay, d.callback, None)
        self._sleeps.add(d)

        def done(result: object) -> object:
            self._sleeps.discard(d)
            if isinstance(result, Failure) and result.check(CancelledError):
                return Failure(
                    PoolClosedError("the pool was closed while waiting for another client")
                )
            return result

        return d.addBoth(done)


async def _awaited(awaitable: Awaitable[_V]) -> _V:
    return await awaitable

