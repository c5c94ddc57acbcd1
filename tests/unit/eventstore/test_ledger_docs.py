"""docs/LEDGER.md says what the code does: the audit query an auditor copies from it is the one
the tests run, and the timestamp range it states is the one enforced."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

from eventstore import codec, sql

ROOT = Path(__file__).resolve().parents[3]


def _normalised(query: str) -> str:
    return re.sub(r"\s+", " ", query).strip().rstrip(";").strip()


def test_the_documented_audit_query_is_the_one_the_code_and_tests_run() -> None:
    page = (ROOT / "docs" / "LEDGER.md").read_text(encoding="utf-8")
    section = page.split("## Verifying the chain with nothing but psql", 1)[1]
    match = re.search(r"```sql\n(.*?)```", section, re.S)
    assert match is not None
    assert _normalised(match.group(1)) == _normalised(sql.AUDIT_QUERY)


def test_the_documented_timestamp_range_is_the_enforced_one() -> None:
    text = (ROOT / "docs" / "LEDGER.md").read_text(encoding="utf-8")
    enforced = (codec.EARLIEST, codec.LATEST)
    assert enforced == (datetime(1970, 1, 1, tzinfo=UTC), datetime(3000, 1, 1, tzinfo=UTC))
    assert "from 1970-01-01T00:00:00Z (included) to 3000-01-01T00:00:00Z (excluded)" in text
