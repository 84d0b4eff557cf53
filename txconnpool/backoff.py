"""
Reconnection delays: exponential backoff with jitter, as a pure callable.
"""

from __future__ import annotations

import random
from collections.abc import Callable

__all__ = ["backoffPolicy"]


def backoffPolicy(
    initialDelay: float = 0.1,
    maxDelay: float = 10.0,
    factor: float = 2.0,
    jitter: Callable[[], float] = random.random,
) -> Callable[[int], float]:
    """
    Make a reconnection policy: the delay before retry number C{attempt} (0 for the first
    retry after a failure) grows as C{initialDelay * factor ** attempt}, varied by up to 25%
    either way by C{jitter} so that many clients do not retry in step, and never exceeds
    C{maxDelay}.

    This is the shape of Twisted's C{twisted.application.internet.backoffPolicy}, with
    proportional rather than additive jitter.

    @param initialDelay: Seconds before the first retry.
    @param maxDelay: The longest delay, in seconds.
    @param factor: How much each delay grows over the one before.
    @param jitter: A function returning a number in [0, 1); C{random.random} by default.
    @return: A function of the retry number (an C{int} from 0) returning seconds.
    @raise ValueError: A delay is negative, C{maxDelay} is less than C{initialDelay}, or
        C{factor} is less than 1.
    """
    if not 0 <= initialDelay <= maxDelay:
        raise ValueError(
            "backoffPolicy needs 0 <= initialDelay <= maxDelay, "
            f"got initialDelay={initialDelay!r}, maxDelay={maxDelay!r}"
        )
    if not factor >= 1:
        raise ValueError(f"backoffPolicy needs factor >= 1, got {factor!r}")

    def policy(attempt: int) -> float:
        base = initialDelay * factor ** min(attempt, 64)
        return float(min(maxDelay, base * (0.75 + 0.5 * jitter())))

    return policy
