"""
What the benchmark measures: the clients and the workloads, shared by the runner and the
worker process (this module imports nothing heavy).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from typing import Any

KEY_COUNT = 1000
"""Keys per workload, all stored before the first measurement."""


@dataclass(frozen=True)
class Workload:
    """
    One kind of traffic: C{get}s of C{valueSize}-byte values, with every C{setEvery}-th
    operation of each worker a C{set} instead (0: never).
    """

    name: str
    title: str
    valueSize: int
    setEvery: int = 0

    def key(self, index: int) -> bytes:
        """
        The key number C{index} of this workload.
        """
        return b"bench:%s:%04d" % (self.name.encode(), index % KEY_COUNT)

    def value(self) -> bytes:
        """
        The value stored under every key of this workload.
        """
        return b"v" * self.valueSize


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload("get", "get, 100-byte values", 100),
        Workload("mix", "90% get / 10% set, 100-byte values", 100, setEvery=10),
        Workload("mix50", "50% get / 50% set, 100-byte values", 100, setEvery=2),
        Workload("get10k", "get, 10 KB values", 10 * 1024),
        Workload("mix50", "50% get / 50% set, 100-byte values", 100, setEvery=2),
    )
}

DEFAULT_WORKLOADS = ("get", "mix", "get10k")


@dataclass(frozen=True)
class ClientKind:
    """
    A client library and the way it is driven.
    """

    name: str
    label: str
    description: str
    takesPoolOptions: bool = False


CLIENT_KINDS: dict[str, ClientKind] = {
    k.name: k
    for k in (
        ClientKind(
            "pool", "MemCachePool",
            "`MemCachePool(endpoint)` with its default settings (plus any `--pool-option`); "
            "each caller does `await pool.get(key)`; Twisted epoll reactor",
            takesPoolOptions=True,
        ),
        ClientKind(
            "pool-exclusive", "MemCachePool exclusive",
            "the same pool, each operation on a connection checked out for it: "
            "`async with pool.connection() as p: await p.get(key)`",
            takesPoolOptions=True,
        ),
        ClientKind(
            "meta", "MetaMemCachePool",
            "`MetaMemCachePool(endpoint)`, the meta-protocol pool, with its default settings "
            "(plus any `--pool-option`); each caller does `await pool.get(key)`; Twisted epoll "
            "reactor",
            takesPoolOptions=True,
        ),
        ClientKind(
            "twisted", "Twisted MemCacheProtocol",
            "the reference: one raw `twisted.protocols.memcache.MemCacheProtocol` connection "
            "carrying every caller's requests, pipelined; Twisted epoll reactor",
        ),
        ClientKind(
            "aiomcache", "aiomcache (asyncio)",
            "`aiomcache.Client(host, port)`: its default pool of 2 connections, one request "
            "at a time on each; default asyncio event loop",
        ),
        ClientKind(
            "emcache", "emcache (uvloop)",
            "`emcache.create_client([address], timeout=None)`: its default 2 connections, one "
            "request at a time on each (its default 1 s timeout is off, so that no request "
            "fails); uvloop event loop",
        ),
    )
}

DEFAULT_CLIENTS = ("pool", "pool-exclusive", "twisted", "aiomcache", "emcache")
REFERENCE = "twisted"


@dataclass(frozen=True)
class Client:
    """
    A client as named on the command line: a kind, plus pool options of its own
    (C{pool:maxRequestsPerClient=8,maxClients=2}).
    """

    spec: str
    kind: ClientKind
    options: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def label(self) -> str:
        """
        The client's name in tables and plots.
        """
        if not self.options:
            return self.kind.label
        return f"{self.kind.label} ({', '.join(f'{k}={v!r}' for k, v in self.options.items())})"


def parseOption(text: str) -> tuple[str, Any]:
    """
    Read C{key=value}; the value is a Python literal (C{32}, C{None}, C{2.5}, C{True}) or else
    a string.

    @raise ValueError: There is no C{=} or no key.
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key.isidentifier():
        raise ValueError(f"a pool option is written key=value, not {text!r}")
    try:
        value = ast.literal_eval(raw.strip())
    except (ValueError, SyntaxError):
        value = raw.strip()
    return key, value


def parseClient(spec: str) -> Client:
    """
    Read a client name, optionally followed by C{:key=value,key=value} pool options.

    @raise ValueError: Unknown client, or options given to a client that takes none.
    """
    name, sep, rest = spec.partition(":")
    kind = CLIENT_KINDS.get(name)
    if kind is None:
        raise ValueError(f"unknown client {name!r}; known: {', '.join(CLIENT_KINDS)}")
    options = dict(parseOption(part) for part in rest.split(",") if part.strip()) if sep else {}
    if options and not kind.takesPoolOptions:
        raise ValueError(f"client {name!r} takes no pool options (given {spec!r})")
    return Client(spec, kind, options)
