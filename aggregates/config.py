"""The trading configuration: every decision parameter, validated once, frozen, hashed.

Why it looks like this (DESIGN.md, STYLE.md principle 9):

* Every value is REQUIRED; there is no default in code, so a risk limit can never be silently
  assumed. ``.env.example`` documents each variable.
* ``parse_config`` reports *all* problems at once, each naming the variable and the bad value,
  so an operator fixes a broken ``.env`` in one pass (the CLI maps :class:`ConfigError` to exit 2).
* ``parameters()`` is the canonical string form recorded in ``ConfigActivated``; machines rebuild
  the object from that event with ``parse_config``, so what-if replays only swap the event.
* Percentages are percent numbers ("10" means 10%); fee rates are fractions (MEXC's "0.0002");
  slippage is in basis points; durations are whole seconds or minutes as the name says.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from decimal import Decimal, InvalidOperation

from aggregates.events import SYMBOL, ConfigActivated

_DECIMAL = re.compile(r"^-?\d+(\.\d+)?$")
_INTEGER = re.compile(r"^-?\d+$")

Problem = tuple[str, str | None, str]


class ConfigError(ValueError):
    """Invalid or missing configuration; ``problems`` lists every (variable, value, message)."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        lines = [
            f"{name}={value!r}: {message}" if value is not None else f"{name}: {message}"
            for name, value, message in problems
        ]
        super().__init__("invalid configuration:\n  " + "\n  ".join(lines))


@dataclass(frozen=True, slots=True)
class ContractSpec:
    """A symbol's contract: USDT-M futures trade in contracts of ``contract_size`` base units."""

    contract_size: Decimal
    min_contracts: Decimal
    max_contracts: Decimal
    contracts_step: Decimal
    price_step: Decimal


@dataclass(frozen=True, slots=True)
class TradingConfig:
    """All decision parameters in force. Build it with :func:`parse_config`, never by hand."""

    initial_equity: Decimal
    max_position_pct: Decimal
    max_exposure_pct: Decimal
    max_daily_drawdown_pct: Decimal
    stop_loss_pct: Decimal
    lookback_minutes: int
    signal_threshold_pct: Decimal
    signal_min_trades: int
    signal_min_contracts: Decimal
    abnormal_move_pct: Decimal
    abnormal_window_seconds: int
    abnormal_pause_seconds: int
    data_silence_seconds: int
    exit_cooldown_seconds: int
    loss_streak_count: int
    loss_streak_window_minutes: int
    loss_streak_pause_minutes: int
    max_orders_per_minute: int
    max_order_notional: Decimal
    taker_fee_rate: Decimal
    maker_fee_rate: Decimal
    paper_slippage_bps: Decimal
    contract_specs: dict[str, ContractSpec] = field(hash=False)

    def __hash__(self) -> int:
        return hash(self.config_hash())

    def contract_spec(self, symbol: str) -> ContractSpec | None:
        """The fallback contract spec for ``symbol`` from CONTRACT_SPECS, if configured."""
        return self.contract_specs.get(symbol)

    def parameters(self) -> dict[str, str]:
        """The canonical ``VARIABLE -> string`` map, as recorded in ``ConfigActivated``."""
        out: dict[str, str] = {}
        for variable, (name, _parse) in _FIELDS.items():
            value = getattr(self, name)
            if name == "contract_specs":
                out[variable] = _format_specs(value)
            elif isinstance(value, Decimal):
                out[variable] = _canonical(value)
            else:
                out[variable] = str(value)
        return out

    def config_hash(self) -> str:
        """SHA-256 (hex) of the canonical parameters: stable across processes and runs."""
        blob = "\n".join(f"{k}={v}" for k, v in sorted(self.parameters().items()))
        return hashlib.sha256(blob.encode()).hexdigest()

    def hash(self) -> str:
        """Alias of :meth:`config_hash` (the name used in docs/ARCHITECTURE.md)."""
        return self.config_hash()

    def activated(self, at_ms: int, source: str = "environment") -> ConfigActivated:
        """The event that puts this configuration in force from ``at_ms`` on."""
        return ConfigActivated(
            at_ms=at_ms, parameters=self.parameters(), config_hash=self.config_hash(), source=source
        )


