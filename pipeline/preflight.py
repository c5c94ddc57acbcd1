"""``claire preflight``: no live operation without a passing end-to-end check of this code.

The specification allows live operation only after the end-to-end test passed. This makes that a
gate instead of a promise: the bundled MEXC tape is played through every service (feed, signal,
risk, paper execution, projector, relay, alerts) against a throwaway PostgreSQL and Redis of its
own (embedded, in a temporary folder: the operator's databases are never touched by the run),
and the outcome is checked the way ``tests/e2e`` checks it:

* the hash chain verifies; re-deciding every step of the log gives exactly what was recorded;
* the tape produced signals, orders and fills; every order was answered; every fill traces back
  through its order to the market (or clock) event that started the chain;
* the read models equal a rebuild from scratch.

When every check holds, a ``PreflightPassed`` event naming the code version (a digest of the
code's source files) goes into the operator's ledger. ``TRADING_MODE=live`` refuses to start
unless the ledger holds one for the running code version: changed code is checked again.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import shutil
import tempfile
import uuid
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from aggregates import events as ev
from aggregates.envelope import NewEvent, RecordedEvent, utc_from_ms
from eventstore import EventStore

#: The packages whose source makes up the code version (what runs when ``claire run`` runs).
CODE_PACKAGES = ("adapters", "aggregates", "cli", "eventstore", "pipeline", "projections", "replay")
STREAM = "preflight"


@cache
def code_version() -> str:
    """SHA-256 over every ``.py`` file of the code packages (relative path and content).

    Independent of git and of where the code is installed; any change to the code gives a new
    version, which needs its own passing preflight before it may trade live.
    """
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for package in CODE_PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            digest.update(path.relative_to(root).as_posix().encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


#: What a pass must name, each with the figures :func:`check_ledger` writes (the whole line).
#: A ``preflight.passed`` that lacks one (a hand-made one with no checks, no events) proves no
#: run happened, and opens no live gate.
REQUIRED_CHECKS = (
    r"hash chain intact over [1-9]\d* events",
    r"re-deciding the log gives what was recorded",
    r"the configuration was activated",
    r"[1-9]\d* trades ingested",
    r"[1-9]\d* signals",
    r"[1-9]\d* orders",
    r"[1-9]\d* fills",
    r"every order was answered",
    r"every fill traces back through its order to the market event that caused it",
    r"the read models equal a rebuild from scratch",
)


@cache
def bundled_tape_sha256() -> str:
    """SHA-256 of the bundled tape the preflight plays (``adapters/mexc/data``)."""
    from adapters.mexc.tape import DEMO_TAPE

    return hashlib.sha256(DEMO_TAPE.read_bytes()).hexdigest()


def unproven(passed: ev.PreflightPassed) -> list[str]:
    """Why this ``preflight.passed`` does not show that the run happened (empty: it does).

    The content must be what :func:`check_ledger` records for a passing run of the bundled tape:
    events played, every required check named with its figures, the tape's digest. This stops a
    stray or hand-made event opening the gate; it cannot stop a forger who copies a real one
    (anyone who may append to the ledger can write any event): see docs/LIVE.md.
    """
    problems = []
    if passed.events <= 0:
        problems.append("no events were played")
    missing = [p for p in REQUIRED_CHECKS if not any(re.fullmatch(p, c) for c in passed.checks)]
    if missing:
        problems.append(f"{len(missing)} of the {len(REQUIRED_CHECKS)} checks not named")
    if passed.tape_sha256 != bundled_tape_sha256():
        problems.append("not the bundled tape")
    return problems


@dataclass
class PreflightOutcome:
    """What the end-to-end run showed: ``problems`` empty means it passed."""

    events: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    checks: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems and bool(self.checks)

    def check(self, holds: bool, what: str) -> None:
        (self.checks if holds else self.problems).append(what)


async def latest_preflight(store: EventStore) -> ev.PreflightPassed | None:
    """The newest ``PreflightPassed`` for the running code version whose content proves the run
    (:func:`unproven` finds nothing), if any."""
    found = None
    async for recorded in store.read_stream(STREAM):
        event = recorded.event
        if (
            isinstance(event, ev.PreflightPassed)
            and event.code_version == code_version()
            and not unproven(event)
        ):
            found = event
    return found


async def require_preflight(database_url: str) -> ev.PreflightPassed:
    """The passing preflight live trading needs, or :class:`StartRefused` saying what to run."""
    from pipeline.startup import StartRefused

    async with await EventStore.connect(database_url, max_connections=1) as store:
        found = await latest_preflight(store)
        doubtful = [] if found is not None else await _unproven_passes(store)
    if found is None:
        why = f" (the one recorded proves no run: {'; '.join(doubtful)})" if doubtful else ""
        raise StartRefused(
            f"live trading needs a passing end-to-end check of this code (version "
            f"{code_version()[:12]}) in the ledger{why}: run `claire preflight` first"
        )
    return found


async def _unproven_passes(store: EventStore) -> list[str]:
    """What the newest ``preflight.passed`` for this code lacks, if one is there at all."""
    problems: list[str] = []
    async for recorded in store.read_stream(STREAM):
        event = recorded.event
        if isinstance(event, ev.PreflightPassed) and event.code_version == code_version():
            problems = unproven(event)
    return problems


def run_preflight(database_url: str, *, speed: float = 40.0) -> PreflightOutcome:
    """Play the bundled tape through every service on throwaway servers, check, record a pass."""
    from adapters.embedded import start_postgres, start_redis

    scratch = Path(tempfile.mkdtemp(prefix="claire-preflight-"))
    try:
        postgres = start_postgres(scratch / "postgres", delete_on_stop=True)
        try:
            redis = start_redis(scratch / "redis")
            try:
                outcome = asyncio.run(_run(postgres.url(), redis.url, speed))
            finally:
                redis.stop()
        finally:
            postgres.stop()
        if outcome.passed:
            asyncio.run(_record(database_url, outcome))
        return outcome
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


async def _run(server_url: str, redis_url: str, speed: float) -> PreflightOutcome:
    from pipeline.demo import _play

    _, throwaway_url = await _play(server_url, redis_url, speed)
    return await check_ledger(throwaway_url)


async def check_ledger(database_url: str) -> PreflightOutcome:
    """The end-to-end test's checks, on the ledger a tape run left behind."""
    from projections.postgres import readmodel_rows
    from projections.projector import rebuild
    from replay.verify import Verifier

    outcome = PreflightOutcome()
    async with await EventStore.connect(database_url) as store:
        recorded = [r async for r in store.read_all()]
        chain = await store.verify()
    outcome.events = len(recorded)
    counts = outcome.counts = Counter(r.event_type for r in recorded)
    outcome.check(chain.ok, f"hash chain intact over {chain.events_checked} events")
    verifier = Verifier(1, recorded[-1].position if recorded else 0)
    for fact in recorded:
        verifier.feed(fact)
    replayed = verifier.finish()
    outcome.check(
        replayed.divergence is None,
        "re-deciding the log gives what was recorded"
        + ("" if replayed.divergence is None else f" (first divergence: {replayed.divergence})"),
    )
    outcome.check(counts["config.activated"] >= 1, "the configuration was activated")
    outcome.check(counts["market.trade"] > 0, f"{counts['market.trade']} trades ingested")
    outcome.check(counts["signal.generated"] > 0, f"{counts['signal.generated']} signals")
    outcome.check(counts["order.requested"] > 0, f"{counts['order.requested']} orders")
    fills = counts["order.filled"] + counts["order.partially_filled"]
    outcome.check(fills > 0, f"{fills} fills")
    outcome.check(*_orders_answered(recorded))
    outcome.check(*_fills_traced(recorded))
    before = await readmodel_rows(database_url)
    await rebuild(database_url)
    outcome.check(
        before == await readmodel_rows(database_url) and any(before.values()),
        "the read models equal a rebuild from scratch",
    )
    return outcome


