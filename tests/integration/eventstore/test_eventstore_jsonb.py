"""Our jsonb rendering equals PostgreSQL's, so hashes computed before the insert verify after."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventstore.canonical import CanonicalError, render_jsonb

pytestmark = [pytest.mark.db]

_text = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12
)
_scalars = st.none() | st.booleans() | st.integers(-(10**30), 10**30) | _text
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=5),
    max_leaves=25,
)


@pytest.fixture
async def conn(ledger_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(ledger_url)
    try:
        yield connection
    finally:
        await connection.close()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(values=st.lists(_json, min_size=1, max_size=20))
async def test_render_when_arbitrary_json_then_equals_postgres_jsonb_text(
    conn: asyncpg.Connection, values: list[object]
) -> None:
    import json

    sent = [json.dumps(value, ensure_ascii=False) for value in values]
    rendered = await conn.fetch(
        "SELECT v::jsonb::text FROM unnest($1::text[]) WITH ORDINALITY AS t(v, i) ORDER BY i",
        sent,
    )
    assert [row[0] for row in rendered] == [render_jsonb(value) for value in values]


def test_render_when_float_or_nul_then_refused() -> None:
    with pytest.raises(CanonicalError, match="float"):
        render_jsonb({"price": 1.5})
    with pytest.raises(CanonicalError, match="NUL"):
        render_jsonb({"note": "a\x00b"})
    with pytest.raises(CanonicalError, match="Unicode"):
        render_jsonb({"note": "\ud800"})
