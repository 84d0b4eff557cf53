"""
A pool closes itself when the reactor shuts down, and never keeps the process from exiting.
"""

from __future__ import annotations

import signal
import subprocess
import sys

from txconnpool.memcache.testing import MemcachedProcess

PROGRAM = """
import sys
from twisted.internet import reactor
from txconnpool.memcache import MemCachePool

pool = MemCachePool(sys.argv[1], maxClients=2, shutdownTimeout=0.5)
outcome = []

def ready(_):
    print("connected", flush=True)
    sys.stdin.readline()
    inFlight = pool.get(b"k")
    inFlight.addBoth(lambda r: outcome.append(type(getattr(r, "value", r)).__name__))
    reactor.callLater(0, reactor.stop)

pool.set(b"k", b"v").addCallback(ready)
reactor.run()
print("exited after", outcome, pool.poolStats())
"""


def test_shutdownWithRequestInFlightToAHungServer(freshMemcached: MemcachedProcess) -> None:
    """
    Stopping the reactor while a request waits on a server that stopped answering drops the
    connection after shutdownTimeout, fails the request, and lets the process exit.
    """
    child = subprocess.Popen(
        [sys.executable, "-c", PROGRAM, freshMemcached.endpoint],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert child.stdout is not None and child.stdin is not None
    try:
        assert child.stdout.readline() == "connected\n"
        freshMemcached.signal(signal.SIGSTOP)
        child.stdin.write("\n")
        child.stdin.flush()
        out, err = child.communicate(timeout=30)
    finally:
        freshMemcached.signal(signal.SIGCONT)
        if child.poll() is None:
            child.kill()
    assert child.returncode == 0, err
    assert "exited after ['ConnectionLostError']" in out
    assert "busy=0, idle=0, connecting=0, waiting=0" in out
