"""
Judging what a server speaks from its replies to the probe every new meta connection sends:
C{version}, C{mn}, and an C{mg} of a key nobody uses.
"""

from __future__ import annotations

import re

import attrs
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure

from txconnpool.memcache import _validate as _v
from txconnpool.memcache.meta.errors import MetaProtocolUnsupportedError

_VERSION = re.compile(rb"(\d+)\.(\d+)\.(\d+)")


@attrs.frozen
class ServerInfo:
    """
    What the probe of a connection found out about the server.

    @ivar version: The server's answer to C{version}, e.g. C{b"1.6.18"}.
    @ivar tagsMisses: Whether the server copies the opaque token onto a miss (C{EN}), as
        memcached does from 1.6.18 on; without it, a miss is matched by its place in the
        queue alone.
    """

    version: bytes
    tagsMisses: bool


def _earlyVariant(version: bytes) -> bool:
    """
    Whether C{version} names memcached 1.6.0 to 1.6.9, whose meta protocol is the early one.
    """
    match = _VERSION.match(version)
    if match is None:
        return False
    major, minor, patch = (int(part) for part in match.groups())
    return (major, minor) == (1, 6) and patch < 10


def judgeProbe(
    lines: list[bytes] | None,
    opaque: bytes,
    base64Keys: bool,
    failure: Failure | None = None,
) -> ServerInfo:
    """
    Judge the replies to the probe.

    @param lines: The three reply lines, or C{None} if the probe failed with C{failure}.
    @param opaque: The opaque token the probe's C{mg} was sent with.
    @param base64Keys: Whether the probe's key was base64-encoded.
    @return: What the server is, if the meta client can use it.
    @raise MetaProtocolUnsupportedError: The server closed the connection on the probe, has
        no meta commands, speaks the early meta protocol, or refused the probe's C{mg}.
    @raise Exception: C{failure}'s exception, if the probe failed for another reason (a
        timeout, a lost connection).
    """
    if lines is None:
        assert failure is not None
        if failure.check(ConnectionDone):
            raise MetaProtocolUnsupportedError(
                "the server closed the connection in reply to version and mn, as servers and "
                "proxies that only speak memcached's text protocol do: the meta protocol "
                "(memcached 1.6.10 or later) is needed"
            ) from failure.value
        failure.raiseException()
    assert lines is not None
    versionLine, noopLine, getLine = lines
    version = versionLine[8:] if versionLine.startswith(b"VERSION ") else None
    shownVersion = "" if version is None else f" (version {version.decode('latin-1')})"
    if noopLine != b"MN":
        raise MetaProtocolUnsupportedError(
            f"the server{shownVersion} answered {_v.show(noopLine)} to mn: it has no meta "
            "commands, which memcached has from 1.6 on (1.6.10 or later is needed)",
            version,
        )
    if version is not None and _earlyVariant(version):
        raise MetaProtocolUnsupportedError(
            f"the server{shownVersion} speaks the early meta protocol of memcached 1.6.0 to "
            "1.6.9 (as ElastiCache's 1.6.6 does), in which ms takes the length as an S flag "
            "and success is OK rather than HD: the meta client needs memcached 1.6.10 or "
            "later; use MemCachePool with this server",
            version,
        )
    parts = getLine.split(b" ")
    if parts[0] not in (b"EN", b"HD") or (len(parts) > 1 and parts[1] != opaque):
        refused = " base64 keys or" if base64Keys else ""
        raise MetaProtocolUnsupportedError(
            f"the server{shownVersion} answered {_v.show(getLine)} to an mg: it does not "
            f"support{refused} the meta get this client sends (memcached 1.6.10 or later is "
            "needed)",
            version,
        )
    return ServerInfo(
        version=b"" if version is None else version,
        tagsMisses=parts == [b"EN", opaque],
    )
