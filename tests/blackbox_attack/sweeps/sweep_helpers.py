"""Recorded sessions for the sweep attack, built the documented way (the helpers the replay
tests record with: a generated market through signal + risk + paper, appended in log order),
and ``replay`` run as a real command in a subprocess (exit code, stdout, stderr), or in-process
through its ``main`` where a process start proves nothing more (``tests/support/cli_run.py``)."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Callable, Iterator
from decimal import Decimal

import asyncpg
import msgspec
import pytest

from aggregates import events as ev
from eventstore.admin import create_database, drop_database
from eventstore.migrations import upgrade_async
from tests.integration.replay.replay_helpers import append_log, config_event, market, session
from tests.support.cli_run import CliRun, environment, run_main, run_tool

#: the generated session runs 2025-06-01T23:30Z .. 00:40Z (70 minutes, across UTC midnight)
FROM, TO = "2025-06-01T23:30:00Z", "2025-06-02T00:40:00Z"
#: walk-forward with --train 0.02 --test 0.01: the first test span starts 28.8 minutes in
FIRST_TEST_MS = 1_748_820_600_000 + 1_728_000


def replay(*argv: str, timeout: float = 120) -> CliRun:
    """``replay`` as a real process: what an operator sees (exit status, stdout, stderr)."""
    return run_tool("replay", *argv, env=environment(PYTHONWARNINGS="ignore"), timeout=timeout)


def replay_in_process(*argv: str) -> CliRun:
    """``replay``'s ``main(argv)`` in this process: the same code path without a process start,
    for argument cases and for the reference runs a sweep's figures are compared with."""
    return run_main("replay", *argv)


def _build(postgres_server_url: str, events: list[ev.Event]) -> Iterator[str]:
    name = f"claire_test_a22_{os.getpid()}_{secrets.token_hex(4)}"

    async def make() -> str:
        url = await create_database(postgres_server_url, name)
        await upgrade_async(url)
        await append_log(url, session(events))
        return url

    url = asyncio.run(make())
    try:
        yield url
    finally:
        asyncio.run(drop_database(postgres_server_url, name))


@pytest.fixture(scope="session")
def ledger(postgres_server_url: str) -> Iterator[str]:
    yield from _build(postgres_server_url, market(seed=11, minutes=70))


def mirrored_after(events: list[ev.Event], at_ms: int) -> list[ev.Event]:
    """The same market up to ``at_ms``; after it every price move is mirrored (a rise becomes
    a fall of the same size), so whatever did well there before now does differently."""
    out: list[ev.Event] = []
    anchor: dict[str, Decimal] = {}
    for event in events:
        if isinstance(event, ev.TradeTicked) and event.at_ms >= at_ms:
            base = anchor.setdefault(event.symbol, event.price)
            price = max(Decimal("0.1"), 2 * base - event.price)
            event = msgspec.structs.replace(event, price=price)
        out.append(event)
    return out


@pytest.fixture(scope="session")
def mirrored_ledger(postgres_server_url: str) -> Iterator[str]:
    yield from _build(
        postgres_server_url, mirrored_after(market(seed=11, minutes=70), FIRST_TEST_MS)
    )


@pytest.fixture
def head_of() -> Callable[[str], int]:
    async def head(url: str) -> int:
        conn = await asyncpg.connect(url)
        try:
            return int(await conn.fetchval("SELECT count(*) FROM ledger.events"))
        finally:
            await conn.close()

    return lambda url: asyncio.run(head(url))


#: a second configuration mid-session (00:05Z): smaller exposure, tighter stop
RECONFIGURED_MS = 1_748_820_600_000 + 35 * 60_000


def reconfigured(events: list[ev.Event]) -> list[ev.Event]:
    out: list[ev.Event] = []
    for event in events:
        at_ms = getattr(event, "at_ms", 0)
        if at_ms >= RECONFIGURED_MS and not any(isinstance(e, ev.ConfigActivated) for e in out[1:]):
            out.append(config_event(at_ms, MAX_EXPOSURE_PCT="50", STOP_LOSS_PCT="3"))
        out.append(event)
    return out


@pytest.fixture(scope="session")
def reconfigured_ledger(postgres_server_url: str) -> Iterator[str]:
    yield from _build(postgres_server_url, reconfigured(market(seed=11, minutes=70)))
