"""A local HTTP server that answers as MEXC's futures REST API documents (test support).

It is a protocol-speaking peer, not a mock of our code: it checks signatures and the time window
the way MEXC describes them (written here from the documentation, not by calling our signer),
keeps an in-memory book of orders keyed by ``externalOid`` (resubmitting the same id returns the
same order) and positions, and answers in MEXC's envelopes. Knobs let a test make it behave like
the real exchange on a bad day: ``apiAllowed=false``, a rejected key (602), the order API switched
off (1002), rate limiting (510), slow answers, a key that has withdrawal rights.

Bound to 127.0.0.1 on a port the OS picks; ``requests`` records what arrived (for tests that check
nothing was sent, or that no secret travelled where it should not).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import time
from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from aiohttp import web


def _sorted_query(pairs: list[tuple[str, str]]) -> str:
    """The documented GET parameter string: sorted ``k=v``, values URL-encoded (Java-style)."""
    encoded = sorted((k, quote(v, safe="-_.*").replace("~", "%7E")) for k, v in pairs)
    return "&".join(f"{k}={v}" for k, v in encoded)


def _hmac(secret: str, text: str) -> str:
    return hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()


def _number(value: Decimal) -> float | int:
    """MEXC answers with JSON numbers; keep integers integral."""
    return int(value) if value == value.to_integral_value() else float(value)


@dataclass
class LocalContract:
    symbol: str
    contract_size: Decimal = Decimal("0.0001")
    min_vol: Decimal = Decimal(1)
    max_vol: Decimal = Decimal(5000000)
    vol_unit: Decimal = Decimal(1)
    price_unit: Decimal = Decimal("0.1")
    taker_fee_rate: Decimal = Decimal("0.0002")
    maker_fee_rate: Decimal = Decimal("0")
    api_allowed: bool = True
    state: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "displayNameEn": self.symbol.replace("_", "") + " PERPETUAL",
            "baseCoin": self.symbol.split("_")[0],
            "quoteCoin": "USDT",
            "settleCoin": "USDT",
            "contractSize": _number(self.contract_size),
            "minLeverage": 1,
            "maxLeverage": 125,
            "priceScale": 1,
            "volScale": 0,
            "priceUnit": _number(self.price_unit),
            "volUnit": _number(self.vol_unit),
            "minVol": _number(self.min_vol),
            "maxVol": _number(self.max_vol),
            "takerFeeRate": _number(self.taker_fee_rate),
            "makerFeeRate": _number(self.maker_fee_rate),
            "state": self.state,
            "isNew": False,
            "isHot": True,
            "isHidden": False,
            "apiAllowed": self.api_allowed,
        }


@dataclass
class _Order:
    order_id: int
    symbol: str
    price: Decimal
    vol: Decimal
    side: int
    order_type: int
    open_type: int
    external_oid: str
    state: int
    create_time: int
    deal_vol: Decimal = Decimal(0)
    deal_avg_price: Decimal = Decimal(0)
    taker_fee: Decimal = Decimal(0)
    maker_fee: Decimal = Decimal(0)
    fee_currency: str = "USDT"
    update_time: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "orderId": str(self.order_id),
            "symbol": self.symbol,
            "positionId": 0,
            "price": _number(self.price),
            "vol": _number(self.vol),
            "leverage": 10,
            "side": self.side,
            "category": 1,
            "orderType": self.order_type,
            "dealAvgPrice": _number(self.deal_avg_price),
            "dealVol": _number(self.deal_vol),
            "orderMargin": 0,
            "takerFee": _number(self.taker_fee),
            "makerFee": _number(self.maker_fee),
            "profit": 0,
            "feeCurrency": self.fee_currency,
            "openType": self.open_type,
            "state": self.state,
            "externalOid": self.external_oid,
            "errorCode": 0,
            "usedMargin": 0,
            "createTime": self.create_time,
            "updateTime": self.update_time or self.create_time,
        }


@dataclass
class Seen:
    """One request as it arrived (headers included: tests grep them for leaked secrets)."""

    method: str
    path: str
    query: str
    body: str
    headers: dict[str, str]


@dataclass
class LocalMexcRest:
    """The server and its knobs; change any knob between (or during) requests."""

    accounts: dict[str, str] = field(default_factory=dict)  # api key -> secret
    contracts: dict[str, LocalContract] = field(
        default_factory=lambda: {s: LocalContract(s) for s in ("BTC_USDT", "ETH_USDT")}
    )
    balance: Decimal = Decimal(10000)
    leverage: int = 10
    mark_prices: dict[str, Decimal] = field(default_factory=dict)
    #: endpoint ("order/create", "account/assets", "*" for every private contract one, or the
    #: spot probe's "capital/config/getall") -> (code, message)
    forced_errors: dict[str, tuple[int, str]] = field(default_factory=dict)
    rate_limited: bool = False
    withdraw_permission: bool = False
    clock_skew_ms: int = 0
    #: "number" answers order/create with the bare id (contract docs), "object" as ccxt 2026 saw.
    create_reply: str = "number"
    #: "list" answers open_orders with a bare list, "page" with ``{"resultList": [...]}``.
    open_orders_reply: str = "list"
    #: endpoint -> seconds to wait *after* doing the work and before answering, every time
    slow: dict[str, float] = field(default_factory=dict)
    #: the currency MEXC reports fees in (``feeCurrency``); USDT unless a test says otherwise
    fee_currency: str = "USDT"
    #: externalOid -> fields that replace the order's own in every answer about it (a bad day:
    #: an undocumented state, impossible numbers)
    order_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    _garbled: dict[str, int] = field(default_factory=dict)
    #: plan (trigger) orders by id: they live at the exchange, whoever placed them is gone or not
    plans: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[Seen] = field(default_factory=list)
    orders: dict[str, _Order] = field(default_factory=dict)  # externalOid -> order
    positions: dict[tuple[str, int], tuple[Decimal, Decimal]] = field(default_factory=dict)
    _once: dict[str, deque[float]] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(739113560000000000))
    _runner: web.AppRunner | None = None
    url: str = ""

    def slow_once(self, endpoint: str, seconds: float, times: int = 1) -> None:
        """The next ``times`` answers of ``endpoint`` come ``seconds`` late (work done first)."""
        self._once.setdefault(endpoint, deque()).extend([seconds] * times)

    def set_mark(self, symbol: str, price: Decimal) -> None:
        """The market moves to ``price``: untriggered plan orders it crosses execute (at it)."""
        self.mark_prices[symbol] = price
        for plan in self.plans.values():
            if plan["symbol"] != symbol or plan["state"] != 1:
                continue
            trigger = plan["trigger_price"]
            if (plan["trigger_type"] == 1 and price >= trigger) or (
                plan["trigger_type"] == 2 and price <= trigger
            ):
                position_type = 1 if plan["side"] in (1, 4) else 2
                held, _ = self.positions.get((symbol, position_type), (Decimal(0), Decimal(0)))
                if plan["side"] in (2, 4) and held < plan["vol"]:
                    plan["state"] = 5  # nothing (left) to close
                    continue
                order = _Order(
                    order_id=next(self._ids),
                    symbol=symbol,
                    price=price,
                    vol=plan["vol"],
                    side=plan["side"],
                    order_type=5,
                    open_type=plan["open_type"],
                    external_oid=f"plan{plan['id']}",
                    state=2,
                    create_time=self._now(),
                )
                self.orders[order.external_oid] = order
                self._trade(order, plan["vol"], price, maker=False)
                plan["state"] = 3

    def garble_once(self, endpoint: str, times: int = 1) -> None:
        """The next ``times`` answers of ``endpoint`` are not JSON (the work is done first)."""
        self._garbled[endpoint] = self._garbled.get(endpoint, 0) + times

    def count(self, endpoint: str) -> int:
        """How many requests reached an endpoint (e.g. ``order/create``)."""
        return sum(1 for seen in self.requests if seen.path.endswith(endpoint))

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> LocalMexcRest:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _now(self) -> int:
        return time.time_ns() // 1_000_000 + self.clock_skew_ms

    # ----------------------------------------------------------------- dispatch

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        body = await request.text()
        path = request.path
        self.requests.append(
            Seen(request.method, path, request.query_string, body, dict(request.headers))
        )
        if path == "/api/v3/capital/config/getall":
            return self._spot_withdraw_probe(request)
        public = {"/api/v1/contract/ping": self._ping, "/api/v1/contract/detail": self._detail}
        if path in public:
            return self._ok(public[path](request))
        prefix = "/api/v1/private/"
        if not path.startswith(prefix):
            return web.json_response({"success": False, "code": 404, "message": "Not Found"})
        endpoint = path[len(prefix) :]
        failure = self._check_private(request, body)
        if failure is None and self.rate_limited:
            failure = (510, "Requests are too frequent!")
        forced = self.forced_errors.get(self._route_name(endpoint)) or self.forced_errors.get("*")
        if failure is None and forced is not None:
            failure = forced
        if failure is not None:
            return self._fail(*failure)
        try:
            result = self._private(request.method, endpoint, body, dict(request.query))
        except _Refused as refused:
            return self._fail(refused.code, refused.message)
        await self._delay(self._route_name(endpoint))
        name = self._route_name(endpoint)
        if self._garbled.get(name, 0) > 0:
            self._garbled[name] -= 1
            return web.Response(text="<html>502 Bad Gateway</html>", content_type="text/html")
        return self._ok(result)

    @staticmethod
    def _route_name(endpoint: str) -> str:
        for name in ("order/list/open_orders", "order/external", "order/get"):
            if endpoint.startswith(name):
                return name
        return endpoint

    async def _delay(self, name: str) -> None:
        queued = self._once.get(name)
        seconds = queued.popleft() if queued else self.slow.get(name, 0.0)
        if seconds:
            await asyncio.sleep(seconds)

    @staticmethod
    def _ok(data: Any) -> web.Response:
        return web.json_response({"success": True, "code": 0, "data": data})

    @staticmethod
    def _fail(code: int, message: str) -> web.Response:
        return web.json_response({"success": False, "code": code, "message": message})

    def _check_private(self, request: web.Request, body: str) -> tuple[int, str] | None:
        """MEXC's "Authentication method": key, signature over key+time+params, time window."""
        key = request.headers.get("ApiKey")
        request_time = request.headers.get("Request-Time", "")
        signature = request.headers.get("Signature")
        if not key or not signature or not request_time.isdigit():
            return (401, "Not logged in")
        secret = self.accounts.get(key)
        if request.method in ("GET", "DELETE"):
            pairs = [(k, v) for k, v in request.query.items()]
            params = _sorted_query(pairs)
        else:
            params = body
        expected = _hmac(secret, f"{key}{request_time}{params}") if secret else None
        if expected is None or not hmac.compare_digest(expected, signature):
            return (602, "Signature verification failed!")
        window_s = request.headers.get("Recv-Window", "10")
        window_ms = min(int(window_s) if window_s.isdigit() else 10, 60) * 1000
        if abs(self._now() - int(request_time)) > window_ms:
            return (513, "Invalid request time!")
        return None

    # ----------------------------------------------------------------- public

    def _ping(self, request: web.Request) -> int:
        return self._now()

    def _detail(self, request: web.Request) -> Any:
        symbol = request.query.get("symbol")
        if symbol:
            contract = self.contracts.get(symbol)
            return contract.as_json() if contract else None
        return [c.as_json() for c in self.contracts.values()]

    # ----------------------------------------------------------------- spot probe

    def _spot_withdraw_probe(self, request: web.Request) -> web.Response:
        """Spot v3 signing: HMAC of the query string before ``&signature=``; key in a header."""
        key = request.headers.get("X-MEXC-APIKEY", "")
        unsigned, _, signature = request.query_string.rpartition("&signature=")
        secret = self.accounts.get(key)
        if secret is None:
            return web.json_response({"code": 10072, "msg": "Api key info invalid"}, status=400)
        if not hmac.compare_digest(_hmac(secret, unsigned), signature):
            body = {"code": 700002, "msg": "Signature for this request is not valid."}
            return web.json_response(body, status=400)
        forced = self.forced_errors.get("capital/config/getall")
        if forced is not None:
            return web.json_response({"code": forced[0], "msg": forced[1]}, status=400)
        if not self.withdraw_permission:
            body = {"code": 700007, "msg": "No permission to access the endpoint."}
            return web.json_response(body, status=403)
        return web.json_response([{"coin": "USDT", "name": "Tether", "networkList": []}])

    # ----------------------------------------------------------------- private

    def _private(self, method: str, endpoint: str, body: str, query: dict[str, str]) -> Any:
        parts = endpoint.split("/")
        if method == "GET" and endpoint == "account/assets":
            return [self._asset()]
        if method == "GET" and endpoint == "position/open_positions":
            return self._positions()
        if method == "GET" and endpoint.startswith("order/list/open_orders/"):
            return self._open_orders(parts[-1], query)
        if method == "GET" and endpoint.startswith("order/external/") and len(parts) == 4:
            order = self.orders.get(parts[3])
            if order is None or order.symbol != parts[2]:
                raise _Refused(2040, "order not exist")
            return {**order.as_json(), **self.order_overrides.get(order.external_oid, {})}
        if method == "POST" and endpoint in ("order/create", "order/submit"):
            return self._create(self._json(body))
        if method == "POST" and endpoint == "order/cancel":
            return self._cancel(self._json(body))
        if method == "POST" and endpoint == "planorder/place":
            return self._place_plan(self._json(body))
        if method == "GET" and endpoint == "planorder/list/orders":
            states = query.get("states", "1").split(",")
            return [
                self._plan_json(p)
                for p in self.plans.values()
                if p["symbol"] == query.get("symbol", p["symbol"]) and str(p["state"]) in states
            ]
        if method == "POST" and endpoint == "planorder/cancel":
            payload = self._json(body)
            if not isinstance(payload, list):
                raise _Refused(600, "Parameter error")
            for item in payload:
                plan = self.plans.get(str(item.get("orderId")) if isinstance(item, dict) else "")
                if plan is not None and plan["state"] == 1:
                    plan["state"] = 2
            return None
        raise _Refused(404, "Not Found")

    def _open_orders(self, symbol: str, query: dict[str, str]) -> Any:
        try:
            page = int(query.get("page_num", "1"))
            size = min(int(query.get("page_size", "20")), 100)
        except ValueError as exc:
            raise _Refused(600, "Parameter error") from exc
        found = [o.as_json() for o in self.orders.values() if o.symbol == symbol and o.state == 2]
        found = found[(page - 1) * size : page * size]
        if self.open_orders_reply == "page":
            return {"pageSize": size, "totalCount": len(found), "resultList": found}
        return found

    @staticmethod
    def _json(body: str) -> Any:
        try:
            return json.loads(body, parse_float=Decimal)
        except ValueError as exc:
            raise _Refused(601, "Decoding error") from exc

    def _asset(self) -> dict[str, Any]:
        margin = sum((vol * price for (vol, price) in self.positions.values()), Decimal(0))
        return {
            "currency": "USDT",
            "positionMargin": _number(margin / self.leverage),
            "frozenBalance": 0,
            "availableBalance": _number(self.balance),
            "cashBalance": _number(self.balance),
            "equity": _number(self.balance),
            "unrealized": 0,
        }

    def _positions(self) -> list[dict[str, Any]]:
        out = []
        for index, ((symbol, position_type), (vol, price)) in enumerate(self.positions.items()):
            if vol > 0:
                out.append(
                    {
                        "positionId": 1000 + index,
                        "symbol": symbol,
                        "positionType": position_type,
                        "openType": 2,
                        "state": 1,
                        "holdVol": _number(vol),
                        "frozenVol": 0,
                        "holdAvgPrice": _number(price),
                        "openAvgPrice": _number(price),
                        "leverage": self.leverage,
                        "realised": 0,
                        "holdFee": 0,
                    }
                )
        return out

    def _create(self, payload: Any) -> Any:
        if not isinstance(payload, dict):
            raise _Refused(600, "Parameter error")
        try:
            symbol = str(payload["symbol"])
            price = Decimal(str(payload["price"]))
            vol = Decimal(str(payload["vol"]))
            side = int(payload["side"])
            order_type = int(payload["type"])
            open_type = int(payload["openType"])
        except (KeyError, ValueError, ArithmeticError) as exc:
            raise _Refused(600, "Parameter error") from exc
        external = str(payload.get("externalOid") or f"srv{next(self._ids)}")
        if len(external) > 32:
            raise _Refused(2030, "externalOid is too long")
        existing = self.orders.get(external)
        if existing is not None:  # the same client id twice is the same order
            return self._created(existing)
        contract = self.contracts.get(symbol)
        if contract is None:
            raise _Refused(1001, "Contract not exist!")
        if not contract.api_allowed:
            raise _Refused(1002, "Contract not allow place order!")
        if side not in (1, 2, 3, 4) or order_type not in (1, 5) or open_type not in (1, 2):
            raise _Refused(600, "Parameter error")
        if vol < contract.min_vol or vol > contract.max_vol or vol % contract.vol_unit:
            raise _Refused(2011, "Order quantity error!")
        if price <= 0 or price % contract.price_unit:
            raise _Refused(2015, "Price or quantity accuracy error")
        fill_price = self.mark_prices.get(symbol, price)
        position_type = 1 if side in (1, 4) else 2
        held, _ = self.positions.get((symbol, position_type), (Decimal(0), Decimal(0)))
        if side in (2, 4) and held < vol:
            raise _Refused(2009, "Position does not exist or has been closed")
        if side in (1, 3):
            margin = vol * contract.contract_size * fill_price / self.leverage
            if margin > self.balance:
                raise _Refused(2005, "Balance insufficient!")
        order = _Order(
            order_id=next(self._ids),
            symbol=symbol,
            price=price,
            vol=vol,
            side=side,
            order_type=order_type,
            open_type=open_type,
            external_oid=external,
            state=2,
            create_time=self._now(),
        )
        self.orders[external] = order
        if order_type == 5:  # a market order takes liquidity at once
            self._trade(order, vol, fill_price, maker=False)
        return self._created(order)

    def fill(
        self, external_oid: str, contracts: Decimal | None = None, price: Decimal | None = None
    ) -> None:
        """The market trades against a resting (limit) order: ``contracts`` of it (default: the
        rest) at ``price`` (default: its limit), as maker, charged at the maker fee rate."""
        order = self.orders[external_oid]
        if order.state != 2:
            raise ValueError(f"order {external_oid} is not open (state {order.state})")
        volume = contracts if contracts is not None else order.vol - order.deal_vol
        self._trade(order, volume, price if price is not None else order.price, maker=True)

    def _trade(self, order: _Order, vol: Decimal, price: Decimal, *, maker: bool) -> None:
        """One execution of ``order``: its fill, its fee (in ``fee_currency``), the position."""
        contract = self.contracts[order.symbol]
        done = order.deal_vol + vol
        order.deal_avg_price = (order.deal_vol * order.deal_avg_price + vol * price) / done
        order.deal_vol = done
        notional = vol * contract.contract_size * price
        if maker:
            order.maker_fee += notional * contract.maker_fee_rate
        else:
            order.taker_fee += notional * contract.taker_fee_rate
        order.fee_currency = self.fee_currency
        order.update_time = self._now()
        if done >= order.vol:
            order.state = 3
        position_type = 1 if order.side in (1, 4) else 2
        key = (order.symbol, position_type)
        held, avg = self.positions.get(key, (Decimal(0), Decimal(0)))
        if order.side in (1, 3):
            self.positions[key] = (held + vol, (held * avg + vol * price) / (held + vol))
        else:
            self.positions[key] = (held - vol, avg)

    def _place_plan(self, payload: Any) -> Any:
        try:
            plan: dict[str, Any] = {
                "symbol": str(payload["symbol"]),
                "vol": Decimal(str(payload["vol"])),
                "side": int(payload["side"]),
                "open_type": int(payload["openType"]),
                "trigger_price": Decimal(str(payload["triggerPrice"])),
                "trigger_type": int(payload["triggerType"]),
                "execute_cycle": int(payload.get("executeCycle", 1)),
                "order_type": int(payload.get("orderType", 5)),
                "trend": int(payload.get("trend", 1)),
            }
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
            raise _Refused(600, "Parameter error") from exc
        contract = self.contracts.get(plan["symbol"])
        if contract is None:
            raise _Refused(1001, "Contract not exist!")
        if plan["side"] not in (1, 2, 3, 4) or plan["trigger_type"] not in (1, 2):
            raise _Refused(600, "Parameter error")
        if plan["trigger_price"] <= 0 or plan["trigger_price"] % contract.price_unit:
            raise _Refused(3001, "Trigger price error")
        if plan["vol"] < contract.min_vol or plan["vol"] % contract.vol_unit:
            raise _Refused(2011, "Order quantity error!")
        plan["id"] = str(next(self._ids))
        plan["state"] = 1
        self.plans[plan["id"]] = plan
        return int(plan["id"])

    @staticmethod
    def _plan_json(plan: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": plan["id"],
            "symbol": plan["symbol"],
            "side": plan["side"],
            "vol": _number(plan["vol"]),
            "triggerPrice": _number(plan["trigger_price"]),
            "triggerType": plan["trigger_type"],
            "executeCycle": plan["execute_cycle"],
            "orderType": plan["order_type"],
            "trend": plan["trend"],
            "openType": plan["open_type"],
            "state": plan["state"],
        }

    def _created(self, order: _Order) -> Any:
        if self.create_reply == "object":
            return {"orderId": str(order.order_id), "ts": order.create_time}
        return order.order_id

    def _cancel(self, payload: Any) -> list[dict[str, Any]]:
        if not isinstance(payload, list) or not 0 < len(payload) <= 50:
            raise _Refused(600, "Parameter error")
        by_id = {o.order_id: o for o in self.orders.values()}
        results = []
        for raw in payload:
            order = by_id.get(int(raw)) if str(raw).isdigit() else None
            if order is None:
                results.append({"orderId": raw, "errorCode": 2040, "errorMsg": "order not exist"})
            elif order.state != 2:
                results.append(
                    {
                        "orderId": raw,
                        "errorCode": 2041,
                        "errorMsg": "order state cannot be cancelled",
                    }
                )
            else:
                order.state = 4
                results.append({"orderId": raw, "errorCode": 0, "errorMsg": "success"})
        return results


class _Refused(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
