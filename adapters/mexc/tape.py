"""The demo market tape: a deterministic, MEXC-shaped scripted market, and its reader.

A tape is JSONL, one ``{"at_ms": ..., "msg": {...}}`` per line, where ``msg`` is a MEXC push exactly
as the exchange would send it (``push.deal``, ``push.tickers``, ``push.kline``). A line may instead
carry ``"raw": "..."``: a deliberately malformed frame, sent verbatim, so the demo proves that bad
input is counted and skipped. The generator draws everything from ``random.Random(seed)``, so the
same seed always yields the same tape (``scripts/make_demo_tape.py`` writes the bundled one).

The script (seconds from the start): warm-up, alternating up/down trends that a few-minute
momentum lookback catches, a two-minute silence with no data at all, a broad rally, then a sharp
crash on every symbol (deep enough to trip a ~5 % daily drawdown on a leveraged book), aftermath.
"""

from __future__ import annotations

import gzip
import io
import json
import math
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec

from aggregates.events import ContractSpecified

DATA_DIR = Path(__file__).resolve().parent / "data"
DEMO_TAPE = DATA_DIR / "demo_tape.jsonl.gz"
DEMO_SPECS = DATA_DIR / "demo_contracts.json"
DEMO_SEED = 20250602
DEMO_START_MS = 1748854800000  # 2025-06-02T09:00:00Z: the whole tape lies inside one UTC day
DURATION_S = 1800
SILENCE_S = (960, 1080)
CRASH_S = (1560, 1650)


@dataclass(frozen=True, slots=True)
class Market:
    """One contract of the script: MEXC contract-detail figures plus how it trades."""

    symbol: str
    price: Decimal
    price_unit: Decimal
    contract_size: Decimal
    open_24h_ratio: float  # price 24 h ago / start price, sets the initial riseFallRate
    volume_24h: int  # contracts traded in the 24 h before the tape
    sigma: float  # per-second log-return noise
    size_mu: float  # log of a typical trade size in contracts
    rate: float  # trades per second, baseline
    legs: tuple[tuple[int, int, float], ...] = ()  # (start s, end s, total log-return)
    trades: bool = True


MARKETS: tuple[Market, ...] = (
    Market("BTC_USDT", Decimal("104250.0"), Decimal("0.1"), Decimal("0.0001"), 0.988, 310_000_000,
           0.00012, 5.7, 1.6,
           ((240, 720, 0.030), (1080, 1440, -0.025), (1440, 1560, 0.015), (*CRASH_S, -0.095),
            (1650, 1800, 0.01))),
    Market("ETH_USDT", Decimal("2520.00"), Decimal("0.01"), Decimal("0.01"), 1.008, 95_000_000,
           0.00015, 4.8, 1.4,
           ((240, 720, 0.005), (720, 960, 0.040), (1080, 1440, -0.010), (1440, 1560, 0.020),
            (*CRASH_S, -0.125), (1650, 1800, 0.012))),
    Market("SOL_USDT", Decimal("152.30"), Decimal("0.01"), Decimal("0.1"), 0.975, 60_000_000,
           0.00020, 4.6, 1.2,
           ((240, 720, -0.040), (1080, 1440, 0.050), (1440, 1560, 0.025), (*CRASH_S, -0.150),
            (1650, 1800, 0.015))),
    Market("DOGE_USDT", Decimal("0.18850"), Decimal("0.00001"), Decimal("100"), 0.96, 42_000_000,
           0.00025, 4.5, 1.0,
           ((240, 720, -0.010), (720, 960, 0.030), (1080, 1440, 0.020), (1440, 1560, 0.030),
            (*CRASH_S, -0.160), (1650, 1800, 0.02))),
    # Tickers only: a thin, wildly moving contract the screener's volume floor must skip,
    # and a liquid one that barely moves.
    Market("PEPE_USDT", Decimal("0.0000112000"), Decimal("0.0000000001"), Decimal("10000000"),
           0.74, 9_000, 0.0004, 3.0, 0.0, trades=False),
    Market("XRP_USDT", Decimal("2.2150"), Decimal("0.0001"), Decimal("1"), 0.997, 80_000_000,
           0.00008, 5.0, 0.0, trades=False),
)  # fmt: skip

_encoder = msgspec.json.Encoder(decimal_format="number")


def _drift(market: Market, second: int) -> float:
    for start, end, total in market.legs:
        if start <= second < end:
            return total / (end - start)
    return 0.0


def _round(value: float, unit: Decimal) -> Decimal:
    steps = max(1, round(Decimal(repr(value)) / unit))
    return (unit * steps).quantize(unit)


