"""Replay benchmark: ``replay --verify`` speed (events/s) and peak memory over a large log.

    .venv/bin/python benchmarks/bench_replay.py --events 1000000 \
        --database-url postgresql://postgres@127.0.0.1:5432/postgres

Generates a session with the real machines (``simulate()``: signal + risk + paper over a
generated two-symbol market with a clock every 5 s), loads it by COPY (:func:`generate`: the
store's own validation, placement and hash chain, in loader processes) into a throwaway database
it creates (and drops unless ``--keep``), then runs the ``replay`` command line in a child process:
``--verify -q`` (re-decide every step, compare, hash chain in a worker fed the same chunks) and
the plain walk ``-q``. Prints events/s, the CPU seconds of the replay process and its worker (the
figure to compare on a busy machine) and the peak resident memory of the replay process (polled)
and of its chain-check worker. Never part of the test suite: timings vary by machine.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import resource
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from multiprocessing.connection import Connection
from pathlib import Path

import asyncpg
import msgspec
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aggregates import events as ev
from aggregates.config import parse_config
from aggregates.envelope import Envelope, NewEvent, RecordedEvent
from aggregates.machine import record
from aggregates.paper import PaperExchange
from aggregates.portfolio import DAY_MS
from aggregates.risk import RiskMachine
from aggregates.signal import SignalMachine
from aggregates.simulation import Simulation, simulate
from aggregates.snapshot import CODECS
from eventstore import EventStore, sql
from eventstore.admin import create_database, drop_database
from eventstore.canonical import GENESIS
from eventstore.codec import Prepared, check_stream_name, prepare_checked
from eventstore.driver import connect
from eventstore.migrations import upgrade_async
from eventstore.plan import Plan
from eventstore.snapshots import Snapshots, snapshot_of
from tests.unit.strategies import REPLAY_VALUES

GOAL_EVENTS_PER_SECOND = 200_000
START_MS = 1_748_822_400_000  # 2025-06-02T00:00:00Z


def market(inputs: int, seed: int = 7, start_ms: int | None = None) -> Iterator[RecordedEvent]:
    """``inputs`` market events (a generator: bounded memory), as the ledger would record them,
    from ``start_ms`` (default :data:`START_MS`)."""
    start = START_MS if start_ms is None else start_ms
    rng = random.Random(seed)
    # One symbol: long same-stream runs make the bulk append fast; the machines' work per event
    # (every tick stepped by signal, risk and paper) is the same as with many symbols.
    symbols = ("BTC_USDT",)
    price = {"BTC_USDT": Decimal(60000), "ETH_USDT": Decimal(3000)}
    step = {"BTC_USDT": Decimal("0.1"), "ETH_USDT": Decimal("0.01")}
    drift = dict.fromkeys(symbols, 0)
    yield record(parse_config(REPLAY_VALUES).activated(start, "benchmark"), 1)
    position, at, next_clock = 1, start, start
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


class _Input(Envelope, frozen=True, kw_only=True, gc=False):
    """A :class:`RecordedEvent` as it crosses a process boundary (``event``: the tagged union,
    which ``RecordedEvent.event``, typed as the base class, cannot be decoded into)."""

    event: ev.AnyEvent


def _new(recorded: RecordedEvent | _Input) -> NewEvent:
    return NewEvent(
        event=recorded.event,
        event_id=recorded.event_id,
        occurred_at=recorded.occurred_at,
        causation_id=recorded.causation_id,
        causation_position=recorded.causation_position,
        correlation_id=recorded.correlation_id,
    )


#: Events per message between the generator's processes, and per COPY.
LOAD_CHUNK_EVENTS = 20_000
#: Processes that turn the simulated chunks into ledger rows and COPY them.
LOADERS = 2
_END = b"end"
_encode = msgspec.msgpack.Encoder().encode
_decode_inputs = msgspec.msgpack.Decoder(list[_Input]).decode


def generate(
    url: str,
    events: int,
    chunk: int = LOAD_CHUNK_EVENTS,
    *,
    start_ms: int | None = None,
    snapshot_every: int | None = None,
) -> int:
    """Load the simulated session (``market(events, start_ms=start_ms)``) into the fresh ledger
    at ``url``; returns its head. With ``snapshot_every``, also store the machines' snapshots
    as the services would have written them (:func:`_snapshot_points`).

    Why not ``EventStore.append``: the log alternates streams every few events (trades, clock,
    decisions), so a chunk was hundreds of small appends, about 5,000 events/s (10 M events: more
    than half an hour). The work is spread over processes instead, each doing what the ledger's
    own code does:

    * one process generates ``market(events)`` (:func:`_market_process`);
    * this one runs ``simulate()``: the real machines decide over it, as before;
    * :data:`LOADERS` processes (:func:`_loader_process`) take the chunks in turn, validate each
      event and render its canonical payload (``prepare_checked``), place and chain them with
      the store's ``Plan`` (positions and stream versions checked against the simulated ones),
      the previous chunk's last hash handed round from loader to loader, then COPY the rows
      (``sql.COPY_COLUMNS``, binary) into ``ledger.events``, whose trigger fills the side tables;
    * the head moves once, at the end, to the last link; then the snapshots taken, if any.

    The rows are those the appends would have written but for ``recorded_at`` (one per chunk).
    Only for a fresh ledger nobody else writes to: rows land above the head while it loads.
    """
    asyncio.run(_prepare_ledger(url, 2 * events))
    context = multiprocessing.get_context("spawn")
    inputs, market_out = context.Pipe(duplex=False)
    producer = context.Process(
        target=_market_process,
        args=(events, chunk, START_MS if start_ms is None else start_ms, market_out),
        name="market",
        daemon=True,
    )
    rings = [context.Pipe(duplex=False) for _ in range(LOADERS)]
    feeds = [context.Pipe(duplex=False) for _ in range(LOADERS)]
    results = [context.Pipe(duplex=False) for _ in range(LOADERS)]
    loaders = [
        context.Process(
            target=_loader_process,
            args=(url, feeds[i][0], rings[i][0], rings[(i + 1) % LOADERS][1], results[i][1]),
            name=f"loader-{i}",
            daemon=True,
        )
        for i in range(LOADERS)
    ]
    for process in (producer, *loaders):
        process.start()
    rings[0][1].send((0, GENESIS))  # the first chunk chains from the genesis hash
    for end in (market_out, *(r for r, _ in rings), *(w for _, w in rings),
                *(r for r, _ in feeds), *(w for _, w in results)):  # fmt: skip
        end.close()  # the children's ends: a dead child then ends our reads and writes
    senders = [w for _, w in feeds]
    started = time.perf_counter()
    taken: list[tuple[int, str, dict[str, bytes]]] = []
    try:
        try:
            _simulate(inputs, senders, started, snapshot_every, taken)
        except BrokenPipeError:
            pass  # a loader stopped: its outcome says why
        finally:
            for sender in senders:
                sender.close()  # a loader sees the end of its input (and stops) if not sent
        outcomes = []
        for i, (receiver, _) in enumerate(results):
            try:
                outcomes.append(receiver.recv())
            except EOFError:
                raise SystemExit(f"loader {i} died (exit code {loaders[i].exitcode})") from None
    finally:
        for process in (producer, *loaders):
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()
        inputs.close()
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    head, head_hash = max(outcomes)
    asyncio.run(_move_head(url, head, head_hash))
    if taken:
        asyncio.run(_save_snapshots(url, taken))
    return int(head)


async def _prepare_ledger(url: str, events: int) -> None:
    """Refuse a ledger that is not fresh; have partitions for ``events`` more positions."""
    conn = await connect(url)
    try:
        head, _ = await conn.fetchrow(sql.READ_HEAD)
        if head != 0:
            raise SystemExit(f"the ledger at {url} is not empty (head {head})")
        await conn.fetchrow(sql.ENSURE_PARTITIONS, events)
    finally:
        await conn.close()


async def _move_head(url: str, head: int, head_hash: bytes) -> None:
    conn = await connect(url)
    try:
        if await conn.fetchrow(sql.MOVE_HEAD, head, head_hash, 0) is None:
            raise SystemExit("the ledger head moved while the session was loaded")
    finally:
        await conn.close()


def _market_process(events: int, chunk: int, start_ms: int, out: Connection) -> None:
    """``market(events)``, sent ``chunk`` events per message, then :data:`_END`."""
    pending: list[RecordedEvent] = []
    try:
        for recorded in market(events, start_ms=start_ms):
            pending.append(recorded)
            if len(pending) >= chunk:
                out.send_bytes(_encode(pending))
                pending = []
        out.send_bytes(_encode(pending))
        out.send_bytes(_END)
    except BrokenPipeError:
        pass  # the generator stopped
    finally:
        out.close()


def _market(inputs: Connection) -> Iterator[RecordedEvent]:
    """The market process's events, as ``RecordedEvent`` again."""
    while (data := inputs.recv_bytes()) != _END:
        for i in _decode_inputs(data):
            yield RecordedEvent(
                position=i.position,
                stream=i.stream,
                stream_version=i.stream_version,
                event_id=i.event_id,
                event_type=i.event_type,
                schema_version=i.schema_version,
                occurred_at=i.occurred_at,
                recorded_at=i.recorded_at,
                causation_id=i.causation_id,
                causation_position=i.causation_position,
                correlation_id=i.correlation_id,
                event=i.event,
                hash=b"",
            )


