"""
Replies: the type of a reply as the protocol parses it, and the conversions that check a
reply against its command and give it the type the command's method promises.

A conversion that meets a reply of the wrong shape raises L{ReplyMismatch}: the protocol then
treats the connection as out of step (see L{txconnpool.redis.protocol.RedisProtocol}).
"""

from __future__ import annotations

from typing import TypeAlias

from .errors import ResponseError

Reply: TypeAlias = bytes | str | int | list["Reply"] | ResponseError | None
"""
A reply of the server, in the RESP2 wire format: a bulk string is C{bytes}, a simple
string (such as C{OK}) is a C{str}, an integer an C{int}, a null bulk string or array
L{None}, an array a C{list}; an error inside an array (as C{EXEC} can give) is a
L{ResponseError<txconnpool.redis.errors.ResponseError>}. An error reply on its own fails the
command's L{Deferred<twisted.internet.defer.Deferred>} with it instead.
"""

class ReplyMismatch(Exception):
    """
    A reply does not have the shape its command gives.
    """


def _mismatch(what: str, reply: Reply) -> ReplyMismatch:
    return ReplyMismatch(f"expected {what}, got {reply!r:.200}")


def anyReply(reply: Reply) -> Reply:
    """
    Any reply, unchanged (the generic C{execute}).
    """
    return reply


def optionalBytes(reply: Reply) -> bytes | None:
    """
    A bulk string or null.
    """
    if reply is None or type(reply) is bytes:
        return reply
    raise _mismatch("a bulk string or null", reply)


def bulk(reply: Reply) -> bytes:
    """
    A bulk string.
    """
    if type(reply) is bytes:
        return reply
    raise _mismatch("a bulk string", reply)


def integer(reply: Reply) -> int:
    """
    An integer.
    """
    if type(reply) is int:
        return reply
    raise _mismatch("an integer", reply)


def optionalInteger(reply: Reply) -> int | None:
    """
    An integer or null.
    """
    if reply is None or type(reply) is int:
        return reply
    raise _mismatch("an integer or null", reply)


def boolean(reply: Reply) -> bool:
    """
    An integer that is 0 or 1, as a C{bool}.
    """
    if reply == 1 or reply == 0:
        return reply == 1
    raise _mismatch("0 or 1", reply)


def ok(reply: Reply) -> None:
    """
    The simple string C{OK}.
    """
    if reply != "OK":
        raise _mismatch("OK", reply)


def okOrNull(reply: Reply) -> bool:
    """
    C{OK} (C{True}) or null (C{False}), as C{SET} with C{NX} or C{XX} gives.
    """
    if reply == "OK":
        return True
    if reply is None:
        return False
    raise _mismatch("OK or null", reply)


def status(reply: Reply) -> str:
    """
    A simple string.
    """
    if type(reply) is str:
        return reply
    raise _mismatch("a simple string", reply)


def pong(reply: Reply) -> str:
    """
    C{PONG}, as C{PING} gives, or the C{["pong", ""]} array it gives on a subscribed
    connection (as C{"PONG"}).
    """
    if reply == "PONG" or reply == [b"pong", b""]:
        return "PONG"
    raise _mismatch("PONG", reply)


def _toFloat(reply: Reply) -> float:
    if type(reply) is bytes:
        try:
            return float(reply)
        except ValueError:
            pass
    raise _mismatch("a number as a bulk string", reply)


def floating(reply: Reply) -> float:
    """
    A number sent as a bulk string, as C{ZSCORE} and C{INCRBYFLOAT} give.
    """
    return _toFloat(reply)


def optionalFloating(reply: Reply) -> float | None:
    """
    A number sent as a bulk string, or null.
    """
    return None if reply is None else _toFloat(reply)


def _array(reply: Reply) -> list[Reply]:
    if type(reply) is list:
        return reply
    raise _mismatch("an array", reply)


def bytesList(reply: Reply) -> list[bytes]:
    """
    An array of bulk strings.
    """
    items = _array(reply)
    for item in items:
        if type(item) is not bytes:
            raise _mismatch("an array of bulk strings", reply)
    return items  # type: ignore[return-value]


def optionalBytesList(reply: Reply) -> list[bytes | None]:
    """
    An array of bulk strings or nulls, as C{MGET} and C{HMGET} give.
    """
    items = _array(reply)
    for item in items:
        if item is not None and type(item) is not bytes:
            raise _mismatch("an array of bulk strings or nulls", reply)
    return items  # type: ignore[return-value]


def bytesSet(reply: Reply) -> set[bytes]:
    """
    An array of bulk strings, as a set.
    """
    return set(bytesList(reply))


def mapping(reply: Reply) -> dict[bytes, bytes]:
    """
    An array of field and value bulk strings, as C{HGETALL} gives.
    """
    items = bytesList(reply)
    if len(items) % 2:
        raise _mismatch("an even number of bulk strings", reply)
    return dict(zip(items[::2], items[1::2]))


def scored(reply: Reply) -> list[tuple[bytes, float]]:
    """
    An array of member and score bulk strings, as C{ZRANGE ... WITHSCORES} gives.
    """
    items = bytesList(reply)
    if len(items) % 2:
        raise _mismatch("an even number of bulk strings", reply)
    return [(member, _toFloat(score)) for member, score in zip(items[::2], items[1::2])]


def popped(reply: Reply) -> tuple[bytes, bytes] | None:
    """
    A key and a value, or null on a timeout, as C{BLPOP} and C{BRPOP} give.
    """
    if reply is None:
        return None
    items = bytesList(reply)
    if len(items) != 2:
        raise _mismatch("a key and a value", reply)
    return (items[0], items[1])


def info(reply: Reply) -> dict[str, str]:
    """
    The text C{INFO} gives, as a C{dict} of its fields (section headers and blank lines
    left out).
    """
    text = bulk(reply).decode("utf-8", "replace")
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and ":" in line:
            name, value = line.split(":", 1)
            fields[name] = value
    return fields

