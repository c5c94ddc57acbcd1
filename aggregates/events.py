"""The event catalogue: every fact the ledger can hold, in one module.

Rules (STYLE.md principles 4 and 5):

* Every event is a frozen, keyword-only, tagged ``msgspec.Struct`` subclassing :class:`Event`.
* A tag string is permanent. ``tests/unit/aggregates/test_event_catalogue.py`` pins the list so
  a rename cannot slip through. Events are named in the past tense.
* Money, prices and quantities are :class:`~decimal.Decimal` (strings on the wire); binary floats
  never appear in an event. Domain time is ``at_ms``: UTC milliseconds since the epoch, taken
  from the source (trade time, clock tick), never from the reader's clock.
* To evolve an event: add fields with defaults, never change a type or a tag, bump
  ``schema_version`` and register an upcaster in :mod:`aggregates.upcasting`.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, ClassVar, Literal

import msgspec

SYMBOL_PATTERN = r"^[A-Z0-9]{1,20}_[A-Z0-9]{1,10}$"
Symbol = Annotated[str, msgspec.Meta(pattern=SYMBOL_PATTERN)]
#: An asset's code (``USDT``, ``BTC``): a symbol's half.
CURRENCY_PATTERN = r"^[A-Z0-9]{1,10}$"
Currency = Annotated[str, msgspec.Meta(pattern=CURRENCY_PATTERN)]
Millis = Annotated[int, msgspec.Meta(ge=0, le=32503680000000)]  # up to year 3000
Code = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9_.:-]{1,64}$")]
Text = Annotated[str, msgspec.Meta(max_length=2000)]

Side = Literal["buy", "sell"]
Direction = Literal["long", "short", "flat"]
TradingState = Literal["ACTIVE", "REDUCING", "HALTED"]
Severity = Literal["CRITICAL", "WARNING", "INFO"]
RiskLayer = Literal[
    "daily_drawdown",
    "abnormal_market",
    "data_silence",
    "exposure_limit",
    "position_size",
    "stop_loss",
    "trading_state",
    "pre_trade",
    "order_rate",
    "cooldown",
    "loss_streak",
    "none",
]
VerdictDecision = Literal["approved", "trimmed", "rejected", "halt", "flatten"]
OrderIntent = Literal["entry", "exit", "stop_loss", "flatten"]


def _finite(name: str, value: Decimal) -> None:
    if not value.is_finite():
        raise ValueError(f"{name} must be a finite decimal, got {value}")


#: The one compiled symbol pattern: settings, options, the venue's frames and the events check
#: symbols with it (``SYMBOL.match(text)``).
SYMBOL = re.compile(SYMBOL_PATTERN)
#: Symbols already found to match :data:`SYMBOL_PATTERN`. A log holds a handful, so trades (most
#: of any log) run the pattern once per symbol instead of once per trade; bounded all the same.
_VALID_SYMBOLS: set[str] = set()


def _check_symbol(value: str) -> None:
    """:data:`Symbol`'s check (``search``, as msgspec applies a pattern), remembered if it holds."""
    if not SYMBOL.search(value):
        raise ValueError(f"symbol {value!r} does not match {SYMBOL_PATTERN!r}")
    if len(_VALID_SYMBOLS) < 10_000:
        _VALID_SYMBOLS.add(value)


def _positive(name: str, value: Decimal) -> None:
    _finite(name, value)
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")


def _not_negative(name: str, value: Decimal) -> None:
    _finite(name, value)
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")


class Event(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    tag_field="type",
    forbid_unknown_fields=True,
):
    """Base of every ledger event. ``at_ms`` is the event's domain time (UTC ms)."""

    schema_version: ClassVar[int] = 1
    at_ms: Millis


# --------------------------------------------------------------------------- market data


class TradeTicked(Event, frozen=True, tag="market.trade"):
    """One public trade from MEXC ``push.deal``; ``contracts`` is MEXC's ``v`` (contracts).

    ``symbol`` is a :data:`Symbol`, checked in ``__post_init__`` (remembered per symbol) rather
    than by msgspec's pattern, which costs a regex search per trade decoded.
    """

    symbol: str
    price: Decimal
    contracts: Decimal
    taker_side: Side
    position_effect: Literal["open", "close", "unchanged"]
    self_trade: bool = False
    trade_id: str | None = None

    def __post_init__(self) -> None:
        # Every read decodes one per trade (most of a log): test the valid case in one
        # expression (is_finite first: NaN does not compare) and name the culprit only if not.
        if self.symbol not in _VALID_SYMBOLS:
            _check_symbol(self.symbol)
        price, contracts = self.price, self.contracts
        if not (price.is_finite() and contracts.is_finite() and price > 0 and contracts > 0):
            _positive("price", price)
            _positive("contracts", contracts)


