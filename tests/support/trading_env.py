"""Complete trading configurations (every decision parameter explicit) shared by several tests.

Each mapping is the variables a run reads, as strings, in the names of ``.env.example``; a test
adds or overrides what it is about with ``{**MAPPING, "NAME": "value"}``.
"""

from __future__ import annotations

#: The risk limits the black-box attacks start from (fees, slippage and contracts are each
#: attack's own): tight enough that every layer can be reached in a few inputs.
ATTACK_LIMITS = {
    "INITIAL_EQUITY_USDT": "10000",
    "MAX_DAILY_DRAWDOWN_PCT": "5",
    "ABNORMAL_MOVE_PCT": "8",
    "ABNORMAL_WINDOW_SECONDS": "60",
    "ABNORMAL_PAUSE_SECONDS": "300",
    "DATA_SILENCE_SECONDS": "30",
    "MAX_EXPOSURE_PCT": "50",
    "MAX_POSITION_PCT": "10",
    "STOP_LOSS_PCT": "2",
    "MAX_ORDER_NOTIONAL_USDT": "2000",
    "MAX_ORDERS_PER_MINUTE": "20",
    "EXIT_COOLDOWN_SECONDS": "120",
    "LOSS_STREAK_COUNT": "3",
    "LOSS_STREAK_WINDOW_MINUTES": "60",
    "LOSS_STREAK_PAUSE_MINUTES": "120",
    "LOOKBACK_MINUTES": "5",
    "SIGNAL_THRESHOLD_PCT": "0.5",
    "SIGNAL_MIN_TRADES": "20",
    "SIGNAL_MIN_CONTRACTS": "100",
}

#: For runs of the real services in a subprocess. Silence is generous because their tapes are
#: anchored near wall-clock time but played at full speed.
PROCESS_TRADING_ENV = {
    "INITIAL_EQUITY_USDT": "10000",
    "MAX_POSITION_PCT": "40",
    "MAX_EXPOSURE_PCT": "120",
    "MAX_DAILY_DRAWDOWN_PCT": "20",
    "STOP_LOSS_PCT": "6",
    "LOOKBACK_MINUTES": "1",
    "SIGNAL_THRESHOLD_PCT": "0.3",
    "SIGNAL_MIN_TRADES": "20",
    "SIGNAL_MIN_CONTRACTS": "100",
    "ABNORMAL_MOVE_PCT": "50",
    "ABNORMAL_WINDOW_SECONDS": "60",
    "ABNORMAL_PAUSE_SECONDS": "60",
    "DATA_SILENCE_SECONDS": "3600",
    "EXIT_COOLDOWN_SECONDS": "1",
    "LOSS_STREAK_COUNT": "50",
    "LOSS_STREAK_WINDOW_MINUTES": "60",
    "LOSS_STREAK_PAUSE_MINUTES": "1",
    "MAX_ORDERS_PER_MINUTE": "60",
    "MAX_ORDER_NOTIONAL_USDT": "5000",
    "TAKER_FEE_RATE": "0.0006",
    "MAKER_FEE_RATE": "0.0002",
    "PAPER_SLIPPAGE_BPS": "2",
    "CONTRACT_SPECS": "BTC_USDT:0.0001:1:5000000:1:0.1,ETH_USDT:0.01:1:1000000:1:0.01",
}
