"""
RedisPool against a real redis-server: typed commands, values read back by redis-cli,
pipelining order, transactions with WATCH, blocking pops, publish and subscribe, SELECT undone
when a checkout ends, exclusive commands refused, and a server that wants a password.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet.defer import gatherResults

from tests.faults.support import failureOf, later, reactor
from txconnpool.errors import ServerUnavailableError
from txconnpool.redis import (
    AuthenticationError,
    ExclusiveCommandError,
    Message,
    RedisPool,
    ResponseError,
    WatchError,
)
from txconnpool.redis.testing import RedisProcess


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    """
    A redis-server on a free loopback port, shared by the module.
    """
    server = RedisProcess(tmp_path_factory.mktemp("redis") / "redis.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def securedRedis(tmp_path: Path) -> Iterator[RedisProcess]:
    """
    A redis-server of the test's own that requires a password.
    """
    server = RedisProcess(tmp_path / "redis.log", password="s3cret")
    server.start()
    yield server
    server.stop()


def cli(server: RedisProcess, *args: str) -> str:
    """
    Run redis-cli against C{server} and return what it printed.
    """
    done = subprocess.run(
        ["redis-cli", "-h", server.host, "-p", str(server.port), "--no-auth-warning", *args],
        capture_output=True, text=True, timeout=30, check=True,
    )
    return done.stdout.rstrip("\n")


@pytest_twisted.ensureDeferred
async def test_commandsAndPeerClient(redis: RedisProcess) -> None:
    """
    Values written through the pool read back through redis-cli and the other way round,
    and each command's result has the type its method gives.
    """
    pool = RedisPool(redis.endpoint, maxClients=2)
    try:
        assert await pool.set("it:str", "h\xe9llo") is True
        assert cli(redis, "GET", "it:str") == "h\xe9llo"
        cli(redis, "SET", "it:cli", "from cli")
        assert await pool.get(b"it:cli") == b"from cli"
        assert await pool.set(b"it:str", b"x", nx=True) is False
        assert await pool.incrby(b"it:n", 5) == 5
        assert await pool.incrbyfloat(b"it:n", 0.5) == 5.5
        assert await pool.mget(b"it:n", b"it:missing") == [b"5.5", None]
        assert await pool.hset(b"it:h", {b"a": 1, b"b": b"2"}) == 2
        assert await pool.hgetall(b"it:h") == {b"a": b"1", b"b": b"2"}
        assert cli(redis, "HGET", "it:h", "a") == "1"
        assert await pool.rpush(b"it:l", b"a", b"b", b"c") == 3
        assert await pool.lrange(b"it:l", 0, -1) == [b"a", b"b", b"c"]
        assert await pool.sadd(b"it:s", b"x", b"y") == 2
        assert await pool.smembers(b"it:s") == {b"x", b"y"}
        assert await pool.zadd(b"it:z", {b"m": 1e-10, b"n": -2.5}) == 2
        assert await pool.zrangeWithScores(b"it:z", 0, -1) == [(b"n", -2.5), (b"m", 1e-10)]
        assert cli(redis, "ZSCORE", "it:z", "m") == "1e-10"
        assert await pool.expire(b"it:str", 100) is True
        assert 0 < await pool.ttl(b"it:str") <= 100
        assert await pool.type(b"it:z") == "zset"
        assert (await pool.info("server"))["redis_version"].startswith("7.")
        failure = await failureOf(pool.lpush(b"it:h", b"x"))
        assert failure.value.code == "WRONGTYPE"
        assert await pool.execute("OBJECT", "ENCODING", "it:l") in (b"listpack", b"quicklist")
        assert await pool.delete(b"it:str", b"it:cli", b"it:nothing") == 2
    finally:
        await pool.close()


@pytest_twisted.ensureDeferred
async def test_pipelinedRepliesInOrder(redis: RedisProcess) -> None:
    """
    A thousand commands pipelined on two connections each get their own reply.
    """
    pool = RedisPool(redis.endpoint, maxClients=2)
    try:
        await pool.delete(b"it:order")
        writes = [pool.set(b"it:order:%d" % (i,), b"%d" % (i,)) for i in range(500)]
        counts = [pool.incr(b"it:order") for _ in range(500)]
        assert await gatherResults(writes) == [True] * 500
        assert sorted(await gatherResults(counts)) == list(range(1, 501))
        reads = await gatherResults([pool.get(b"it:order:%d" % (i,)) for i in range(500)])
        assert reads == [b"%d" % (i,) for i in range(500)]
        assert pool.poolStats().created == 2
    finally:
        await pool.close()


@pytest_twisted.ensureDeferred
async def test_transactionWithWatch(redis: RedisProcess) -> None:
    """
    A transaction runs its queued commands at EXEC; one whose watched key another client
    changed fails with WatchError and changes nothing.
    """
    pool = RedisPool(redis.endpoint, maxClients=3)
    try:
        await pool.set(b"it:balance", 100)
        async with pool.connection() as redis_:
            await redis_.watch(b"it:balance")
            balance = int(await redis_.get(b"it:balance") or 0)
            await redis_.multi()
            spent = redis_.decrby(b"it:balance", 30)
            logged = redis_.rpush(b"it:log", b"spent 30")
            assert await redis_.exec() == [balance - 30, await logged]
            assert await spent == 70
        async with pool.connection() as redis_:
            await redis_.watch(b"it:balance")
            await pool.set(b"it:balance", 0)
            await redis_.multi()
            lost = redis_.decrby(b"it:balance", 30)
            assert (await failureOf(redis_.exec())).check(WatchError)
            assert (await failureOf(lost)).check(WatchError)
        assert await pool.get(b"it:balance") == b"0"
    finally:
        await pool.close()


@pytest_twisted.ensureDeferred
async def test_leavingTheBlockDiscardsTheTransactionAndTheDatabase(redis: RedisProcess) -> None:
    """
    A checkout left with a transaction open and another database selected gives back a
    connection with neither: the queued write never happens.
    """
    pool = RedisPool(redis.endpoint, maxClients=1, db=2)
    try:
        await pool.delete(b"it:never")
        async with pool.connection() as redis_:
            await redis_.select(4)
            await redis_.multi()
            redis_.set(b"it:never", b"x").addErrback(lambda f: None)
        info = await pool.execute("CLIENT", "INFO")
        assert isinstance(info, bytes) and b" db=2 " in info and b" multi=-1 " in info
        assert await pool.get(b"it:never") is None
        assert cli(redis, "-n", "4", "EXISTS", "it:never") == "0"
        assert pool.poolStats().closed == 0
    finally:
        await pool.close()


@pytest_twisted.ensureDeferred
async def test_blockingPopOnACheckout(redis: RedisProcess) -> None:
    """
    BLPOP waits on its checked-out connection while the pool's other connection pushes, and
    fires with the key and value; with a timeout and nothing pushed it fires with None.
    """
    pool = RedisPool(redis.endpoint, maxClients=2)
    try:
        assert (await failureOf(pool.execute("BLPOP", "it:q", 0))).check(ExclusiveCommandError)
        async with pool.connection() as redis_:
            popped = redis_.blpop(b"it:q", timeout=5)
            await later(0.05)
            assert not popped.called
            await pool.rpush(b"it:q", b"job")
            assert await popped == (b"it:q", b"job")
            assert await redis_.brpop(b"it:q", timeout=0.05) is None
        assert pool.poolStats().idle == 2
    finally:
        await pool.close()


@pytest_twisted.ensureDeferred
async def test_publishAndSubscribe(redis: RedisProcess) -> None:
    """
    A subscribed checkout receives what the pool publishes, in order, and its connection is
    closed when the block ends.
    """
    pool = RedisPool(redis.endpoint, maxClients=2)
    try:
        async with pool.connection() as redis_:
            assert await redis_.subscribe(b"it:news") == 1
            assert await redis_.psubscribe(b"it:n*") == 2
            assert await pool.publish(b"it:news", b"first") == 2
            messages = [await redis_.nextMessage() for _ in range(2)]
            assert sorted(messages, key=lambda m: m.pattern or b"") == [
                Message(b"it:news", b"first"),
                Message(b"it:news", b"first", b"it:n*"),
            ]
            assert await redis_.ping() == "PONG"
            assert await redis_.unsubscribe() == 1
        stats = pool.poolStats()
        assert (stats.closed, stats.discarded.caller) == (1, 1)
    finally:
        await pool.close()


@pytest_twisted.ensureDeferred
async def test_password(securedRedis: RedisProcess) -> None:
    """
    With the right password the pool works; with a wrong one whenReady() fails at once
    with the server's refusal, and requests fail after a few spaced attempts instead of
    hammering the server.
    """
    good = RedisPool(securedRedis.endpoint, password="s3cret", db=1)
    bad = RedisPool(
        securedRedis.endpoint, password="wrong", minClients=1, maxClients=10, failFastAfter=3
    )
    try:
        assert await good.set(b"it:secret", b"v") is True
        started = reactor.seconds()
        failure = await failureOf(bad.whenReady())
        assert reactor.seconds() - started < 1.0
        assert failure.check(ServerUnavailableError)
        assert isinstance(failure.value.__cause__, AuthenticationError)
        assert "WRONGPASS" in str(failure.value)
        results = [await failureOf(bad.get(b"it:secret")) for _ in range(20)]
        assert all(r.check(ServerUnavailableError) for r in results)
        stats = (await good.info("stats"))["total_connections_received"]
        assert int(stats) <= 6
        noPassword = RedisPool(securedRedis.endpoint, failFastAfter=1)
        refused = await failureOf(noPassword.get(b"it:secret"))
        assert isinstance(refused.value, ResponseError) and refused.value.code == "NOAUTH"
        await noPassword.close()
    finally:
        await good.close()
        await bad.close()