def generate_tape(
    seed: int = DEMO_SEED, start_ms: int = DEMO_START_MS, duration_s: int = DURATION_S
) -> Iterator[dict[str, Any]]:
    """Tape lines in time order (``at_ms`` non-decreasing), fully determined by ``seed``."""
    rng = random.Random(seed)
    log_price = {m.symbol: math.log(float(m.price)) for m in MARKETS}
    open_24h = {m.symbol: float(m.price) * m.open_24h_ratio for m in MARKETS}
    last = {m.symbol: m.price for m in MARKETS}
    high = {
        m.symbol: max(m.price, _round(open_24h[m.symbol] * 1.02, m.price_unit)) for m in MARKETS
    }
    low = {m.symbol: min(m.price, _round(open_24h[m.symbol] * 0.97, m.price_unit)) for m in MARKETS}
    volume = {m.symbol: m.volume_24h for m in MARKETS}
    bars: dict[str, dict[str, Any]] = {}
    malformed_at = {300: 0, 610: 1, 850: 2, 1200: 3, 1500: 4}
    for second in range(duration_s):
        base_ms = start_ms + second * 1000
        silent = SILENCE_S[0] <= second < SILENCE_S[1]
        crash = CRASH_S[0] <= second < CRASH_S[1]
        lines: list[tuple[int, int, dict[str, Any] | str]] = []
        for m in MARKETS:
            drift = _drift(m, second)
            log_price[m.symbol] += drift + rng.gauss(0.0, m.sigma * (2.5 if crash else 1.0))
            if silent or not m.trades:
                last[m.symbol] = _round(math.exp(log_price[m.symbol]), m.price_unit)
                continue
            intensity = m.rate * (3.5 if crash else 1.0) * (1.0 + min(2.0, abs(drift) * 4000))
            count = _poisson(rng, intensity)
            if count == 0:
                continue
            deals: list[dict[str, Any]] = []
            for offset in sorted(rng.randrange(1000) for _ in range(count)):
                price = _round(
                    math.exp(log_price[m.symbol] + rng.gauss(0.0, m.sigma / 3)), m.price_unit
                )
                buy_bias = 0.5 + max(-0.35, min(0.35, drift * 3000))
                contracts = max(1, int(rng.lognormvariate(m.size_mu, 1.1) * (2 if crash else 1)))
                deals.append({
                    "p": price, "v": contracts, "T": 1 if rng.random() < buy_bias else 2,
                    "O": rng.choices((1, 2, 3), (0.4, 0.35, 0.25))[0],
                    "M": 1 if rng.random() < 0.03 else 2, "t": base_ms + offset,
                })  # fmt: skip
                last[m.symbol] = price
                high[m.symbol] = max(high[m.symbol], price)
                low[m.symbol] = min(low[m.symbol], price)
                volume[m.symbol] += contracts
                _bar(bars, m, base_ms + offset, price, contracts)
            deals.reverse()  # MEXC lists the newest deal first
            ts = deals[0]["t"]
            data: Any = deals[0] if len(deals) == 1 else deals
            lines.append(
                (ts, 0, {"channel": "push.deal", "data": data, "symbol": m.symbol, "ts": ts})
            )
        if silent:
            continue
        ticker_ms = base_ms + 999
        lines.append((ticker_ms, 1, _tickers(last, open_24h, high, low, volume, ticker_ms)))
        if second % 5 == 4:
            for symbol, bar in sorted(bars.items()):
                lines.append((ticker_ms, 2, {"channel": "push.kline", "data": dict(bar),
                                             "symbol": symbol, "ts": ticker_ms}))  # fmt: skip
        if second in malformed_at:
            lines.append((base_ms + 500, 3, _malformed(malformed_at[second], base_ms + 500)))
        for at_ms, _, msg in sorted(lines, key=lambda line: (line[0], line[1])):
            yield (
                {"at_ms": at_ms, "raw": msg}
                if isinstance(msg, str)
                else {"at_ms": at_ms, "msg": msg}
            )


def _poisson(rng: random.Random, mean: float) -> int:
    threshold, count, product = math.exp(-mean), 0, rng.random()
    while product > threshold:
        count += 1
        product *= rng.random()
    return count


def _bar(bars: dict[str, dict[str, Any]], m: Market, at_ms: int, price: Decimal, q: int) -> None:
    start = at_ms // 60_000 * 60
    bar = bars.get(m.symbol)
    if bar is None or bar["t"] != start:
        bar = {"symbol": m.symbol, "interval": "Min1", "t": start, "o": price, "h": price,
               "l": price, "c": price, "q": 0, "a": Decimal(0)}  # fmt: skip
        bars[m.symbol] = bar
    bar["h"], bar["l"], bar["c"] = max(bar["h"], price), min(bar["l"], price), price
    bar["q"] += q
    bar["a"] = (bar["a"] + price * q * m.contract_size).quantize(Decimal("0.0001"))


