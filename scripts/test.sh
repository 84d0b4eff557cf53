#!/bin/sh
# The whole test suite: lint, type checks, the documentation build, and every test.
set -eu
cd "$(dirname "$0")/.."
./scripts/bootstrap.sh
echo "== ruff"
.venv/bin/ruff check txconnpool tests examples benchmarks docs/conf.py docs/_scripts
echo "== mypy --strict"
.venv/bin/mypy --strict txconnpool
echo "== sphinx (warnings are errors)"
.venv/bin/sphinx-build -q -W --keep-going -b html docs docs/_build/html
echo "== pytest"
.venv/bin/pytest "$@"
