"""Sweep benchmark: combinations per second of ``replay --sweep``, 1 and 2 workers, local and Dask.

    .venv/bin/python benchmarks/bench_sweep.py --session demo \
        --database-url postgresql://postgres@127.0.0.1:5432/postgres
    .venv/bin/python benchmarks/bench_sweep.py --session 1000000 --combinations 64 ...

Records a session into a throwaway database it creates and drops: ``demo`` is the bundled MEXC
demo tape parsed by the real protocol parser (with a clock every 5 s of market time) and run
through signal + risk + paper; a number is a generated session of about that many events
(``bench_replay.generate``). Then sweeps a grid of ``--combinations`` (64 by default: 8
STOP_LOSS_PCT x 8 MAX_POSITION_PCT) over the whole session with the same executors the command
uses: local processes with ``--jobs 1`` and ``--jobs 2``, and a ``LocalCluster`` of 2 worker
processes. Times include starting the workers and their one read of the ledger.

The raw limit is one combination run in this process over inputs already in memory: the rate
one core can give with no overhead. Each figure is also printed as a ratio to it (the machine
may be loaded by other work: compare ratios, not absolute rates). Never part of the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import secrets
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from aggregates import events as ev
from aggregates.envelope import RecordedEvent
from aggregates.machine import record_all
from aggregates.paper import PaperExchange
from aggregates.risk import RiskMachine
from aggregates.signal import SignalMachine
from aggregates.simulation import simulate
from eventstore.admin import create_database, drop_database
from eventstore.migrations import upgrade_async
from replay.sweep import (
    Source,
    Task,
    cluster_executor,
    local_executor,
    recorded_inputs,
    run_task,
    run_tasks,
)

GOAL_SPEEDUP = 1.8


def demo_events() -> list[ev.Event]:
    """The demo tape as the feed would record it: config, contracts, parsed pushes, a clock."""
    from adapters.mexc.protocol import MexcParser, Pushed
    from adapters.mexc.tape import DEMO_TAPE, demo_contract_specs, read_tape
    from pipeline.demo import demo_config

    tape = read_tape(DEMO_TAPE)
    start = tape[0].at_ms
    events: list[ev.Event] = [
        demo_config().activated(start, "bench_sweep"),
        *demo_contract_specs(start),
    ]
    parser = MexcParser()
    next_clock = start
    for entry in tape:
        while next_clock <= entry.at_ms:
            events.append(ev.ClockTicked(at_ms=next_clock))
            next_clock += 5_000
        parsed = parser.parse(entry.frame)
        if isinstance(parsed, Pushed):
            events.extend(parsed.events)
    return events


async def record_demo(url: str) -> int:
    from bench_replay import _append

    from eventstore import EventStore

    log: list[RecordedEvent] = list(
        simulate([SignalMachine(), RiskMachine(), PaperExchange()], record_all(demo_events()))
    )
    store = await EventStore.connect(url)
    try:
        for index in range(0, len(log), 5000):
            await _append(store, log[index : index + 5000])
        head, _ = await store.head()
        return head
    finally:
        await store.close()


def grid(count: int) -> list[tuple[tuple[str, str], ...]]:
    """``count`` combinations of STOP_LOSS_PCT x MAX_POSITION_PCT (a square grid if possible)."""
    side = max(1, int(count**0.5))
    combos = []
    for stop in range(side):
        for size in range((count + side - 1) // side):
            if len(combos) < count:
                combos.append(
                    (("STOP_LOSS_PCT", str(1 + stop)), ("MAX_POSITION_PCT", str(5 + 5 * size)))
                )
    return combos


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--database-url",
        help="a server URL; the benchmark creates and drops its own database there "
        "(default: an embedded PostgreSQL of its own in a temporary folder)",
    )
    parser.add_argument("--session", default="demo", help="'demo' or a number of events")
    parser.add_argument("--combinations", type=int, default=64)
    parser.add_argument("--skip-cluster", action="store_true")
    args = parser.parse_args()

    embedded = None
    if args.database_url is None:
        from adapters.embedded import start_postgres

        embedded = start_postgres(
            Path(tempfile.mkdtemp(prefix="claire-bench-pg-")) / "pgdata", delete_on_stop=True
        )
        args.database_url = embedded.url("postgres")
    try:
        bench(args)
    finally:
        if embedded is not None:
            embedded.stop()


def bench(args: argparse.Namespace) -> None:
    name = f"claire_bench_sweep_{secrets.token_hex(4)}"
    url = asyncio.run(create_database(args.database_url, name))
    try:
        asyncio.run(upgrade_async(url))
        started = time.perf_counter()
        if args.session == "demo":
            head = asyncio.run(record_demo(url))
        else:
            from bench_replay import generate

            head = generate(url, int(args.session))
        print(f"session {args.session}: {head:,} events recorded in "
              f"{time.perf_counter() - started:.0f} s", flush=True)  # fmt: skip
        source = Source(url, head)
        combos = grid(args.combinations)
        tasks = [Task(i, combo, 1, head) for i, combo in enumerate(combos)]

        recorded_inputs(source)  # the raw limit: in-process, inputs in memory, one core
        started = time.perf_counter()
        sample = tasks[: max(1, min(4, len(tasks)))]
        for task in sample:
            run_task(source, task)
        raw = len(sample) / (time.perf_counter() - started)
        print(f"raw limit (1 core, in process, inputs loaded): {raw:.2f} combinations/s")

        runs = [("--jobs 1", lambda: local_executor(1)), ("--jobs 2", lambda: local_executor(2))]
        cluster = None
        if not args.skip_cluster:
            from distributed import LocalCluster

            cluster = LocalCluster(
                n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
            )
            address = cluster.scheduler_address
            runs.append(("Dask LocalCluster 2", lambda: cluster_executor(address)))
        rates = {}
        try:
            for label, executor in runs:
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                started = time.perf_counter()
                results = run_tasks(executor, source, tasks)
                seconds = time.perf_counter() - started
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
                failed = sum(1 for r in results.values() if "figures" not in r)
                rates[label] = len(tasks) / seconds
                # Worker CPU: local pools are reaped at the end of each run (Dask's are not).
                busy = f", worker CPU {cpu:.1f} s" if "jobs" in label else ""
                print(
                    f"  {label:<20} {len(tasks)} combinations in {seconds:7.1f} s: "
                    f"{rates[label]:6.2f}/s ({rates[label] / raw:.2f} x raw){busy}, "
                    f"{failed} failed",
                    flush=True,
                )
        finally:
            if cluster is not None:
                cluster.close()
        speedup = rates["--jobs 2"] / rates["--jobs 1"]
        verdict = "met" if speedup >= GOAL_SPEEDUP else "MISSED"
        print(f"--jobs 2 / --jobs 1: {speedup:.2f} x (goal {GOAL_SPEEDUP} x: {verdict})")
        if "Dask LocalCluster 2" in rates:
            dask = rates["Dask LocalCluster 2"] / rates["--jobs 1"]
            print(f"Dask 2 workers / --jobs 1: {dask:.2f} x")
        print(f"CPUs: {os.cpu_count()}, load average: {os.getloadavg()}")
    finally:
        asyncio.run(drop_database(args.database_url, name))


if __name__ == "__main__":
    main()
