"""One streaming pass over the ledger: the walk, and with ``--verify`` the re-decision check.

The log is read once from position 1 (state as of ``--from`` is a fold of everything before it),
in batches, in bounded memory. With ``--verify`` the hash chain is checked at the same time in a
worker process fed the same chunks (:mod:`replay.chain`), so it costs the other core and no
second read.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

import msgspec

from aggregates.envelope import RecordedEvent
from eventstore import EventStore
from replay.chain import ChainWorker
from replay.start import SnapshotChecks, Start, later_snapshots, snapshot_start
from replay.verify import Verifier, VerifyResult, rare_collections, verification_machines
from replay.walk import DayStats, Summary, Tally, describe, matches
from replay.window import Window

_json = msgspec.json.Encoder(decimal_format="string")


class Output:
    """Text for people, or JSON lines (``--json``) for machines; never both."""

    def __init__(self, stream: TextIO, *, json: bool) -> None:
        self.stream = stream
        self.json = json

    def emit(self, record: dict[str, Any], text: str) -> None:
        if self.json:
            self.stream.write(_json.encode(record).decode() + "\n")
        else:
            self.stream.write(text + "\n")

    def text(self, text: str) -> None:
        if not self.json:
            self.stream.write(text + "\n")


class Progress:
    """A progress bar on stderr, only when stderr is a terminal (the bar reads the clock)."""

    def __init__(self, label: str, total: int, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty()
        self.label = label
        self.total = max(total, 1)
        self._next = 0.0
        self._started = time.monotonic()

    def update(self, position: int) -> None:
        """Called once per batch read: redraws at most five times a second."""
        if not self.enabled:
            return
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + 0.2
        done = min(position / self.total, 1.0)
        filled = int(done * 30)
        rate = position / max(now - self._started, 1e-9)
        self.stream.write(
            f"\r{self.label} [{'#' * filled}{'.' * (30 - filled)}] {100 * done:5.1f}% "
            f"{position}/{self.total} ({rate:,.0f} events/s)"
        )
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r" + " " * 100 + "\r")
            self.stream.flush()


@dataclass(slots=True)
class PassResult:
    summary: Summary
    verify: VerifyResult | None
    events_read: int
    tally: Tally


Sink = Callable[[RecordedEvent], None]


async def replay_pass(
    store: EventStore,
    window: Window,
    out: Output,
    *,
    symbol: str | None = None,
    verify: bool = False,
    database_url: str | None = None,
    quiet: bool = False,
    sinks: tuple[Sink, ...] = (),
    batch_size: int = 5000,
    snapshots: bool = False,
) -> PassResult:
    """Walk the window (printing what happened); with ``verify``, re-decide and compare.

    ``snapshots``: start from verified snapshots at or before the window when every machine has
    one (:mod:`replay.start`), and with ``verify`` check each later snapshot the fold passes.
    """
    tally = Tally(symbol=symbol)
    verifier = Verifier(window.first, window.last) if verify else None
    first, last = window.first, window.last
    start = await _start(store, window, out, verifier, tally) if snapshots else None
    after = start.position if start is not None else 0
    later = (
        await later_snapshots(store, verification_machines(), after, last)
        if verifier is not None and snapshots
        else None
    )
    next_snapshot = later.next_position if later is not None else 1 << 62
    chain = (
        ChainWorker(database_url, start=(after, start.chain_hash) if start else None)
        if verifier is not None and database_url
        else None
    )
    progress = Progress("replay", window.last if verifier is None else window.head)
    read = 0
    # Bound once: this loop runs per event, so every lookup saved here counts.
    feed = verifier.feed if verifier is not None else None
    folded_portfolio = verifier.portfolio if verifier is not None else None
    add = tally.add
    show = progress.update if progress.enabled else None
    try:
        with rare_collections():
            async with contextlib.aclosing(
                store.read_all_batches(
                    after=after, batch_size=batch_size, chunks=chain.submit if chain else None
                )
            ) as batches:
                async for batch in batches:
                    read += len(batch)
                    for fact in batch:
                        position = fact.position
                        folded = None
                        if feed is not None:
                            feed(fact)
                            folded = folded_portfolio()  # type: ignore[misc]
                            if position >= next_snapshot:  # a snapshot to reproduce
                                later.check(position, _states(verifier))  # type: ignore[union-attr,arg-type]
                                next_snapshot = later.next_position  # type: ignore[union-attr]
                        if position < first:
                            tally.prime(fact, folded)
                        elif position <= last:
                            ended = add(fact, folded)
                            if ended is not None:
                                _day(out, ended)
                            for sink in sinks:
                                sink(fact)
                            if not quiet and matches(fact, symbol):
                                line = describe(fact)
                                if line is not None:
                                    out.emit(line, f"#{position:>8} {line['at']}  {line['text']}")
                        elif verifier is None or verifier.done(position):
                            break
                    else:  # the whole batch was used: on to the next one
                        if show is not None:
                            show(batch[-1].position)
                        continue
                    break  # the inner loop stopped the read
        progress.close()
        day = tally.finish()
        if day is not None:
            _day(out, day)
        if later is not None and verifier is not None:
            _report_snapshots(verifier, later, out)
        result = verifier.finish() if verifier is not None else None
        if chain is not None and result is not None:
            ok, checked, first_bad, problem = await chain.result()
            result.chain_ok, result.chain_checked = ok, checked
            result.chain_first_bad, result.chain_problem = first_bad, problem
    finally:
        if chain is not None:
            chain.close()
    return PassResult(summary=tally.summary, verify=result, events_read=read, tally=tally)


async def _start(
    store: EventStore, window: Window, out: Output, verifier: Verifier | None, tally: Tally
) -> Start | None:
    """Start from snapshots before the window: the machines' states, the walk's portfolio.

    The walk alone needs only the risk machine's (its portfolio); ``--verify`` needs every
    machine's it re-runs.
    """
    machines = verification_machines()
    if verifier is None:
        machines = [m for m in machines if m.name == "risk"]
    start = await snapshot_start(store, machines, window.first)
    if start is None:
        return None
    if verifier is not None:
        for check in verifier.checks:
            check.state = start.states[check.name]
    risk = start.states["risk"]
    tally.portfolio = risk.portfolio
    tally.trading_state = risk.trading_state
    out.emit(
        {"type": "snapshot_start", "position": start.position, "snapshots": start.used},
        start.describe(),
    )
    return start


def _states(verifier: Verifier) -> dict[str, Any]:
    return {c.name: c.state for c in verifier.checks if c.enabled is not False}


def _report_snapshots(verifier: Verifier, later: SnapshotChecks, out: Output) -> None:
    """Each later snapshot the fold did not reproduce is a divergence at its position."""
    checks = {c.name: c for c in verifier.checks}
    for mismatch in later.mismatches:
        verifier._diverged(
            checks[mismatch.machine], mismatch.position, 1 << 30, mismatch.problem, None, None
        )
    out.emit(
        {"type": "snapshots_checked", "checked": later.checked, "bad": len(later.mismatches)},
        f"snapshots reproduced by the fold: {later.checked - len(later.mismatches)} of "
        f"{later.checked}",
    )


def _day(out: Output, day: DayStats) -> None:
    out.emit(day.to_json(), day.render())
