"""
mypy --strict (the project's configuration), with --disallow-any-expr on a user's module
(tests/typing/memcache_user.py, which says so in its first line), finds no error: no Any
reaches the user of MemCachePool or MetaMemCachePool, and every revealed type is the one its
comment names.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
USER_MODULE = ROOT / "tests" / "typing" / "memcache_user.py"


def test_noAnyReachesTheUser(tmp_path: Path) -> None:
    """
    The user's module type-checks under --strict and --disallow-any-expr, and mypy reveals
    each expression's type as its "# E:" comment says.
    """
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "cache"),
         "--no-error-summary", str(USER_MODULE.relative_to(ROOT))],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    revealed: dict[int, str] = {}
    problems = []
    for line in done.stdout.splitlines():
        match = re.match(r".*memcache_user\.py:(\d+): note: Revealed type is \"(.*)\"$", line)
        if match:
            revealed[int(match.group(1))] = match.group(2)
        else:
            problems.append(line)
    assert problems == [], "\n".join(problems)
    expected = {
        number: match.group(1)
        for number, text in enumerate(USER_MODULE.read_text().splitlines(), 1)
        if (match := re.search(r"# E: (.*)$", text))
    }
    assert len(expected) >= 50
    assert revealed == expected
    assert not any("Any" in type_ for type_ in revealed.values())
