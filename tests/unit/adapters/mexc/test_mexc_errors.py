"""Every documented MEXC code lands on a specific exception; messages say what happened."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.mexc import errors
from adapters.mexc.errors import (
    DOCUMENTED_CODES,
    MexcApiTradingDisabled,
    MexcAuthError,
    MexcError,
    MexcOrderRefused,
    MexcPermissionDenied,
    MexcRateLimited,
    MexcTimeWindowError,
    error_class,
    error_for,
)


def test_error_class_when_every_documented_code_then_specific_subclass() -> None:
    # Like httpx's test that every httpcore exception is mapped: no documented code may fall
    # through to the bare base class.
    unmapped = [code for code in DOCUMENTED_CODES if error_class(code) is MexcError]
    assert unmapped == []


def test_documented_codes_when_compared_with_mexc_md_then_complete() -> None:
    listed = {
        *(9999, 500, 501, 401, 402, 406, 506, 510, 511, 513, 600, 601, 602, 603),
        *range(701, 705),
        *range(1000, 1005),
        *range(2001, 2010),
        *(2011, 2013, 2014, 2015, 2016, 2018, 2019),
        *range(2021, 2039),
        *(2040, 2041),
        *range(3001, 3005),
        4001,
        *range(5001, 5005),
        *range(6001, 6006),
        8817,
        700007,
    }
    assert listed - DOCUMENTED_CODES.keys() == set()


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (401, MexcAuthError),
        (402, MexcAuthError),
        (406, MexcAuthError),
        (602, MexcAuthError),
        (701, MexcPermissionDenied),
        (702, MexcPermissionDenied),
        (703, MexcPermissionDenied),
        (704, MexcPermissionDenied),
        (700007, MexcPermissionDenied),
        (510, MexcRateLimited),
        (513, MexcTimeWindowError),
        (2005, MexcOrderRefused),
        (2008, MexcOrderRefused),
        (2011, MexcOrderRefused),
        (2015, MexcOrderRefused),
        (2030, MexcOrderRefused),
        (1002, MexcApiTradingDisabled),
        (6001, MexcApiTradingDisabled),
        (6002, MexcApiTradingDisabled),
    ],
)
def test_error_for_when_code_in_brief_then_expected_family(code: int, kind: type) -> None:
    error = error_for(code, "server text")
    assert isinstance(error, kind)
    assert error.code == code


def test_error_for_when_permission_denied_then_also_an_auth_error() -> None:
    assert isinstance(error_for(703), MexcAuthError)


def test_error_for_when_api_trading_disabled_then_also_an_order_refusal() -> None:
    assert isinstance(error_for(1002, "Contract not allow place order!"), MexcOrderRefused)


def test_error_for_when_unknown_code_then_base_class_keeps_code_and_message() -> None:
    error = error_for(123456, "something new")
    assert type(error) is MexcError
    assert error.code == 123456 and error.message == "something new"
    assert "123456" in str(error) and "something new" in str(error)


def test_str_when_documented_code_then_names_code_meaning_and_server_text() -> None:
    text = str(error_for(1002, "Contract not allow place order!"))
    assert text.startswith("MEXC error 1002: contract not activated")
    assert "Contract not allow place order!" in text


def test_reason_when_code_or_transport_then_stable_event_code() -> None:
    assert error_for(2005).reason == "mexc_2005"
    assert errors.MexcTransportError("timeout").reason == "mexc_transport"


@given(st.integers(min_value=-(10**9), max_value=10**9), st.text(max_size=50))
def test_error_for_when_any_code_then_a_mexc_error_carrying_it(code: int, message: str) -> None:
    error = error_for(code, message)
    assert isinstance(error, MexcError)
    assert error.code == code
    assert str(error)
