"""MEXC contract WebSocket protocol: build requests, parse frames into ledger events. No I/O.

Like websockets keeps its protocol core free of sockets, this module only turns bytes into typed
values and back, so it can be fuzzed exhaustively. Every way a frame can be bad ends in a
:class:`Rejected` with a stable reason code (the ``reason`` label of
``claire_malformed_messages_total``); nothing else is ever raised by :meth:`MexcParser.parse`.

Numbers are decoded straight from their JSON text into :class:`~decimal.Decimal` (msgspec reads
the digits, never a binary float), so ``115309.8`` stays exactly ``Decimal("115309.8")``.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final, Literal

import msgspec

from aggregates.events import (
    SYMBOL,
    CandleClosed,
    Event,
    TickerQuote,
    TickersSnapshotted,
    TradeTicked,
)

# --------------------------------------------------------------------------- reason codes

OVERSIZED: Final = "oversized"
BAD_GZIP: Final = "bad_gzip"
BAD_JSON: Final = "bad_json"
BAD_SHAPE: Final = "bad_shape"
UNKNOWN_CHANNEL: Final = "unknown_channel"
BAD_SYMBOL: Final = "bad_symbol"
NON_FINITE: Final = "non_finite"
NON_POSITIVE: Final = "non_positive"
OUT_OF_RANGE: Final = "out_of_range"
BAD_TIMESTAMP: Final = "bad_timestamp"
TIMESTAMP_PAST: Final = "timestamp_past"
TIMESTAMP_FUTURE: Final = "timestamp_future"
INCONSISTENT_CANDLE: Final = "inconsistent_candle"

#: Every reason a frame (or one ticker line) can be rejected for; stable metric label values.
REASONS: Final = (
    OVERSIZED,
    BAD_GZIP,
    BAD_JSON,
    BAD_SHAPE,
    UNKNOWN_CHANNEL,
    BAD_SYMBOL,
    NON_FINITE,
    NON_POSITIVE,
    OUT_OF_RANGE,
    BAD_TIMESTAMP,
    TIMESTAMP_PAST,
    TIMESTAMP_FUTURE,
    INCONSISTENT_CANDLE,
)

DEFAULT_URL: Final = "wss://contract.mexc.com/edge"
KlineInterval = Literal[
    "Min1", "Min5", "Min15", "Min30", "Min60", "Hour4", "Hour8", "Day1", "Week1", "Month1"
]
_INTERVAL_MS: Final[dict[str, int]] = {
    "Min1": 60_000,
    "Min5": 300_000,
    "Min15": 900_000,
    "Min30": 1_800_000,
    "Min60": 3_600_000,
    "Hour4": 14_400_000,
    "Hour8": 28_800_000,
    "Day1": 86_400_000,
    "Week1": 604_800_000,
    "Month1": 31 * 86_400_000,
}
_MAX_MILLIS: Final = 32503680000000  # year 3000, as aggregates.events.Millis
_GZIP_MAGIC: Final = b"\x1f\x8b"


@dataclass(frozen=True, slots=True)
class ProtocolLimits:
    """Bounds beyond which a frame is rejected; generous for real markets, tight for garbage."""

    max_frame_bytes: int = 1 << 20
    max_price: Decimal = Decimal("1e9")
    max_contracts: Decimal = Decimal("1e12")
    max_decimal_places: int = 18
    max_rise_fall_rate: Decimal = Decimal(100)
    max_past_ms: int = 10 * 60_000
    max_future_ms: int = 60_000


# --------------------------------------------------------------------------- requests


def subscribe_deal(symbol: str) -> dict[str, Any]:
    """All deals of one contract, uncompressed (``compress``) and as text (``gzip``)."""
    return {"method": "sub.deal", "param": {"symbol": symbol, "compress": False}, "gzip": False}


def unsubscribe_deal(symbol: str) -> dict[str, Any]:
    return {"method": "unsub.deal", "param": {"symbol": symbol}}


def subscribe_tickers() -> dict[str, Any]:
    return {"method": "sub.tickers", "param": {}, "gzip": False}


def subscribe_kline(symbol: str, interval: KlineInterval = "Min1") -> dict[str, Any]:
    return {"method": "sub.kline", "param": {"symbol": symbol, "interval": interval}, "gzip": False}


def unsubscribe_kline(symbol: str) -> dict[str, Any]:
    return {"method": "unsub.kline", "param": {"symbol": symbol}}


def ping() -> dict[str, Any]:
    return {"method": "ping"}


_request_encoder = msgspec.json.Encoder()


def encode_request(request: dict[str, Any]) -> str:
    """A request as the JSON text frame MEXC expects."""
    return _request_encoder.encode(request).decode()


# --------------------------------------------------------------------------- parse results


@dataclass(frozen=True, slots=True)
class Rejected:
    """A frame (or one line of it) we refuse; ``reason`` is stable, ``detail`` names the path."""

    reason: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Pushed:
    """Events from a data push; ``skipped``: ticker lines dropped from an otherwise good one."""

    channel: str
    events: tuple[Event, ...]
    skipped: tuple[Rejected, ...] = ()
    symbol: str | None = None


@dataclass(frozen=True, slots=True)
class Acked:
    """``rs.<method>`` answer: ``method`` is e.g. ``sub.deal``; ``ok`` is false for ``rs.error``."""

    method: str
    ok: bool
    message: str


@dataclass(frozen=True, slots=True)
class Pong:
    server_ms: int | None


Parsed = Pushed | Acked | Pong | Rejected


# --------------------------------------------------------------------------- wire structs


class _Envelope(msgspec.Struct):
    channel: str
    data: msgspec.Raw = msgspec.Raw(b"null")
    symbol: str | None = None
    ts: int | str | None = None


class _Deal(msgspec.Struct, kw_only=True):
    price: Decimal = msgspec.field(name="p")
    contracts: Decimal = msgspec.field(name="v")
    taker: Literal[1, 2] = msgspec.field(name="T")
    effect: Literal[1, 2, 3] = msgspec.field(name="O")
    self_trade: Literal[1, 2] = msgspec.field(name="M", default=2)
    time_ms: int = msgspec.field(name="t")
    trade_id: int | str | None = msgspec.field(name="i", default=None)


class _Kline(msgspec.Struct):
    symbol: str
    interval: KlineInterval
    t: int
    o: Decimal
    c: Decimal
    h: Decimal
    l: Decimal  # noqa: E741 - MEXC's field name
    q: Decimal
    a: Decimal = Decimal(0)


class _Ticker(msgspec.Struct):
    symbol: str
    lastPrice: Decimal
    riseFallRate: Decimal
    volume24: Decimal
    fairPrice: Decimal | None = None


_envelope_decoder = msgspec.json.Decoder(_Envelope)
_deals_decoder = msgspec.json.Decoder(_Deal | list[_Deal])
_kline_decoder = msgspec.json.Decoder(_Kline)
_tickers_decoder = msgspec.json.Decoder(list[msgspec.Raw])
_ticker_decoder = msgspec.json.Decoder(_Ticker)
_any_decoder = msgspec.json.Decoder()

_TAKER: Final = {1: "buy", 2: "sell"}
_EFFECT: Final = {1: "open", 2: "close", 3: "unchanged"}


class _Reject(Exception):
    """Internal control flow: carries a rejection out of nested checks."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.rejection = Rejected(reason, detail)


