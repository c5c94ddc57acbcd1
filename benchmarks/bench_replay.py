"""Replay benchmark: ``replay --verify`` speed (events/s) and peak memory over a large log.

    .venv/bin/python benchmarks/bench_replay.py --events 1000000 \
        --database-url postgresql://postgres@127.0.0.1:5432/postgres

Generates a session with the real machines (``simulate()``: signal + risk + paper over a
generated two-symbol market with a clock every 5 s), bulk-appends it into a throwaway database it
creates (and drops unless ``--keep``), then runs the ``replay`` command line in a child process:
``--verify -q`` (re-decide every step, compare, hash chain in a worker fed the same chunks) and
the plain walk ``-q``. Prints events/s, the CPU seconds of the replay process and its worker (the
figure to compare on a busy machine) and the peak resident memory of the replay process (polled)
and of its chain-check worker. Never part of the test suite: timings vary by machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aggregates import events as ev
from aggregates.config import parse_config
from aggregates.envelope import NewEvent, RecordedEvent
from aggregates.machine import record
from aggregates.paper import PaperExchange
from aggregates.risk import RiskMachine
from aggregates.signal import SignalMachine
from aggregates.simulation import simulate
from eventstore import EventStore
from eventstore.admin import create_database, drop_database
from eventstore.migrations import upgrade_async
from tests.unit.strategies import REPLAY_VALUES

GOAL_EVENTS_PER_SECOND = 200_000
START_MS = 1_748_822_400_000  # 2025-06-02T00:00:00Z


def market(inputs: int, seed: int = 7) -> Iterator[RecordedEvent]:
    """``inputs`` market events (a generator: bounded memory), as the ledger would record them."""
    rng = random.Random(seed)
    # One symbol: long same-stream runs make the bulk append fast; the machines' work per event
    # (every tick stepped by signal, risk and paper) is the same as with many symbols.
    symbols = ("BTC_USDT",)
    price = {"BTC_USDT": Decimal(60000), "ETH_USDT": Decimal(3000)}
    step = {"BTC_USDT": Decimal("0.1"), "ETH_USDT": Decimal("0.01")}
    drift = dict.fromkeys(symbols, 0)
    yield record(parse_config(REPLAY_VALUES).activated(START_MS, "benchmark"), 1)
    position, at, next_clock = 1, START_MS, START_MS
    while position < inputs:
        at += rng.randint(200, 800)
        while next_clock <= at:
            position += 1
            yield record(ev.ClockTicked(at_ms=next_clock), position)
            next_clock += 5_000
        symbol = rng.choice(symbols)
        if rng.random() < 0.01:
            drift[symbol] = rng.choice([-6, -3, 0, 0, 3, 6])
        move = (drift[symbol] + rng.randint(-10, 10)) * price[symbol] / 100_000
        price[symbol] = max(step[symbol], (price[symbol] + move).quantize(step[symbol]))
        position += 1
        yield record(
            ev.TradeTicked(
                at_ms=at,
                symbol=symbol,
                price=price[symbol],
                contracts=Decimal(rng.randint(1, 400)),
                taker_side=rng.choice(["buy", "sell"]),
                position_effect="open",
            ),
            position,
        )


def _new(recorded: RecordedEvent) -> NewEvent:
    return NewEvent(
        event=recorded.event,
        event_id=recorded.event_id,
        occurred_at=recorded.occurred_at,
        causation_id=recorded.causation_id,
        causation_position=recorded.causation_position,
        correlation_id=recorded.correlation_id,
    )


async def generate(url: str, events: int, chunk: int = 5000) -> int:
    """Append the simulated session (positions as simulated: appends issued in log order)."""
    store = await EventStore.connect(url)
    started = time.perf_counter()
    try:
        log = simulate([SignalMachine(), RiskMachine(), PaperExchange()], market(events))
        pending: list[RecordedEvent] = []
        done = 0
        # ``market`` stops after ``events`` inputs and every decision they caused is appended:
        # a log cut in the middle of a decision would (rightly) fail --verify at its tail.
        for recorded in log:
            pending.append(recorded)
            if len(pending) >= chunk:
                done += await _append(store, pending)
                pending = []
                if done % 100_000 < chunk:
                    rate = done / (time.perf_counter() - started)
                    print(f"  generated {done:,} events ({rate:,.0f}/s)", flush=True)
        if pending:
            done += await _append(store, pending)
        head, _ = await store.head()
        return head
    finally:
        await store.close()


async def _append(store: EventStore, chunk: list[RecordedEvent]) -> int:
    """One request per run of same-stream events, all issued in log order (group commit)."""
    runs: list[tuple[str, list[NewEvent]]] = []
    for recorded in chunk:
        if runs and runs[-1][0] == recorded.stream:
            runs[-1][1].append(_new(recorded))
        else:
            runs.append((recorded.stream, [_new(recorded)]))
    positions = await asyncio.gather(*(store.append(stream, news) for stream, news in runs))
    if positions[0][0] != chunk[0].position or positions[-1][-1] != chunk[-1].position:
        raise SystemExit("appended positions differ from the simulated ones: not a fresh ledger?")
    return len(chunk)


def run_replay(url: str, *options: str) -> tuple[float, int, int, int, float]:
    """Run the CLI; (seconds, exit code, peak RSS of replay, peak RSS of its children, CPU s).

    The CPU seconds (user + system of the replay process and its chain-check worker) are what
    to compare on a busy machine: wall time there depends on what else runs.
    """
    command = [sys.executable, "-m", "cli.replay", "--from", "2025-06-02", "-q", *options]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    child = psutil.Popen(
        [*command, "--database-url", url],
        stdout=subprocess.DEVNULL,
        cwd=Path(__file__).resolve().parent.parent,
    )
    peak = peak_children = 0
    while child.poll() is None:
        try:
            peak = max(peak, child.memory_info().rss)
            for sub in child.children(recursive=True):
                peak_children = max(peak_children, sub.memory_info().rss)
        except psutil.Error:
            pass
        time.sleep(0.1)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return seconds, child.returncode, peak, peak_children, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="a server URL; the benchmark creates and drops its own database there",
    )
    parser.add_argument("--events", type=int, default=1_000_000, help="log size (events)")
    parser.add_argument("--keep", action="store_true", help="keep the generated database")
    parser.add_argument("--reuse", metavar="URL", help="replay an existing generated ledger")
    parser.add_argument("--skip-walk", action="store_true", help="only the --verify run")
    parser.add_argument(
        "--breakdown", action="store_true", help="also time the read and each machine alone"
    )
    parser.add_argument(
        "--in-memory", action="store_true",
        help="no database: verify + walk over simulate() output (memory over --events)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.in_memory:
        in_memory(args.events)
        return

    name = f"claire_bench_replay_{secrets.token_hex(4)}"
    url = args.reuse
    if url is None:
        url = asyncio.run(create_database(args.database_url, name))
        asyncio.run(upgrade_async(url))
        print(f"generating ~{args.events:,} events with simulate() into {name} ...", flush=True)
        started = time.perf_counter()
        head = asyncio.run(generate(url, args.events))
        print(f"  {head:,} events in {time.perf_counter() - started:,.0f} s", flush=True)
    try:
        runs = [("replay --verify -q", ("--verify",))]
        if not args.skip_walk:
            runs.append(("replay -q (walk only)", ()))
        head = asyncio.run(_head(url))
        print(f"\nreplay over {head:,} events (python {sys.version.split()[0]}):")
        for label, options in runs:
            seconds, code, peak, children, cpu = run_replay(url, *options)
            rate = head / seconds
            goal = f" (goal {GOAL_EVENTS_PER_SECOND:,})" if "verify" in label else ""
            print(
                f"  {label:<24} exit {code}  {seconds:8.1f} s  {rate:>10,.0f} events/s{goal}  "
                f"CPU {cpu:5.1f} s  peak RSS {peak / 2**20:6.0f} MiB (chain-check worker "
                f"{children / 2**20:.0f} MiB)",
                flush=True,
            )
        if args.breakdown:
            print("where the time goes (in-process, one machine at a time):")
            asyncio.run(breakdown(url))
    finally:
        if args.reuse is None and not args.keep:
            asyncio.run(drop_database(args.database_url, name))
        elif args.reuse is None:
            print(f"kept: {url}")


async def breakdown(url: str) -> None:
    """In this process: the read alone, then the read plus each machine alone (events/s)."""
    stages: list[tuple[str, object]] = [
        ("read + decode only", None),
        ("read + signal", SignalMachine()),
        ("read + risk", RiskMachine()),
        ("read + paper", PaperExchange()),
    ]
    store = await EventStore.connect(url, max_connections=1)
    try:
        for label, machine in stages:
            started = time.perf_counter()
            count = 0
            state = machine.initial() if machine is not None else None  # type: ignore[attr-defined]
            async for fact in store.read_all(batch_size=5000):
                count += 1
                if machine is not None and not machine.owns(fact.event):  # type: ignore[attr-defined]
                    state, _ = machine.step(state, fact)  # type: ignore[attr-defined]
            rate = count / (time.perf_counter() - started)
            print(f"  {label:<24} {rate:>10,.0f} events/s", flush=True)
    finally:
        await store.close()


def in_memory(events: int) -> None:
    """``--verify``'s fold and comparison plus the walk over a simulated log, no database.

    Shows that replay's own memory stays flat however long the log (the database read is
    batched by construction); prints the peak RSS as the log grows.
    """
    import resource

    from replay.verify import Verifier
    from replay.walk import Tally

    log = simulate([SignalMachine(), RiskMachine(), PaperExchange()], market(events))
    verifier = Verifier(1, 1 << 62)
    tally = Tally()
    started = time.perf_counter()
    count = 0
    for fact in log:
        count += 1
        verifier.feed(fact)
        tally.add(fact, verifier.portfolio())
        if count % 1_000_000 == 0:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            rate = count / (time.perf_counter() - started)
            print(f"  {count:>12,} events  {rate:>8,.0f} events/s (incl. simulate)  "
                  f"peak RSS {peak:,.0f} MiB", flush=True)  # fmt: skip
    verifier.last = count
    result = verifier.finish()
    print(f"  done: {count:,} events, {result.decisions_checked:,} decisions checked, "
          f"divergence: {result.divergence is not None}")  # fmt: skip


async def _head(url: str) -> int:
    store = await EventStore.connect(url, max_connections=1)
    try:
        return (await store.head())[0]
    finally:
        await store.close()


if __name__ == "__main__":
    main()