class CandleClosed(Event, frozen=True, tag="market.candle_closed"):
    """A final kline bar (MEXC ``push.kline``); ``at_ms`` is the bar's open time."""

    symbol: Symbol
    interval: Literal[
        "Min1", "Min5", "Min15", "Min30", "Min60", "Hour4", "Hour8", "Day1", "Week1", "Month1"
    ]
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    contracts: Decimal
    quote_amount: Decimal

    def __post_init__(self) -> None:
        for name in ("open", "high", "low", "close"):
            _positive(name, getattr(self, name))
        _not_negative("contracts", self.contracts)
        _not_negative("quote_amount", self.quote_amount)
        if self.low > min(self.open, self.close) or self.high < max(self.open, self.close):
            raise ValueError("candle high/low do not bound open/close")


class TickerQuote(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One symbol's line of a ``push.tickers`` snapshot (not an event on its own)."""

    symbol: Symbol
    last_price: Decimal
    rise_fall_rate: Decimal
    volume_24h: Decimal
    fair_price: Decimal | None = None

    def __post_init__(self) -> None:
        _positive("last_price", self.last_price)
        _finite("rise_fall_rate", self.rise_fall_rate)
        _not_negative("volume_24h", self.volume_24h)


class TickersSnapshotted(Event, frozen=True, tag="market.tickers"):
    """A screener-relevant snapshot of ``push.tickers``."""

    quotes: tuple[TickerQuote, ...]


class MoversSelected(Event, frozen=True, tag="market.movers_selected"):
    """The screener's choice of symbols to follow, best first, with the figures that ranked them."""

    symbols: tuple[Symbol, ...]
    scores: tuple[Decimal, ...]
    previous: tuple[Symbol, ...] = ()


class ContractSpecified(Event, frozen=True, tag="market.contract_spec"):
    """Contract specification in force for a symbol (from ``contract/detail`` or configuration)."""

    symbol: Symbol
    contract_size: Decimal
    min_contracts: Decimal
    max_contracts: Decimal
    contracts_step: Decimal
    price_step: Decimal
    taker_fee_rate: Decimal
    maker_fee_rate: Decimal
    api_allowed: bool
    source: Literal["exchange", "config"]

    def __post_init__(self) -> None:
        for name in ("contract_size", "min_contracts", "max_contracts"):
            _positive(name, getattr(self, name))
        _positive("contracts_step", self.contracts_step)
        _positive("price_step", self.price_step)
        _finite("taker_fee_rate", self.taker_fee_rate)
        _finite("maker_fee_rate", self.maker_fee_rate)


class FundingSettled(Event, frozen=True, tag="market.funding_settled"):
    """Funding paid (negative) or received (positive) on a position, in USDT."""

    symbol: Symbol
    rate: Decimal
    amount: Decimal

    def __post_init__(self) -> None:
        _finite("rate", self.rate)
        _finite("amount", self.amount)


class ClockTicked(Event, frozen=True, tag="clock.tick"):
    """Time is an event: appended on a fixed cadence so silence and day ends are replayable."""


# --------------------------------------------------------------------------- configuration


class ConfigActivated(Event, frozen=True, tag="config.activated"):
    """The validated parameters in force from here on, as canonical strings, and their hash."""

    parameters: dict[str, str]
    config_hash: Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$")]
    source: Text = "environment"


class OperatorCommandIssued(Event, frozen=True, tag="operator.command"):
    """An explicit, recorded operator action (stop entries, halt, resume, flatten, reset)."""

    command: Literal["reduce", "halt", "resume", "flatten", "reset_drawdown"]
    operator: Text
    note: Text = ""


# --------------------------------------------------------------------------- decisions


class SignalGenerated(Event, frozen=True, tag="signal.generated"):
    """The momentum engine's view of a symbol, from trades strictly before ``at_ms``."""

    symbol: Symbol
    direction: Direction
    strength: Decimal
    momentum: Decimal
    reference_price: Decimal
    window_start_ms: Millis
    trades_in_window: int
    contracts_in_window: Decimal

    def __post_init__(self) -> None:
        _not_negative("strength", self.strength)
        _finite("momentum", self.momentum)
        _positive("reference_price", self.reference_price)


class RiskVerdictIssued(Event, frozen=True, tag="risk.verdict"):
    """The risk manager's answer, naming the deciding layer, a stable reason and its numbers."""

    symbol: Symbol | None
    decision: VerdictDecision
    layer: RiskLayer
    reason: Code
    intent: OrderIntent
    side: Side | None = None
    requested_contracts: Decimal = Decimal(0)
    approved_contracts: Decimal = Decimal(0)
    numbers: dict[str, str] = {}
    detail: Text = ""


class StopLossTriggered(Event, frozen=True, tag="risk.stop_loss_triggered"):
    """A position's loss reached ``STOP_LOSS_PCT``; an exit order follows."""

    symbol: Symbol
    entry_price: Decimal
    mark_price: Decimal
    loss_pct: Decimal
    contracts: Decimal


class CircuitBreakerTripped(Event, frozen=True, tag="risk.circuit_breaker_tripped"):
    """Entries paused by the abnormal-market or data-silence layer."""

    layer: Literal["abnormal_market", "data_silence"]
    symbol: Symbol | None
    reason: Code
    numbers: dict[str, str] = {}


class CircuitBreakerCleared(Event, frozen=True, tag="risk.circuit_breaker_cleared"):
    """A pause lifted because the condition no longer holds."""

    layer: Literal["abnormal_market", "data_silence"]
    symbol: Symbol | None
    reason: Code


class TradingStateChanged(Event, frozen=True, tag="risk.trading_state_changed"):
    """ACTIVE / REDUCING / HALTED, with who or what changed it and why."""

    previous: TradingState
    state: TradingState
    changed_by: Text
    reason: Code


class AlertRaised(Event, frozen=True, tag="alert.raised"):
    """Something a human should know about."""

    severity: Severity
    code: Code
    message: Text
    symbol: Symbol | None = None


# --------------------------------------------------------------------------- orders

ClientOrderId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,32}$")]