def _canonical(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "0") else text


# --------------------------------------------------------------------------- value parsers
# Each returns the parsed value or raises ValueError with the message shown to the operator.


def _decimal(text: str) -> Decimal:
    if not _DECIMAL.match(text):
        raise ValueError("must be a plain decimal number like 12.5")
    try:
        return Decimal(_canonical(Decimal(text)))
    except InvalidOperation as exc:  # pragma: no cover - regex already guarantees the shape
        raise ValueError("must be a decimal number") from exc


def _integer(text: str) -> int:
    if not _INTEGER.match(text):
        raise ValueError("must be a whole number")
    return int(text)


def _bounded_decimal(
    low: Decimal, high: Decimal | None, *, low_inclusive: bool, high_inclusive: bool = True
) -> Callable[[str], Decimal]:
    def parse(text: str) -> Decimal:
        value = _decimal(text)
        if value < low or (value == low and not low_inclusive):
            raise ValueError(f"must be {'>=' if low_inclusive else '>'} {low}")
        if high is not None and (value > high or (value == high and not high_inclusive)):
            raise ValueError(f"must be {'<=' if high_inclusive else '<'} {high}")
        return value

    return parse


def _bounded_int(low: int, high: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = _integer(text)
        if value < low:
            raise ValueError(f"must be >= {low}")
        if high is not None and value > high:
            raise ValueError(f"must be <= {high}")
        return value

    return parse


_positive = _bounded_decimal(Decimal(0), None, low_inclusive=False)
_non_negative = _bounded_decimal(Decimal(0), None, low_inclusive=True)
_percent_open = _bounded_decimal(
    Decimal(0), Decimal(100), low_inclusive=False, high_inclusive=False
)
_percent = _bounded_decimal(Decimal(0), Decimal(100), low_inclusive=False)
_fee_rate = _bounded_decimal(Decimal("-0.01"), Decimal("0.01"), low_inclusive=True)


def _specs(text: str) -> dict[str, ContractSpec]:
    """``SYM:contract_size:min:max:step:price_step`` entries separated by commas; may be empty."""
    specs: dict[str, ContractSpec] = {}
    if not text:
        return specs
    for raw in text.split(","):
        entry = raw.strip()
        parts = entry.split(":")
        if len(parts) != 6:
            raise ValueError(
                f"entry {entry!r} must be SYMBOL:contract_size:min_contracts:max_contracts:"
                "contracts_step:price_step"
            )
        symbol = parts[0].strip()
        if not SYMBOL.match(symbol):
            raise ValueError(f"entry {entry!r}: symbol must look like BTC_USDT")
        if symbol in specs:
            raise ValueError(f"symbol {symbol} is listed twice")
        try:
            size, low, high, step, price_step = (_positive(p.strip()) for p in parts[1:])
        except ValueError as exc:
            raise ValueError(f"entry {entry!r}: every number {exc}") from None
        if high < low:
            raise ValueError(f"entry {entry!r}: max_contracts is below min_contracts")
        specs[symbol] = ContractSpec(size, low, high, step, price_step)
    return dict(sorted(specs.items()))


def _format_specs(specs: dict[str, ContractSpec]) -> str:
    return ",".join(
        ":".join(
            [
                symbol,
                _canonical(s.contract_size),
                _canonical(s.min_contracts),
                _canonical(s.max_contracts),
                _canonical(s.contracts_step),
                _canonical(s.price_step),
            ]
        )
        for symbol, s in sorted(specs.items())
    )


#: Environment variable -> (field name, parser). Order is the documentation order.
_FIELDS: dict[str, tuple[str, Callable[[str], object]]] = {
    "INITIAL_EQUITY_USDT": ("initial_equity", _positive),
    "MAX_POSITION_PCT": ("max_position_pct", _percent),
    "MAX_EXPOSURE_PCT": (
        "max_exposure_pct",
        _bounded_decimal(Decimal(0), Decimal(10000), low_inclusive=False),
    ),
    "MAX_DAILY_DRAWDOWN_PCT": ("max_daily_drawdown_pct", _percent_open),
    "STOP_LOSS_PCT": ("stop_loss_pct", _percent_open),
    "LOOKBACK_MINUTES": ("lookback_minutes", _bounded_int(1, 1440)),
    "SIGNAL_THRESHOLD_PCT": ("signal_threshold_pct", _percent_open),
    "SIGNAL_MIN_TRADES": ("signal_min_trades", _bounded_int(1)),
    "SIGNAL_MIN_CONTRACTS": ("signal_min_contracts", _non_negative),
    "ABNORMAL_MOVE_PCT": ("abnormal_move_pct", _percent_open),
    "ABNORMAL_WINDOW_SECONDS": ("abnormal_window_seconds", _bounded_int(1, 86400)),
    "ABNORMAL_PAUSE_SECONDS": ("abnormal_pause_seconds", _bounded_int(0, 86400)),
    "DATA_SILENCE_SECONDS": ("data_silence_seconds", _bounded_int(1, 86400)),
    "EXIT_COOLDOWN_SECONDS": ("exit_cooldown_seconds", _bounded_int(0, 86400)),
    "LOSS_STREAK_COUNT": ("loss_streak_count", _bounded_int(1)),
    "LOSS_STREAK_WINDOW_MINUTES": ("loss_streak_window_minutes", _bounded_int(1, 10080)),
    "LOSS_STREAK_PAUSE_MINUTES": ("loss_streak_pause_minutes", _bounded_int(0, 10080)),
    "MAX_ORDERS_PER_MINUTE": ("max_orders_per_minute", _bounded_int(1)),
    "MAX_ORDER_NOTIONAL_USDT": ("max_order_notional", _positive),
    "TAKER_FEE_RATE": ("taker_fee_rate", _fee_rate),
    "MAKER_FEE_RATE": ("maker_fee_rate", _fee_rate),
    "PAPER_SLIPPAGE_BPS": (
        "paper_slippage_bps",
        _bounded_decimal(Decimal(0), Decimal(1000), low_inclusive=True),
    ),
    "CONTRACT_SPECS": ("contract_specs", _specs),
}

#: Every variable the trading configuration reads, in documentation order.
VARIABLES: tuple[str, ...] = tuple(_FIELDS)

assert {name for name, _ in _FIELDS.values()} == {f.name for f in fields(TradingConfig)}


def parse_config(values: Mapping[str, str]) -> TradingConfig:
    """Validate ``values`` (e.g. the environment) into a config; unrelated keys are ignored.

    Raises :class:`ConfigError` listing every missing or bad variable at once.
    """
    problems: list[Problem] = []
    parsed: dict[str, object] = {}
    for variable, (name, parse) in _FIELDS.items():
        raw = values.get(variable)
        if raw is None:
            problems.append((variable, None, "is required (see .env.example)"))
            continue
        text = raw.strip()
        if not text and variable != "CONTRACT_SPECS":
            problems.append((variable, raw, "is required and must not be empty"))
            continue
        try:
            parsed[name] = parse(text)
        except ValueError as exc:
            problems.append((variable, raw, str(exc)))
    if not problems:
        _cross_checks(parsed, problems)
    if problems:
        raise ConfigError(problems)
    return TradingConfig(**parsed)  # type: ignore[arg-type]


def _cross_checks(parsed: dict[str, object], problems: list[Problem]) -> None:
    """Relations between variables that each look fine alone."""
    position = parsed["max_position_pct"]
    exposure = parsed["max_exposure_pct"]
    assert isinstance(position, Decimal) and isinstance(exposure, Decimal)  # parsed as percents
    if position > exposure:
        problems.append(
            (
                "MAX_POSITION_PCT",
                _canonical(position),
                f"must not exceed MAX_EXPOSURE_PCT ({_canonical(exposure)})",
            )
        )
