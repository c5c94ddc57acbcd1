"""``replay --sweep``: every combination of a parameter grid over the recorded inputs, in parallel.

Each combination is one :class:`replay.whatif.Counterfactual`, the very code path of
``--what-if``: the recorded inputs (decisions dropped) are fed in log order from position 1 with
the combination's values applied to every recorded configuration, and the window is measured by
the same :class:`replay.walk.Tally`. So a combination's figures are byte for byte those of the
same ``--what-if`` run alone.

Execution is one abstraction, a :class:`concurrent.futures.Executor`: local worker processes
(``ProcessPoolExecutor``, ``--jobs N``) or an existing Dask cluster (``--cluster ADDRESS``:
``distributed.Client(...).get_executor()``). A task carries only the database URL, the positions
and the overrides; each worker process reads the recorded inputs from the ledger once and keeps
them for every later combination (:func:`recorded_inputs`). Results cross the process boundary
as plain data (an exception may not pickle: it becomes its text). A task whose worker died is
retried once on a fresh executor; if it fails again it is reported as failed, never dropped.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import multiprocessing
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from adapters.process import UsageError
from aggregates.config import VARIABLES, ConfigError, parse_config
from aggregates.envelope import RecordedEvent

#: The default ``--max-combinations``: a grid larger than this is refused before any work.
MAX_COMBINATIONS = 10_000

#: Sort metrics: the figure's name and whether higher is better.
METRICS: dict[str, bool] = {
    "pnl": True,
    "realised_pnl": True,
    "end_equity": True,
    "trades": True,
    "fees": False,
    "max_drawdown_pct": False,
    "halts": False,
}


# --------------------------------------------------------------------------- the grid


@dataclass(frozen=True, slots=True)
class Grid:
    """Parameters and the values each takes; combinations vary the last key fastest."""

    keys: tuple[str, ...]
    values: tuple[tuple[str, ...], ...]

    @property
    def size(self) -> int:
        return math.prod(len(values) for values in self.values)

    @property
    def varying(self) -> tuple[str, ...]:
        """The keys that take more than one value (a heatmap's axes when there are two)."""
        return tuple(k for k, v in zip(self.keys, self.values, strict=True) if len(v) > 1)

    def combinations(self) -> list[dict[str, str]]:
        return [
            dict(zip(self.keys, combo, strict=True)) for combo in itertools.product(*self.values)
        ]


def _number(text: str, item: str) -> Decimal:
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        value = Decimal("NaN")
    if not value.is_finite():
        raise UsageError(f"--sweep {item!r}: {text.strip()!r} is not a number")
    return value


def _plain(value: Decimal) -> str:
    """``1.50`` -> ``1.5``, ``1E+1`` -> ``10``: the value as a person would type it."""
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "") else text


def parse_grid(items: Sequence[str], *, max_combinations: int = MAX_COMBINATIONS) -> Grid:
    """``KEY=V1,V2,...`` and ``KEY=START:STOP:STEP`` (STOP included when reached) -> a grid.

    Raises :class:`UsageError` naming the problem: a malformed item, an unknown parameter, a key
    given twice, an empty list or range, a repeated value, or more combinations than allowed.
    Only names are checked here; values are checked against the recorded configurations by
    :func:`check_grid`.
    """
    if max_combinations < 1:
        raise UsageError(f"--max-combinations {max_combinations}: must be at least 1")
    keys: list[str] = []
    values: list[tuple[str, ...]] = []
    for item in items:
        key, sep, spec = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(
                f"--sweep {item!r}: expected KEY=V1,V2,... or KEY=START:STOP:STEP, "
                "e.g. STOP_LOSS_PCT=1,2,3 or LOOKBACK_MINUTES=5:30:5"
            )
        if key not in VARIABLES:
            raise UsageError(f"--sweep: {key} is not a trading parameter")
        if key in keys:
            raise UsageError(f"--sweep: {key} is given twice")
        if ":" in spec and "," not in spec:
            found = _range(spec, item, max_combinations)
        else:
            found = tuple(value.strip() for value in spec.split(","))
            if any(not value for value in found):
                raise UsageError(f"--sweep {item!r}: an empty value (the grid would be empty)")
            _refuse_repeats(found, item)
        keys.append(key)
        values.append(found)
    if not keys:
        raise UsageError("--sweep: the grid is empty")
    grid = Grid(tuple(keys), tuple(values))
    if grid.size > max_combinations:
        raise UsageError(
            f"--sweep: {grid.size} combinations, more than the maximum of {max_combinations} "
            "(raise it with --max-combinations)"
        )
    return grid