class OrderRequested(Event, frozen=True, tag="order.requested"):
    """An order the risk manager approved; persisted before it is sent (persist before acting)."""

    client_order_id: ClientOrderId
    symbol: Symbol
    side: Side
    contracts: Decimal
    order_type: Literal["market", "limit"]
    intent: OrderIntent
    reduce_only: bool
    reference_price: Decimal
    limit_price: Decimal | None = None

    def __post_init__(self) -> None:
        _positive("contracts", self.contracts)
        _positive("reference_price", self.reference_price)
        if self.limit_price is not None:
            _positive("limit_price", self.limit_price)
        if (self.order_type == "limit") != (self.limit_price is not None):
            raise ValueError("a limit order needs limit_price; a market order must not have one")


class OrderAccepted(Event, frozen=True, tag="order.accepted"):
    """The exchange (or the paper book) acknowledged the order."""

    client_order_id: ClientOrderId
    exchange_order_id: Annotated[str, msgspec.Meta(max_length=64)]
    symbol: Symbol


class _Fill(Event, frozen=True):
    """Fields shared by partial and final fills."""

    client_order_id: ClientOrderId
    symbol: Symbol
    side: Side
    price: Decimal
    contracts: Decimal
    fee: Decimal
    fee_currency: Currency
    liquidity: Literal["maker", "taker"]
    fill_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    reduce_only: bool = False

    def __post_init__(self) -> None:
        _positive("price", self.price)
        _positive("contracts", self.contracts)
        _finite("fee", self.fee)


class OrderPartiallyFilled(_Fill, frozen=True, tag="order.partially_filled", kw_only=True):
    """Part of the order traded; more may follow."""

    remaining_contracts: Decimal

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive("remaining_contracts", self.remaining_contracts)


class OrderFilled(_Fill, frozen=True, tag="order.filled"):
    """The last part of the order traded; nothing remains."""


class OrderRejected(Event, frozen=True, tag="order.rejected"):
    """The exchange or a pre-send check refused the order; nothing traded."""

    client_order_id: ClientOrderId
    symbol: Symbol
    code: Code
    message: Text


class OrderCancelled(Event, frozen=True, tag="order.cancelled"):
    """The rest of the order will not trade."""

    client_order_id: ClientOrderId
    symbol: Symbol
    reason: Code
    remaining_contracts: Decimal = Decimal(0)


class ExecutionReconciled(Event, frozen=True, tag="execution.reconciled"):
    """After a (re)start: what the exchange reported and what was corrected, before any entry."""

    venue: Literal["paper", "mexc"]
    open_orders: tuple[ClientOrderId, ...] = ()
    corrections: tuple[Text, ...] = ()


class PreflightPassed(Event, frozen=True, tag="preflight.passed"):
    """``claire preflight`` ran the bundled tape through every service and the outcome held.

    Live trading starts only when the ledger holds one for the running ``code_version`` (a digest
    of the code's source), so changed code is checked end to end before it trades real money.
    """

    code_version: Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$")]
    tape: Text
    tape_sha256: Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$")]
    events: Annotated[int, msgspec.Meta(ge=0)]
    checks: tuple[Text, ...] = ()