def _simulate(
    inputs: Connection,
    loaders: list[Connection],
    started: float,
    snapshot_every: int | None = None,
    taken: list[tuple[int, str, dict[str, bytes]]] | None = None,
) -> None:
    """Run the machines over the market; chunk k of the log goes to loader k mod LOADERS."""
    simulation = Simulation([SignalMachine(), RiskMachine(), PaperExchange()])
    source = _market(inputs)
    if snapshot_every is not None and taken is not None:
        source = _snapshot_points(simulation, source, snapshot_every, taken)
    log = simulation.feed(source)
    pending: list[RecordedEvent] = []
    done = sent = 0
    # ``market`` stops after ``events`` inputs and every decision they caused is loaded:
    # a log cut in the middle of a decision would (rightly) fail --verify at its tail.
    for recorded in log:
        pending.append(recorded)
        if len(pending) >= LOAD_CHUNK_EVENTS:
            loaders[sent % len(loaders)].send_bytes(_encode(pending))
            sent += 1
            done += len(pending)
            pending = []
            if done % 1_000_000 < LOAD_CHUNK_EVENTS:
                rate = done / (time.perf_counter() - started)
                print(f"  simulated {done:,} events ({rate:,.0f}/s)", flush=True)
    if pending:
        loaders[sent % len(loaders)].send_bytes(_encode(pending))
    for loader in loaders:
        loader.send_bytes(_END)