# --------------------------------------------------------------------------- the parser


@dataclass
class MexcParser:
    """Stateful only for klines: a bar is final when a push with a newer window start arrives."""

    limits: ProtocolLimits = field(default_factory=ProtocolLimits)
    _pending: dict[tuple[str, str], _Kline] = field(default_factory=dict, init=False, repr=False)

    def parse(self, frame: bytes | bytearray | memoryview | str) -> Parsed:
        """One WebSocket frame (text, or gzip-compressed binary) into a typed result."""
        try:
            return self._parse(frame)
        except _Reject as rejected:
            return rejected.rejection
        except msgspec.ValidationError as error:
            return Rejected(BAD_SHAPE, str(error))
        except msgspec.DecodeError as error:
            return Rejected(BAD_JSON, str(error))
        except (ValueError, ArithmeticError, TypeError) as error:  # defensive: never escape
            return Rejected(BAD_SHAPE, f"{type(error).__name__}: {error}")

    def reset(self) -> None:
        """Forget pending bars (after a reconnect their continuation is unknown)."""
        self._pending.clear()

    # ---- framing

    def _payload(self, frame: bytes | bytearray | memoryview | str) -> bytes | str:
        limit = self.limits.max_frame_bytes
        if isinstance(frame, str):
            if len(frame) > limit:
                raise _Reject(OVERSIZED, f"text frame of {len(frame)} chars > {limit}")
            return frame
        data = bytes(frame)
        if len(data) > limit:
            raise _Reject(OVERSIZED, f"binary frame of {len(data)} bytes > {limit}")
        if not data.startswith(_GZIP_MAGIC):
            return data
        inflater = zlib.decompressobj(wbits=31)
        try:
            plain = inflater.decompress(data, limit + 1)
        except zlib.error as error:
            raise _Reject(BAD_GZIP, str(error)) from error
        if len(plain) > limit:
            raise _Reject(OVERSIZED, f"gzip frame inflates beyond {limit} bytes")
        if not inflater.eof:
            raise _Reject(BAD_GZIP, "truncated gzip stream")
        return plain

    def _parse(self, frame: bytes | bytearray | memoryview | str) -> Parsed:
        payload = self._payload(frame)
        try:
            envelope = _envelope_decoder.decode(payload)
        except msgspec.ValidationError:
            _any_decoder.decode(payload)  # raises DecodeError if it is not JSON at all
            raise
        channel = envelope.channel
        if channel == "push.deal":
            return self._deals(envelope)
        if channel == "push.tickers":
            return self._tickers(envelope)
        if channel == "push.kline":
            return self._kline(envelope)
        if channel == "pong":
            server_ms = _any_decoder.decode(envelope.data)
            return Pong(server_ms if type(server_ms) is int else None)
        if channel == "rs.error":
            return Acked("", ok=False, message=_text(envelope.data))
        if channel.startswith("rs.") and len(channel) <= 64:
            message = _text(envelope.data)
            return Acked(channel[3:], ok=message == "success", message=message)
        raise _Reject(UNKNOWN_CHANNEL, f"channel {channel[:64]!r}")

    # ---- channels

    def _frame_ts(self, envelope: _Envelope) -> int:
        ts = envelope.ts
        if isinstance(ts, str):
            if not ts.isascii() or not ts.isdigit() or len(ts) > 15:
                raise _Reject(BAD_TIMESTAMP, f"$.ts {ts[:32]!r} is not milliseconds")
            ts = int(ts)
        if ts is None:
            raise _Reject(BAD_SHAPE, "Object missing required field `ts`")
        if not 0 <= ts <= _MAX_MILLIS:
            raise _Reject(BAD_TIMESTAMP, f"$.ts {ts} out of range")
        return ts

    def _within(self, at_ms: int, frame_ts: int, path: str, *, past_extra: int = 0) -> None:
        if not 0 <= at_ms <= _MAX_MILLIS:
            raise _Reject(BAD_TIMESTAMP, f"{path} {at_ms} out of range")
        if at_ms < frame_ts - self.limits.max_past_ms - past_extra:
            raise _Reject(TIMESTAMP_PAST, f"{path} {at_ms} too far before ts {frame_ts}")
        if at_ms > frame_ts + self.limits.max_future_ms:
            raise _Reject(TIMESTAMP_FUTURE, f"{path} {at_ms} too far after ts {frame_ts}")

    def _deals(self, envelope: _Envelope) -> Pushed:
        symbol = _symbol(envelope.symbol, "$.symbol")
        frame_ts = self._frame_ts(envelope)
        decoded = _decode(_deals_decoder, envelope.data, "$.data")
        deals = decoded if isinstance(decoded, list) else [decoded]
        events: list[Event] = []
        for index, deal in enumerate(deals):
            path = f"$.data[{index}]" if isinstance(decoded, list) else "$.data"
            self._amount(deal.price, f"{path}.p", self.limits.max_price, positive=True)
            self._amount(deal.contracts, f"{path}.v", self.limits.max_contracts, positive=True)
            self._within(deal.time_ms, frame_ts, f"{path}.t")
            trade_id = deal.trade_id
            if isinstance(trade_id, str) and not 0 < len(trade_id) <= 64:
                raise _Reject(BAD_SHAPE, f"{path}.i length {len(trade_id)}")
            events.append(
                TradeTicked(
                    at_ms=deal.time_ms,
                    symbol=symbol,
                    price=deal.price,
                    contracts=deal.contracts,
                    taker_side=_TAKER[deal.taker],  # type: ignore[arg-type]
                    position_effect=_EFFECT[deal.effect],  # type: ignore[arg-type]
                    self_trade=deal.self_trade == 1,
                    trade_id=None if trade_id is None else str(trade_id),
                )
            )
        # MEXC lists the newest deal first; the ledger wants trade-time order.
        events.reverse()
        events.sort(key=lambda event: event.at_ms)
        return Pushed("push.deal", tuple(events), symbol=symbol)

    def _tickers(self, envelope: _Envelope) -> Pushed | Rejected:
        frame_ts = self._frame_ts(envelope)
        quotes: list[TickerQuote] = []
        skipped: list[Rejected] = []
        for index, raw in enumerate(_decode(_tickers_decoder, envelope.data, "$.data")):
            try:
                quotes.append(self._quote(raw, f"$.data[{index}]"))
            except _Reject as rejected:
                skipped.append(rejected.rejection)
            except msgspec.ValidationError as error:
                skipped.append(Rejected(BAD_SHAPE, _at(error, f"$.data[{index}]")))
        if not quotes and skipped:
            return skipped[0]
        event = TickersSnapshotted(at_ms=frame_ts, quotes=tuple(quotes))
        return Pushed("push.tickers", (event,), tuple(skipped))

    def _quote(self, raw: msgspec.Raw, path: str) -> TickerQuote:
        line = _ticker_decoder.decode(raw)
        limits = self.limits
        self._amount(line.lastPrice, f"{path}.lastPrice", limits.max_price, positive=True)
        self._amount(line.volume24, f"{path}.volume24", limits.max_contracts * 1000, positive=False)
        rate = line.riseFallRate
        self._finite(rate, f"{path}.riseFallRate")
        if rate.copy_abs() > limits.max_rise_fall_rate:
            raise _Reject(OUT_OF_RANGE, f"{path}.riseFallRate {rate}")
        rate = self._places(rate, f"{path}.riseFallRate")
        fair = line.fairPrice
        if fair is not None:
            self._amount(fair, f"{path}.fairPrice", limits.max_price, positive=True)
        return TickerQuote(
            symbol=_symbol(line.symbol, f"{path}.symbol"),
            last_price=line.lastPrice,
            rise_fall_rate=rate,
            volume_24h=line.volume24,
            fair_price=fair,
        )

    def _kline(self, envelope: _Envelope) -> Pushed:
        frame_ts = self._frame_ts(envelope)
        bar = _decode(_kline_decoder, envelope.data, "$.data")
        symbol = _symbol(bar.symbol, "$.data.symbol")
        if envelope.symbol is not None and envelope.symbol != symbol:
            raise _Reject(BAD_SYMBOL, "$.symbol differs from $.data.symbol")
        for name in ("o", "c", "h", "l"):
            self._amount(getattr(bar, name), f"$.data.{name}", self.limits.max_price, positive=True)
        self._amount(bar.q, "$.data.q", self.limits.max_contracts, positive=False)
        self._amount(bar.a, "$.data.a", self.limits.max_price * self.limits.max_contracts, False)
        if bar.l > min(bar.o, bar.c) or bar.h < max(bar.o, bar.c):
            raise _Reject(INCONSISTENT_CANDLE, "$.data: h/l do not bound o/c")
        if not 0 <= bar.t <= _MAX_MILLIS // 1000:
            raise _Reject(BAD_TIMESTAMP, f"$.data.t {bar.t} out of range")
        self._within(bar.t * 1000, frame_ts, "$.data.t", past_extra=_INTERVAL_MS[bar.interval])
        key = (symbol, bar.interval)
        previous = self._pending.get(key)
        if previous is not None and bar.t < previous.t:
            return Pushed("push.kline", (), symbol=symbol)  # a late duplicate of a closed bar
        self._pending[key] = bar
        if previous is None or bar.t == previous.t:
            return Pushed("push.kline", (), symbol=symbol)
        closed = CandleClosed(
            at_ms=previous.t * 1000,
            symbol=symbol,
            interval=previous.interval,
            open=previous.o,
            high=previous.h,
            low=previous.l,
            close=previous.c,
            contracts=previous.q,
            quote_amount=previous.a,
        )
        return Pushed("push.kline", (closed,), symbol=symbol)

    # ---- number checks

    def _finite(self, value: Decimal, path: str) -> None:
        if not value.is_finite():
            raise _Reject(NON_FINITE, f"{path} is {value}")

    def _places(self, value: Decimal, path: str) -> Decimal:
        exponent = value.as_tuple().exponent
        if isinstance(exponent, int) and exponent < -self.limits.max_decimal_places:
            if value.adjusted() < -self.limits.max_decimal_places:
                raise _Reject(OUT_OF_RANGE, f"{path} {value} below the smallest step")
            raise _Reject(OUT_OF_RANGE, f"{path} {value} has too many decimal places")
        return value

    def _amount(self, value: Decimal, path: str, ceiling: Decimal, positive: bool) -> None:
        self._finite(value, path)
        if value < 0 or (positive and value == 0):
            raise _Reject(NON_POSITIVE, f"{path} is {value}")
        if value > ceiling:
            raise _Reject(OUT_OF_RANGE, f"{path} {value} exceeds {ceiling}")
        self._places(value, path)


def _symbol(value: str | None, path: str) -> str:
    if value is None:
        raise _Reject(BAD_SHAPE, f"Object missing required field `symbol` - at `{path}`")
    if not SYMBOL.match(value):
        raise _Reject(BAD_SYMBOL, f"{path} {value[:40]!r}")
    return value


def _at(error: msgspec.ValidationError, prefix: str) -> str:
    """msgspec's message with its path made absolute (the part was decoded on its own)."""
    return str(error).replace("`$", f"`{prefix}")


def _decode(decoder: msgspec.json.Decoder, raw: msgspec.Raw, prefix: str) -> Any:
    try:
        return decoder.decode(raw)
    except msgspec.ValidationError as error:
        raise _Reject(BAD_SHAPE, _at(error, prefix)) from None


def _text(raw: msgspec.Raw) -> str:
    value = _any_decoder.decode(raw)
    return (value if isinstance(value, str) else msgspec.json.encode(value).decode())[:500]
