"""The trading configuration: required, validated all at once, canonical, hashed."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from dotenv import dotenv_values
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregates.config import VARIABLES, ConfigError, ContractSpec, parse_config
from aggregates.events import decode, encode
from tests.unit.strategies import BASE_VALUES, config_mappings, config_values

ROOT = Path(__file__).resolve().parents[3]


def test_parse_when_every_variable_is_valid_then_returns_frozen_config() -> None:
    config = parse_config(config_values())
    assert config.max_position_pct == Decimal(20)
    assert config.lookback_minutes == 1
    assert config.contract_spec("BTC_USDT") == ContractSpec(
        Decimal("0.0001"), Decimal(1), Decimal(100000), Decimal(1), Decimal("0.1")
    )
    assert config.contract_spec("XRP_USDT") is None
    with pytest.raises(AttributeError):
        config.max_position_pct = Decimal(1)  # type: ignore[misc]


def test_parse_when_the_example_env_file_is_used_then_it_is_valid_and_complete() -> None:
    values = {k: v or "" for k, v in dotenv_values(ROOT / ".env.example").items()}
    config = parse_config(values)
    assert set(VARIABLES) <= set(values)
    for runtime in (
        "DATABASE_URL",
        "REDIS_URL",
        "MEXC_WS_URL",
        "MEXC_REST_URL",
        "MEXC_API_KEY",
        "MEXC_API_SECRET",
        "TRADING_MODE",
        "LIVE_TRADING_CONFIRMED",
        "METRICS_PORT",
        "CLOCK_INTERVAL_SECONDS",
        "SCREENER_TOP_N",
        "SYMBOLS",
    ):
        assert runtime in values, runtime
    assert config.initial_equity > 0


def test_example_env_when_read_then_every_trading_variable_has_a_comment() -> None:
    lines = (ROOT / ".env.example").read_text().splitlines()
    for variable in VARIABLES:
        index = next(i for i, line in enumerate(lines) if line.startswith(f"{variable}="))
        block = lines[max(0, index - 6) : index]
        assert any(line.startswith("#") for line in block), variable


def test_parse_when_everything_is_missing_then_every_variable_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({})
    assert [p[0] for p in caught.value.problems] == list(VARIABLES)
    assert all(value is None for _, value, _ in caught.value.problems)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MAX_POSITION_PCT", "abc"),
        ("MAX_POSITION_PCT", "0"),
        ("MAX_POSITION_PCT", "101"),
        ("MAX_DAILY_DRAWDOWN_PCT", "100"),
        ("STOP_LOSS_PCT", "-1"),
        ("LOOKBACK_MINUTES", "1.5"),
        ("LOOKBACK_MINUTES", "0"),
        ("SIGNAL_MIN_TRADES", "0"),
        ("INITIAL_EQUITY_USDT", "1e4"),
        ("INITIAL_EQUITY_USDT", "NaN"),
        ("TAKER_FEE_RATE", "0.5"),
        ("MAX_ORDERS_PER_MINUTE", ""),
        ("CONTRACT_SPECS", "BTC_USDT:1:2"),
        ("CONTRACT_SPECS", "btc:1:1:2:1:1"),
        ("CONTRACT_SPECS", "BTC_USDT:1:5:2:1:1"),
        ("CONTRACT_SPECS", "BTC_USDT:1:1:2:1:1,BTC_USDT:1:1:2:1:1"),
        ("CONTRACT_SPECS", "BTC_USDT:0:1:2:1:1"),
    ],
)
def test_parse_when_a_value_is_bad_then_the_problem_names_variable_and_value(
    variable: str, value: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(config_values(**{variable: value}))
    assert caught.value.problems[0][:2] == (variable, value)
    assert variable in str(caught.value)


def test_parse_when_several_values_are_bad_then_all_are_reported() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(config_values(STOP_LOSS_PCT="x", LOOKBACK_MINUTES="y", SIGNAL_MIN_TRADES="-3"))
    assert {p[0] for p in caught.value.problems} == {
        "STOP_LOSS_PCT",
        "LOOKBACK_MINUTES",
        "SIGNAL_MIN_TRADES",
    }


def test_parse_when_position_limit_exceeds_exposure_limit_then_rejected() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(config_values(MAX_POSITION_PCT="60", MAX_EXPOSURE_PCT="50"))
    assert caught.value.problems[0][0] == "MAX_POSITION_PCT"


def test_parse_when_contract_specs_is_empty_then_no_fallback_specs() -> None:
    assert parse_config(config_values(CONTRACT_SPECS="")).contract_specs == {}


def test_parse_when_unrelated_variables_are_present_then_they_are_ignored() -> None:
    values = config_values()
    values["PATH"] = "/usr/bin"
    assert parse_config(values) == parse_config(config_values())


def test_hash_when_values_are_written_differently_then_canonical_form_and_hash_agree() -> None:
    spelled = parse_config(
        config_values(MAX_POSITION_PCT="20.000", INITIAL_EQUITY_USDT=" 10000.0 ")
    )
    plain = parse_config(config_values())
    assert spelled.parameters() == plain.parameters()
    assert spelled.config_hash() == plain.config_hash() == plain.hash()
    assert len(plain.config_hash()) == 64


def test_hash_when_a_value_changes_then_the_hash_changes() -> None:
    assert (
        parse_config(config_values(STOP_LOSS_PCT="1.5")).config_hash()
        != parse_config(config_values()).config_hash()
    )


def test_activated_when_built_then_event_carries_parameters_and_hash_and_round_trips() -> None:
    config = parse_config(config_values())
    event = config.activated(1_000)
    assert event.parameters == config.parameters()
    assert event.config_hash == config.config_hash()
    assert parse_config(decode(encode(event)).parameters) == config  # type: ignore[attr-defined]


@settings(max_examples=100, deadline=None)
@given(config_mappings())
def test_parse_when_given_its_own_parameters_then_returns_an_equal_config(values: dict) -> None:
    config = parse_config(values)
    again = parse_config(config.parameters())
    assert again == config
    assert again.config_hash() == config.config_hash()
    assert set(config.parameters()) == set(VARIABLES) == set(BASE_VALUES)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(VARIABLES), st.text(max_size=12))
def test_parse_when_a_value_is_arbitrary_text_then_config_or_config_error(
    variable: str, text: str
) -> None:
    try:
        parse_config(config_values(**{variable: text}))
    except ConfigError as error:
        assert error.problems and all(p[0] for p in error.problems)
