"""
The publish and subscribe half of a connection: the channels and patterns it is subscribed
to, the confirmations its (un)subscribe commands wait for, and the messages it received,
held in a bounded queue until read.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import attrs
from twisted.internet.defer import Deferred, fail, succeed

from ._replies import Reply
from .errors import InvalidRequestError

_PUSHES = {b"message": 3, b"pmessage": 4, b"smessage": 3}
_FAMILIES = {
    b"subscribe": b"subscribe",
    b"unsubscribe": b"subscribe",
    b"psubscribe": b"psubscribe",
    b"punsubscribe": b"psubscribe",
    b"ssubscribe": b"ssubscribe",
    b"sunsubscribe": b"ssubscribe",
}


@attrs.frozen
class Message:
    """
    A message published to a channel the connection is subscribed to.

    @ivar channel: The channel it was published to.
    @ivar data: The message.
    @ivar pattern: The pattern that matched the channel, for a C{PSUBSCRIBE}; L{None}
        otherwise.
    """

    channel: bytes
    data: bytes
    pattern: bytes | None = None


class Confirmation:
    """
    What an (un)subscribe command waits for: one confirmation per channel or pattern named,
    or, when it named none, one per subscription of its kind (at least one).

    @ivar command: The command's name, lower case (C{b"subscribe"}...).
    @ivar remaining: The confirmations still to come; L{None} until the first one, for an
        unsubscription from everything.
    @ivar deferred: Fires with the number of subscriptions after the last confirmation.
    """

    __slots__ = ("command", "deferred", "remaining")

    def __init__(self, command: bytes, count: int | None, deferred: Deferred[int]) -> None:
        self.command = command
        self.remaining = count
        self.deferred = deferred


class Subscriptions:
    """
    The subscriptions and received messages of one connection.

    @ivar count: How many channels and patterns the connection is subscribed to.
    @ivar inFlight: How many (un)subscribe commands await their confirmations.
    """

    def __init__(
        self, maxMessages: int, pause: Callable[[], None], resume: Callable[[], None]
    ) -> None:
        """
        @param maxMessages: Past this many unread messages, C{pause} is called (the
            connection stops reading), and C{resume} once half of them are read.
        """
        self._sets: dict[bytes, set[bytes | None]] = {
            b"subscribe": set(), b"psubscribe": set(), b"ssubscribe": set()
        }
        self.count = 0
        self.inFlight = 0
        self._maxMessages = maxMessages
        self._pause = pause
        self._resume = resume
        self._paused = False
        self._messages: deque[Message] = deque()
        self._readers: deque[Deferred[Message]] = deque()
        self._closedWith: Exception | None = None

    def active(self) -> bool:
        """
        Whether the connection is, or is becoming, subscribed to something.
        """
        return bool(self.count or self.inFlight)

    def started(self, command: bytes, count: int | None) -> Confirmation:
        """
        An (un)subscribe command was sent, naming C{count} channels or patterns (L{None}
        for none).
        """
        self.inFlight += 1
        return Confirmation(command, count, Deferred())

    def confirm(self, confirmation: Confirmation, reply: Reply) -> bool | None:
        """
        A reply came for an (un)subscribe command.

        @return: C{True} when it was the last confirmation, C{False} when more are to come,
            L{None} when the reply is not a confirmation of this command.
        """
        if (
            type(reply) is not list
            or len(reply) != 3
            or reply[0] != confirmation.command
            or type(reply[2]) is not int
            or (reply[1] is not None and type(reply[1]) is not bytes)
        ):
            return None
        family = _FAMILIES[confirmation.command]
        names = self._sets[family]
        if confirmation.remaining is None:
            confirmation.remaining = max(1, len(names))
        if family == confirmation.command:
            names.add(reply[1])
        else:
            names.discard(reply[1])
        self.count = sum(len(s) for s in self._sets.values())
        confirmation.remaining -= 1
        if confirmation.remaining:
            return False
        self.inFlight -= 1
        confirmation.deferred.callback(reply[2])
        return True

    def abandon(self, confirmation: Confirmation, error: Exception) -> None:
        """
        An (un)subscribe command failed, or its connection went away.
        """
        self.inFlight -= 1
        confirmation.deferred.errback(error)

    def isMessage(self, reply: Reply) -> bool:
        """
        Whether a reply is a published message (once subscribed, messages come between the
        replies).
        """
        return (
            self.count > 0
            and type(reply) is list
            and len(reply) >= 3
            and type(reply[0]) is bytes
            and _PUSHES.get(reply[0]) == len(reply)
        )

    def received(self, reply: list[Reply]) -> bool:
        """
        A message came (L{isMessage} said so): hand it to a reader, or keep it.

        @return: Whether it was well formed.
        """
        fields = reply[1:]
        if not all(type(field) is bytes for field in fields):
            return False
        if len(fields) == 3:
            message = Message(fields[1], fields[2], fields[0])  # type: ignore[arg-type]
        else:
            message = Message(fields[0], fields[1])  # type: ignore[arg-type]
        if self._readers:
            self._readers.popleft().callback(message)
            return True
        self._messages.append(message)
        if len(self._messages) >= self._maxMessages and not self._paused:
            self._paused = True
            self._pause()
        return True

    def nextMessage(self) -> Deferred[Message]:
        """
        @return: A C{Deferred} firing with the oldest unread message, at once or when it
            comes. It fails with L{InvalidRequestError} if the connection is not subscribed
            to anything, and with the connection's error once it is closed.
        """
        if self._messages:
            message = self._messages.popleft()
            if self._paused and len(self._messages) <= self._maxMessages // 2:
                self._paused = False
                self._resume()
            return succeed(message)
        if self._closedWith is not None:
            return fail(self._closedWith)
        if not self.active():
            return fail(InvalidRequestError("nextMessage: the connection is not subscribed"))
        reader: Deferred[Message] = Deferred(self._readers.remove)
        self._readers.append(reader)
        return reader

    def close(self, error: Exception) -> None:
        """
        The connection is gone: fail the readers waiting for messages.
        """
        self._closedWith = error
        readers, self._readers = self._readers, deque()
        for reader in readers:
            reader.errback(error)
