"""
Redis through a pool of connections: L{RedisPool}, its protocol L{RedisProtocol}, and their
errors. Needs the C{redis} extra (C{pip install txconnpool[redis]}), which installs
C{txredisapi}: this package encodes commands and assembles replies with txredisapi's
protocol class. (Importing txredisapi installs Twisted's default reactor if none is
installed yet: install another one first.)
"""

from ._args import Arg, Key
from ._pool import RedisClientFactory, RedisPool
from ._pubsub import Message
from ._replies import Reply
from .errors import (
    AuthenticationError,
    ExclusiveCommandError,
    InvalidArgumentError,
    InvalidRequestError,
    InvalidTypeError,
    RedisError,
    ResponseError,
    TransactionDiscardedError,
    UnsupportedCommandError,
    WatchError,
)
from .protocol import RedisProtocol

__all__ = [
    "Arg",
    "AuthenticationError",
    "ExclusiveCommandError",
    "InvalidArgumentError",
    "InvalidRequestError",
    "InvalidTypeError",
    "Key",
    "Message",
    "RedisClientFactory",
    "RedisError",
    "RedisPool",
    "RedisProtocol",
    "Reply",
    "ResponseError",
    "TransactionDiscardedError",
    "UnsupportedCommandError",
    "WatchError",
]
