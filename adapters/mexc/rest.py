"""Signed REST client for MEXC USDT-M futures (aiohttp), with typed, tolerant response decoding.

* Every reply is decoded by msgspec into Structs; both envelope shapes are understood
  (``{"success":true,"code":0,"data":...}`` and ``{"success":false,"code":N,"message":...}``, plus
  the spot ``{"code":N,"msg":...}`` of the withdraw probe). Unknown fields are ignored; numbers
  become ``Decimal`` from their JSON text, so no binary float ever holds a price.
* Errors are mapped once, here, to :mod:`adapters.mexc.errors`; aiohttp's exceptions never escape.
  The key and secret are scrubbed from every exception message and never logged.
* Retries only where repeating cannot do harm: GETs and cancels are retried on transport errors,
  busy servers and rate limits, with backoff; a stale clock (513) triggers one resync. Order
  creation is made idempotent by ``externalOid``: when the outcome is unknown (timeout, 5xx),
  :meth:`MexcRestClient.submit_order` first asks for the order by its external id and only
  resends (same id) when MEXC says it does not have it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal, TypeVar
from urllib.parse import quote

import aiohttp
import msgspec
from yarl import URL

from adapters.backoff import Backoff
from adapters.mexc import signing
from adapters.mexc.errors import (
    MexcError,
    MexcMalformedReply,
    MexcNotFound,
    MexcOutcomeUnknown,
    MexcRateLimited,
    MexcServerError,
    MexcTimeWindowError,
    MexcTransportError,
    error_for,
)
from adapters.mexc.rest_types import (
    Asset,
    CancelResult,
    ContractDetail,
    CreatedOrderReply,
    CreateOrder,
    CreatePlanOrder,
    Envelope,
    Order,
    OrderPage,
    PlanOrder,
    Position,
    SubmittedOrder,
)
from adapters.secrets import Secret, scrub

log = logging.getLogger(__name__)

DEFAULT_REST_URL = "https://api.mexc.com"
WITHDRAW_PROBE_PATH = "/api/v3/capital/config/getall"
NO_PERMISSION = 700007

T = TypeVar("T")


def wall_clock_ms() -> int:
    """The machine's UTC time in ms (adapters may read the clock; decision code may not)."""
    return time.time_ns() // 1_000_000


_body_encoder = msgspec.json.Encoder(decimal_format="number")


def _decoder(kind: Any) -> Callable[[msgspec.Raw], Any]:
    dec = msgspec.json.Decoder(kind)
    return lambda raw: dec.decode(raw)


_decode_ping = _decoder(int)
_decode_details = _decoder(list[ContractDetail] | ContractDetail)
_decode_assets = _decoder(list[Asset] | Asset)
_decode_positions = _decoder(list[Position] | None)
_decode_orders = _decoder(list[Order] | OrderPage | None)
_decode_order = _decoder(Order | None)
_decode_created = _decoder(int | str | CreatedOrderReply)
_decode_cancel = _decoder(list[CancelResult] | None)
_decode_plan_id = _decoder(int | str)
_decode_plan_orders = _decoder(list[PlanOrder] | None)
_envelope = msgspec.json.Decoder(Envelope)


def _as_list(value: T | list[T] | None) -> list[T]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _segment(value: str) -> str:
    return quote(value, safe="")


# --------------------------------------------------------------------------- the client