def _same(value: str) -> Decimal | str:
    """What makes two values the same: equal as decimals (``1`` and ``1.0``), else the text."""
    try:
        number = Decimal(value)
    except InvalidOperation:
        return value
    return number if number.is_finite() else value


def _refuse_repeats(found: Sequence[str], item: str) -> None:
    seen: dict[Decimal | str, str] = {}
    for value in found:
        same = _same(value)
        if same in seen:
            first = seen[same]
            spelt = first if first == value else f"{first} (as {value})"
            raise UsageError(f"--sweep {item!r}: {spelt} given twice")
        seen[same] = value


def _range(spec: str, item: str, max_combinations: int) -> tuple[str, ...]:
    parts = spec.split(":")
    if len(parts) != 3:
        raise UsageError(f"--sweep {item!r}: a range is START:STOP:STEP, e.g. 5:30:5")
    start, stop, step = (_number(part, item) for part in parts)
    if step <= 0:
        raise UsageError(f"--sweep {item!r}: the step must be positive")
    if stop < start:
        raise UsageError(f"--sweep {item!r}: the range is empty (STOP is below START)")
    try:  # compared as a decimal: a huge quotient (1:1e9999:1) never becomes an int
        steps = (stop - start) / step
    except ArithmeticError:  # beyond the decimal context (an overflow): far too many
        steps = None
    if steps is None or steps >= max_combinations:
        many = "far too many"
        if steps is not None and steps.adjusted() < 30:
            many = str(int(steps) + 1)
        raise UsageError(
            f"--sweep {item!r}: {many} values, more than the maximum of {max_combinations} "
            "combinations (raise it with --max-combinations)"
        )
    return tuple(_plain(start + index * step) for index in range(int(steps) + 1))


def check_grid(grid: Grid, configurations: Sequence[Mapping[str, str]]) -> None:
    """Every combination must be accepted by every recorded configuration it would rewrite.

    Raises :class:`UsageError` naming the first refused combination and the configuration's
    reasons, or when there is no recorded configuration at all.
    """
    if not configurations:
        raise UsageError("the ledger holds no recorded configuration (ConfigActivated)")
    for combination in grid.combinations():
        for parameters in configurations:
            try:
                parse_config({**parameters, **combination})
            except ConfigError as error:
                raise UsageError(
                    f"--sweep {describe(combination)}: the configuration refuses it: {error}"
                ) from error


def describe(combination: Mapping[str, str]) -> str:
    return " ".join(f"{key}={value}" for key, value in combination.items()) or "(recorded)"


# --------------------------------------------------------------------------- tasks


@dataclass(frozen=True, slots=True)
class Source:
    """Where workers read the recorded inputs: the ledger, positions ``1..last``."""

    database_url: str
    last: int


@dataclass(frozen=True, slots=True)
class Task:
    """One combination over one window (positions ``first..last``): plain, picklable data."""

    index: int
    overrides: tuple[tuple[str, str], ...]
    first: int
    last: int
    symbol: str | None = None


_loaded: dict[Source, list[RecordedEvent]] = {}
_loads = 0
_lock = threading.Lock()


def recorded_inputs(source: Source) -> tuple[list[RecordedEvent], int]:
    """The ledger's inputs up to ``source.last`` (decisions dropped), read once per process.

    Returns them and how many times this process has read a ledger (1 when every combination
    it ran reused the first read). One source is kept at a time, to bound memory.
    """
    global _loads
    with _lock:
        inputs = _loaded.get(source)
        if inputs is None:
            _loaded.clear()
            inputs = asyncio.run(_read(source))
            _loaded[source] = inputs
            _loads += 1
        return inputs, _loads


async def _read(source: Source) -> list[RecordedEvent]:
    from aggregates.simulation import Simulation
    from eventstore import EventStore
    from replay.verify import verification_machines

    owned = Simulation(verification_machines()).owned
    store = await EventStore.connect(source.database_url, max_connections=1)
    try:
        inputs = []
        async for fact in store.read_all(after=0, batch_size=5000):
            if fact.position > source.last:
                break
            if not owned(fact.event):
                inputs.append(fact)
        return inputs
    finally:
        await store.close()


