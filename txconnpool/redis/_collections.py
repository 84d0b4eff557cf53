"""
The commands on hashes, lists, sets and sorted sets, as typed methods of
L{CollectionCommands}.
"""

from __future__ import annotations

from collections.abc import Mapping

from twisted.internet.defer import Deferred

from . import _replies as r
from ._args import Arg, Key
from ._sender import CommandSender, refuse
from .errors import InvalidArgumentError


class CollectionCommands(CommandSender):
    """
    Typed methods for the commands on hashes, lists, sets and sorted sets.
    """

    # Hashes

    def hget(self, key: Key, field: Key) -> Deferred[bytes | None]:
        """
        C{HGET}: the value of a field of a hash.

        @return: A C{Deferred} firing with the value, or L{None}.
        """
        return self._call(r.optionalBytes, True, b"HGET", key, field)

    def hset(self, key: Key, mapping: Mapping[Key, Arg]) -> Deferred[int]:
        """
        C{HSET}: set fields of a hash.

        @return: A C{Deferred} firing with the number of fields that were new.
        """
        if not mapping:
            return refuse(InvalidArgumentError("HSET needs at least one field"))
        args: list[object] = [b"HSET", key]
        for field, value in mapping.items():
            args += [field, value]
        return self._call(r.integer, True, *args)

    def hsetnx(self, key: Key, field: Key, value: Arg) -> Deferred[bool]:
        """
        C{HSETNX}: set a field of a hash only if it is missing.

        @return: A C{Deferred} firing with C{True} if it was set.
        """
        return self._call(r.boolean, True, b"HSETNX", key, field, value)

    def hmget(self, key: Key, *fields: Key) -> Deferred[list[bytes | None]]:
        """
        C{HMGET}: the values of several fields of a hash.

        @return: A C{Deferred} firing with the values in the order of C{fields}, L{None} for
            each missing one.
        """
        if not fields:
            return refuse(InvalidArgumentError("HMGET needs at least one field"))
        return self._call(r.optionalBytesList, True, b"HMGET", key, *fields)

    def hgetall(self, key: Key) -> Deferred[dict[bytes, bytes]]:
        """
        C{HGETALL}: every field and value of a hash.

        @return: A C{Deferred} firing with a C{dict}, empty for a missing key.
        """
        return self._call(r.mapping, True, b"HGETALL", key)

    def hdel(self, key: Key, *fields: Key) -> Deferred[int]:
        """
        C{HDEL}: delete fields of a hash.

        @return: A C{Deferred} firing with the number of fields deleted.
        """
        if not fields:
            return refuse(InvalidArgumentError("HDEL needs at least one field"))
        return self._call(r.integer, True, b"HDEL", key, *fields)

    def hexists(self, key: Key, field: Key) -> Deferred[bool]:
        """
        C{HEXISTS}: whether a hash has a field.

        @return: A C{Deferred} firing with a C{bool}.
        """
        return self._call(r.boolean, True, b"HEXISTS", key, field)

    def hincrby(self, key: Key, field: Key, amount: int = 1) -> Deferred[int]:
        """
        C{HINCRBY}: add to an integer field of a hash.

        @return: A C{Deferred} firing with the new value.
        """
        return self._call(r.integer, False, b"HINCRBY", key, field, amount)

    def hkeys(self, key: Key) -> Deferred[list[bytes]]:
        """
        C{HKEYS}: the field names of a hash.

        @return: A C{Deferred} firing with a list of names.
        """
        return self._call(r.bytesList, True, b"HKEYS", key)

    def hvals(self, key: Key) -> Deferred[list[bytes]]:
        """
        C{HVALS}: the values of a hash.

        @return: A C{Deferred} firing with a list of values.
        """
        return self._call(r.bytesList, True, b"HVALS", key)

    def hlen(self, key: Key) -> Deferred[int]:
        """
        C{HLEN}: the number of fields of a hash.

        @return: A C{Deferred} firing with the number.
        """
        return self._call(r.integer, True, b"HLEN", key)

    # Lists

    def lpush(self, key: Key, *values: Arg) -> Deferred[int]:
        """
        C{LPUSH}: insert values at the head of a list, one after the other.

        @return: A C{Deferred} firing with the new length of the list.
        """
        if not values:
            return refuse(InvalidArgumentError("LPUSH needs at least one value"))
        return self._call(r.integer, False, b"LPUSH", key, *values)

    def rpush(self, key: Key, *values: Arg) -> Deferred[int]:
        """
        C{RPUSH}: append values to a list.

        @return: A C{Deferred} firing with the new length of the list.
        """
        if not values:
            return refuse(InvalidArgumentError("RPUSH needs at least one value"))
        return self._call(r.integer, False, b"RPUSH", key, *values)

    def lpop(self, key: Key) -> Deferred[bytes | None]:
        """
        C{LPOP}: remove the first value of a list.

        @return: A C{Deferred} firing with the value, or L{None} for an empty list.
        """
        return self._call(r.optionalBytes, False, b"LPOP", key)

    def rpop(self, key: Key) -> Deferred[bytes | None]:
        """
        C{RPOP}: remove the last value of a list.

        @return: A C{Deferred} firing with the value, or L{None} for an empty list.
        """
        return self._call(r.optionalBytes, False, b"RPOP", key)

    def lrange(self, key: Key, start: int, stop: int) -> Deferred[list[bytes]]:
        """
        C{LRANGE}: the values from index C{start} to C{stop}, both included (negative
        indexes count from the end).

        @return: A C{Deferred} firing with a list of values.
        """
        return self._call(r.bytesList, True, b"LRANGE", key, start, stop)

    def llen(self, key: Key) -> Deferred[int]:
        """
        C{LLEN}: the length of a list.

        @return: A C{Deferred} firing with the length.
        """
        return self._call(r.integer, True, b"LLEN", key)

    def lindex(self, key: Key, index: int) -> Deferred[bytes | None]:
        """
        C{LINDEX}: the value at an index of a list.

        @return: A C{Deferred} firing with the value, or L{None} out of range.
        """
        return self._call(r.optionalBytes, True, b"LINDEX", key, index)

    def lrem(self, key: Key, count: int, value: Arg) -> Deferred[int]:
        """
        C{LREM}: remove C{count} occurrences of a value (from the head if positive, from the
        tail if negative, all if 0).

        @return: A C{Deferred} firing with the number removed.
        """
        return self._call(r.integer, False, b"LREM", key, count, value)

    def ltrim(self, key: Key, start: int, stop: int) -> Deferred[None]:
        """
        C{LTRIM}: keep only the values from C{start} to C{stop}.

        @return: A C{Deferred} firing with L{None}.
        """
        return self._call(r.ok, True, b"LTRIM", key, start, stop)

    def lset(self, key: Key, index: int, value: Arg) -> Deferred[None]:
        """
        C{LSET}: replace the value at an index of a list.

        @return: A C{Deferred} firing with L{None}.
        """
        return self._call(r.ok, True, b"LSET", key, index, value)

    # Sets

    def sadd(self, key: Key, *members: Arg) -> Deferred[int]:
        """
        C{SADD}: add members to a set.

        @return: A C{Deferred} firing with the number of members that were new.
        """
        if not members:
            return refuse(InvalidArgumentError("SADD needs at least one member"))
        return self._call(r.integer, True, b"SADD", key, *members)

    def srem(self, key: Key, *members: Arg) -> Deferred[int]:
        """
        C{SREM}: remove members from a set.

        @return: A C{Deferred} firing with the number removed.
        """
        if not members:
            return refuse(InvalidArgumentError("SREM needs at least one member"))
        return self._call(r.integer, True, b"SREM", key, *members)

    def smembers(self, key: Key) -> Deferred[set[bytes]]:
        """
        C{SMEMBERS}: the members of a set.

        @return: A C{Deferred} firing with a C{set}.
        """
        return self._call(r.bytesSet, True, b"SMEMBERS", key)

    def sismember(self, key: Key, member: Arg) -> Deferred[bool]:
        """
        C{SISMEMBER}: whether a value is a member of a set.

        @return: A C{Deferred} firing with a C{bool}.
        """
        return self._call(r.boolean, True, b"SISMEMBER", key, member)

    def scard(self, key: Key) -> Deferred[int]:
        """
        C{SCARD}: the number of members of a set.

        @return: A C{Deferred} firing with the number.
        """
        return self._call(r.integer, True, b"SCARD", key)

    def spop(self, key: Key) -> Deferred[bytes | None]:
        """
        C{SPOP}: remove a random member of a set.

        @return: A C{Deferred} firing with the member, or L{None} for an empty set.
        """
        return self._call(r.optionalBytes, False, b"SPOP", key)

    def sinter(self, *keys: Key) -> Deferred[set[bytes]]:
        """
        C{SINTER}: the members common to every set.

        @return: A C{Deferred} firing with a C{set}.
        """
        if not keys:
            return refuse(InvalidArgumentError("SINTER needs at least one key"))
        return self._call(r.bytesSet, True, b"SINTER", *keys)

    def sunion(self, *keys: Key) -> Deferred[set[bytes]]:
        """
        C{SUNION}: the members of any of the sets.

        @return: A C{Deferred} firing with a C{set}.
        """
        if not keys:
            return refuse(InvalidArgumentError("SUNION needs at least one key"))
        return self._call(r.bytesSet, True, b"SUNION", *keys)

    def sdiff(self, *keys: Key) -> Deferred[set[bytes]]:
        """
        C{SDIFF}: the members of the first set that are in none of the others.

        @return: A C{Deferred} firing with a C{set}.
        """
        if not keys:
            return refuse(InvalidArgumentError("SDIFF needs at least one key"))
        return self._call(r.bytesSet, True, b"SDIFF", *keys)

    # Sorted sets

    def zadd(
        self, key: Key, mapping: Mapping[Key, float], *, nx: bool = False, xx: bool = False
    ) -> Deferred[int]:
        """
        C{ZADD}: add members with their scores to a sorted set, or update their scores.

        @param mapping: Each member and its score.
        @param nx: Only add new members.
        @param xx: Only update existing members.
        @return: A C{Deferred} firing with the number of members added.
        """
        if not mapping:
            return refuse(InvalidArgumentError("ZADD needs at least one member"))
        if nx and xx:
            return refuse(InvalidArgumentError("ZADD takes nx or xx, not both"))
        args: list[object] = [b"ZADD", key]
        if nx:
            args.append(b"NX")
        if xx:
            args.append(b"XX")
        for member, score in mapping.items():
            args += [score, member]
        return self._call(r.integer, True, *args)

    def zrem(self, key: Key, *members: Key) -> Deferred[int]:
        """
        C{ZREM}: remove members from a sorted set.

        @return: A C{Deferred} firing with the number removed.
        """
        if not members:
            return refuse(InvalidArgumentError("ZREM needs at least one member"))
        return self._call(r.integer, True, b"ZREM", key, *members)

    def zscore(self, key: Key, member: Key) -> Deferred[float | None]:
        """
        C{ZSCORE}: the score of a member.

        @return: A C{Deferred} firing with the score, or L{None} if it is not a member.
        """
        return self._call(r.optionalFloating, True, b"ZSCORE", key, member)

    def zincrby(self, key: Key, amount: float, member: Key) -> Deferred[float]:
        """
        C{ZINCRBY}: add to the score of a member (a new member starts at 0).

        @return: A C{Deferred} firing with the new score.
        """
        return self._call(r.floating, False, b"ZINCRBY", key, amount, member)

    def zrank(self, key: Key, member: Key) -> Deferred[int | None]:
        """
        C{ZRANK}: the rank of a member, lowest score first, from 0.

        @return: A C{Deferred} firing with the rank, or L{None} if it is not a member.
        """
        return self._call(r.optionalInteger, True, b"ZRANK", key, member)

    def zrevrank(self, key: Key, member: Key) -> Deferred[int | None]:
        """
        C{ZREVRANK}: the rank of a member, highest score first, from 0.

        @return: A C{Deferred} firing with the rank, or L{None} if it is not a member.
        """
        return self._call(r.optionalInteger, True, b"ZREVRANK", key, member)

    def zcard(self, key: Key) -> Deferred[int]:
        """
        C{ZCARD}: the number of members of a sorted set.

        @return: A C{Deferred} firing with the number.
        """
        return self._call(r.integer, True, b"ZCARD", key)

    def zcount(self, key: Key, min: Arg, max: Arg) -> Deferred[int]:
        """
        C{ZCOUNT}: the number of members with a score from C{min} to C{max} (numbers, or
        C{"-inf"}, C{"+inf"}, or C{"(1.5"} for an open end).

        @return: A C{Deferred} firing with the number.
        """
        return self._call(r.integer, True, b"ZCOUNT", key, min, max)

    def zrange(self, key: Key, start: int, stop: int) -> Deferred[list[bytes]]:
        """
        C{ZRANGE}: the members from rank C{start} to C{stop}, lowest score first.

        @return: A C{Deferred} firing with a list of members.
        """
        return self._call(r.bytesList, True, b"ZRANGE", key, start, stop)

    def zrangeWithScores(
        self, key: Key, start: int, stop: int
    ) -> Deferred[list[tuple[bytes, float]]]:
        """
        C{ZRANGE ... WITHSCORES}: the members from rank C{start} to C{stop} with their
        scores, lowest score first.

        @return: A C{Deferred} firing with a list of C{(member, score)}.
        """
        return self._call(r.scored, True, b"ZRANGE", key, start, stop, b"WITHSCORES")

    def zrevrange(self, key: Key, start: int, stop: int) -> Deferred[list[bytes]]:
        """
        C{ZREVRANGE}: the members from rank C{start} to C{stop}, highest score first.

        @return: A C{Deferred} firing with a list of members.
        """
        return self._call(r.bytesList, True, b"ZREVRANGE", key, start, stop)

    def zrevrangeWithScores(
        self, key: Key, start: int, stop: int
    ) -> Deferred[list[tuple[bytes, float]]]:
        """
        C{ZREVRANGE ... WITHSCORES}: the members from rank C{start} to C{stop} with their
        scores, highest score first.

        @return: A C{Deferred} firing with a list of C{(member, score)}.
        """
        return self._call(r.scored, True, b"ZREVRANGE", key, start, stop, b"WITHSCORES")

    def zrangebyscore(
        self, key: Key, min: Arg, max: Arg, *, offset: int = 0, count: int | None = None
    ) -> Deferred[list[bytes]]:
        """
        C{ZRANGEBYSCORE}: the members with a score from C{min} to C{max} (as for
        L{zcount}), lowest first; C{count} of them from the C{offset}th, if given.

        @return: A C{Deferred} firing with a list of members.
        """
        limit: tuple[object, ...] = () if count is None else (b"LIMIT", offset, count)
        return self._call(r.bytesList, True, b"ZRANGEBYSCORE", key, min, max, *limit)

    def zrangebyscoreWithScores(
        self, key: Key, min: Arg, max: Arg, *, offset: int = 0, count: int | None = None
    ) -> Deferred[list[tuple[bytes, float]]]:
        """
        C{ZRANGEBYSCORE ... WITHSCORES}: as L{zrangebyscore}, with the scores.

        @return: A C{Deferred} firing with a list of C{(member, score)}.
        """
        limit: tuple[object, ...] = () if count is None else (b"LIMIT", offset, count)
        return self._call(
            r.scored, True, b"ZRANGEBYSCORE", key, min, max, b"WITHSCORES", *limit
        )

    def zremrangebyscore(self, key: Key, min: Arg, max: Arg) -> Deferred[int]:
        """
        C{ZREMRANGEBYSCORE}: remove the members with a score from C{min} to C{max}.

        @return: A C{Deferred} firing with the number removed.
        """
        return self._call(r.integer, True, b"ZREMRANGEBYSCORE", key, min, max)

    def zremrangebyrank(self, key: Key, start: int, stop: int) -> Deferred[int]:
        """
        C{ZREMRANGEBYRANK}: remove the members from rank C{start} to C{stop}.

        @return: A C{Deferred} firing with the number removed.
        """
        return self._call(r.integer, False, b"ZREMRANGEBYRANK", key, start, stop)