class MexcRestClient:
    """One MEXC account over REST. Public endpoints work without keys; private ones need both."""

    def __init__(
        self,
        base_url: str = DEFAULT_REST_URL,
        api_key: Secret | None = None,
        api_secret: Secret | None = None,
        *,
        spot_base_url: str | None = None,
        timeout_s: float = 10.0,
        recv_window_s: int = 10,
        retries: int = 2,
        retry_backoff_s: float = 0.2,
        now_ms: Callable[[], int] = wall_clock_ms,
        session: aiohttp.ClientSession | None = None,
        on_malformed: Callable[[str], None] | None = None,
    ) -> None:
        self._on_malformed = on_malformed
        self._base = base_url.rstrip("/")
        self._spot_base = (spot_base_url or base_url).rstrip("/")
        self._key = api_key
        self._secret = api_secret
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._recv_window_s = recv_window_s
        self._retries = retries
        self._backoff = Backoff(retry_backoff_s)
        self._now_ms = now_ms
        self._session = session
        self._owns_session = session is None
        #: server time minus local time, from the last :meth:`sync_clock`.
        self.clock_offset_ms = 0

    async def __aenter__(self) -> MexcRestClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None and self._owns_session:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    def _scrub(self, text: str) -> str:
        return scrub(text, [s for s in (self._key, self._secret) if s is not None])

    # ----------------------------------------------------------------- transport

    async def _send(
        self,
        method: str,
        url: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        label: str,
    ) -> bytes:
        """One HTTP exchange; returns the body. Transport problems become MexcTransportError."""
        try:
            async with self._http().request(
                method,
                URL(url, encoded=True),
                data=body,
                headers=dict(headers or {}),
                timeout=self._timeout,
            ) as response:
                raw = await response.read()
                log.debug("mexc %s %s -> HTTP %s", method, label, response.status)
                if response.status == 429:
                    raise MexcRateLimited(510, "HTTP 429")
                if response.status >= 500 and not raw.lstrip().startswith(b"{"):
                    raise MexcServerError(500, f"HTTP {response.status}")
                return raw
        except TimeoutError as exc:
            raise MexcTransportError(f"{method} {label}: no answer in time") from exc
        except (aiohttp.ClientError, OSError) as exc:
            detail = self._scrub(f"{type(exc).__name__}: {exc}")
            raise MexcTransportError(f"{method} {label}: {detail}") from exc

    def _unwrap(self, raw: bytes, label: str) -> msgspec.Raw:
        """The ``data`` of a successful reply; a MEXC error reply raises its mapped exception."""
        try:
            envelope = _envelope.decode(raw)
        except msgspec.DecodeError as exc:
            raise self._malformed(f"{label}: malformed reply: {exc}") from exc
        failed = envelope.success is False or (envelope.code not in (None, 0, 200))
        if failed:
            code = envelope.code if envelope.code is not None else 9999
            text = self._scrub((envelope.message or envelope.msg or "")[:300])
            raise error_for(code, text)
        return envelope.data

    def _typed(self, decode: Callable[[msgspec.Raw], T], data: msgspec.Raw, label: str) -> T:
        try:
            return decode(data)
        except msgspec.DecodeError as exc:
            raise self._malformed(f"{label}: unexpected reply shape: {exc}") from exc

    def _malformed(self, detail: str) -> MexcMalformedReply:
        detail = self._scrub(detail)[:500]
        if self._on_malformed is not None:
            self._on_malformed(detail)
        return MexcMalformedReply(detail)

    async def _call(
        self,
        method: Literal["GET", "POST"],
        path: str,
        *,
        params: Mapping[str, signing.ParamValue] | None = None,
        body: bytes | None = None,
        private: bool,
    ) -> msgspec.Raw:
        """One signed (or public) contract request, without retries."""
        query = signing.query_string(params) if method == "GET" else ""
        url = f"{self._base}{path}" + (f"?{query}" if query else "")
        headers: dict[str, str] = {"Content-Type": "application/json"}
        if private:
            if not (self._key and self._secret):
                raise MexcError(401, "API key and secret are required for private endpoints")
            signed = signing.param_string(method, params if method == "GET" else None, body)
            request_time = self._now_ms() + self.clock_offset_ms
            headers = signing.signed_headers(
                self._key, self._secret, request_time, signed, self._recv_window_s
            )
        raw = await self._send(method, url, body=body, headers=headers, label=path)
        return self._unwrap(raw, path)

    async def _with_retries(self, attempt: Callable[[], Awaitable[T]], label: str) -> T:
        """Retry an idempotent request on transient failures, backing off; resync once on 513."""
        resynced = False
        for number in range(self._retries + 1):
            try:
                return await attempt()
            except MexcTimeWindowError:
                if resynced:
                    raise
                resynced = True
                await self.sync_clock()
            except (MexcTransportError, MexcServerError, MexcRateLimited) as exc:
                if number >= self._retries:
                    raise
                log.warning("mexc %s failed (%s), retrying", label, exc.reason)
                await asyncio.sleep(self._backoff.delay(number))
        return await attempt()

    async def _get(
        self,
        path: str,
        params: Mapping[str, signing.ParamValue] | None = None,
        *,
        private: bool = True,
    ) -> msgspec.Raw:
        return await self._with_retries(
            lambda: self._call("GET", path, params=params, private=private), path
        )

    # ----------------------------------------------------------------- public endpoints

    async def ping(self) -> int:
        """MEXC's server time in ms (``contract/ping``)."""
        path = "/api/v1/contract/ping"
        return self._typed(_decode_ping, await self._get(path, private=False), path)

    async def sync_clock(self) -> int:
        """Measure the server-minus-local clock offset used for ``Request-Time``; returns it."""
        before = self._now_ms()
        server = await self.ping()
        after = self._now_ms()
        self.clock_offset_ms = server - (before + after) // 2
        return self.clock_offset_ms

    async def contract_details(self, symbol: str | None = None) -> list[ContractDetail]:
        """Contract specifications (all, or one symbol's): sizes, steps, fees, ``apiAllowed``."""
        path = "/api/v1/contract/detail"
        data = await self._get(path, {"symbol": symbol}, private=False)
        return _as_list(self._typed(_decode_details, data, path))

    # ----------------------------------------------------------------- private reads

    async def assets(self) -> list[Asset]:
        """Account balances per currency (needs account-read permission)."""
        path = "/api/v1/private/account/assets"
        return _as_list(self._typed(_decode_assets, await self._get(path), path))

    async def open_positions(self, symbol: str | None = None) -> list[Position]:
        """Open positions, optionally for one symbol (needs trade-read permission)."""
        path = "/api/v1/private/position/open_positions"
        data = await self._get(path, {"symbol": symbol})
        return _as_list(self._typed(_decode_positions, data, path))

    async def open_orders(self, symbol: str, page_size: int = 100) -> list[Order]:
        """Every open order of a symbol, page by page (a list or a ``resultList`` page)."""
        path = f"/api/v1/private/order/list/open_orders/{_segment(symbol)}"
        orders: list[Order] = []
        for page in range(1, 1000):
            data = await self._get(path, {"page_num": page, "page_size": page_size})
            decoded = self._typed(_decode_orders, data, path)
            batch = decoded.result_list if isinstance(decoded, OrderPage) else _as_list(decoded)
            orders.extend(batch)
            if len(batch) < page_size:
                break
        return orders

    async def order_by_external_id(self, symbol: str, external_oid: str) -> Order | None:
        """The order with our client order id, or ``None`` when MEXC does not have it."""
        path = f"/api/v1/private/order/external/{_segment(symbol)}/{_segment(external_oid)}"
        try:
            data = await self._get(path)
        except MexcNotFound:
            return None
        return self._typed(_decode_order, data, path)

    # ----------------------------------------------------------------- orders

    async def create_order(self, order: CreateOrder) -> SubmittedOrder:
        """One ``order/create`` attempt, no retry (see :meth:`submit_order`)."""
        path = "/api/v1/private/order/create"
        data = await self._call("POST", path, body=_body_encoder.encode(order), private=True)
        created = self._typed(_decode_created, data, path)
        if isinstance(created, CreatedOrderReply):
            return SubmittedOrder(order_id=str(created.order_id), ts=created.ts)
        return SubmittedOrder(order_id=str(created))

    async def submit_order(self, order: CreateOrder, attempts: int = 3) -> SubmittedOrder:
        """Place an order at most once, however often the network fails.

        Rate limits (510) and a stale clock (513) mean "not processed": wait and resend.
        Timeouts, broken connections and 5xx leave the outcome unknown: look the order up by
        ``externalOid`` first and resend (same id) only if MEXC does not have it. Business
        refusals raise at once. If the outcome is still unknown at the end, raise
        :class:`MexcOutcomeUnknown`: the caller reconciles.
        """
        last: MexcError | None = None
        for number in range(attempts):
            if number:
                await asyncio.sleep(self._backoff.delay(number - 1))
            try:
                return await self.create_order(order)
            except MexcRateLimited as exc:
                last = exc
                continue
            except MexcTimeWindowError as exc:
                last = exc
                await self.sync_clock()
                continue
            except (MexcTransportError, MexcServerError) as exc:
                last = exc
                log.warning("mexc order/create outcome unknown (%s); querying", exc.reason)
            found = await self._find_submitted(order)
            if found is not None:
                return found
        if isinstance(last, MexcRateLimited | MexcTimeWindowError):
            raise last
        raise MexcOutcomeUnknown(
            f"order {order.external_oid} on {order.symbol}: no answer after {attempts} attempts"
        )

    async def _find_submitted(self, order: CreateOrder) -> SubmittedOrder | None:
        try:
            existing = await self.order_by_external_id(order.symbol, order.external_oid)
        except (MexcTransportError, MexcServerError, MexcRateLimited):
            return None
        if existing is None:
            return None
        return SubmittedOrder(order_id=str(existing.order_id), recovered=True)

    async def cancel_orders(self, order_ids: list[str]) -> list[CancelResult]:
        """``order/cancel`` (<= 50 ids); cancelling twice is harmless, so it is retried."""
        if not 0 < len(order_ids) <= 50:
            raise ValueError("cancel between 1 and 50 orders at a time")
        path = "/api/v1/private/order/cancel"
        body = _body_encoder.encode([int(i) if i.isdigit() else i for i in order_ids])
        data = await self._with_retries(
            lambda: self._call("POST", path, body=body, private=True), path
        )
        return _as_list(self._typed(_decode_cancel, data, path))

    # ----------------------------------------------------------------- plan (stop) orders

    async def place_plan_order(self, order: CreatePlanOrder) -> str:
        """One ``planorder/place`` attempt (a plan order has no client id: never resent blindly;
        a lost answer raises :class:`MexcOutcomeUnknown` and the caller looks at the list)."""
        path = "/api/v1/private/planorder/place"
        try:
            data = await self._call("POST", path, body=_body_encoder.encode(order), private=True)
        except (MexcTransportError, MexcServerError) as exc:
            raise MexcOutcomeUnknown(f"plan order on {order.symbol}: {exc}") from exc
        return str(self._typed(_decode_plan_id, data, path))

    async def plan_orders(self, symbol: str) -> list[PlanOrder]:
        """The untriggered plan orders of a symbol."""
        path = "/api/v1/private/planorder/list/orders"
        data = await self._get(path, {"symbol": symbol, "states": "1", "page_size": 100})
        return _as_list(self._typed(_decode_plan_orders, data, path))

    async def cancel_plan_order(self, symbol: str, plan_id: str) -> None:
        """``planorder/cancel`` one plan order; cancelling twice is harmless, so it is retried."""
        path = "/api/v1/private/planorder/cancel"
        body = _body_encoder.encode([{"symbol": symbol, "orderId": plan_id}])
        await self._with_retries(lambda: self._call("POST", path, body=body, private=True), path)

    # ----------------------------------------------------------------- withdraw probe

    async def withdraw_permission_probe(self) -> int | None:
        """Call a spot SPOT_WITHDRAW_READ endpoint; the error code it fails with, or ``None``.

        A key made without withdrawal rights fails with 700007. This proves the key cannot read
        withdrawal data; MEXC offers no way to test withdraw-*write* short of withdrawing.
        """
        if not (self._key and self._secret):
            raise MexcError(401, "API key and secret are required for the withdraw probe")
        query = signing.spot_signed_query(self._secret, None, self._now_ms() + self.clock_offset_ms)
        url = f"{self._spot_base}{WITHDRAW_PROBE_PATH}?{query}"
        headers = {"X-MEXC-APIKEY": self._key.reveal(), "Content-Type": "application/json"}

        async def attempt() -> bytes:
            return await self._send("GET", url, headers=headers, label=WITHDRAW_PROBE_PATH)

        raw = await self._with_retries(attempt, WITHDRAW_PROBE_PATH)
        if raw.lstrip().startswith(b"["):
            return None
        try:
            self._unwrap(raw, WITHDRAW_PROBE_PATH)
        except MexcError as exc:
            if exc.code is None:
                raise
            return exc.code
        return None
