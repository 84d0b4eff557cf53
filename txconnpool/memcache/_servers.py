"""
The servers of a L{MemCacheCluster}: each item of its C{servers} argument, read into the
address its pool connects to, its weight, and the name its continuum points are hashed from.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from attrs import frozen
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress

__all__ = ["DEFAULT_PORT", "ServerSpec", "parseServers"]

DEFAULT_PORT = 11211
"""The port libmemcached and twemproxy leave out of a server's point names."""

_SPLIT = re.compile(r"(?<!\\):")


@frozen
class ServerSpec:
    """
    One server of a cluster.

    @ivar address: What its L{MemCachePool} connects to, as given.
    @ivar weight: Its weight, 1 or more.
    @ivar label: How stats, logs and errors name it: its name when it has one, else
        C{host:port} (or the socket path).
    @ivar pointName: The string its continuum points are hashed from, before C{-<i>}: its name
        when it has one, else C{host} on port 11211 and C{host:port} on any other port, as
        libmemcached and twemproxy write them.
    """

    address: object
    weight: int
    label: str
    pointName: bytes


def parseServers(servers: Iterable[object]) -> list[ServerSpec]:
    """
    Read the C{servers} argument of L{MemCacheCluster}.

    @raise TypeError: An item, weight or name has the wrong type.
    @raise ValueError: There are no servers, a weight is less than 1, two servers have the same
        point name, or a server has no name and no host and port to name it by.
    """
    if isinstance(servers, (str, bytes)):
        raise TypeError("servers must be a list of servers, not one string")
    specs = [_parseOne(item) for item in servers]
    if not specs:
        raise ValueError("servers must name at least one server")
    seen: dict[bytes, ServerSpec] = {}
    for spec in specs:
        if spec.pointName in seen:
            raise ValueError(
                f"servers {seen[spec.pointName].address!r} and {spec.address!r} would share "
                f"the continuum points of {spec.pointName.decode('utf-8', 'replace')!r}; "
                "give them different names"
            )
        seen[spec.pointName] = spec
    return specs


def _parseOne(item: object) -> ServerSpec:
    name: object = None
    weight: object = 1
    if isinstance(item, tuple):
        if len(item) == 2:
            address, weight = item
        elif len(item) == 3:
            address, weight, name = item
        else:
            raise TypeError(
                f"a server must be an address, (address, weight) or (address, weight, name), "
                f"not a tuple of {len(item)}"
            )
    else:
        address = item
    if isinstance(weight, bool) or not isinstance(weight, int):
        raise TypeError(f"the weight of server {address!r} must be an int, not {weight!r}")
    if weight < 1:
        raise ValueError(f"the weight of server {address!r} must be at least 1, not {weight}")
    if name is not None and not isinstance(name, str):
        raise TypeError(f"the name of server {address!r} must be a str, not {name!r}")
    if name == "":
        raise ValueError(f"the name of server {address!r} must not be empty")
    hostPort = hostAndPort(address)
    if name is not None:
        return ServerSpec(address, weight, name, name.encode("utf-8"))
    if hostPort is None:
        raise ValueError(
            f"server {address!r} has no host and port to hash its continuum points from; "
            "give it a name: (address, weight, name)"
        )
    host, port = hostPort
    label = f"{host}:{port}"
    pointName = host if port == DEFAULT_PORT else label
    return ServerSpec(address, weight, label, pointName.encode("utf-8"))


def hostAndPort(address: object) -> tuple[str, int] | None:
    """
    The host and port of an address as L{MemCachePool} takes it, as libmemcached would hold
    them: a unix socket is its path and port 0.

    @return: C{(host, port)}, or L{None} for an address that does not say (an endpoint object,
        or a description of another kind than C{tcp}, C{tcp6}, C{tls} and C{unix}).
    """
    if isinstance(address, (IPv4Address, IPv6Address)):
        return address.host or ("::1" if isinstance(address, IPv6Address) else "127.0.0.1"), (
            address.port
        )
    if isinstance(address, UNIXAddress) and address.name is not None:
        socketPath = address.name
        if isinstance(socketPath, bytes):
            return socketPath.decode("utf-8"), 0
        return socketPath, 0
    if not isinstance(address, str):
        return None
    kind, *parts = [p.replace("\\:", ":") for p in _SPLIT.split(address)]
    positional = [p for p in parts if "=" not in p]
    keywords = dict(p.split("=", 1) for p in parts if "=" in p)
    if kind == "unix":
        path = keywords.get("path", positional[0] if positional else None)
        return None if path is None else (path, 0)
    if kind not in ("tcp", "tcp6", "tls"):
        return None
    host = keywords.get("host", positional[0] if positional else None)
    port = keywords.get("port", positional[1] if len(positional) > 1 else None)
    if host is None or port is None or not port.isdigit():
        return None
    return host.strip("[]"), int(port)
