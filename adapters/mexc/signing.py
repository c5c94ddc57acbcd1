"""MEXC request signing, as pure functions (no clock, no I/O).

Contract API ("Authentication method"): the parameter string is, for GET/DELETE, the business
parameters sorted by key as ``k=v`` pairs joined with ``&`` (values URL-encoded the way MEXC's Java
sample does: ``URLEncoder`` then ``+`` -> ``%20``; ``None`` values left out; path parameters not
signed); for POST the raw JSON body, byte for byte; ``""`` when there are none. The signature is the
lowercase hex HMAC-SHA256, keyed with the secret, of ``accessKey + Request-Time + paramString``.
The WebSocket login signs ``accessKey + reqTime`` the same way.

Spot v3 (only used for the withdraw-permission probe): the query string carries ``timestamp``,
optional ``recvWindow`` and ``signature`` = lowercase hex HMAC-SHA256 of the query string before it;
the key travels in the ``X-MEXC-APIKEY`` header.

The exact string that is signed is the exact string that is sent: callers build the query string
with :func:`param_string` and send it verbatim, so no HTTP library can re-encode it differently.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from decimal import Decimal
from urllib.parse import quote

from adapters.secrets import Secret

#: The characters ``java.net.URLEncoder`` leaves alone (besides letters and digits).
_JAVA_SAFE = "-_.*"

ParamValue = str | int | Decimal | bool | None


def _text(value: str | int | Decimal | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


def encode_value(value: str | int | Decimal | bool) -> str:
    """URL-encode one value like MEXC's Java sample (``URLEncoder`` with ``+`` -> ``%20``)."""
    # Python's quote() never encodes "~"; Java's URLEncoder does.
    return quote(_text(value), safe=_JAVA_SAFE).replace("~", "%7E")


def query_string(params: Mapping[str, ParamValue] | None) -> str:
    """Sorted ``k=v&k=v`` of the non-null parameters: the GET/DELETE parameter string."""
    if not params:
        return ""
    pairs = sorted((key, value) for key, value in params.items() if value is not None)
    return "&".join(f"{key}={encode_value(value)}" for key, value in pairs)


def param_string(
    method: str,
    params: Mapping[str, ParamValue] | None = None,
    body: bytes | str | None = None,
) -> str:
    """The string MEXC signs for a request: sorted query for GET/DELETE, raw body for POST."""
    verb = method.upper()
    if verb in ("GET", "DELETE"):
        if body:
            raise ValueError(f"{verb} requests carry no body to sign")
        return query_string(params)
    if verb == "POST":
        if params:
            raise ValueError("POST parameters belong in the JSON body")
        if body is None:
            return ""
        return body.decode("utf-8") if isinstance(body, bytes) else body
    raise ValueError(f"unsupported method {method!r}")


def signature_target(access_key: str, request_time_ms: int | str, params: str) -> str:
    """``accessKey + Request-Time + paramString``: what the contract API signs."""
    return f"{access_key}{request_time_ms}{params}"


def hmac_hex(secret: Secret | str, message: str) -> str:
    """Lowercase hex HMAC-SHA256 of ``message`` keyed with ``secret`` (no base64)."""
    key = secret.reveal() if isinstance(secret, Secret) else secret
    return hmac.new(key.encode("utf-8"), message.encode("utf-8"), hashlib.sha256).hexdigest()


def sign(
    access_key: Secret | str, secret: Secret | str, request_time_ms: int | str, params: str
) -> str:
    """The contract API ``Signature`` header value."""
    key = access_key.reveal() if isinstance(access_key, Secret) else access_key
    return hmac_hex(secret, signature_target(key, request_time_ms, params))


def login_signature(access_key: Secret | str, secret: Secret | str, req_time_ms: int | str) -> str:
    """The private WebSocket ``login`` signature: the same HMAC over ``accessKey + reqTime``."""
    return sign(access_key, secret, req_time_ms, "")


def signed_headers(
    access_key: Secret | str,
    secret: Secret | str,
    request_time_ms: int,
    params: str,
    recv_window_s: int | None = None,
) -> dict[str, str]:
    """The private contract request headers (``Recv-Window`` in seconds, MEXC allows <= 60)."""
    key = access_key.reveal() if isinstance(access_key, Secret) else access_key
    headers = {
        "ApiKey": key,
        "Request-Time": str(request_time_ms),
        "Signature": sign(key, secret, request_time_ms, params),
        "Content-Type": "application/json",
    }
    if recv_window_s is not None:
        if not 0 < recv_window_s <= 60:
            raise ValueError(f"Recv-Window must be 1..60 seconds, got {recv_window_s}")
        headers["Recv-Window"] = str(recv_window_s)
    return headers


def spot_signed_query(
    secret: Secret | str,
    params: Mapping[str, ParamValue] | None,
    timestamp_ms: int,
    recv_window_ms: int | None = None,
) -> str:
    """A spot v3 query string with ``timestamp`` (and ``recvWindow``) and ``signature`` appended."""
    merged: dict[str, ParamValue] = dict(params or {})
    merged["timestamp"] = timestamp_ms
    if recv_window_ms is not None:
        merged["recvWindow"] = recv_window_ms
    unsigned = query_string(merged)
    return f"{unsigned}&signature={hmac_hex(secret, unsigned)}"