class ExecutionVenueInputRejected(Event, frozen=True, tag="execution.venue_input_rejected"):
    """The venue said something that cannot be taken as it is; recorded, alerted, not acted on.

    ``kind``: ``unparseable_answer`` (a reply that does not decode), ``unknown_order_state``,
    ``implausible_order`` (numbers that cannot be a fill), ``unknown_order`` (an order we never
    sent), ``position_mismatch`` (the exchange holds a position our fills do not explain),
    ``fee_currency`` (a fee not in the settlement currency: the fill is recorded as reported).
    """

    venue: Literal["mexc"]
    kind: Code
    severity: Severity
    detail: Text
    client_order_id: ClientOrderId | None = None
    symbol: Symbol | None = None


class ExecutionVenueEquity(Event, frozen=True, tag="execution.venue_equity"):
    """The futures equity the venue reports, at live start and periodically, against the capital
    the bot is configured to trade (``INITIAL_EQUITY_USDT``): the hot wallet kept apart."""

    venue: Literal["mexc"]
    currency: Currency
    equity: Decimal
    available: Decimal
    configured_capital: Decimal
    difference_pct: Decimal
    within_tolerance: bool


class ExecutionStopRequested(Event, frozen=True, tag="execution.stop_requested"):
    """A reduce-only stop to be placed at the exchange for a live position (recorded before it
    is sent): it closes ``contracts`` of the ``direction`` position at ``trigger_price``."""

    stop_id: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    symbol: Symbol
    direction: Literal["long", "short"]
    contracts: Decimal
    trigger_price: Decimal


class ExecutionStopPlaced(Event, frozen=True, tag="execution.stop_placed"):
    """The exchange holds the stop (its plan order id)."""

    stop_id: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    symbol: Symbol
    exchange_stop_id: Annotated[str, msgspec.Meta(max_length=64)]


class ExecutionStopEnded(Event, frozen=True, tag="execution.stop_ended"):
    """The stop no longer protects anything: cancelled (position changed or flat), refused, or
    gone from the exchange (triggered or cancelled there while the bot was away)."""

    stop_id: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    symbol: Symbol
    reason: Code


class ServiceAlertRaised(Event, frozen=True, tag="service.alert_raised"):
    """A service's heartbeats on ``health`` stopped (WARNING) or came back (INFO).

    Recorded by the alerts service from wall-clock observations, like the clock's ticks: a fact
    about the deployment, which no decision machine reads.
    """

    severity: Severity
    service: Code
    message: Text


# --------------------------------------------------------------------------- the union

AnyEvent = (
    TradeTicked
    | CandleClosed
    | TickersSnapshotted
    | MoversSelected
    | ContractSpecified
    | FundingSettled
    | ClockTicked
    | ConfigActivated
    | OperatorCommandIssued
    | SignalGenerated
    | RiskVerdictIssued
    | StopLossTriggered
    | CircuitBreakerTripped
    | CircuitBreakerCleared
    | TradingStateChanged
    | AlertRaised
    | OrderRequested
    | OrderAccepted
    | OrderPartiallyFilled
    | OrderFilled
    | OrderRejected
    | OrderCancelled
    | ExecutionReconciled
    | PreflightPassed
    | ExecutionVenueInputRejected
    | ExecutionVenueEquity
    | ExecutionStopRequested
    | ExecutionStopPlaced
    | ExecutionStopEnded
    | ServiceAlertRaised
)

EVENT_TYPES: dict[str, type[Event]] = {cls.__struct_config__.tag: cls for cls in AnyEvent.__args__}

_encoder = msgspec.json.Encoder(decimal_format="string")
_decoder: msgspec.json.Decoder[AnyEvent] = msgspec.json.Decoder(AnyEvent)


def event_type(event: Event) -> str:
    """The permanent tag of an event, as stored in the ledger's ``event_type`` column."""
    return event.__struct_config__.tag  # type: ignore[return-value]


def encode(event: Event) -> bytes:
    """JSON of an event, tag included; decimals as strings."""
    return _encoder.encode(event)


def decode(data: bytes | str) -> Event:
    """Strictly decode one event of the current schema; raises ``msgspec.ValidationError``."""
    return _decoder.decode(data)


def from_builtins(data: dict[str, object]) -> Event:
    """Validate an already-parsed payload (e.g. after upcasting) into its typed event."""
    event: Event = msgspec.convert(data, AnyEvent)
    return event
