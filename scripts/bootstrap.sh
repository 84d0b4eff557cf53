#!/bin/sh
# Prepare this checkout: the servers the tests and benchmarks run (memcached, nutcracker,
# redis-server and wrk, from apt-get when missing), a virtual environment in .venv, and the
# package with its development dependencies installed into it.
set -eu
cd "$(dirname "$0")/.."

asRoot() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

aptUpdated=
aptInstall() {
    if [ -z "$aptUpdated" ]; then
        asRoot apt-get update -q
        aptUpdated=1
    fi
    DEBIAN_FRONTEND=noninteractive asRoot apt-get install -y -q "$@"
}

missing=
for pair in memcached:memcached nutcracker:nutcracker redis-server:redis-server wrk:wrk; do
    if ! command -v "${pair%%:*}" >/dev/null 2>&1; then
        missing="$missing ${pair#*:}"
    fi
done
if [ -n "$missing" ]; then
    # shellcheck disable=SC2086
    aptInstall $missing
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    if ! "$PYTHON" -m venv .venv; then
        rm -rf .venv
        aptInstall python3-venv
        "$PYTHON" -m venv .venv
    fi
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[dev]'
