"""Fixed edge inputs, each sent to a PostgreSQL EventStore and a MemoryEventLog alike.

docs/LEDGER.md, "The port and the in-memory log": same checks (``plan.check_append``, ``codec``),
same placement (``plan.plan_batch``), same outcomes. Each case compares what a caller sees:
the return value or the exception's type and message, then both logs' whole contents.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import msgspec
import pytest

from eventstore import EventLog, EventStore, MemoryEventLog
from tests.blackbox_attack.memory_log import diff_helpers as h

pytestmark = [pytest.mark.db]

_FIRST = h.new(h.funding(1, Decimal("1.5"), Decimal("-2")), uuid.UUID(int=1))
_OTHER = h.new(h.command(2, "other"), uuid.UUID(int=2))


def _many(count: int, start: int) -> list[Any]:
    return [
        h.new(h.funding(i, Decimal(i), Decimal(1)), uuid.UUID(int=start + i)) for i in range(count)
    ]


_BIG = _many(250, 10_000)
_BIG_BAD_AT_END = [*_BIG[:249], h.new(h.command(3, "nul\u0000"), uuid.UUID(int=20_000))]
_BIG_DUP_AT_END = [
    *_many(249, 30_000),
    msgspec.structs.replace(_many(1, 30_000)[0], event=h.command(1, "dup")),
]

_CONFIG = h.new(h.config(3, {"a": "1", "bb": "2"}), uuid.UUID(int=6))


def _resend(**changes: Any) -> Callable[[EventLog], Any]:
    """_FIRST (or _CONFIG) re-sent with a change that may or may not make it another event."""

    async def call(log: EventLog) -> Any:
        base = _CONFIG if "parameters" in changes else _FIRST
        if "parameters" in changes:
            await log.append("edge.a", [base])
            changed = msgspec.structs.replace(base, event=h.config(3, changes["parameters"]))
        elif "event" in changes:
            changed = msgspec.structs.replace(base, event=changes["event"])
        else:
            changed = msgspec.structs.replace(base, **changes)
        return await log.append("edge.a", [changed])

    return call


#: name -> (call on a log). Each runs after _FIRST was appended to "edge.a" (at version 1).
_CASES: dict[str, Callable[[EventLog], Any]] = {
    "events_none": lambda log: log.append("edge.b", None),  # type: ignore[arg-type]
    "events_str": lambda log: log.append("edge.b", "abc"),  # type: ignore[arg-type]
    "events_object": lambda log: log.append("edge.b", [object()]),  # type: ignore[list-item]
    "events_tuple": lambda log: log.append("edge.b", (_OTHER,)),
    "events_generator": lambda log: log.append("edge.b", (e for e in [_OTHER])),  # type: ignore[arg-type]
    "empty": lambda log: log.append("edge.b", []),
    "empty_wrong_version": lambda log: log.append("edge.a", [], expected_version=5),
    "empty_bad_stream": lambda log: log.append("bad stream", []),
    "resend_other_tz_same_instant": _resend(
        occurred_at=datetime(2026, 1, 1, 5, tzinfo=timezone(timedelta(hours=5)))
    ),
    "resend_decimal_trailing_zero": _resend(event=h.funding(1, Decimal("1.50"), Decimal("-2"))),
    "resend_decimal_exponent_form": _resend(event=h.funding(1, Decimal("15E-1"), Decimal("-2"))),
    "resend_decimal_minus_zero": _resend(event=h.funding(1, Decimal("1.5"), Decimal("-2.0"))),
    "resend_dict_other_order": _resend(parameters={"bb": "2", "a": "1"}),
    "resend_causation_position_zero": _resend(causation_position=0),
    "resend_microsecond_later": _resend(occurred_at=datetime(2026, 1, 1, 0, 0, 0, 1, tzinfo=UTC)),
    "resend_identical": lambda log: log.append("edge.a", [_FIRST]),
    "resend_identical_wrong_version": lambda log: log.append(
        "edge.a", [_FIRST], expected_version=0
    ),
    "resend_other_stream": lambda log: log.append("edge.b", [_FIRST]),
    "resend_plus_new": lambda log: log.append("edge.a", [_FIRST, _OTHER], expected_version=1),
    "same_id_twice_identical": lambda log: log.append("edge.b", [_OTHER, _OTHER]),
    "same_id_twice_different": lambda log: log.append(
        "edge.b", [_OTHER, msgspec.structs.replace(_OTHER, event=h.command(2, "changed"))]
    ),
    "version_huge": lambda log: log.append("edge.a", [_OTHER], expected_version=2**63),
    "big_ok": lambda log: log.append("edge.big", _BIG),
    "big_bad_last": lambda log: log.append("edge.big", _BIG_BAD_AT_END),
    "big_dup_last": lambda log: log.append("edge.big", _BIG_DUP_AT_END),
    "big_wrong_version": lambda log: log.append("edge.big", _BIG, expected_version=3),
    "stream_200": lambda log: log.append("S" * 200, [_OTHER]),
    "stream_newline": lambda log: log.append("edge.a\n", [_OTHER]),
    "stream_not_str": lambda log: log.append(5, [_OTHER]),  # type: ignore[arg-type]
    "surrogate_key": lambda log: log.append(
        "edge.b", [h.new(h.config(1, {"\ud800": "x"}), uuid.UUID(int=3))]
    ),
    "decimal_exponent": lambda log: log.append(
        "edge.b",
        [h.new(h.funding(1, Decimal("1E+999999"), Decimal("-1E-999999")), uuid.UUID(int=4))],
    ),
    "event_id_str": lambda log: log.append(
        "edge.b", [msgspec.structs.replace(_OTHER, event_id=str(uuid.UUID(int=5)))]
    ),
    "read_stream_huge": lambda log: h.collect(log.read_stream("edge.a", 2**63)),
    "read_stream_min": lambda log: h.collect(log.read_stream("edge.a", -(2**63))),
    "read_stream_float": lambda log: h.collect(log.read_stream("edge.a", 1.0)),  # type: ignore[arg-type]
    "read_stream_batch_0": lambda log: h.collect(log.read_stream("edge.a", batch_size=0)),
    "read_stream_bad_name": lambda log: h.collect(log.read_stream("", 0)),
    "read_all_huge": lambda log: h.collect(log.read_all(2**63)),
    "read_all_max": lambda log: h.collect(log.read_all(2**63 - 1)),
    "read_all_bool": lambda log: h.collect(log.read_all(True)),
    "read_all_batch_huge": lambda log: h.collect(log.read_all(0, batch_size=2**63)),
    "position_at_far": lambda log: log.position_at(datetime(9999, 12, 31, tzinfo=UTC)),
    "position_at_early": lambda log: log.position_at(datetime(1, 1, 1, tzinfo=UTC)),
    "verify_expect_bad_shape": lambda log: log.verify(expect=(1, "not bytes")),  # type: ignore[arg-type]
    "verify_expect_negative": lambda log: log.verify(expect=(-1, bytes(32))),
    "subscribe_bad_after": lambda log: anext(log.subscribe("x")),  # type: ignore[arg-type]
    "subscribe_batch_0": lambda log: anext(log.subscribe(0, batch_size=0)),
}


def _comparable(answer: tuple[str, Any]) -> tuple[str, Any]:
    if (
        answer[0] == "ok"
        and isinstance(answer[1], list)
        and answer[1]
        and hasattr(answer[1][0], "hash")
    ):
        return ("ok", [h.view(recorded) for recorded in answer[1]])
    if answer[0] == "ok" and hasattr(answer[1], "ok"):
        return ("ok", h.verify_view(answer[1]))
    if answer[0] == "ok" and hasattr(answer[1], "position"):
        return ("ok", h.view(answer[1]))
    return answer


@pytest.mark.parametrize("case", sorted(_CASES))
async def test_edge_call_when_sent_to_both_logs_then_same_answer_and_same_contents(
    pg: EventStore, mem: MemoryEventLog, case: str
) -> None:
    for log in (pg, mem):
        assert await log.append("edge.a", [_FIRST]) == [1]
    pg_answer, mem_answer = await h.both(pg, mem, _CASES[case])
    assert _comparable(pg_answer) == _comparable(mem_answer)
    pg_all, mem_all = await h.collect(pg.read_all()), await h.collect(mem.read_all())
    assert [h.view(r) for r in pg_all] == [h.view(r) for r in mem_all]
    assert h.verify_view(await pg.verify()) == h.verify_view(await mem.verify())
