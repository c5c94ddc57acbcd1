"""The canonical form and the hash chain, without a database."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from eventstore.canonical import GENESIS, canonical_text, chain, epoch_micros, render_jsonb


def test_render_when_keys_differ_in_length_then_shorter_first_like_jsonb() -> None:
    assert render_jsonb({"bb": 1, "a": [1, "x"], "ab": {}, "é": None}) == (
        '{"a": [1, "x"], "ab": {}, "bb": 1, "é": null}'
    )


def test_render_when_string_has_control_characters_then_escaped_like_escape_json() -> None:
    text = 'q" b\\ \b\f\n\r\t \x01 \x1f \x7f ü \u2028'
    assert render_jsonb(text) == '"q\\" b\\\\ \\b\\f\\n\\r\\t \\u0001 \\u001f \x7f ü \u2028"'


def test_epoch_micros_when_timezones_differ_then_same_instant_same_number() -> None:
    moment = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
    shifted = moment.astimezone(timezone(timedelta(hours=5, minutes=30)))
    assert epoch_micros(moment) == epoch_micros(shifted) == 1740830400123456


def test_canonical_when_optional_ids_missing_then_empty_fields_keep_their_place() -> None:
    moment = datetime(2025, 1, 1, tzinfo=UTC)
    text = canonical_text(
        position=7,
        stream="risk",
        stream_version=2,
        event_id=uuid.UUID(int=1),
        event_type="alert.raised",
        schema_version=1,
        occurred_at=moment,
        recorded_at=moment,
        causation_id=None,
        causation_position=None,
        correlation_id=None,
        payload_text="{}",
    )
    assert text == (
        "7|risk|2|00000000-0000-0000-0000-000000000001|alert.raised|1|"
        "1735689600000000|1735689600000000||||{}"
    )


@given(st.lists(st.text(max_size=20), min_size=1, max_size=10))
def test_chain_when_folded_then_each_link_is_sha256_of_previous_and_text(texts: list[str]) -> None:
    previous = GENESIS
    for text in texts:
        link = chain(previous, text)
        assert link == hashlib.sha256(previous + text.encode("utf-8", "surrogatepass")).digest()
        previous = link


@given(st.lists(st.text(max_size=5), min_size=2, max_size=6, unique=True))
def test_chain_when_two_links_swap_then_head_differs(texts: list[str]) -> None:
    def fold(items: list[str]) -> bytes:
        head = GENESIS
        for item in items:
            head = chain(head, item)
        return head

    swapped = [texts[1], texts[0], *texts[2:]]
    assert fold(texts) != fold(swapped)


def test_render_when_string_ends_with_newline_then_still_escaped() -> None:
    assert render_jsonb({"\n": "a\n"}) == '{"\\n": "a\\n"}'
