"""The projection framework: a pure fold plus the rows its state changes map to.

A projection is ``evolve(state, fact) -> state`` (STYLE principle 3) and ``rows(state, fact)``:
the read-model rows that ``fact`` may have changed, computed from the state *after* the fact.
The same fold feeds two sinks: :func:`fold` gives the in-memory state services and replay use,
and the projector writes the rows to PostgreSQL. Rows are upserts keyed by the table's key, so
only the last row per key matters: event-by-event, in batches of any size, or in one rebuild,
the tables end up identical (the property ``tests/integration/projections`` checks).

No I/O, no clock here: this module and the fold modules are as pure as ``aggregates/``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

from aggregates.envelope import RecordedEvent
from aggregates.events import Event

S = TypeVar("S")
Row = tuple[Any, ...]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def at(ms: int) -> datetime:
    """Domain time (UTC ms) as an aware datetime, exactly (no float rounding)."""
    return _EPOCH + timedelta(milliseconds=ms)


def day_of(ms: int) -> date:
    """The UTC day a domain time falls on: the equity curve's bucket and the drawdown reset."""
    return at(ms).date()


class Lazy(NamedTuple):
    """A keyed row computed only if it is still the last one for its key at flush time.

    A keyed table keeps only the last row per key, so rows that a later fact replaces within
    the same batch need never be built; ``make`` must close over immutable values only.
    """

    key: tuple[Any, ...]
    make: Callable[[], Row]


@dataclass(frozen=True)
class Table:
    """A read-model table: public name (a view in ``readmodel``), columns in order, key columns.

    ``append_only`` tables get one row per fact, never rewritten (COPY straight in); the others
    hold current state per key and are upserted.
    """

    name: str
    columns: tuple[str, ...]
    key: tuple[str, ...]
    append_only: bool
    key_index: tuple[int, ...] = field(init=False)

    def __post_init__(self) -> None:
        missing = [name for name in self.key if name not in self.columns]
        if missing:
            raise ValueError(f"table {self.name}: key columns {missing} are not columns")
        object.__setattr__(self, "key_index", tuple(self.columns.index(k) for k in self.key))

    def key_of(self, row: Row) -> tuple[Any, ...]:
        if len(row) != len(self.columns):
            raise ValueError(
                f"table {self.name}: row has {len(row)} values, not {len(self.columns)}"
            )
        return tuple(row[i] for i in self.key_index)


class Projection(Protocol[S]):
    """One read model. ``handles`` lets the runner skip facts the projection ignores."""

    name: str
    tables: tuple[Table, ...]
    handles: frozenset[type[Event]]

    def initial(self) -> S: ...

    def evolve(self, state: S, fact: RecordedEvent) -> S: ...

    def rows(self, state: S, fact: RecordedEvent) -> Iterable[tuple[str, Row | Lazy]]: ...


def fold(projection: Projection[S], facts: Iterable[RecordedEvent], state: S | None = None) -> S:
    """The in-memory state after ``facts``: what a live service or replay holds."""
    current = projection.initial() if state is None else state
    handles = projection.handles
    for fact in facts:
        if type(fact.event) in handles:
            current = projection.evolve(current, fact)
    return current


class Pending:
    """Rows waiting for the next flush: append-only rows in order, keyed rows last-write-wins."""

    __slots__ = ("appended", "keyed", "tables")

    def __init__(self, tables: Iterable[Table]) -> None:
        self.tables = {table.name: table for table in tables}
        self.appended: dict[str, list[Row]] = {}
        self.keyed: dict[str, dict[tuple[Any, ...], Row | Lazy]] = {}

    def add(self, table_name: str, row: Row | Lazy) -> None:
        table = self.tables[table_name]
        if table.append_only:
            if isinstance(row, Lazy):
                raise TypeError(f"table {table_name} is append-only: rows are written eagerly")
            self.appended.setdefault(table_name, []).append(row)
        elif isinstance(row, Lazy):
            self.keyed.setdefault(table_name, {})[row.key] = row
        else:
            self.keyed.setdefault(table_name, {})[table.key_of(row)] = row

    def __len__(self) -> int:
        return sum(map(len, self.appended.values())) + sum(map(len, self.keyed.values()))

    def batches(self) -> Iterator[tuple[Table, Sequence[Row]]]:
        """Each table with rows to write, in a stable order (the tables' declaration order)."""
        for name, table in self.tables.items():
            rows: Sequence[Row] = (
                self.appended.get(name, [])
                if table.append_only
                else [_made(table, r) for r in self.keyed.get(name, {}).values()]
            )
            if rows:
                yield table, rows

    def clear(self) -> None:
        self.appended.clear()
        self.keyed.clear()


def _made(table: Table, row: Row | Lazy) -> Row:
    if not isinstance(row, Lazy):
        return row
    made = row.make()
    if table.key_of(made) != row.key:
        raise ValueError(
            f"table {table.name}: lazy row for {row.key} made key {table.key_of(made)}"
        )
    return made


class Runner(Generic[S]):
    """Folds facts through one projection, collecting rows after its checkpoint.

    Facts at or before ``checkpoint`` only rebuild the in-memory state (their rows are already
    in the tables); later facts also produce rows. That is how a restart resumes exactly.
    """

    __slots__ = ("checkpoint", "pending", "position", "projection", "state")

    def __init__(self, projection: Projection[S], checkpoint: int = 0) -> None:
        self.projection = projection
        self.state: S = projection.initial()
        self.checkpoint = checkpoint
        self.position = 0
        self.pending = Pending(projection.tables)

    def apply(self, fact: RecordedEvent) -> None:
        """Fold one fact (the next in global order)."""
        if fact.position <= self.position:
            raise ValueError(
                f"projection {self.projection.name}: fact {fact.position} after {self.position}"
            )
        self.position = fact.position
        if type(fact.event) in self.projection.handles:
            self.fold(fact)

    def fold(self, fact: RecordedEvent) -> None:
        """Fold a fact the projection handles; position bookkeeping is the caller's."""
        self.state = self.projection.evolve(self.state, fact)
        if fact.position > self.checkpoint:
            add = self.pending.add
            for table_name, row in self.projection.rows(self.state, fact):
                add(table_name, row)

    def detach(self) -> Pending:
        """Hand over the pending rows, start a fresh buffer (for writes that overlap folding)."""
        pending, self.pending = self.pending, Pending(self.projection.tables)
        return pending

    def flushed(self) -> None:
        """The pending rows are committed with checkpoint ``position``."""
        self.pending.clear()
        self.checkpoint = max(self.checkpoint, self.position)


class Fanout:
    """Feeds each fact to the runners whose projection handles its type (dispatch cached)."""

    __slots__ = ("_targets", "position", "runners")

    def __init__(self, runners: Sequence[Runner[Any]]) -> None:
        self.runners = tuple(runners)
        self.position = max((r.position for r in self.runners), default=0)
        self._targets: dict[type, tuple[Runner[Any], ...]] = {}

    def apply(self, fact: RecordedEvent) -> None:
        if fact.position <= self.position:
            raise ValueError(f"fact {fact.position} does not follow {self.position}")
        self.position = fact.position
        kind = type(fact.event)
        targets = self._targets.get(kind)
        if targets is None:
            targets = tuple(r for r in self.runners if kind in r.projection.handles)
            self._targets[kind] = targets
        for runner in targets:
            runner.fold(fact)

    def sync(self) -> None:
        """Every runner has now seen every fact up to ``position`` (call before a flush)."""
        for runner in self.runners:
            runner.position = self.position