def _tickers(last, open_24h, high, low, volume, ts: int) -> dict[str, Any]:
    data = []
    for m in MARKETS:
        price = last[m.symbol]
        rate = Decimal(repr(float(price) / open_24h[m.symbol] - 1)).quantize(Decimal("0.0001"))
        data.append({
            "symbol": m.symbol, "lastPrice": price, "riseFallRate": rate,
            "fairPrice": price, "indexPrice": price, "volume24": volume[m.symbol],
            "amount24": (volume[m.symbol] * m.contract_size * price).quantize(Decimal(1)),
            "high24Price": max(high[m.symbol], price), "lower24Price": min(low[m.symbol], price),
            "timestamp": ts,
        })  # fmt: skip
    return {"channel": "push.tickers", "data": data, "ts": ts}


def _malformed(kind: int, ts: int) -> str:
    """Frames MEXC should never send; each must be counted and skipped, never stored."""
    deal = {"p": 104000.0, "v": 5, "T": 1, "O": 1, "M": 2, "t": ts}
    frames = [
        {"channel": "push.deal", "symbol": "BTC_USDT", "data": {**deal, "p": -104000.0}, "ts": ts},
        {"channel": "push.deal", "symbol": "ETH_USDT", "data": {**deal, "p": "NaN"}, "ts": ts},
        {"channel": "push.mystery", "symbol": "SOL_USDT", "data": {}, "ts": ts},
        {"channel": "push.deal", "symbol": "DOGE_USDT", "data": {**deal, "t": ts - 86_400_000},
         "ts": ts},
    ]  # fmt: skip
    if kind == 4:
        return json.dumps(frames[0])[:-20]  # truncated JSON
    return json.dumps(frames[kind])


def write_tape(path: Path, lines: Iterable[dict[str, Any]]) -> int:
    """Write gzip-compressed JSONL (mtime 0, so the bytes depend on the content only)."""
    count = 0
    buffer = io.BytesIO()
    for line in lines:
        buffer.write(_encoder.encode(line))
        buffer.write(b"\n")
        count += 1
    with (
        path.open("wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, compresslevel=9) as gz,
    ):
        gz.write(buffer.getvalue())
    return count


# --------------------------------------------------------------------------- reading


class TapeEntry(msgspec.Struct, frozen=True):
    """One line: ``msg`` keeps the exact JSON text of the push (numbers are never re-rounded)."""

    at_ms: int
    msg: msgspec.Raw = msgspec.Raw(b"")
    raw: str | None = None

    @property
    def frame(self) -> str:
        """The text frame to send: the push's JSON, or the malformed text verbatim."""
        return self.raw if self.raw is not None else bytes(self.msg).decode()


_entry_decoder = msgspec.json.Decoder(TapeEntry)


def read_tape(path: Path | str) -> list[TapeEntry]:
    """All entries of a ``.jsonl`` or ``.jsonl.gz`` tape, in file order."""
    path = Path(path)
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    return [_entry_decoder.decode(line) for line in data.splitlines() if line.strip()]


def demo_contract_specs(at_ms: int = DEMO_START_MS) -> list[ContractSpecified]:
    """The demo contracts as ``ContractSpecified`` events (source: configuration, not exchange)."""
    specs = json.loads(DEMO_SPECS.read_text())
    return [
        ContractSpecified(
            at_ms=at_ms,
            symbol=spec["symbol"],
            contract_size=Decimal(spec["contractSize"]),
            min_contracts=Decimal(spec["minVol"]),
            max_contracts=Decimal(spec["maxVol"]),
            contracts_step=Decimal(spec["volUnit"]),
            price_step=Decimal(spec["priceUnit"]),
            taker_fee_rate=Decimal(spec["takerFeeRate"]),
            maker_fee_rate=Decimal(spec["makerFeeRate"]),
            api_allowed=spec["apiAllowed"],
            source="config",
        )
        for spec in specs["data"]
    ]


def contract_specs_document() -> dict[str, Any]:
    """``contract/detail``-shaped specs of the traded demo symbols (decimals as strings)."""
    return {
        "success": True,
        "code": 0,
        "data": [
            {
                "symbol": m.symbol,
                "displayNameEn": f"{m.symbol} PERPETUAL",
                "baseCoin": m.symbol.split("_")[0],
                "quoteCoin": "USDT",
                "settleCoin": "USDT",
                "contractSize": str(m.contract_size),
                "minLeverage": 1,
                "maxLeverage": 125 if m.symbol == "BTC_USDT" else 100,
                "priceScale": -int(m.price_unit.as_tuple().exponent),
                "volScale": 0,
                "priceUnit": str(m.price_unit),
                "volUnit": "1",
                "minVol": "1",
                "maxVol": "5000000",
                "takerFeeRate": "0.0006",
                "makerFeeRate": "0.0002",
                "apiAllowed": False,
                "state": 0,
            }
            for m in MARKETS
            if m.trades
        ],
    }
