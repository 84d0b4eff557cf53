"""
The memcached client benchmark: C{MemCachePool} (default settings and exclusive checkout)
against a raw pipelined Twisted C{MemCacheProtocol} connection and asyncio clients (aiomcache,
emcache on uvloop), on a memcached server of its own.

Run it from the repository root::

    .venv/bin/python -m benchmarks.memcache            # the full run (several minutes)
    .venv/bin/python -m benchmarks.memcache --quick    # a smoke run
    .venv/bin/python -m benchmarks.memcache --help     # every flag

It writes C{benchmarks/results/memcache.md} (also printed) and C{benchmarks/results/memcache.png}.
See L{benchmarks.memcache.run} for what is measured and how.
"""
