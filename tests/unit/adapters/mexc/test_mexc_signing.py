"""MEXC request signing: the documented rules, the documented sample, and properties."""

from __future__ import annotations

import hashlib
import hmac
import json
from decimal import Decimal
from urllib.parse import parse_qsl

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.mexc import signing
from adapters.secrets import Secret

# The contract docs' login example: access key and reqTime concatenated.
DOC_ACCESS_KEY = "mx0aBYs33eIilxBW5C"
DOC_REQ_TIME = "1657186536762"
DOC_TARGET = "mx0aBYs33eIilxBW5C1657186536762"

keys = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12)
values = st.one_of(
    st.text(max_size=20),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.booleans(),
    st.decimals(allow_nan=False, allow_infinity=False, places=4),
)
param_maps = st.dictionaries(keys, values, max_size=8)

# The machine is shared with other test runs: judge properties, not generation speed.
relaxed = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_signature_target_when_doc_login_sample_then_key_followed_by_time() -> None:
    assert signing.signature_target(DOC_ACCESS_KEY, DOC_REQ_TIME, "") == DOC_TARGET
    assert signing.signature_target(DOC_ACCESS_KEY, int(DOC_REQ_TIME), "") == DOC_TARGET


def test_login_signature_when_doc_sample_then_hmac_of_target_in_lowercase_hex() -> None:
    secret = "doc-sample-secret"
    expected = hmac.new(secret.encode(), DOC_TARGET.encode(), hashlib.sha256).hexdigest()
    assert signing.login_signature(DOC_ACCESS_KEY, Secret(secret), DOC_REQ_TIME) == expected


def test_hmac_hex_when_rfc4231_vector_then_known_digest() -> None:
    # RFC 4231 test case 2: HMAC-SHA256(key="Jefe", "what do ya want for nothing?").
    digest = signing.hmac_hex("Jefe", "what do ya want for nothing?")
    assert digest == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"


def test_param_string_when_get_then_sorted_encoded_and_nulls_dropped() -> None:
    params = {"symbol": "BTC_USDT", "page_size": 20, "page_num": 1, "position_id": None}
    assert signing.param_string("GET", params) == "page_num=1&page_size=20&symbol=BTC_USDT"


def test_param_string_when_values_need_escaping_then_java_urlencoder_style() -> None:
    params = {"ids": "1,2,3", "note": "a b+c~d*e"}
    assert signing.param_string("DELETE", params) == "ids=1%2C2%2C3&note=a%20b%2Bc%7Ed*e"


def test_param_string_when_post_then_raw_body_unsorted() -> None:
    body = b'{"symbol":"BTC_USDT","price":1,"vol":2,"side":1}'
    assert signing.param_string("POST", body=body) == body.decode()


def test_param_string_when_no_params_then_empty() -> None:
    assert signing.param_string("GET") == ""
    assert signing.param_string("GET", {"symbol": None}) == ""
    assert signing.param_string("POST") == ""


def test_param_string_when_post_has_query_params_then_refused() -> None:
    with pytest.raises(ValueError, match="POST parameters belong in the JSON body"):
        signing.param_string("POST", {"symbol": "BTC_USDT"})


def test_signed_headers_when_private_request_then_documented_headers() -> None:
    headers = signing.signed_headers(
        Secret("mx0key"), Secret("sec"), 1657186536762, "symbol=BTC_USDT", 10
    )
    assert set(headers) == {"ApiKey", "Request-Time", "Signature", "Content-Type", "Recv-Window"}
    assert headers["ApiKey"] == "mx0key"
    assert headers["Request-Time"] == "1657186536762"
    assert headers["Content-Type"] == "application/json"
    assert headers["Recv-Window"] == "10"
    target = "mx0key1657186536762symbol=BTC_USDT"
    assert headers["Signature"] == hmac.new(b"sec", target.encode(), hashlib.sha256).hexdigest()


def test_signed_headers_when_recv_window_over_sixty_then_refused() -> None:
    with pytest.raises(ValueError, match="Recv-Window"):
        signing.signed_headers("k", "s", 1, "", 61)


def test_spot_signed_query_when_signed_then_signature_covers_everything_before_it() -> None:
    query = signing.spot_signed_query("sec", {"coin": "USDT"}, 1700000000000, 5000)
    unsigned, _, signature = query.rpartition("&signature=")
    assert unsigned == "coin=USDT&recvWindow=5000&timestamp=1700000000000"
    assert signature == hmac.new(b"sec", unsigned.encode(), hashlib.sha256).hexdigest()


@relaxed
@given(param_maps, st.randoms(use_true_random=False))
def test_param_string_when_insertion_order_varies_then_identical(params, rnd) -> None:
    items = list(params.items())
    rnd.shuffle(items)
    assert signing.param_string("GET", dict(items)) == signing.param_string("GET", params)


@relaxed
@given(param_maps)
def test_param_string_when_parsed_back_then_same_non_null_params(params) -> None:
    text = signing.param_string("GET", params)
    parsed = dict(parse_qsl(text, keep_blank_values=True))
    expected = {k: signing._text(v) for k, v in params.items() if v is not None}
    assert parsed == expected
    assert list(parsed) == sorted(parsed)


@relaxed
@given(
    st.text(min_size=1, max_size=30),
    st.text(min_size=1, max_size=30),
    st.integers(min_value=0, max_value=10**13),
    st.dictionaries(keys, st.integers(), max_size=5),
)
def test_sign_when_any_input_then_64_lowercase_hex_matching_reference(key, secret, ts, body):
    payload = json.dumps(body, separators=(",", ":"))
    sig = signing.sign(key, Secret(secret), ts, payload)
    reference = hmac.new(secret.encode(), f"{key}{ts}{payload}".encode(), hashlib.sha256)
    assert sig == reference.hexdigest()
    assert len(sig) == 64
    assert sig == sig.lower()


@relaxed
@given(param_maps, keys, values)
def test_sign_when_one_param_changes_then_signature_changes(params, key, value) -> None:
    changed = dict(params)
    changed[key] = value
    before = signing.param_string("GET", params)
    after = signing.param_string("GET", changed)
    if before != after:
        assert signing.sign("k", "s", 1, before) != signing.sign("k", "s", 1, after)


def test_encode_value_when_decimal_then_plain_notation() -> None:
    assert signing.encode_value(Decimal("1E+3")) == "1000"
    assert signing.encode_value(Decimal("0.00010")) == "0.00010"
