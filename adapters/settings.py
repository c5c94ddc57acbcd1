"""Runtime settings: where things are and how to run, never what to decide.

Decision parameters live in :mod:`aggregates.config` and are recorded in the ledger; the values
here (URLs, keys, ports, mode flags) are not, because some are secrets. They are parsed from the
mapping :func:`adapters.process.load_environment` reads (the process environment over ``.env``),
here in the adapters layer so that the services (``pipeline/``) and the commands (``cli/``)
share one parser.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

from adapters.secrets import Secret, redact_url
from aggregates.events import SYMBOL

DEFAULT_MEXC_WS_URL = "wss://contract.mexc.com/edge"
DEFAULT_MEXC_REST_URL = "https://api.mexc.com"


class SettingsError(ValueError):
    """One or more runtime settings are missing or malformed; lists every problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid runtime settings:\n  " + "\n  ".join(problems))


@dataclass(frozen=True)
class RuntimeSettings:
    """Validated runtime settings. ``repr`` never shows a secret."""

    database_url: Secret | None
    redis_url: Secret | None
    mexc_ws_url: str
    mexc_rest_url: str
    mexc_api_key: Secret | None = field(default=None)
    mexc_api_secret: Secret | None = field(default=None)
    trading_mode: Literal["paper", "live"] = "paper"
    live_trading_confirmed: bool = False
    metrics_port: int = 9108
    clock_interval_seconds: float = 1.0
    screener_top_n: int = 3
    screener_min_volume_24h: int = 0
    symbols: tuple[str, ...] = ()
    bus_namespace: str = "claire"
    #: live: how far (percent) the venue's futures equity may differ from INITIAL_EQUITY_USDT
    live_capital_tolerance_pct: Decimal = Decimal(10)
    #: live: what a larger difference does at start: a WARNING, or a refusal to start
    live_capital_mismatch: Literal["warn", "refuse"] = "warn"
    heartbeat_interval_seconds: float = 5.0
    #: Each decision service snapshots its state every this many events and at each UTC
    #: midnight (docs/SNAPSHOTS.md); 0 takes none.
    snapshot_every_events: int = 100_000

    @property
    def live_enabled(self) -> bool:
        """Live orders need all three: live mode, the explicit confirmation and keys."""
        return (
            self.trading_mode == "live"
            and self.live_trading_confirmed
            and self.mexc_api_key is not None
            and self.mexc_api_secret is not None
        )

    def describe(self) -> dict[str, str]:
        """A loggable summary with every secret redacted."""
        return {
            "database_url": redact_url(self.database_url.reveal()) if self.database_url else "-",
            "redis_url": redact_url(self.redis_url.reveal()) if self.redis_url else "-",
            "mexc_ws_url": self.mexc_ws_url,
            "mexc_rest_url": self.mexc_rest_url,
            "trading_mode": self.trading_mode,
            "live_enabled": str(self.live_enabled),
            "api_key": "set" if self.mexc_api_key else "-",
            "metrics_port": str(self.metrics_port),
            "symbols": ",".join(self.symbols) or "(screener)",
        }


