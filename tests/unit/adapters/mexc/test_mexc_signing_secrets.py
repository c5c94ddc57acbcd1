"""Secrets never show themselves: str, repr, format, logging and serialisers all see a mask."""

from __future__ import annotations

import copy
import json
import logging
import pickle

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.secrets import MASK, Secret, redact_url, scrub

secret_text = st.text(min_size=4, max_size=40).filter(lambda s: MASK not in s and s.strip())


@given(secret_text)
def test_format_when_secret_rendered_any_way_then_value_absent(value: str) -> None:
    secret = Secret(value)
    renderings = [
        str(secret),
        repr(secret),
        f"{secret}",
        f"{secret!r}",
        f"{secret:>50}",
        "%s %r" % (secret, secret),  # noqa: UP031 - the old formatting must be masked too
        "{}".format(secret),  # noqa: UP032
        str([secret]),
        str({"k": secret}),
    ]
    for text in renderings:
        assert value not in text or value in MASK or value in "Secret('***')"


def test_serialise_when_secret_then_every_serialiser_refuses() -> None:
    secret = Secret("mx0-secret-value")
    with pytest.raises(TypeError):
        pickle.dumps(secret)
    with pytest.raises(TypeError):
        json.dumps({"k": secret})
    with pytest.raises(TypeError):
        msgspec.json.encode({"k": secret})


def test_reveal_when_called_then_plain_value_and_copies_equal() -> None:
    secret = Secret("abc123")
    assert secret.reveal() == "abc123"
    assert copy.deepcopy(secret) == secret
    assert Secret("abc123") == secret and Secret("abc124") != secret


def test_setattr_when_secret_then_immutable() -> None:
    secret = Secret("x")
    with pytest.raises(AttributeError):
        secret._value = "y"  # type: ignore[misc]


def test_log_when_secret_is_an_argument_then_record_masked(caplog) -> None:
    caplog.set_level(logging.INFO)
    logging.getLogger("claire.test").info("key %s / %r", Secret("topsecret"), Secret("topsecret"))
    assert "topsecret" not in caplog.text
    assert MASK in caplog.text


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://claire:hunter2@db:5432/claire", "postgresql://claire:***@db:5432/claire"),
        ("postgresql://claire:p%40ss@db/claire", "postgresql://claire:***@db/claire"),
        ("redis://:hunter2@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        ("postgresql://claire@db/claire", "postgresql://claire@db/claire"),
        ("postgresql:///claire?host=/tmp", "postgresql:///claire?host=/tmp"),
    ],
)
def test_redact_url_when_password_present_then_only_password_masked(url, expected) -> None:
    assert redact_url(url) == expected


@given(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=10),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789!$%&()*+,;=@", min_size=1, max_size=20),
)
def test_redact_url_when_any_password_then_password_not_in_output(user, password) -> None:
    url = f"postgresql://{user}:{password}@localhost:5432/db"
    redacted = redact_url(url)
    assert f":{password}@" not in redacted
    assert redacted.startswith(f"postgresql://{user}:***@")


def test_scrub_when_text_contains_secrets_then_replaced() -> None:
    text = "bad key mx0abc with secret s3cr3t in it"
    assert scrub(text, [Secret("mx0abc"), "s3cr3t", ""]) == "bad key *** with secret *** in it"
