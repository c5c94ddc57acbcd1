"""Bad environment values: every problem named with its variable, all at once, no secret shown."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.settings import SettingsError, parse_settings

BAD = {
    "TRADING_MODE": "yolo",
    "LIVE_TRADING_CONFIRMED": "maybe",
    "SYMBOLS": "BTC_USDT,btc-usdt",
    "DATABASE_URL": "app:hunter2@db-host/claire",  # the scheme forgotten
    "MEXC_WS_URL": "http://not-a-websocket",
    "MEXC_REST_URL": "ftp://nope",
    "METRICS_PORT": "70000",
    "CLOCK_INTERVAL_SECONDS": "fast",
    "SCREENER_TOP_N": "0",
    "CLAIRE_BUS_NAMESPACE": "spaces are bad",
    "LIVE_CAPITAL_TOLERANCE_PCT": "lots",
    "LIVE_CAPITAL_MISMATCH": "ignore",
}


def test_parse_when_many_values_are_bad_then_one_error_names_each_variable() -> None:
    with pytest.raises(SettingsError) as caught:
        parse_settings(BAD)
    message = str(caught.value)
    for name in BAD:
        assert name in message, name
    assert len(caught.value.problems) == len(BAD)
    assert "hunter2" not in message


def test_parse_when_live_without_keys_symbols_or_confirmation_then_refused() -> None:
    with pytest.raises(SettingsError) as caught:
        parse_settings({"TRADING_MODE": "live"})
    problems = "\n".join(caught.value.problems)
    assert "MEXC_API_KEY" in problems and "SYMBOLS" in problems
    assert "LIVE_TRADING_CONFIRMED" in problems


def test_repr_when_settings_hold_secrets_then_they_are_masked() -> None:
    settings = parse_settings(
        {
            "DATABASE_URL": "postgresql://app:s3cr3t-pw@db/claire",
            "MEXC_API_KEY": "mx0key-abc",
            "MEXC_API_SECRET": "topsecret",
        }
    )
    shown = repr(settings) + str(settings.describe())
    for secret in ("s3cr3t-pw", "mx0key-abc", "topsecret"):
        assert secret not in shown


@given(
    st.dictionaries(
        st.sampled_from([*sorted(BAD), "MEXC_API_KEY", "MEXC_API_SECRET"]),
        st.text(max_size=30),
        max_size=6,
    )
)
def test_parse_when_values_are_arbitrary_text_then_settings_or_a_settings_error(
    values: dict[str, str],
) -> None:
    try:
        parse_settings(values)
    except SettingsError as error:
        named = [*values, "TRADING_MODE"]
        assert error.problems
        assert all(any(name in problem for name in named) for problem in error.problems)


@pytest.mark.parametrize("value", ["true", "1", "on", "y", "True"])
def test_parse_when_live_confirmed_is_not_the_word_yes_then_refused_naming_yes(value: str) -> None:
    live = {"TRADING_MODE": "live", "MEXC_API_KEY": "k", "MEXC_API_SECRET": "s"}
    with pytest.raises(SettingsError) as caught:
        parse_settings({**live, "SYMBOLS": "BTC_USDT", "LIVE_TRADING_CONFIRMED": value})
    problems = "\n".join(caught.value.problems)
    assert "LIVE_TRADING_CONFIRMED" in problems and "must be yes" in problems


@pytest.mark.parametrize("value", ["yes", "YES", "Yes"])
def test_parse_when_live_confirmed_is_yes_in_any_case_then_live_is_enabled(value: str) -> None:
    live = {"TRADING_MODE": "live", "MEXC_API_KEY": "k", "MEXC_API_SECRET": "s"}
    settings = parse_settings({**live, "SYMBOLS": "BTC_USDT", "LIVE_TRADING_CONFIRMED": value})
    assert settings.live_enabled