def run_task(source: Source, task: Task) -> dict[str, Any]:
    """Run one combination in a worker; always returns plain data (figures, or the error)."""
    from replay.whatif import Counterfactual

    worker = f"{os.uname().nodename}:{os.getpid()}"
    try:
        inputs, loads = recorded_inputs(source)
        run = Counterfactual(dict(task.overrides), symbol=task.symbol)
        first, last = task.first, task.last
        for fact in inputs:
            position = fact.position
            if position > last:
                break
            run.feed(fact, position >= first)
        figures = run.finish().figures()
    except Exception as error:  # plain data across the boundary: exceptions may not pickle
        return {"index": task.index, "error": f"{type(error).__name__}: {error}", "worker": worker}
    return {"index": task.index, "figures": figures, "worker": worker, "loads": loads}


# --------------------------------------------------------------------------- execution

Work = Callable[[Source, Task], dict[str, Any]]
ExecutorFactory = Callable[[], Any]  # a context manager yielding an Executor


@contextmanager
def local_executor(jobs: int) -> Iterator[Executor]:
    """``jobs`` worker processes, started with ``spawn`` (safe from any threaded parent)."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        yield pool


def check_cluster(address: str | None, timeout: float) -> None:
    """:class:`UsageError` unless ``address`` is a Dask tcp address with a host and a port and
    ``timeout`` a finite positive number of seconds: checked before a ``Client`` exists (a
    half-made one prints a traceback when collected)."""
    if not math.isfinite(timeout) or timeout <= 0:
        raise UsageError(f"--cluster-timeout {timeout}: must be a positive number of seconds")
    if address is None:
        return
    from distributed.comm.addressing import get_address_host_port, parse_address

    try:
        scheme, _ = parse_address(address, strict=False)
        _host, port = get_address_host_port(address)
    except ValueError as error:
        raise UsageError(
            f"--cluster {address}: not a cluster address ({error}); e.g. tcp://host:8786"
        ) from None
    if scheme != "tcp":  # tls, wss, ucx need a security or transport setup this command lacks
        raise UsageError(f"--cluster {address}: only tcp:// addresses, e.g. tcp://host:8786")
    if not 0 < port < 65536:
        raise UsageError(f"--cluster {address}: the port {port} is out of range (1..65535)")


@contextmanager
def cluster_executor(address: str, *, timeout: float = 10.0) -> Iterator[Executor]:
    """The executor of an existing Dask cluster; :class:`UsageError` naming it if unreachable."""
    from distributed import Client

    check_cluster(address, timeout)
    try:
        client = Client(address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as error:
        raise UsageError(f"--cluster {address}: the cluster is unreachable ({error})") from error
    try:
        with client.get_executor(pure=False) as executor:
            yield executor
    finally:
        client.close()


def run_tasks(
    executor: ExecutorFactory,
    source: Source,
    tasks: Sequence[Task],
    *,
    work: Work = run_task,
) -> dict[int, dict[str, Any]]:
    """Every task's result by index; a task whose worker was lost is retried once.

    A task that raised inside the worker is not retried (it is deterministic: it would fail
    again); one whose worker died (a broken pool, a killed Dask worker) runs once more on a fresh
    executor, and if that fails too it is reported with an ``error``.
    """
    results: dict[int, dict[str, Any]] = {}
    pending = list(tasks)
    lost: list[tuple[Task, str]] = []
    for _attempt in range(2):
        lost = []
        with executor() as pool:
            futures = {pool.submit(work, source, task): task for task in pending}
            for future in as_completed(futures):
                task = futures[future]
                try:
                    results[task.index] = future.result()
                except Exception as error:
                    lost.append((task, f"{type(error).__name__}: {error}"))
        pending = [task for task, _ in lost]
        if not pending:
            break
    for task, why in lost:
        results[task.index] = {"index": task.index, "error": f"worker lost twice ({why})"}
    return results


# --------------------------------------------------------------------------- ranking


def metric_value(figures: Mapping[str, Any], metric: str) -> Decimal:
    return Decimal(str(figures[metric]))


def ranked(
    results: Sequence[tuple[dict[str, str], dict[str, Any]]], metric: str
) -> list[tuple[dict[str, str], dict[str, Any]]]:
    """Successful results, best first by ``metric``; ties keep the grid's order."""
    higher = METRICS[metric]
    good = [(combo, result) for combo, result in results if "figures" in result]
    return sorted(
        good,
        key=lambda pair: metric_value(pair[1]["figures"], metric),
        reverse=higher,
    )
