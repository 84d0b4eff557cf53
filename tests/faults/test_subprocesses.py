"""
Faults that need a process of their own: the reactor shutting down with work pending, and the
client running out of file descriptors (EMFILE) under a lowered RLIMIT_NOFILE.
"""

from __future__ import annotations

import json

import pytest_twisted

from tests.faults.support import Child, FullListener, outcome, pause
from txconnpool.memcache.testing import MemcachedProcess

SHUTDOWN = """
import json, sys, time
from twisted.internet import reactor
from twisted.internet.defer import gatherResults
from txconnpool.memcache import MemCachePool

memcachedEndpoint, hangingEndpoint = sys.argv[1:3]
pool = MemCachePool(
    memcachedEndpoint, maxClients=2, shutdownTimeout=0.5, maxRequestsPerClient=1
)
connecting = MemCachePool(hangingEndpoint, maxClients=1, connectTimeout=None)
outcomes = {}
stopped = []

def record(name):
    def done(result):
        outcomes[name] = type(getattr(result, "value", result)).__name__
    return done

def ready(_):
    print("READY", flush=True)
    sys.stdin.readline()
    for i in range(2):
        pool.get(b"shutdown").addBoth(record(f"inFlight{i}"))
    for i in range(3):
        pool.get(b"shutdown").addBoth(record(f"queued{i}"))
    connecting.get(b"shutdown").addBoth(record("connecting"))
    stopped.append(time.monotonic())
    reactor.callLater(0, reactor.stop)

gatherResults([pool.set(b"shutdown", b"v"), pool.version()]).addCallback(ready)
reactor.run()
print("OUTCOMES", json.dumps(outcomes, sort_keys=True), flush=True)
print("ELAPSED", time.monotonic() - stopped[0], flush=True)
for p in (pool, connecting):
    s = p.poolStats()
    print("STATS", s.busy, s.idle, s.connecting, s.waiting, flush=True)
"""


@pytest_twisted.ensureDeferred
async def test_reactorShutdownWithWorkPending(freshMemcached: MemcachedProcess) -> None:
    """
    Stopping the reactor with requests in flight to a hung server, queued, and waiting on a
    hanging connection attempt: queued and connecting ones fail with PoolClosedError, those
    in flight with ConnectionLostError after shutdownTimeout, and the process exits.
    """
    listener = FullListener()
    child = Child(SHUTDOWN, freshMemcached.endpoint, listener.endpoint)
    try:
        await child.line("READY")
        await pause(freshMemcached)
        child.write("\n")
        (exited,) = await outcome(child.exited, deadline=20)
    finally:
        child.kill()
        listener.close()
    code, out, err = exited
    assert code == 0, err
    lines = dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
    assert json.loads(lines["OUTCOMES"]) == {
        "connecting": "PoolClosedError",
        "inFlight0": "ConnectionLostError",
        "inFlight1": "ConnectionLostError",
        "queued0": "PoolClosedError",
        "queued1": "PoolClosedError",
        "queued2": "PoolClosedError",
    }
    assert 0.5 <= float(lines["ELAPSED"]) < 3.0
    assert out.count("STATS 0 0 0 0") == 2, out


EMFILE = """
import errno, os, resource, sys
from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred, gatherResults
from tests.faults.support import ObservedBackoff, later, outcome
from txconnpool.memcache import MemCachePool

soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(128, hard), hard))
hog = []

def exhaust():
    try:
        while True:
            hog.append(os.open(os.devnull, os.O_RDONLY))
    except OSError as e:
        return errno.errorcode[e.errno]

def release():
    while hog:
        os.close(hog.pop())

def describe(box):
    (result,) = box
    value = getattr(result, "value", result)
    cause = getattr(value, "__cause__", None)
    errnum = getattr(cause, "osError", None) or (cause.args[0] if cause else None)
    return f"{type(value).__name__} {type(cause).__name__} {errnum}"

async def main():
    policy = ObservedBackoff(lambda attempt: 0.1)
    pool = MemCachePool(
        sys.argv[1], maxClients=2, failFastAfter=2, retryPolicy=policy, maxRequestsPerClient=1
    )
    print("EXHAUSTED", exhaust(), flush=True)
    print("WAITING", describe(await outcome(pool.get(b"emfile"), 10)), flush=True)
    print("ATTEMPTS", len(policy.delays), flush=True)
    fast = pool.get(b"emfile")
    print("FAST", fast.called, describe(await outcome(fast, 10)), flush=True)
    release()
    await policy.due()
    print("RECOVERED", await pool.set(b"emfile", b"v"), flush=True)
    print("EXHAUSTED-AGAIN", exhaust(), flush=True)
    both = await gatherResults([pool.get(b"emfile"), pool.get(b"emfile")])
    print("DEGRADED", both, len(policy.delays), flush=True)
    release()
    await pool.close()
    s = pool.poolStats()
    print("STATS", s.busy, s.idle, s.connecting, s.waiting, s.created, s.closed, flush=True)

def stop(result):
    if hasattr(result, "getTraceback"):
        print(result.getTraceback(), file=sys.stderr, flush=True)
    reactor.stop()

reactor.callWhenRunning(lambda: ensureDeferred(main()).addBoth(stop))
reactor.run()
"""


@pytest_twisted.ensureDeferred
async def test_clientOutOfFileDescriptors(memcached: MemcachedProcess) -> None:
    """
    A client out of file descriptors (EMFILE) cannot open connections: requests with no
    connection open fail with ServerUnavailableError caused by ConnectBindError after
    failFastAfter attempts, then fail fast; open connections keep serving; once descriptors
    are free again the pool recovers by itself.
    """
    child = Child(EMFILE, memcached.endpoint)
    try:
        (exited,) = await outcome(child.exited, deadline=20)
    finally:
        child.kill()
    code, out, err = exited
    assert code == 0, err
    lines = dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
    assert lines["EXHAUSTED"] == "EMFILE", out
    assert lines["WAITING"] == "ServerUnavailableError ConnectBindError 24", out
    assert lines["ATTEMPTS"] == "2"
    assert lines["FAST"] == "True ServerUnavailableError ConnectBindError 24"
    assert lines["RECOVERED"] == "True"
    assert lines["EXHAUSTED-AGAIN"] == "EMFILE"
    assert lines["DEGRADED"] == "[(0, b'v'), (0, b'v')] 3", out
    assert lines["STATS"] == "0 0 0 0 1 1", out
