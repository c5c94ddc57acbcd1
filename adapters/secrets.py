"""Secrets that cannot leak by accident: masked in str/repr/format, refused by every serialiser.

A :class:`Secret` holds an API key, an API secret or a database password. The only way to the
value is :meth:`Secret.reveal`, called where it is needed (signing, a connection string handed to
a driver) and nowhere else. Printing, logging, f-strings, ``%`` formatting, pickling, copying into
JSON or msgspec all give the mask or fail. :func:`redact_url` masks the password of a URL and
:func:`scrub` removes known secret values from any text (exception messages, server replies).
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from typing import NoReturn
from urllib.parse import urlsplit, urlunsplit

MASK = "***"


class Secret:
    """A string value that never shows itself; compare in constant time."""

    __slots__ = ("_value",)
    _value: str

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("a Secret wraps a str")
        object.__setattr__(self, "_value", value)

    def reveal(self) -> str:
        """The plain value: call it only at the point of use (signing, a driver's DSN)."""
        return self._value

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError("Secret is immutable")

    def __str__(self) -> str:
        return MASK

    def __repr__(self) -> str:
        return f"Secret('{MASK}')"

    def __format__(self, spec: str) -> str:
        return MASK

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash((Secret, len(self._value)))

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Secret is never serialised")

    def __getstate__(self) -> NoReturn:
        raise TypeError("a Secret is never serialised")

    def __copy__(self) -> Secret:
        return self

    def __deepcopy__(self, memo: object) -> Secret:
        return self


def redact_url(url: str) -> str:
    """The URL with its password (if any) replaced by ``***``; everything else unchanged."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return MASK  # unparseable: show nothing rather than risk the password
    if not password:
        return url
    userinfo, _, hostinfo = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:{MASK}@{hostinfo}"))


def scrub(text: str, secrets: Iterable[Secret | str]) -> str:
    """``text`` with every occurrence of each non-empty secret value replaced by ``***``."""
    for secret in secrets:
        value = secret.reveal() if isinstance(secret, Secret) else secret
        if value:
            text = text.replace(value, MASK)
    return text
