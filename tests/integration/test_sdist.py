"""
The source distribution carries the license, documentation, examples, tests, benchmarks and
changelog, and a test runs from the unpacked sdist against the package it carries.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_sdistCarriesEverythingAndItsTestsRun(tmp_path: Path) -> None:
    """
    setup.py sdist builds an archive with LICENSE, CHANGELOG.rst, docs, examples, tests and
    benchmarks, whose metadata names the license, and a test from it passes when run in
    the unpacked tree, importing the txconnpool of that tree.
    """
    build = subprocess.run(
        [sys.executable, "setup.py", "-q", "egg_info", "--egg-base", str(tmp_path),
         "sdist", "--dist-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    [archive] = tmp_path.glob("txconnpool-*.tar.gz")
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / "unpacked", filter="data")
    [tree] = (tmp_path / "unpacked").iterdir()
    for name in (
        "LICENSE", "README.rst", "CHANGELOG.rst", "MANIFEST.in", "pyproject.toml", "setup.py",
        "docs/index.rst", "docs/conf.py", "docs/coming-from.rst", "examples/demo.py",
        "tests/conftest.py", "tests/helpers.py", "tests/integration/test_sdist.py",
        "benchmarks/memcache/README.md", "txconnpool/py.typed",
    ):
        assert (tree / name).is_file(), name
    assert "Apache License" in (tree / "LICENSE").read_text()
    assert "Apache-2.0" in (tree / "PKG-INFO").read_text()
    env = {**os.environ, "PYTHONPATH": str(tree)}
    where = subprocess.run(
        [sys.executable, "-c", "import txconnpool; print(txconnpool.__file__)"],
        cwd=tree, env=env, capture_output=True, text=True, timeout=60,
    )
    assert where.stdout.strip() == str(tree / "txconnpool" / "__init__.py")
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider",
         "tests/test_memcache_commands.py", "-k", "setMultiple"],
        cwd=tree, env=env, capture_output=True, text=True, timeout=300,
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert " passed" in tests.stdout
