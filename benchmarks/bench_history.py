"""History benchmark (docs/SNAPSHOTS.md): restore and replay cost against the length of history.

    .venv/bin/python benchmarks/bench_history.py --events 1000000 10000000

For each size, generates a ledger with the real machines (``benchmarks/bench_replay.py``'s
market, ``simulate()`` and its COPY loaders), shifted in time so that every ledger **ends on the
same last day**, into a throwaway database on an embedded PostgreSQL of its own (or
``--database-url``), with the snapshots the services would have written (every ``--every``
events and at each UTC midnight, taken from the simulation's own states; ``replay --verify
--all`` checks that the fold reproduces each one). It measures, each with snapshots and without
(``--no-snapshots``, the fold from position 1; ``--baseline-max`` limits that to small sizes):

* the restore time of each decision service (``DecisionService.restore``: until it can decide);
* ``replay --from <last day> --verify -q`` (the CLI, in a child process);
* the latency a snapshot adds on the live path: encoding the state (the database write runs
  beside the decisions), against the time of one decision step.

Prints ratios against the fold from position 1 measured in the same run (timings vary with the
machine's load). Never part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import benchmarks.bench_replay as bench_replay
from aggregates.envelope import utc_from_ms
from aggregates.snapshot import CODECS
from eventstore import EventStore
from eventstore.admin import create_database, drop_database
from eventstore.migrations import upgrade_async
from eventstore.snapshots import Snapshots
from pipeline.decider import DecisionService
from replay.verify import verification_machines

#: The last day every generated ledger ends on (its events from midnight on).
LAST_DAY_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
#: Mean gap between events of the generated market (trades every 200..800 ms, a clock every 5 s).
MEAN_GAP_MS = 455


async def restore_seconds(url: str, name: str, use_snapshots: bool) -> tuple[float, int]:
    """(seconds until the service could decide, events folded)."""
    store = await EventStore.connect(url)
    try:
        machine = next(m for m in verification_machines() if m.name == name)
        service = DecisionService(
            machine,
            store,
            lambda position: None,  # type: ignore[arg-type,return-value]
            snapshots=Snapshots(store) if use_snapshots else None,
        )
        started = time.perf_counter()
        await service.restore()
        seconds = time.perf_counter() - started
        return seconds, service.progress.last_position - service.progress.snapshot_position
    finally:
        await store.close()


def snapshot_latency(url: str) -> None:
    """Encode time of each machine's state at the head vs its mean step time (the live path)."""

    async def states() -> dict[str, tuple[object, float, int]]:
        store = await EventStore.connect(url)
        out = {}
        try:
            for machine in verification_machines():
                state = machine.initial()
                steps = 0
                started = time.perf_counter()
                async for batch in store.read_all_batches():
                    for fact in batch:
                        if not machine.owns(fact.event):
                            state, _ = machine.step(state, fact)
                            steps += 1
                out[machine.name] = (state, time.perf_counter() - started, steps)
        finally:
            await store.close()
        return out

    for name, (state, seconds, steps) in asyncio.run(states()).items():
        codec = CODECS[name]
        rounds = 200
        started = time.perf_counter()
        for _ in range(rounds):
            data = codec.encode(state)
        encode = (time.perf_counter() - started) / rounds
        per_step = seconds / steps
        print(
            f"  snapshot of {name:<6} {len(data):>8,} bytes: encode {encode * 1e6:8.1f} µs "
            f"on the decision path = {encode / per_step:6.1f} mean steps (step incl. read "
            f"{per_step * 1e6:.2f} µs)",
            flush=True,
        )


def replay_seconds(url: str, day: str, *options: str) -> tuple[float, int]:
    seconds, code, _, _, _ = run_cli(url, day, *options)
    return seconds, code


def run_cli(url: str, day: str, *options: str) -> tuple[float, int, int, int, float]:
    """Run the ``replay`` CLI as ``bench_replay.run_replay`` does, on another day."""
    command = [sys.executable, "-m", "cli.replay", "--from", day, "-q", *options]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    child = subprocess.run(
        [*command, "--database-url", url],
        stdout=subprocess.DEVNULL,
        cwd=Path(__file__).resolve().parent.parent,
        check=False,
    )
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return seconds, child.returncode, 0, 0, cpu


