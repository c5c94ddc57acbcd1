"""MEXC's error codes mapped, once, to a small hierarchy of exceptions that say what to do.

Callers branch on the class, not on numbers: refuse live mode on :class:`MexcAuthError`, back off
on :class:`MexcRateLimited`, resync the clock on :class:`MexcTimeWindowError`, record a rejection
on :class:`MexcOrderRefused`, stop sending orders on :class:`MexcApiTradingDisabled`.
``tests/unit/adapters/mexc/test_mexc_errors.py`` checks that every documented code lands on a
specific class.
Messages carry the code, MEXC's documented meaning and the server's text, never a secret: the
REST client scrubs its key and secret out of anything it puts in an exception.
"""

from __future__ import annotations


class MexcError(Exception):
    """Any error MEXC reported (``code``) or a failure to talk to it (``code`` is ``None``)."""

    def __init__(self, code: int | None, message: str = "") -> None:
        self.code = code
        self.message = message
        meaning = DOCUMENTED_CODES.get(code, "") if code is not None else ""
        parts = [f"MEXC error {code}" if code is not None else "MEXC error"]
        if meaning:
            parts.append(meaning)
        if message and message != meaning:
            parts.append(repr(message))
        super().__init__(": ".join(parts))

    @property
    def reason(self) -> str:
        """A stable reason code for events (``mexc_602``, ``mexc_transport``)."""
        return f"mexc_{self.code}" if self.code is not None else "mexc_transport"


class MexcAuthError(MexcError):
    """The key is missing, expired, not whitelisted for this IP, or its signature is wrong."""


class MexcPermissionDenied(MexcAuthError):
    """The key lacks a permission the endpoint needs (701-704, spot 700007)."""


class MexcRateLimited(MexcError):
    """Too many requests: back off before retrying (the request was not processed)."""


class MexcTimeWindowError(MexcError):
    """``Request-Time`` outside the server's window: the local clock is off; resync and retry."""


class MexcServerError(MexcError):
    """MEXC failed or is busy: transient, safe to retry an idempotent request."""


class MexcRequestError(MexcError):
    """MEXC could not understand the request: a bug on our side, never retried."""


class MexcOrderRefused(MexcError):
    """MEXC refused this order or cancel for a business reason; nothing was placed or changed."""


class MexcApiTradingDisabled(MexcOrderRefused):
    """Placing orders through the API is switched off (contract, account or exchange wide)."""


class MexcNotFound(MexcError):
    """The account, contract or order does not exist."""


class MexcTransportError(MexcError):
    """No answer from MEXC (connection refused, timeout, garbled body): outcome unknown."""

    def __init__(self, message: str) -> None:
        super().__init__(None, message)


class MexcMalformedReply(MexcTransportError):
    """A reply arrived but does not decode (not JSON, or not the documented shape).

    Handled like no answer (the outcome is unknown), and reported to the ``on_malformed`` hook
    of the client so live execution can record it instead of only logging it.
    """


#: The contract API's documented codes (MEXC.md "Error codes"), with their meaning.
DOCUMENTED_CODES: dict[int, str] = {
    9999: "public abnormal",
    500: "internal error",
    501: "system busy",
    401: "unauthorized",
    402: "api_key expired",
    406: "IP not in whitelist",
    506: "unknown source",
    510: "excessive frequency",
    511: "endpoint inaccessible",
    513: "invalid request time",
    600: "parameter error",
    601: "decoding error",
    602: "signature verification failed",
    603: "repeated request",
    701: "account read permission required",
    702: "account modify permission required",
    703: "trade read permission required",
    704: "trade modify permission required",
    1000: "account does not exist",
    1001: "contract does not exist",
    1002: "contract not activated (API order placing not allowed)",
    1003: "risk limit level error",
    1004: "amount error",
    2001: "wrong trade direction",
    2002: "wrong open type",
    2003: "overpriced to pay",
    2004: "low price for selling",
    2005: "balance insufficient",
    2006: "leverage error",
    2007: "price error",
    2008: "quantity insufficient",
    2009: "position does not exist or is closed",
    2011: "order quantity error",
    2013: "cancel count over maximum",
    2014: "batch order count over limit",
    2015: "price or quantity accuracy error",
    2016: "trigger volume over maximum",
    2018: "exceeds maximum available margin",
    2019: "an active open position exists",
    2021: "leverage inconsistent with the position",
    2022: "wrong position type",
    2023: "over maximum leverage",
    2024: "over maximum leverage",
    2025: "over maximum number of positions",
    2026: "leverage change not supported for cross margin",
    2027: "only one cross or isolated position per direction",
    2028: "maximum order quantity exceeded",
    2029: "wrong order type",
    2030: "externalOid too long",
    2031: "exceeds risk limit",
    2032: "price beyond liquidation price",
    2033: "price beyond liquidation price",
    2034: "batch query over limit",
    2035: "unsupported market price tier",
    2036: "too many orders",
    2037: "too frequent transactions",
    2038: "maximum position quantity exceeded",
    2040: "order does not exist",
    2041: "order state cannot be cancelled",
    3001: "trigger price type error",
    3002: "trigger type error",
    3003: "execution cycle error",
    3004: "trigger price error",
    4001: "unsupported currency",
    5001: "take-profit/stop-loss price error",
    5002: "take-profit/stop-loss position does not exist",
    5003: "take-profit/stop-loss quantity error",
    5004: "take-profit/stop-loss order error",
    6001: "trading forbidden",
    6002: "opening positions forbidden",
    6003: "time range error",
    6004: "trading pair and status error",
    6005: "trading pair not available",
    8817: "risk level change disabled",
    700007: "no permission to access the endpoint (spot)",
}

_BY_CODE: dict[int, type[MexcError]] = {
    **dict.fromkeys((401, 402, 406, 506, 602), MexcAuthError),
    **dict.fromkeys((701, 702, 703, 704, 700007), MexcPermissionDenied),
    510: MexcRateLimited,
    513: MexcTimeWindowError,
    **dict.fromkeys((500, 501, 9999), MexcServerError),
    **dict.fromkeys((511, 600, 601, 603, 2034, 6003), MexcRequestError),
    **dict.fromkeys((1000, 1001, 2040), MexcNotFound),
    **dict.fromkeys((1002, 6001, 6002, 8817), MexcApiTradingDisabled),
}
_ORDER_CODES = (1003, 1004, 4001, *range(2001, 2039), 2041, *range(3001, 3005))
_ORDER_CODES += (*range(5001, 5005), 6004, 6005)
for _code in _ORDER_CODES:
    _BY_CODE.setdefault(_code, MexcOrderRefused)


def error_class(code: int) -> type[MexcError]:
    """The exception class for a MEXC code; plain :class:`MexcError` when undocumented."""
    return _BY_CODE.get(code, MexcError)


def error_for(code: int, message: str = "") -> MexcError:
    """An exception for a MEXC error reply (``success: false`` or a spot ``{"code","msg"}``)."""
    return error_class(code)(code, message)


class MexcOutcomeUnknown(MexcTransportError):
    """An order was sent but neither its acceptance nor its absence could be established.

    The order may exist on the exchange: the caller must reconcile (query by client order id)
    before deciding anything about it. Never resend it under a new client order id.
    """
