"""One generated program of operations, run on a PostgreSQL EventStore and a MemoryEventLog.

docs/LEDGER.md: the in-memory log "keeps the same contract" as the PostgreSQL store, "so its
head() and verify() are what PostgreSQL would answer for the same appends". Every operation's
answer (positions, exception type and message, records read back field by field, head position,
verify result) must be the same on both; every in-memory hash must be the documented link over
PostgreSQL's own payload text. One database and one log per test, unique streams per example.
"""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventstore import EventStore, MemoryEventLog
from tests.blackbox_attack.memory_log import diff_helpers as h

pytestmark = [pytest.mark.db]

_EXAMPLE = itertools.count()

_GOOD_EVENT = st.one_of(
    st.builds(
        h.funding,
        st.sampled_from([0, 1, h.MAX_MS]),
        st.sampled_from(h.GOOD_DECIMALS),
        st.sampled_from(h.GOOD_DECIMALS),
    ),
    st.builds(
        h.config,
        st.just(5),
        st.dictionaries(
            st.sampled_from(sorted(h.TRICKY_KEYS)), st.sampled_from(h.TRICKY_TEXT), max_size=5
        ),
    ),
    st.builds(h.command, st.just(7), st.sampled_from(h.TRICKY_TEXT)),
)
_BAD_EVENT = st.one_of(
    st.builds(h.command, st.just(7), st.sampled_from(h.BAD_TEXT)),
    st.builds(h.config, st.just(5), st.just({"k": 1})),
    st.builds(
        h.funding, st.sampled_from([-1, h.MAX_MS + 1]), st.just(Decimal(1)), st.just(Decimal(1))
    ),
    st.builds(h.command, st.just(7), st.just(b"bytes")),
)
_ENVELOPE = st.fixed_dictionaries(
    {},
    optional={
        "occurred_at": st.sampled_from(h.GOOD_MOMENTS),
        "causation_id": st.sampled_from([uuid.UUID(int=1), None]),
        "causation_position": st.sampled_from([None, 0, 2**63 - 1]),
        "correlation_id": st.sampled_from([uuid.UUID(int=2), None]),
    },
)
_BAD_ENVELOPE = st.sampled_from(
    [{"occurred_at": moment} for moment in h.BAD_MOMENTS]
    + [{"causation_position": value} for value in (-1, 2**63, True, "1")]
    + [{"causation_id": str(uuid.UUID(int=1))}, {"correlation_id": 3}]
)
# An event spec: ("new", event, envelope) | ("resend", k) | ("reuse", k, event) where k picks a
# previously sent event (identical re-send, or its id on other content).
_SPEC = st.one_of(
    st.tuples(st.just("new"), _GOOD_EVENT, _ENVELOPE),
    st.tuples(st.just("new"), _BAD_EVENT, _ENVELOPE),
    st.tuples(st.just("new"), _GOOD_EVENT, _BAD_ENVELOPE),
    st.tuples(st.just("resend"), st.integers(0, 20)),
    st.tuples(st.just("reuse"), st.integers(0, 20), _GOOD_EVENT),
)
_STREAM = st.sampled_from(["s0", "s1", "s2", "long", "", "has space", "é", "x" * 201])
_EXPECTED = st.sampled_from([None, "current", "ahead", "behind", 0, -1, True, "1"])
_OP = st.one_of(
    st.tuples(st.just("append"), _STREAM, st.lists(_SPEC, max_size=4), _EXPECTED),
    st.tuples(st.just("read_stream"), _STREAM, st.sampled_from([0, 1, 2, 3, -1, True, "1"])),
    st.tuples(
        st.just("read_all"),
        st.sampled_from([0, 1, 2, -5, 10**9, "0"]),
        st.sampled_from([1, 2, 2000, 0]),
    ),
    st.tuples(st.just("position_at"), st.sampled_from(h.GOOD_MOMENTS + h.BAD_MOMENTS[:3])),
    st.tuples(st.just("head")),
)


class Program:
    """Turns the drawn specs into concrete calls, the same for both logs."""

    def __init__(self) -> None:
        self.prefix = f"ex{next(_EXAMPLE)}-{uuid.uuid4().hex[:8]}"
        self.sent: list[Any] = []  # NewEvent objects sent so far

    def stream(self, key: str) -> str:
        if key in ("s0", "s1", "s2"):
            return f"{self.prefix}.{key}"
        if key == "long":
            return (self.prefix + ":" + "L" * 200)[:200]
        return key

    def events(self, specs: list[Any]) -> list[Any]:
        made = []
        for spec in specs:
            if spec[0] == "new":
                item = h.new(spec[1], uuid.uuid4(), **spec[2])
            elif not self.sent:
                continue
            elif spec[0] == "resend":
                item = self.sent[spec[1] % len(self.sent)]
            else:
                item = msgspec.structs.replace(self.sent[spec[1] % len(self.sent)], event=spec[2])
            made.append(item)
        self.sent.extend(made)
        return made


