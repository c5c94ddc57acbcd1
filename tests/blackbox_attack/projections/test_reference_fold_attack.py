"""readmodel.positions / exposure / equity_daily against an independent fold written from the
usual netting rules (workload.reference): size after fills, average entry, realised PnL,
fees; extreme decimals and many symbols must fold too (README: Decimal for money, the
projections "can be rebuilt bit for bit at any time")."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from decimal import Decimal

from eventstore import EventStore
from tests.blackbox_attack.projections.proj_helpers import (
    Projector,
    append,
    base_ledger,
    caught_up,
    claire,
    config_event,
    fetch,
    order_filled,
    readmodels,
    spec,
    tick,
    until,
)
from tests.blackbox_attack.projections.workload import close, reference, session

MakeUrl = Callable[..., Awaitable[str]]
SYMBOLS = ("BTC_USDT", "ETH_USDT", "SOL_USDT")
DAY = 86_400_000


async def logged(url: str) -> list[object]:
    store = await EventStore.connect(url)
    try:
        return [recorded.event async for recorded in store.read_all(after=0)]
    finally:
        await store.close()


async def test_positions_when_a_session_with_flips_and_partial_fills_rebuilt_then_match_reference(
    fresh_database_url: MakeUrl,
) -> None:
    url = await fresh_database_url()
    await base_ledger(url, SYMBOLS)
    await append(url, session(250, SYMBOLS, seed=42), batch=True)
    result = await claire(url, "projections", "rebuild")
    assert result.code == 0, result.text
    books = reference(await logged(url))  # type: ignore[arg-type]
    rows = {r["symbol"]: r for r in await fetch(url, "SELECT * FROM readmodel.positions")}
    traded = {s for s, b in books.items() if b.fees or b.contracts or b.realised}
    assert set(rows) >= {s for s in traded if books[s].contracts != 0}
    for symbol, book in books.items():
        row = rows.get(symbol)
        if row is None:
            assert book.contracts == 0
            continue
        assert row["contracts"] == book.contracts, symbol
        expected = "long" if book.contracts > 0 else "short" if book.contracts < 0 else "flat"
        assert row["direction"] == expected, symbol
        if book.contracts:
            assert close(row["average_entry"], book.entry), (symbol, row["average_entry"], book)
        assert close(row["realised_pnl"], book.realised), (symbol, row["realised_pnl"], book)
        assert row["fees"] == book.fees, symbol
    account = (await fetch(url, "SELECT * FROM readmodel.exposure"))[0]
    assert close(account["realised_pnl"], sum(b.realised for b in books.values()))
    assert account["fees"] == sum(b.fees for b in books.values())
    assert account["open_positions"] == sum(1 for b in books.values() if b.contracts)
    assert close(account["cash"], 10000 + sum(b.realised - b.fees for b in books.values()))


async def test_positions_when_prices_and_sizes_are_extreme_decimals_then_pnl_is_exact(
    fresh_database_url: MakeUrl,
) -> None:
    url = await fresh_database_url()
    await append(url, [config_event(), spec("HUGE_USDT", "1"), spec("TINY_USDT", "1E-12")])
    await append(
        url,
        [
            *order_filled("h1", "HUGE_USDT", "buy", "1E+20", "1E+25", "0"),
            *order_filled(
                "h2", "HUGE_USDT", "sell", "3E+19", "1.00000000000000000000000000000001E+25", "0"
            ),
            *order_filled("t1", "TINY_USDT", "sell", "5E+15", "0.000000000001", "0"),
            *order_filled("t2", "TINY_USDT", "buy", "5E+15", "0.000000000002", "0"),
        ],
    )
    result = await claire(url, "projections", "rebuild")
    assert result.code == 0, result.text[-800:]
    rows = {r["symbol"]: r for r in await fetch(url, "SELECT * FROM readmodel.positions")}
    assert rows["HUGE_USDT"]["contracts"] == Decimal("7E+19")
    # 3e19 contracts x 1e-7 price gain x size 1
    assert rows["HUGE_USDT"]["realised_pnl"] == Decimal("3E+12")
    # short 5e15 contracts from 1e-12 to 2e-12, size 1e-12
    assert rows["TINY_USDT"]["realised_pnl"] == Decimal("-5E-9")
    assert rows["TINY_USDT"]["contracts"] == 0


async def test_orders_when_an_order_of_thirty_digit_size_fills_exactly_then_filled_not_refused(
    fresh_database_url: MakeUrl,
) -> None:
    url = await fresh_database_url()
    await append(url, [config_event(), spec("TINY_USDT", "1E-12")])
    size = "123456789012345678901234567890"
    await append(url, order_filled("t1", "TINY_USDT", "sell", size, "0.000000000001", "0"))
    result = await claire(url, "projections", "rebuild")
    assert result.code == 0, result.text[-800:]
    rows = await fetch(url, "SELECT status, filled_contracts FROM readmodel.orders")
    assert [tuple(r) for r in rows] == [("FILLED", Decimal(size))]
    positions = await fetch(url, "SELECT contracts FROM readmodel.positions")
    assert positions[0]["contracts"] == Decimal("-" + size)  # exact, not -Decimal(size) (28 digits)


async def test_projections_when_a_hundred_and_twenty_symbols_trade_then_every_position_is_projected(
    fresh_database_url: MakeUrl,
) -> None:
    symbols = [f"S{n:03d}_USDT" for n in range(120)]
    url = await fresh_database_url()
    await base_ledger(url, symbols)
    events = []
    for n, symbol in enumerate(symbols):
        events += order_filled(
            f"m{n}", symbol, "buy" if n % 2 else "sell", str(n + 1), "50", "0.01"
        )
    await append(url, events, batch=True)
    projector = Projector(url, duration=60).start()
    try:
        assert await until(lambda: caught_up(url)), "the projector never reached the head"
    finally:
        projector.kill()
    live = await readmodels(url)
    assert (await claire(url, "projections", "rebuild")).code == 0
    assert await readmodels(url) == live
    rows = await fetch(url, "SELECT symbol, contracts FROM readmodel.positions")
    assert {r["symbol"]: r["contracts"] for r in rows} == {
        s: Decimal(n + 1) * (1 if n % 2 else -1) for n, s in enumerate(symbols)
    }


async def test_equity_daily_when_marks_move_over_two_days_then_peak_and_drawdown_follow_equity(
    fresh_database_url: MakeUrl,
) -> None:
    url = await fresh_database_url()
    await append(url, [config_event(), spec("BTC_USDT", "1")])
    await append(url, order_filled("d1", "BTC_USDT", "buy", "1", "100", "0", at=1000))
    await append(url, [tick("BTC_USDT", "150", 2000), tick("BTC_USDT", "80", 3000)])
    await append(url, [tick("BTC_USDT", "90", DAY + 1000), tick("BTC_USDT", "70", DAY + 2000)])
    assert (await claire(url, "projections", "rebuild")).code == 0
    days = await fetch(url, "SELECT * FROM readmodel.equity_daily ORDER BY day")
    assert len(days) == 2, days
    first, second = days
    assert first["start_equity"] == 10000
    assert first["peak_equity"] == 10050
    assert first["close_equity"] == 9980
    assert close(first["max_drawdown"], Decimal(70) / Decimal(10050))
    assert second["start_equity"] == 9980
    assert second["peak_equity"] == 9990
    assert second["close_equity"] == 9970
    assert close(second["max_drawdown"], Decimal(20) / Decimal(9990))
