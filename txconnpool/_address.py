"""
Turning the addresses a pool accepts into client endpoints.
"""

from __future__ import annotations

from typing import Any, cast

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    UNIXClientEndpoint,
    clientFromString,
)
from twisted.internet.interfaces import IStreamClientEndpoint


def endpointFor(
    reactor: Any, serverAddress: object
) -> tuple[IStreamClientEndpoint, str]:
    """
    Build the endpoint a pool connects through, and a description of it for messages.

    @param reactor: The reactor the endpoint uses.
    @param serverAddress: An endpoint description string (C{"tcp:127.0.0.1:11211"},
        C{"unix:/run/memcached.sock"}, or any form C{clientFromString} understands), an
        L{IStreamClientEndpoint} provider, or (the txconnpool 0.1.1 style) an L{IPv4Address},
        L{IPv6Address} or L{UNIXAddress}. An empty IPv4 host means C{127.0.0.1}, an empty
        IPv6 host C{::1}.

    @return: The endpoint and a short text naming the server.

    @raise TypeError: C{serverAddress} is none of these.
    @raise ValueError: C{serverAddress} is a string C{clientFromString} rejects.
    """
    if isinstance(serverAddress, str):
        try:
            endpoint = clientFromString(reactor, serverAddress)
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(
                f"serverAddress {serverAddress!r} is not a client endpoint description: {e}"
            ) from e
        return cast(IStreamClientEndpoint, endpoint), serverAddress
    if IStreamClientEndpoint.providedBy(serverAddress):
        return serverAddress, _describeEndpoint(serverAddress)
    if isinstance(serverAddress, IPv4Address):
        host = serverAddress.host or "127.0.0.1"
        return (
            cast(IStreamClientEndpoint, TCP4ClientEndpoint(reactor, host, serverAddress.port)),
            f"tcp:{host}:{serverAddress.port}",
        )
    if isinstance(serverAddress, IPv6Address):
        host = serverAddress.host or "::1"
        return (
            cast(IStreamClientEndpoint, TCP6ClientEndpoint(reactor, host, serverAddress.port)),
            f"tcp6:[{host}]:{serverAddress.port}",
        )
    if isinstance(serverAddress, UNIXAddress) and serverAddress.name is not None:
        name = serverAddress.name
        path = name.decode("utf-8") if isinstance(name, bytes) else name
        return cast(IStreamClientEndpoint, UNIXClientEndpoint(reactor, path)), f"unix:{path}"
    raise TypeError(
        "serverAddress must be an endpoint description string, an IStreamClientEndpoint "
        f"provider, or an IPv4Address/IPv6Address/UNIXAddress, not {serverAddress!r}"
    )


def _describeEndpoint(endpoint: object) -> str:
    """
    Name an endpoint for messages, from its host and port or path when it has them.
    """
    host = getattr(endpoint, "_host", None)
    port = getattr(endpoint, "_port", None)
    if host is not None and port is not None:
        return f"tcp:{host}:{port}"
    path = getattr(endpoint, "_path", None)
    if path is not None:
        return f"unix:{path}"
    return repr(endpoint)
