"""
L{CheckedOutConnection}: a connection checked out for the length of an C{async with} block.
"""

from __future__ import annotations

from typing import Generic, Protocol, TypeVar

from twisted.internet.defer import Deferred

_P = TypeVar("_P")


class Lender(Protocol[_P]):
    """
    What lends connections: a L{Pool<txconnpool.pool.Pool>}.
    """

    brokenConnectionErrors: tuple[type[BaseException], ...]

    def acquire(self) -> Deferred[_P]:
        """
        Check a connection out.
        """

    def release(self, protocol: _P) -> None:
        """
        Give it back.
        """

    def discard(self, protocol: _P) -> None:
        """
        Give it back broken.
        """


class CheckedOutConnection(Generic[_P]):
    """
    The asynchronous context manager returned by L{Pool.connection<txconnpool.pool.Pool>}:
    leaving the block gives the connection back, or discards it when the block is left with
    one of the pool's C{brokenConnectionErrors}.
    """

    def __init__(self, pool: Lender[_P]) -> None:
        self._pool = pool
        self._protocol: _P | None = None

    async def __aenter__(self) -> _P:
        self._protocol = protocol = await self._pool.acquire()
        return protocol

    async def __aexit__(self, excType: object, exc: BaseException | None, tb: object) -> None:
        protocol, self._protocol = self._protocol, None
        assert protocol is not None, "the block was entered"
        if exc is not None and isinstance(exc, self._pool.brokenConnectionErrors):
            self._pool.discard(protocol)
        else:
            self._pool.release(protocol)
