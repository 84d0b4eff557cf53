#!/bin/sh
# The demonstration: memcached, the example web application under load, the pool's statistics.
set -eu
cd "$(dirname "$0")/.."
./scripts/bootstrap.sh
.venv/bin/python examples/demo.py "$@"