def parse_settings(values: dict[str, str]) -> RuntimeSettings:
    """Validate runtime settings from an environment mapping, reporting all problems at once."""
    problems: list[str] = []

    def text(name: str) -> str | None:
        value = values.get(name, "").strip()
        return value or None

    def number(name: str, default: float, kind: type, low: float, high: float) -> float:
        raw = text(name)
        if raw is None:
            return default
        try:
            value = kind(raw)
        except ValueError:
            problems.append(f"{name}={raw!r}: expected a {kind.__name__}")
            return default
        if not low <= value <= high:
            problems.append(f"{name}={raw!r}: must be between {low} and {high}")
        return value

    mode = (text("TRADING_MODE") or "paper").lower()
    if mode not in ("paper", "live"):
        problems.append(f"TRADING_MODE={mode!r}: must be 'paper' or 'live'")
        mode = "paper"
    # Exactly the word the operator is told to write: `true`, `1` or `on` confirm nothing.
    confirmed_raw = (text("LIVE_TRADING_CONFIRMED") or "no").lower()
    if confirmed_raw not in ("yes", "no"):
        problems.append(
            f"LIVE_TRADING_CONFIRMED={confirmed_raw!r}: must be yes (live orders) or no"
        )
    confirmed = confirmed_raw == "yes"
    symbols = tuple(s.strip() for s in (text("SYMBOLS") or "").split(",") if s.strip())
    for symbol in symbols:
        if not SYMBOL.match(symbol):
            problems.append(f"SYMBOLS contains {symbol!r}: expected e.g. BTC_USDT")
    for name in ("DATABASE_URL", "REDIS_URL"):
        raw = text(name)
        if raw is not None and "://" not in raw:
            problems.append(f"{name}: expected a URL such as scheme://host/... (not shown: secret)")
    for name in ("MEXC_WS_URL",):
        raw = text(name)
        if raw is not None and not raw.startswith(("ws://", "wss://")):
            problems.append(f"{name}={raw!r}: expected a ws:// or wss:// URL")
    raw_rest = text("MEXC_REST_URL")
    if raw_rest is not None and not raw_rest.startswith(("http://", "https://")):
        problems.append(f"MEXC_REST_URL={raw_rest!r}: expected an http:// or https:// URL")
    key, secret = text("MEXC_API_KEY"), text("MEXC_API_SECRET")
    if mode == "live" and (key is None or secret is None):
        problems.append("TRADING_MODE='live' needs MEXC_API_KEY and MEXC_API_SECRET")
    if mode == "live" and not symbols:
        problems.append("TRADING_MODE='live' needs SYMBOLS (the contracts probed at start-up)")
    if mode == "live" and not confirmed:
        problems.append("TRADING_MODE='live' needs LIVE_TRADING_CONFIRMED=yes")
    namespace = text("CLAIRE_BUS_NAMESPACE") or "claire"
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", namespace):
        problems.append(f"CLAIRE_BUS_NAMESPACE={namespace!r}: letters, digits, _ . - only")
    tolerance = Decimal(10)
    raw_tolerance = text("LIVE_CAPITAL_TOLERANCE_PCT")
    if raw_tolerance is not None:
        try:
            tolerance = Decimal(raw_tolerance)
        except ArithmeticError:
            problems.append(f"LIVE_CAPITAL_TOLERANCE_PCT={raw_tolerance!r}: expected a number")
        if not tolerance.is_finite() or not 0 <= tolerance <= 1000:
            problems.append(f"LIVE_CAPITAL_TOLERANCE_PCT={raw_tolerance!r}: must be 0 to 1000")
            tolerance = Decimal(10)
    mismatch = (text("LIVE_CAPITAL_MISMATCH") or "warn").lower()
    if mismatch not in ("warn", "refuse"):
        problems.append(f"LIVE_CAPITAL_MISMATCH={mismatch!r}: must be warn or refuse")
        mismatch = "warn"
    settings = RuntimeSettings(
        database_url=Secret(raw) if (raw := text("DATABASE_URL")) else None,
        redis_url=Secret(raw) if (raw := text("REDIS_URL")) else None,
        mexc_ws_url=text("MEXC_WS_URL") or DEFAULT_MEXC_WS_URL,
        mexc_rest_url=raw_rest or DEFAULT_MEXC_REST_URL,
        mexc_api_key=Secret(key) if key else None,
        mexc_api_secret=Secret(secret) if secret else None,
        trading_mode=mode,  # type: ignore[arg-type]
        live_trading_confirmed=confirmed,
        metrics_port=int(number("METRICS_PORT", 9108, int, 0, 65535)),
        clock_interval_seconds=number("CLOCK_INTERVAL_SECONDS", 1.0, float, 0.01, 3600),
        screener_top_n=int(number("SCREENER_TOP_N", 3, int, 1, 50)),
        screener_min_volume_24h=int(number("SCREENER_MIN_VOLUME_24H", 0, int, 0, 10**15)),
        symbols=symbols,
        bus_namespace=namespace,
        live_capital_tolerance_pct=tolerance,
        live_capital_mismatch=mismatch,  # type: ignore[arg-type]
        heartbeat_interval_seconds=number("HEARTBEAT_INTERVAL_SECONDS", 5.0, float, 0.05, 3600),
        snapshot_every_events=int(number("SNAPSHOT_EVERY_EVENTS", 100_000, int, 0, 10**12)),
    )
    if problems:
        raise SettingsError(problems)
    return settings
