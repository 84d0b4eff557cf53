"""
C{python -m benchmarks.memcache}: run the memcached client benchmark.
"""

import sys

from .run import main

sys.exit(main())
