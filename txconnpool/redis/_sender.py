"""
What the command methods stand on: L{CommandSender}, which encodes a command's arguments and
hands it to L{_run}, provided by the pool (a request to any connection) and by the protocol (a
command on its own connection).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from twisted.internet.defer import Deferred, fail

from ._args import encodeArgs
from ._replies import Reply
from .errors import InvalidRequestError

_T = TypeVar("_T")


class CommandSender:
    """
    Sends commands whose reply a conversion checks and types.
    """

    def _run(
        self, convert: Callable[[Reply], _T], idempotent: bool, args: list[bytes]
    ) -> Deferred[_T]:
        """
        Send an encoded command.

        @param convert: Checks the reply and gives it its type.
        @param idempotent: Whether the command is safe to send twice.
        @param args: The command's name and arguments, encoded.
        """
        raise NotImplementedError()

    def _call(
        self, convert: Callable[[Reply], _T], idempotent: bool, *args: object
    ) -> Deferred[_T]:
        """
        Encode a command's arguments and send it, or fail without sending anything.

        @return: A C{Deferred} firing with the converted reply; it fails with an
            L{InvalidRequestError} leaf when an argument cannot be sent.
        """
        try:
            encoded = encodeArgs(args)
        except InvalidRequestError:
            return fail()
        return self._run(convert, idempotent, encoded)


def refuse(error: InvalidRequestError) -> Deferred[_T]:
    """
    @return: A C{Deferred} failed with C{error}, for a command refused before sending.
    """
    return fail(error)