async def _version(log: MemoryEventLog, stream: str) -> int:
    try:
        return len(await h.collect(log.read_stream(stream)))
    except Exception:
        return 0


async def _step(pg: EventStore, mem: MemoryEventLog, program: Program, op: Any) -> None:
    kind = op[0]
    if kind == "append":
        stream = program.stream(op[1])
        events = program.events(op[2])
        expected: Any = op[3]
        if expected in ("current", "ahead", "behind"):
            current = await _version(mem, stream)
            expected = current + {"current": 0, "ahead": 1, "behind": -1}[expected]
        expected = max(expected, 0) if type(expected) is int else expected
        answers = await h.both(pg, mem, lambda log: log.append(stream, events, expected))
    elif kind == "read_stream":
        stream = program.stream(op[1])
        answers = (
            await h.read_outcome(lambda: pg.read_stream(stream, op[2])),
            await h.read_outcome(lambda: mem.read_stream(stream, op[2])),
        )
    elif kind == "read_all":
        answers = (
            await h.read_outcome(lambda: pg.read_all(op[1], batch_size=op[2])),
            await h.read_outcome(lambda: mem.read_all(op[1], batch_size=op[2])),
        )
    elif kind == "position_at":
        answers = await h.both(pg, mem, lambda log: log.position_at(op[1]))
    else:
        pg_head, mem_head = await pg.head(), await mem.head()
        answers = (pg_head[0], mem_head[0])
    assert answers[0] == answers[1], f"{op!r}: postgres {answers[0]!r} != memory {answers[1]!r}"


async def _check_whole(pg: EventStore, mem: MemoryEventLog, url: str) -> None:
    pg_all, mem_all = await h.collect(pg.read_all()), await h.collect(mem.read_all())
    assert [h.view(r) for r in pg_all] == [h.view(r) for r in mem_all]
    texts = await h.payload_texts(url)
    assert h.chain_mismatches(pg_all, texts) == []
    assert h.chain_mismatches(mem_all, texts) == [], "memory hashes differ from PostgreSQL's"
    assert h.verify_view(await pg.verify()) == h.verify_view(await mem.verify())
    for log, records in ((pg, pg_all), (mem, mem_all)):
        head = await log.head()
        assert head == ((records[-1].position, records[-1].hash) if records else (0, bytes(32)))


_SETTINGS = settings(
    max_examples=120,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@_SETTINGS
@given(program=st.lists(_OP, min_size=1, max_size=12))
async def test_any_program_when_run_on_both_logs_then_every_answer_is_the_same(
    pg: EventStore, mem: MemoryEventLog, ledger_url: str, program: list[Any]
) -> None:
    run = Program()
    for op in program:
        await _step(pg, mem, run, op)
    await _check_whole(pg, mem, ledger_url)


async def test_verify_with_own_anchor_when_run_on_both_logs_then_same_result(
    pg: EventStore, mem: MemoryEventLog
) -> None:
    """verify(expect=...) with each log's own earlier head, a wrong hash, a future position."""
    event = h.new(h.funding(1, Decimal(1), Decimal(2)), uuid.UUID(int=99))
    answers = await h.both(pg, mem, lambda log: log.append("anchor.s", [event]))
    assert answers[0] == answers[1]
    anchors = {"pg": await pg.head(), "mem": await mem.head()}
    later = h.new(
        h.command(1, "x"), uuid.UUID(int=100), occurred_at=datetime(2027, 1, 1, tzinfo=UTC)
    )
    await pg.append("anchor.s", [later])
    await mem.append("anchor.s", [later])
    for shape in ("own", "wrong_hash", "future", "zero"):
        results = []
        for name, log in (("pg", pg), ("mem", mem)):
            position, digest = anchors[name]
            expect = {
                "own": (position, digest),
                "wrong_hash": (position, bytes(32)),
                "future": (position + 5, digest),
                "zero": (0, bytes(32)),
            }[shape]
            results.append(h.verify_view(await log.verify(expect=expect)))
        assert results[0] == results[1], shape
