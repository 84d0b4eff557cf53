"""
L{MemCacheCluster}: memcached sharded over several servers, each key placed on the server
libmemcached (and so pylibmc, PHP's memcached, and other clients built on it) and twemproxy
would place it on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from twisted.internet.defer import Deferred, DeferredList, fail, succeed

from ..errors import PoolError, ServerUnavailableError
from . import _validate
from ._clusterstats import ClusterStats
from ._ejection import Ejector
from ._gather import gather
from ._node import ClusterNode
from ._pool import Key, MemCachePool
from ._ring import Ring
from ._servers import parseServers
from .errors import InvalidRequestError, InvalidTypeError

__all__ = ["MemCacheCluster"]


class MemCacheCluster:
    """
    A memcached client for keys spread over several servers, placed as libmemcached 1.0/1.1
    and twemproxy 0.5 place them (ketama consistent hashing)::

        cluster = MemCacheCluster(
            ["tcp:10.0.0.1:11211", "tcp:10.0.0.2:11211", ("tcp:10.0.0.3:11211", 2)],
            maxClients=10,
        )
        await cluster.set(b"user:42", b"...")
        values = await cluster.getMultiple([b"user:42", b"user:43"])

    Each server is a node with its own ordinary L{MemCachePool}; every command of
    L{MemCachePool} is here, sent to the node of its key, with the same arguments and results.
    A failure stays on its node: a C{getMultiple} sends one multi-get per node, in parallel,
    and when some fail it fails with L{PartialResultError} carrying the values of the nodes
    that answered.

    A node whose server is down fails its keys with
    L{ServerUnavailableError<txconnpool.errors.ServerUnavailableError>} (after its pool's
    C{failFastAfter} connection attempts, and then at once until its next attempt), as twemproxy
    does with C{auto_eject_hosts: false}. With C{ejectAfter}, it leaves the continuum instead,
    and its keys go where libmemcached and twemproxy would put them without it, until it
    answers again.
    """

    def __init__(
        self,
        servers: Iterable[object],
        *,
        distribution: str = "ketama",
        hash: str = "md5",
        hashTag: bytes | None = None,
        ejectAfter: int | None = None,
        retryTimeout: float = 30.0,
        **options: Any,
    ) -> None:
        """
        @param servers: The servers, each an address as L{MemCachePool} takes it (such as
            C{"tcp:10.0.0.1:11211"}), an C{(address, weight)} pair or an C{(address, weight,
            name)} triple. The continuum points of a server are hashed from C{"<name>-<i>"}
            when it has a name, else from C{"<host>-<i>"} on port 11211 and
            C{"<host>:<port>-<i>"} on other ports, as libmemcached and twemproxy do; an address
            without a host and port (an endpoint object) needs a name.
        @param distribution: C{"ketama"}: libmemcached's weighted ketama, which is twemproxy's
            C{distribution: ketama} (160 points per server in proportion to its weight, hashed
            with MD5). C{"ketama-unweighted"}: pylibmc's C{behaviors={"ketama": True}} with
            every weight 1 (100 points per server, hashed with the key hash; weights are
            ignored).
        @param hash: The key hash: C{"md5"}, C{"one_at_a_time"} (libmemcached's default),
            C{"fnv1a_32"}, C{"fnv1a_64"} (twemproxy's default) or C{"crc"}, computed as
            libhashkit and twemproxy compute them.
        @param hashTag: Two bytes, such as C{b"{}"}: only the part of a key between the first
            and the next one after it is hashed (when not empty), as with twemproxy's
            C{hash_tag}, so that C{b"user:{42}:name"} and C{b"user:{42}:mail"} share a node.
        @param ejectAfter: Eject a node from the continuum after this many requests in a row
            failed because its server was unreachable; L{None} (the default) never ejects.
        @param retryTimeout: Seconds after an ejection, and between later tries, before a
            C{version} request is sent to the ejected node; once one succeeds, the node is back.
        @param options: Keyword arguments of L{MemCachePool}, given to the pool of every node
            (such as C{maxClients}, C{requestTimeout} or C{reactor}).

        @raise TypeError: An argument has the wrong type.
        @raise ValueError: An argument has an impossible value.
        """
        specs = parseServers(servers)
        if ejectAfter is not None and (
            isinstance(ejectAfter, bool) or not isinstance(ejectAfter, int)
        ):
            raise TypeError(f"ejectAfter must be an int or None, not {ejectAfter!r}")
        if ejectAfter is not None and ejectAfter < 1:
            raise ValueError(f"ejectAfter must be at least 1, not {ejectAfter!r}")
        if isinstance(retryTimeout, bool) or not isinstance(retryTimeout, (int, float)):
            raise TypeError(f"retryTimeout must be a number of seconds, not {retryTimeout!r}")
        if not retryTimeout > 0:
            raise ValueError(f"retryTimeout must be more than 0, not {retryTimeout!r}")
        nodes: list[ClusterNode] = []
        try:
            for spec in specs:
                nodes.append(ClusterNode(spec, MemCachePool(spec.address, **options)))
        except BaseException:
            for node in nodes:
                node.pool.close()
            raise
        try:
            self._ring: Ring[ClusterNode] = Ring(
                [(node.spec, node) for node in nodes], distribution, hash, hashTag
            )
        except BaseException:
            for node in nodes:
                node.pool.close()
            raise
        self._nodes = nodes
        self._ejector: Ejector | None = None
        if ejectAfter is not None:
            self._ejector = Ejector(
                nodes[0].pool.reactor, self._ring, nodes, ejectAfter, retryTimeout
            )
        self._closed = False

    # Placement

    def _route(self, key: object) -> ClusterNode:
        node = self._ring.nodeFor(_validate.checkKey(key))
        if node is None:
            raise ServerUnavailableError(f"every node of {self!r} is ejected")
        return node

    def _watch(self, node: ClusterNode, d: Deferred[Any]) -> Deferred[Any]:
        ejector = self._ejector
        return d if ejector is None else ejector.watch(node, d)

    def poolFor(self, key: Key) -> MemCachePool:
        """
        The pool of the node C{key} belongs to now: for commands this class does not have, or
        several commands on one connection (C{poolFor(key).connection()}). Requests sent this
        way do not count towards ejection.

        @raise InvalidRequestError: C{key} is not a usable memcached key.
        @raise ServerUnavailableError: Every node is ejected.
        """
        return self._route(key).pool

    @property
    def pools(self) -> dict[str, MemCachePool]:
        """
        The pool of every node, by node name (the name given with its server, else
        C{host:port}), in the order the servers were given.
        """
        return {node.name: node.pool for node in self._nodes}

    # Commands for one key

    def get(self, key: Key, withIdentifier: bool = False) -> Deferred[Any]:
        """
        Get one value, from its node; see L{MemCachePool.get}.
        """
        try:
            node = self._route(key)
        except PoolError as e:
            return fail(e)
        return self._watch(node, node.pool.get(key, withIdentifier))

    def set(self, key: Key, val: bytes, flags: int = 0, expireTime: int = 0) -> Deferred[bool]:
        """
        Store a value on its node; see L{MemCachePool.set}.
        """
        try:
            node = self._route(key)
        except PoolError as e:
            return fail(e)
        return self._watch(node, node.pool.set(key, val, flags, expireTime))

    def add(self, key: Key, val: bytes, flags: int = 0, expireTime: int = 0) -> Deferred[bool]:
        """
        Store a value on its node if the key is not there; see L{MemCachePool.add}.
        """
        try:
            node = self._route(key)
        except PoolError as e:
            return fail(e)
        return self._watch(node, node.pool.add(key, val, flags, expireTime))

    def replace(
        self, key: Key, val: bytes, flags: int = 0, expireTime: int = 0
    ) -> Deferred[bool]:
        """
        Store a value on its node if the key is there; see L{MemCachePool.replace}.
        """
        try:
            node = self._route(key)
        except PoolError as e:
            return fail(e)
        return self._watch(node, node.pool.replace(key, val, flags, expireTime))

    def append(self, key: Key, val: bytes) -> Deferred[bool]:
        """
        Append to a value on its node; see L{MemCachePool.append}.
        """
        try:
            node = self._route(key)
        except PoolError as e:
            return fail(e)
        return self._watch(node, node.pool.append(key, val))

    def prepend(self, key: Key, val: bytes) -> Deferred[bool]:
        """
        Prepend to a value on its node; see L{MemCachePool.prepend}.
        """
        try:
            node = self._route(key)
        except PoolError as e:
            return fail(e)
        return self._watch(node, node.pool.prepend(key, val))

    def checkAndSet(
        self, key: Key, val: bytes, cas: int | bytes, flags: int = 0, expireTime: int = 0
    ) -> Deferred[bool]:
        """
        Store a value on its node if unchanged since C{cas}; see L{MemCachePool.checkAndSet}.
        """
        try:
            node = self._route(key)
        except PoolError as e:
            return fail(e)
        return self._watch(node, node.pool.checkAndSet(key, val, cas, flags, expireTime))

    def increment(self, key: Key, val: int = 1) -> Deferred[Any]:
        """
        Add to a decimal value on its node; see L{MemCachePool.increment}.
        """
        try:
            node = self._route(key)
        except PoolError as e:
            return fail(e)
        return self._watch(node, node.pool.increment(key, val))

    def decrement(self, key: Key, val: int = 1) -> Deferred[Any]:
        """
        Subtract from a decimal value on its node; see L{MemCachePool.decrement}.
        """
        try:
            node = self._route(key)
        except PoolError as e:
            return fail(e)
        return self._watch(node, node.pool.decrement(key, val))

    def delete(self, key: Key) -> Deferred[bool]:
        """
        Delete a key from its node; see L{MemCachePool.delete}.
        """
        try:
            node = self._route(key)
        except PoolError as e:
            return fail(e)
        return self._watch(node, node.pool.delete(key))

    def touch(self, key: Key, expireTime: int) -> Deferred[bool]:
        """
        Change a key's expiry time on its node; see L{MemCachePool.touch}.
        """
        try:
            node = self._route(key)
        except PoolError as e:
            return fail(e)
        return self._watch(node, node.pool.touch(key, expireTime))

    # Commands for several keys or every node

    def getMultiple(self, keys: Iterable[Key], withIdentifier: bool = False) -> Deferred[Any]:
        """
        Get several values: one multi-key get per node, sent in parallel.

        @return: A L{Deferred} firing with a C{dict} from each key asked for to its C{get}-style
            tuple, as L{MemCachePool.getMultiple} does. When the request to some nodes fails
            (or every node is ejected), it fails with L{PartialResultError} once the others
            have answered: its C{results} hold the values of the keys whose node answered, and
            its C{errors} give each other key the exception its node's request failed with.
            An invalid key fails the whole request at once with L{InvalidRequestError}, and
            nothing is sent.
        """
        if isinstance(keys, (bytes, str)):
            name = type(keys).__name__
            return fail(InvalidTypeError(f"keys must be an iterable of keys, not one {name}"))
        groups: dict[int, tuple[ClusterNode, list[Key]]] = {}
        unplaced: dict[Key, BaseException] = {}
        nodeFor = self._ring.nodeFor
        checkKey = _validate.checkKey
        try:
            for key in keys:
                node = nodeFor(checkKey(key))
                if node is None:
                    unplaced[key] = ServerUnavailableError("every node of the cluster is ejected")
                    continue
                group = groups.get(id(node))
                if group is None:
                    groups[id(node)] = (node, [key])
                else:
                    group[1].append(key)
        except InvalidRequestError as e:
            return fail(e)
        parts = [
            (self._watch(node, node.pool.getMultiple(group, withIdentifier)), group)
            for node, group in groups.values()
        ]
        return gather(f"getMultiple on {len(parts)} nodes", parts, unplaced)

    def _everyNode(
        self, what: str, send: Callable[[MemCachePool], Deferred[Any]]
    ) -> Deferred[dict[str, Any]]:
        parts: list[tuple[Deferred[Mapping[str, Any]], list[str]]] = []
        for node in self._nodes:
            d = self._watch(node, send(node.pool))
            parts.append((d.addCallback(_named, node.name), [node.name]))
        return gather(what, parts)

    def stats(self, arg: bytes | str | None = None) -> Deferred[dict[str, dict[bytes, bytes]]]:
        """
        Read every node's statistics; see L{MemCachePool.stats}.

        @return: A L{Deferred} firing with a C{dict} from node name to that node's statistics;
            failing with L{PartialResultError} (holding the others) when some nodes fail, or
            with L{InvalidRequestError} for an unusable C{arg}, when nothing is sent.
        """
        try:
            _validate.checkStatsArg(arg)
        except InvalidRequestError as e:
            return fail(e)
        return self._everyNode("stats", lambda pool: pool.stats(arg))

    def version(self) -> Deferred[dict[str, bytes]]:
        """
        Ask every node's version.

        @return: A L{Deferred} firing with a C{dict} from node name to version; failing with
            L{PartialResultError} (holding the others) when some nodes fail.
        """
        return self._everyNode("version", lambda pool: pool.version())

    def flushAll(self) -> Deferred[bool]:
        """
        Invalidate every item on every node.

        @return: A L{Deferred} firing with C{True} once every node has; failing with
            L{PartialResultError}, whose C{results} name the nodes that were flushed, when some
            nodes fail.
        """
        return self._everyNode("flushAll", lambda pool: pool.flushAll()).addCallback(_true)

    # State

    def poolStats(self) -> ClusterStats:
        """
        @return: A snapshot of every node (its ejection state and its pool's statistics) and
            the cluster's totals.
        """
        return ClusterStats.of(tuple(node.stats() for node in self._nodes))

    def close(self, timeout: float | None = None) -> Deferred[None]:
        """
        Close every node's pool (see L{MemCachePool.close}) and stop trying ejected nodes.

        @return: A L{Deferred} firing with L{None} once every pool is closed. It never fails.
        """
        self._closed = True
        if self._ejector is not None:
            self._ejector.stop()
        if not self._nodes:
            return succeed(None)
        closing = DeferredList([node.pool.close(timeout) for node in self._nodes])
        return closing.addCallback(lambda _: None)

    def __repr__(self) -> str:
        stats = self.poolStats()
        return (
            f"<{type(self).__name__} {self._ring.distribution}/{self._ring.hashName}"
            f"{' closed' if self._closed else ''} nodes={len(self._nodes)} "
            f"live={stats.liveNodes} ejected={stats.ejectedNodes} busy={stats.busy} "
            f"idle={stats.idle} connecting={stats.connecting} waiting={stats.waiting}>"
        )


def _named(result: object, name: str) -> dict[str, object]:
    return {name: result}


def _true(result: object) -> bool:
    return True
