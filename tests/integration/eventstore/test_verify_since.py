"""``claire verify --since FILE``: from a trusted anchor (``verify --anchor FILE``) to the head.

The check costs the events after the anchor; a change after the anchor, a rewritten prefix that
moved the anchored hash, a log shorter than the anchor and a bad anchor file are all caught."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cli.main import main
from eventstore import EventStore
from tests.integration.eventstore.eventstore_helpers import (
    alert,
    as_superuser_without_triggers,
    fill_mixed,
    tick,
)

pytestmark = [pytest.mark.db]


async def _cli(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


async def _anchored(store: EventStore, url: str, path: Path) -> None:
    """Ten events, an anchor at 10, then five more."""
    await fill_mixed(store)
    assert await _cli("--database-url", url, "verify", "--anchor", str(path)) == 0
    await store.append("risk", [alert(n, "after the anchor", label="later") for n in range(5)])


async def test_verify_since_when_intact_then_checks_only_the_events_after_the_anchor(
    store: EventStore, ledger_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    anchor = tmp_path / "day.anchor"
    await _anchored(store, ledger_url, anchor)
    capsys.readouterr()
    assert await _cli("--database-url", ledger_url, "verify", "--since", str(anchor)) == 0
    assert "verify ok: 5 events after the anchor at 10" in capsys.readouterr().out


async def test_verify_since_when_an_event_after_the_anchor_is_edited_then_fails_there(
    store: EventStore, ledger_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    anchor = tmp_path / "day.anchor"
    await _anchored(store, ledger_url, anchor)
    await as_superuser_without_triggers(
        ledger_url,
        "UPDATE ledger.events SET payload = jsonb_set(payload, '{message}', '\"x\"')"
        " WHERE position = 13",
    )
    capsys.readouterr()
    assert await _cli("--database-url", ledger_url, "verify", "--since", str(anchor)) == 1
    assert "position 13" in capsys.readouterr().err


async def test_verify_since_when_the_prefix_was_rewritten_consistently_then_fails(
    store: EventStore, ledger_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    anchor = tmp_path / "day.anchor"
    await _anchored(store, ledger_url, anchor)
    # An attacker with superuser rights edits position 2 and rebuilds every hash after it.
    await as_superuser_without_triggers(
        ledger_url,
        "UPDATE ledger.events SET payload = jsonb_set(payload, '{price}', '\"1\"')"
        " WHERE position = 2",
        f"""
        DO $$
        DECLARE r record; prev bytea := '\\x{"00" * 32}'::bytea;
        BEGIN
            FOR r IN SELECT position FROM ledger.events ORDER BY position LOOP
                UPDATE ledger.events e SET hash = sha256(prev || convert_to(
                    {__import__("eventstore.canonical").canonical.CANONICAL_SQL}, 'UTF8'))
                WHERE e.position = r.position RETURNING e.hash INTO prev;
            END LOOP;
            UPDATE ledger.head SET hash = prev;
        END $$
        """,
    )
    assert await _cli("--database-url", ledger_url, "verify") == 0  # consistent, so...
    capsys.readouterr()
    assert await _cli("--database-url", ledger_url, "verify", "--since", str(anchor)) == 1
    assert "no longer has the anchored hash" in capsys.readouterr().err  # ...only the anchor


async def test_verify_since_when_the_log_ends_before_the_anchor_then_fails(
    store: EventStore, ledger_url: str, tmp_path: Path
) -> None:
    await store.append("market-BTC_USDT", [tick(n) for n in range(3)])
    head, digest = await store.head()
    anchor = tmp_path / "future.anchor"
    anchor.write_text(f"{head + 5}:{digest.hex()}\n", encoding="utf-8")
    assert await _cli("--database-url", ledger_url, "verify", "--since", str(anchor)) == 1


@pytest.mark.parametrize("content", [None, "", "not an anchor", "3:abc", "\xff"])
async def test_verify_since_when_the_anchor_file_is_missing_or_malformed_then_exit_2(
    store: EventStore,
    ledger_url: str,
    tmp_path: Path,
    content: str | None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    anchor = tmp_path / "bad.anchor"
    if content is not None:
        anchor.write_bytes(content.encode("latin-1"))
    assert await _cli("--database-url", ledger_url, "verify", "--since", str(anchor)) == 2
    err = capsys.readouterr().err
    assert "claire:" in err and "Traceback" not in err
