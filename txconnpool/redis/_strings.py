"""
The commands on keys, strings and expiry, and the server's C{PING}, C{INFO}, C{DBSIZE},
C{FLUSHDB} and C{PUBLISH}, as typed methods of L{StringCommands}.
"""

from __future__ import annotations

from collections.abc import Mapping

from twisted.internet.defer import Deferred

from . import _replies as r
from ._args import Arg, Key
from ._sender import CommandSender, refuse
from .errors import InvalidArgumentError


class StringCommands(CommandSender):
    """
    Typed methods for the commands on keys, strings, expiry and the server.
    """

    # Strings

    def get(self, key: Key) -> Deferred[bytes | None]:
        """
        C{GET}: the value of a key.

        @return: A C{Deferred} firing with the value, or L{None} if the key is missing.
        """
        return self._call(r.optionalBytes, True, b"GET", key)

    def set(
        self,
        key: Key,
        value: Arg,
        *,
        ex: int | None = None,
        px: int | None = None,
        nx: bool = False,
        xx: bool = False,
        keepTTL: bool = False,
    ) -> Deferred[bool]:
        """
        C{SET}: store a value.

        @param ex: Expire the key after this many seconds.
        @param px: Expire the key after this many milliseconds.
        @param nx: Store only if the key is missing.
        @param xx: Store only if the key is there.
        @param keepTTL: Keep the key's time to live.
        @return: A C{Deferred} firing with C{True} when stored, C{False} when C{nx} or C{xx}
            prevented it. It fails with L{InvalidArgumentError} for C{ex} with C{px}, C{nx}
            with C{xx}, or either expiry with C{keepTTL}.
        """
        args: list[object] = [b"SET", key, value]
        if ex is not None:
            args += [b"EX", ex]
        if px is not None:
            args += [b"PX", px]
        if nx:
            args.append(b"NX")
        if xx:
            args.append(b"XX")
        if keepTTL:
            args.append(b"KEEPTTL")
        if (nx and xx) or (ex is not None) + (px is not None) + keepTTL > 1:
            return refuse(
                InvalidArgumentError("SET takes one of ex, px and keepTTL, and nx or xx")
            )
        return self._call(r.okOrNull, True, *args)

    def mget(self, *keys: Key) -> Deferred[list[bytes | None]]:
        """
        C{MGET}: the values of several keys.

        @return: A C{Deferred} firing with a list of the values in the order of C{keys},
            L{None} for each missing key.
        """
        if not keys:
            return refuse(InvalidArgumentError("MGET needs at least one key"))
        return self._call(r.optionalBytesList, True, b"MGET", *keys)

    def mset(self, mapping: Mapping[Key, Arg]) -> Deferred[None]:
        """
        C{MSET}: store several values at once.

        @return: A C{Deferred} firing with L{None}.
        """
        if not mapping:
            return refuse(InvalidArgumentError("MSET needs at least one key"))
        args: list[object] = [b"MSET"]
        for key, value in mapping.items():
            args += [key, value]
        return self._call(r.ok, True, *args)

    def incr(self, key: Key) -> Deferred[int]:
        """
        C{INCR}: add 1 to an integer value (a missing key counts as 0).

        @return: A C{Deferred} firing with the new value.
        """
        return self._call(r.integer, False, b"INCR", key)

    def incrby(self, key: Key, amount: int) -> Deferred[int]:
        """
        C{INCRBY}: add C{amount} to an integer value.

        @return: A C{Deferred} firing with the new value.
        """
        return self._call(r.integer, False, b"INCRBY", key, amount)

    def incrbyfloat(self, key: Key, amount: float) -> Deferred[float]:
        """
        C{INCRBYFLOAT}: add C{amount} to a number.

        @return: A C{Deferred} firing with the new value.
        """
        return self._call(r.floating, False, b"INCRBYFLOAT", key, amount)

    def decr(self, key: Key) -> Deferred[int]:
        """
        C{DECR}: subtract 1 from an integer value.

        @return: A C{Deferred} firing with the new value.
        """
        return self._call(r.integer, False, b"DECR", key)

    def decrby(self, key: Key, amount: int) -> Deferred[int]:
        """
        C{DECRBY}: subtract C{amount} from an integer value.

        @return: A C{Deferred} firing with the new value.
        """
        return self._call(r.integer, False, b"DECRBY", key, amount)

    def append(self, key: Key, value: Arg) -> Deferred[int]:
        """
        C{APPEND}: append to a value (a missing key counts as empty).

        @return: A C{Deferred} firing with the new length of the value.
        """
        return self._call(r.integer, False, b"APPEND", key, value)

    def strlen(self, key: Key) -> Deferred[int]:
        """
        C{STRLEN}: the length of a value.

        @return: A C{Deferred} firing with the length, 0 for a missing key.
        """
        return self._call(r.integer, True, b"STRLEN", key)

    # Keys

    def delete(self, *keys: Key) -> Deferred[int]:
        """
        C{DEL}: delete keys.

        @return: A C{Deferred} firing with how many of them existed.
        """
        if not keys:
            return refuse(InvalidArgumentError("DEL needs at least one key"))
        return self._call(r.integer, True, b"DEL", *keys)

    def exists(self, *keys: Key) -> Deferred[int]:
        """
        C{EXISTS}: count the keys that exist (a key named twice counts twice).

        @return: A C{Deferred} firing with the count.
        """
        if not keys:
            return refuse(InvalidArgumentError("EXISTS needs at least one key"))
        return self._call(r.integer, True, b"EXISTS", *keys)

    def type(self, key: Key) -> Deferred[str]:
        """
        C{TYPE}: the type of a key's value.

        @return: A C{Deferred} firing with C{"string"}, C{"list"}, C{"set"}, C{"zset"},
            C{"hash"}, C{"stream"}, or C{"none"} for a missing key.
        """
        return self._call(r.status, True, b"TYPE", key)

    # Expiry

    def expire(self, key: Key, seconds: int) -> Deferred[bool]:
        """
        C{EXPIRE}: make a key expire after C{seconds}.

        @return: A C{Deferred} firing with C{True}, or C{False} if the key is missing.
        """
        return self._call(r.boolean, True, b"EXPIRE", key, seconds)

    def pexpire(self, key: Key, milliseconds: int) -> Deferred[bool]:
        """
        C{PEXPIRE}: make a key expire after C{milliseconds}.

        @return: A C{Deferred} firing with C{True}, or C{False} if the key is missing.
        """
        return self._call(r.boolean, True, b"PEXPIRE", key, milliseconds)

    def expireat(self, key: Key, timestamp: int) -> Deferred[bool]:
        """
        C{EXPIREAT}: make a key expire at a Unix time, in seconds.

        @return: A C{Deferred} firing with C{True}, or C{False} if the key is missing.
        """
        return self._call(r.boolean, True, b"EXPIREAT", key, timestamp)

    def ttl(self, key: Key) -> Deferred[int]:
        """
        C{TTL}: the seconds a key has left to live.

        @return: A C{Deferred} firing with the seconds, -1 for a key that does not expire,
            -2 for a missing key.
        """
        return self._call(r.integer, True, b"TTL", key)

    def pttl(self, key: Key) -> Deferred[int]:
        """
        C{PTTL}: the milliseconds a key has left to live.

        @return: A C{Deferred} firing with the milliseconds, -1 for a key that does not
            expire, -2 for a missing key.
        """
        return self._call(r.integer, True, b"PTTL", key)

    def persist(self, key: Key) -> Deferred[bool]:
        """
        C{PERSIST}: make a key stop expiring.

        @return: A C{Deferred} firing with C{True}, or C{False} if the key is missing or did
            not expire.
        """
        return self._call(r.boolean, True, b"PERSIST", key)

    # The server

    def ping(self) -> Deferred[str]:
        """
        C{PING}: check that the server answers.

        @return: A C{Deferred} firing with C{"PONG"}.
        """
        return self._call(r.pong, True, b"PING")

    def info(self, section: str | None = None) -> Deferred[dict[str, str]]:
        """
        C{INFO}: the server's information and statistics.

        @param section: A section name, such as C{"server"} or C{"memory"}; L{None} for the
            default ones.
        @return: A C{Deferred} firing with a C{dict} of field names to values, as text.
        """
        if section is None:
            return self._call(r.info, True, b"INFO")
        return self._call(r.info, True, b"INFO", section)

    def dbsize(self) -> Deferred[int]:
        """
        C{DBSIZE}: the number of keys in the database.

        @return: A C{Deferred} firing with the number.
        """
        return self._call(r.integer, True, b"DBSIZE")

    def flushdb(self) -> Deferred[None]:
        """
        C{FLUSHDB}: delete every key of the database.

        @return: A C{Deferred} firing with L{None}.
        """
        return self._call(r.ok, False, b"FLUSHDB")

    def publish(self, channel: Key, message: Arg) -> Deferred[int]:
        """
        C{PUBLISH}: send a message to a channel's subscribers.

        @return: A C{Deferred} firing with how many clients received it.
        """
        return self._call(r.integer, False, b"PUBLISH", channel, message)
