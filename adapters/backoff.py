"""Exponential backoff, written once: how long to wait before the next try.

Every loop that retries something the network or the ledger refused uses this schedule: the MEXC
feed's reconnects (with equal jitter, so many clients do not return in step), the REST client's
retries and order resends, the feed's holding of market events while the ledger is down, and the
supervisor restarting a service that lost the ledger. The loops differ in what they retry and when
they give up; the arithmetic of the wait is this module's alone.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

#: Exponents above this change nothing once capped, and would overflow a float without a cap.
_MAX_EXPONENT = 30


@dataclass(frozen=True)
class Backoff:
    """``initial * factor ** attempt`` seconds, at most ``cap``; attempt 0 is the first wait."""

    initial: float
    cap: float = math.inf
    factor: float = 2.0

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """The wait before try ``attempt + 1``; with ``rng``, equal jitter: half the step fixed,
        half drawn uniformly (one draw)."""
        step = min(self.cap, self.initial * self.factor ** min(attempt, _MAX_EXPONENT))
        if rng is None:
            return step
        return step / 2 + rng.uniform(0, step / 2)