def measure(
    url: str,
    *,
    latency: bool = True,
    segments: bool = False,
    baseline: bool = True,
) -> dict[str, float]:
    """``baseline``: also the fold from position 1 (restores and replay ``--no-snapshots``)."""
    figures: dict[str, float] = {}
    for name in ("signal", "risk", "paper"):
        fast, folded = asyncio.run(restore_seconds(url, name, True))
        figures[f"restore {name}"] = fast
        line = f"  restore {name:<6} from snapshot {fast:6.2f} s ({folded:,} events folded)"
        if baseline:
            full, folded_full = asyncio.run(restore_seconds(url, name, False))
            figures[f"restore {name} full"] = full
            line += f"   from position 1 {full:7.2f} s ({folded_full:,})   ratio {fast / full:.3f}"
        print(line, flush=True)
    day = utc_from_ms(LAST_DAY_MS).date().isoformat()
    fast, code = replay_seconds(url, day, "--verify")
    figures["replay verify"] = fast
    line = f"  replay --from {day} --verify: from snapshots {fast:6.2f} s (exit {code})"
    if baseline:
        full, code_full = replay_seconds(url, day, "--verify", "--no-snapshots")
        figures["replay verify full"] = full
        line += f"   from position 1 {full:7.2f} s (exit {code_full})   ratio {fast / full:.3f}"
    print(f"{line}; load average {_load()}", flush=True)
    if segments:
        one, code_one, _, _, _ = run_cli_all(url, "1")
        two, code_two, _, _, _ = run_cli_all(url, "2")
        figures["verify --all --jobs 1"] = one
        figures["verify --all --jobs 2"] = two
        print(
            f"  replay --verify --all: --jobs 1 {one:7.2f} s (exit {code_one})   --jobs 2 "
            f"{two:7.2f} s (exit {code_two})   speed-up {one / two:.2f}x; "
            f"load average {_load()}",
            flush=True,
        )
    if latency:
        snapshot_latency(url)
    return figures


def _load() -> str:
    return " ".join(f"{value:.1f}" for value in os.getloadavg())


def run_cli_all(url: str, jobs: str) -> tuple[float, int, int, int, float]:
    """``replay --verify --all --jobs N`` over the whole log."""
    started = time.perf_counter()
    options = ("--verify", "--all", "--jobs", jobs, "-q", "--database-url", url)
    child = subprocess.run(
        [sys.executable, "-m", "cli.replay", *options],
        stdout=subprocess.DEVNULL,
        cwd=Path(__file__).resolve().parent.parent,
        check=False,
    )
    return time.perf_counter() - started, child.returncode, 0, 0, 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--every", type=int, default=100_000, help="SNAPSHOT_EVERY_EVENTS")
    parser.add_argument("--database-url", help="a server URL (default: an embedded PostgreSQL)")
    parser.add_argument(
        "--reuse",
        metavar="EVENTS=URL",
        action="append",
        default=[],
        help="use this ledger (generated here with --keep: it has its snapshots) for that size",
    )
    parser.add_argument("--keep", action="store_true", help="keep the generated databases")
    parser.add_argument(
        "--no-latency", action="store_true", help="skip the snapshot encoding cost (3 folds)"
    )
    parser.add_argument(
        "--baseline-max",
        type=int,
        metavar="EVENTS",
        help="measure the fold from position 1 only up to this size (default: every size)",
    )
    parser.add_argument(
        "--all-at",
        type=int,
        metavar="EVENTS",
        help="the size to time --verify --all --jobs 1 and 2 on (default: the largest; 0: none)",
    )
    args = parser.parse_args()
    reuse = {int(size): url for size, url in (item.split("=", 1) for item in args.reuse)}
    with contextlib.ExitStack() as stack:
        server_url = args.database_url
        if server_url is None:
            from adapters.embedded import start_postgres

            base = Path(tempfile.mkdtemp(prefix="claire-bench-history-"))
            stack.callback(shutil.rmtree, base, ignore_errors=True)  # after the server stopped
            server = start_postgres(base / "pgdata", delete_on_stop=True)
            stack.callback(server.stop)
            server_url = server.url("postgres")
        results = {}
        for events in args.events:
            name = f"claire_bench_history_{secrets.token_hex(4)}"
            url = reuse.get(events)
            keep = url is not None or args.keep
            try:
                if url is None:
                    url = asyncio.run(create_database(server_url, name))
                    asyncio.run(upgrade_async(url))
                    # Every ledger ends about LAST_DAY_MS + 12 h: start earlier the longer it is.
                    start_ms = LAST_DAY_MS + 12 * 3_600_000 - events * MEAN_GAP_MS
                    print(f"\n{events:,} events: generating ...", flush=True)
                    started = time.perf_counter()
                    head = bench_replay.generate(
                        url, events, start_ms=start_ms, snapshot_every=args.every
                    )
                    print(
                        f"  {head:,} events and their snapshots (every {args.every:,} events and "
                        f"each UTC midnight) in {time.perf_counter() - started:,.0f} s; load "
                        f"average {_load()}",
                        flush=True,
                    )
                else:
                    print(f"\n{events:,} events: reusing {url}", flush=True)
                results[events] = measure(
                    url,
                    latency=events == min(args.events) and not args.no_latency,
                    segments=events == (max(args.events) if args.all_at is None else args.all_at),
                    baseline=args.baseline_max is None or events <= args.baseline_max,
                )
            finally:
                if not keep:
                    asyncio.run(drop_database(server_url, name))
                elif url is not None:
                    print(f"  kept: {url}", flush=True)
        if len(results) > 1:
            small, large = min(results), max(results)
            print(f"\n{large:,} events against {small:,} (goal: within 1.3x with snapshots)")
            for key in results[small]:
                if key not in results[large]:
                    continue
                ratio = results[large][key] / results[small][key]
                print(f"  {key:<22} {ratio:6.2f}x")


if __name__ == "__main__":
    main()
