"""
The failure semantics page (docs/failures.rst) states the options' defaults and the
idempotent commands as the code has them.
"""

from __future__ import annotations

import inspect
import re

from tests.faults.support import ROOT
from txconnpool import Pool
from txconnpool.memcache import MemCachePool

PAGE = ROOT / "docs" / "failures.rst"


def test_optionDefaultsMatchTheCode() -> None:
    """
    Every option in the page's table has the default that Pool's constructor gives it.
    """
    rows = re.findall(r"\* - ``(\w+)``\n\s+- ``([^`]+)``", PAGE.read_text())
    parameters = inspect.signature(Pool.__init__).parameters
    assert len(rows) == 7
    for name, default in rows:
        assert repr(parameters[name].default) == default, name


def test_idempotentCommandsMatchTheCode() -> None:
    """
    The page names exactly MemCachePool's idempotent commands.
    """
    text = " ".join(PAGE.read_text().split())
    match = re.search(r"a stale connection: (.*?)\.", text)
    assert match is not None
    named = set(re.findall(r"``(\w+)``", match.group(1)))
    assert named == set(MemCachePool.idempotentMethods)
