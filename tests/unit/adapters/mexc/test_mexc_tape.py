"""The bundled demo tape: deterministic, MEXC-shaped, and carrying the scenes the demo relies on."""

from __future__ import annotations

import gzip
from collections import defaultdict
from decimal import Decimal
from itertools import islice, pairwise

import msgspec
import pytest

from adapters.mexc import tape
from adapters.mexc.protocol import MexcParser, Pushed, Rejected
from aggregates.events import TickersSnapshotted, TradeTicked

NUMBERS = msgspec.json.Encoder(decimal_format="number")


@pytest.fixture(scope="module")
def entries() -> list[tape.TapeEntry]:
    return tape.read_tape(tape.DEMO_TAPE)


@pytest.fixture(scope="module")
def trades(entries: list[tape.TapeEntry]) -> dict[str, list[TradeTicked]]:
    parser = MexcParser()
    by_symbol: dict[str, list[TradeTicked]] = defaultdict(list)
    for entry in entries:
        parsed = parser.parse(entry.frame)
        if isinstance(parsed, Pushed):
            for event in parsed.events:
                if isinstance(event, TradeTicked):
                    by_symbol[event.symbol].append(event)
    return by_symbol


def test_generate_when_same_seed_then_content_equals_the_committed_tape() -> None:
    regenerated = b"".join(NUMBERS.encode(line) + b"\n" for line in tape.generate_tape())
    assert regenerated == gzip.decompress(tape.DEMO_TAPE.read_bytes())


def test_generate_when_seed_differs_then_tape_differs() -> None:
    assert list(islice(tape.generate_tape(seed=1), 300)) != list(islice(tape.generate_tape(), 300))


def test_demo_tape_when_committed_then_small(entries: list[tape.TapeEntry]) -> None:
    assert tape.DEMO_TAPE.stat().st_size < 2_000_000
    assert all(a.at_ms <= b.at_ms for a, b in pairwise(entries))


def test_demo_tape_when_parsed_then_only_the_deliberate_raw_lines_are_rejected(
    entries: list[tape.TapeEntry],
) -> None:
    parser = MexcParser()
    results = [(entry, parser.parse(entry.frame)) for entry in entries]
    rejected = [(entry, parsed) for entry, parsed in results if isinstance(parsed, Rejected)]
    assert all(entry.raw is not None for entry, _ in rejected)
    assert len(rejected) == sum(1 for entry in entries if entry.raw is not None) >= 4
    assert len({parsed.reason for _, parsed in rejected}) >= 4


def test_demo_tape_when_played_then_three_or_four_symbols_trade_at_realistic_prices(
    trades: dict[str, list[TradeTicked]],
) -> None:
    assert 3 <= len(trades) <= 4
    assert Decimal(50_000) < trades["BTC_USDT"][0].price < Decimal(200_000)
    assert sum(len(ticks) for ticks in trades.values()) > 5_000


def test_demo_tape_when_played_then_it_has_a_data_silence_of_about_two_minutes(
    entries: list[tape.TapeEntry],
) -> None:
    longest = max(b.at_ms - a.at_ms for a, b in pairwise(entries))
    assert 100_000 <= longest <= 180_000


def test_demo_tape_when_played_then_tickers_arrive_every_second_outside_the_silence(
    entries: list[tape.TapeEntry],
) -> None:
    parser = MexcParser()
    seconds = {
        parsed.events[0].at_ms // 1000
        for entry in entries
        if isinstance(parsed := parser.parse(entry.frame), Pushed)
        and isinstance(parsed.events[:1] and parsed.events[0], TickersSnapshotted)
    }
    start = tape.DEMO_START_MS // 1000
    silence = range(start + tape.SILENCE_S[0], start + tape.SILENCE_S[1])
    expected = {s for s in range(start, start + tape.DURATION_S) if s not in silence}
    assert seconds == expected


def price_at(ticks: list[TradeTicked], second: int) -> Decimal:
    cutoff = tape.DEMO_START_MS + second * 1000
    return [tick.price for tick in ticks if tick.at_ms < cutoff][-1]


def test_demo_tape_when_played_then_every_symbol_crashes_late(
    trades: dict[str, list[TradeTicked]],
) -> None:
    start, end = tape.CRASH_S
    for ticks in trades.values():
        drop = price_at(ticks, end) / price_at(ticks, start) - 1
        assert drop < Decimal("-0.07")
    assert start > tape.DURATION_S * 0.75


def test_demo_tape_when_played_then_clear_trends_both_ways_before_the_crash(
    trades: dict[str, list[TradeTicked]],
) -> None:
    moves = [
        price_at(ticks, second + 300) / price_at(ticks, second) - 1
        for ticks in trades.values()
        for second in range(240, tape.CRASH_S[0] - 300, 60)
        if not (tape.SILENCE_S[0] - 300 <= second < tape.SILENCE_S[1])
    ]
    assert max(moves) > Decimal("0.02")
    assert min(moves) < Decimal("-0.02")


def test_contract_specs_when_loaded_then_cover_every_traded_symbol(
    trades: dict[str, list[TradeTicked]],
) -> None:
    specs = {spec.symbol: spec for spec in tape.demo_contract_specs()}
    assert set(specs) == set(trades)
    assert specs["BTC_USDT"].contract_size == Decimal("0.0001")