def _snapshot_points(
    simulation: Simulation,
    inputs: Iterator[RecordedEvent],
    every: int,
    taken: list[tuple[int, str, dict[str, bytes]]],
) -> Iterator[RecordedEvent]:
    """``inputs``, and the machines' encoded states whenever the log has crossed a multiple of
    ``every`` events or is about to enter a new UTC day, as (position, config hash, states).

    Why here: a snapshot is a fold of the log up to its position, and the simulation holds
    exactly that fold when it asks for its next input (everything derived from the previous
    one has been stepped over); folding the generated log again took as long as generating it.
    The services snapshot at the multiple itself (``SNAPSHOT_EVERY_EVENTS``), this at the first
    input after it: at most a few events later. Midnight snapshots are at the same position.
    """
    config_hash = ""
    day = -1
    cut = every
    for fact in inputs:
        today = fact.event.at_ms // DAY_MS
        position = simulation.position
        if position and (position >= cut or today > day >= 0):
            states = zip(simulation.machines, simulation.states, strict=True)
            taken.append(
                (position, config_hash, {m.name: CODECS[m.name].encode(s) for m, s in states})
            )
            cut = (position // every + 1) * every
        day = max(day, today)
        if isinstance(fact.event, ev.ConfigActivated):
            config_hash = fact.event.config_hash
        yield fact


async def _save_snapshots(url: str, taken: list[tuple[int, str, dict[str, bytes]]]) -> None:
    store = await EventStore.connect(url)
    try:
        snapshots = Snapshots(store)
        for position, config_hash, states in taken:
            chain = await snapshots.chain_hash_at(position)
            if chain is None:
                raise SystemExit(f"no event at the snapshot position {position}")
            for name, data in states.items():
                await snapshots.save(snapshot_of(name, data, position, chain, config_hash))
    finally:
        await store.close()


def _loader_process(
    url: str, chunks: Connection, previous: Connection, following: Connection, result: Connection
) -> None:
    """A loader: its chunks into the ledger; sends (last position, its hash) or the error."""
    outcome: object
    try:
        outcome = asyncio.run(_load(url, chunks, previous, following))
    except Exception as error:
        outcome = error
    result.send(outcome)


async def _load(
    url: str, chunks: Connection, previous: Connection, following: Connection
) -> tuple[int, bytes]:
    conn = await connect(url)
    checked: set[str] = set()
    last = (0, GENESIS)
    copying: asyncio.Task[None] | None = None
    try:
        while (data := await asyncio.to_thread(chunks.recv_bytes)) != _END:
            runs = _prepare(_decode_inputs(data), checked)
            head, head_hash = await asyncio.to_thread(previous.recv)
            plan = _place(runs, head, head_hash)
            last = (plan.head, plan.hash)
            following.send(last)
            if copying is not None:
                await copying
            # The server ingests this chunk while the next one is received and prepared.
            copying = asyncio.create_task(_copy(conn, plan))
        if copying is not None:
            await copying
    finally:
        await conn.close()
    return last


def _prepare(
    facts: list[_Input], checked: set[str]
) -> list[tuple[str, list[Prepared], _Input, _Input]]:
    """The chunk validated by the store's code, as runs of one stream (with their first and
    last fact)."""
    runs = []
    start = 0
    while start < len(facts):
        stream = facts[start].stream
        end = start + 1
        while end < len(facts) and facts[end].stream == stream:
            end += 1
        if stream not in checked:
            check_stream_name(stream)
            checked.add(stream)
        prepared = [prepare_checked(stream, _new(fact)) for fact in facts[start:end]]
        runs.append((stream, prepared, facts[start], facts[end - 1]))
        start = end
    return runs


def _place(
    runs: list[tuple[str, list[Prepared], _Input, _Input]], head: int, head_hash: bytes
) -> Plan:
    """Positions, stream versions and chain hashes after ``head``, as the store's plan gives
    them; they must be the simulated ones."""
    plan = Plan(head, head_hash)
    assigned: dict[int, int] = {}
    for stream, prepared, first, last in runs:
        plan.place(stream, prepared, first.stream_version - 1, assigned)
        if plan.head != last.position or plan.versions[stream] != last.stream_version:
            raise RuntimeError(f"placed {stream} at {plan.head}, simulated {last.position}")
    return plan


async def _copy(conn: asyncpg.Connection, plan: Plan) -> None:
    await conn.copy_records_to_table(
        "events", schema_name="ledger", columns=sql.COPY_COLUMNS, records=plan.rows()
    )


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
        head = generate(url, args.events)
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