def _orders_answered(recorded: list[RecordedEvent]) -> tuple[bool, str]:
    answers = (ev.OrderAccepted, ev.OrderRejected, ev.OrderFilled, ev.OrderCancelled)
    answered = {r.event.client_order_id for r in recorded if isinstance(r.event, answers)}
    requested = {
        r.event.client_order_id for r in recorded if isinstance(r.event, ev.OrderRequested)
    }
    missing = sorted(requested - answered)
    return not missing, "every order was answered" + (f" (not: {missing[:5]})" if missing else "")


def _fills_traced(recorded: list[RecordedEvent]) -> tuple[bool, str]:
    by_id = {r.event_id: r for r in recorded}
    requests = {
        r.event.client_order_id: r for r in recorded if isinstance(r.event, ev.OrderRequested)
    }
    for fill in recorded:
        if not isinstance(fill.event, ev.OrderFilled | ev.OrderPartiallyFilled):
            continue
        link = requests.get(fill.event.client_order_id)
        while link is not None and link.causation_id is not None:
            cause = by_id.get(link.causation_id)
            if cause is None or cause.position != link.causation_position:
                link = None
                break
            link = cause
        if link is None or not isinstance(link.event, ev.TradeTicked | ev.ClockTicked):
            return False, f"fill at position {fill.position} does not trace back to the market"
    return True, "every fill traces back through its order to the market event that caused it"


async def _record(database_url: str, outcome: PreflightOutcome) -> int:
    from adapters.mexc.tape import DEMO_TAPE
    from pipeline.app import wall_clock_ms

    at_ms = wall_clock_ms()
    event = ev.PreflightPassed(
        at_ms=at_ms,
        code_version=code_version(),
        tape=DEMO_TAPE.name,
        tape_sha256=bundled_tape_sha256(),
        events=outcome.events,
        checks=tuple(check[:2000] for check in outcome.checks),
    )
    async with await EventStore.connect(database_url, max_connections=1) as store:
        (position,) = await store.append(
            STREAM, [NewEvent(event=event, event_id=uuid.uuid4(), occurred_at=utc_from_ms(at_ms))]
        )
    return position
