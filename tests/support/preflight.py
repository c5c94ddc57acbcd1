"""A ``preflight.passed`` whose content has the shape of a real pass (for the live gate's tests).

It is, on purpose, exactly the forgery docs/LIVE.md admits the gate cannot tell apart: every
required check named with figures, events played, the bundled tape's digest. Tests that are not
about the preflight use it to get past the gate without playing the tape (about a minute).
"""

from __future__ import annotations

from aggregates import events as ev
from pipeline.preflight import bundled_tape_sha256

CHECKS = (
    "hash chain intact over 1234 events",
    "re-deciding the log gives what was recorded",
    "the configuration was activated",
    "900 trades ingested",
    "12 signals",
    "12 orders",
    "12 fills",
    "every order was answered",
    "every fill traces back through its order to the market event that caused it",
    "the read models equal a rebuild from scratch",
)


def passed_preflight(
    code_version: str,
    *,
    events: int = 1234,
    checks: tuple[str, ...] = CHECKS,
    tape_sha256: str | None = None,
    at_ms: int = 1_760_000_000_000,
) -> ev.PreflightPassed:
    return ev.PreflightPassed(
        at_ms=at_ms,
        code_version=code_version,
        tape="demo_tape.jsonl.gz",
        tape_sha256=tape_sha256 or bundled_tape_sha256(),
        events=events,
        checks=checks,
    )
