"""The decimal arithmetic of every decision, pinned in one place.

Decisions are folds of the log that must give the same bytes on every machine and every replay
(STYLE.md principle 1). :mod:`decimal` arithmetic depends on a thread's *context* (precision,
rounding, traps), which any library or a user's code may change; a decision computed at 6 digits
or with a silent NaN would replay differently. So the context is fixed here and installed when
:mod:`aggregates` is imported: for the importing thread and, through ``DefaultContext``, for every
thread started afterwards. :func:`pin` re-installs it (e.g. in a thread started before the
import); ``tests/unit/aggregates/test_numeric.py`` checks the values and that decisions follow them.

The values are Python's own defaults, written out so that they are a decision of this project:
28 significant digits, banker's rounding, and an exception (never a NaN or an infinity) for an
invalid operation, a division by zero or an overflow.
"""

from __future__ import annotations

import decimal
from decimal import ROUND_HALF_EVEN, Context, DivisionByZero, Inexact, InvalidOperation, Overflow

PRECISION = 28
ROUNDING = ROUND_HALF_EVEN
TRAPS = (InvalidOperation, DivisionByZero, Overflow)
EMIN = -999_999
EMAX = 999_999


def decision_context() -> Context:
    """A fresh copy of the pinned context (contexts are mutable: never share one)."""
    return _context(PRECISION, TRAPS)


def _context(precision: int, traps: tuple[type[decimal.DecimalException], ...]) -> Context:
    return Context(
        prec=precision,
        rounding=ROUNDING,
        Emin=EMIN,
        Emax=EMAX,
        capitals=1,
        clamp=0,
        flags=[],
        traps=list(traps),
    )


#: Counts (contracts filled, held) are summed exactly up to this many significant digits; beyond,
#: ``Inexact`` raises. The pinned 28 digits would round the sum of a 30-digit order's fills and
#: judge an exact fill an overfill (the ledger accepts any finite Decimal). Money stays at 28.
EXACT_DIGITS = 200


def exact_context() -> Context:
    """A context whose additions are exact or raise ``Inexact`` (never a silent rounding)."""
    return _context(EXACT_DIGITS, (*TRAPS, Inexact))


def pin() -> None:
    """Install the pinned context for this thread and as the default for new threads."""
    default = decimal.DefaultContext
    default.prec = PRECISION
    default.rounding = ROUNDING
    default.Emin = EMIN
    default.Emax = EMAX
    default.clamp = 0
    default.traps = dict.fromkeys(default.traps, False) | dict.fromkeys(TRAPS, True)
    decimal.setcontext(decision_context())


def is_pinned(context: Context | None = None) -> bool:
    """Whether ``context`` (the current one by default) computes as decisions must."""
    ctx = context if context is not None else decimal.getcontext()
    traps = {signal for signal, on in ctx.traps.items() if on}
    return (
        ctx.prec == PRECISION
        and ctx.rounding == ROUNDING
        and ctx.Emin == EMIN
        and ctx.Emax == EMAX
        and traps == set(TRAPS)
    )


__all__ = [
    "EXACT_DIGITS",
    "PRECISION",
    "ROUNDING",
    "TRAPS",
    "decision_context",
    "exact_context",
    "is_pinned",
    "pin",
]
