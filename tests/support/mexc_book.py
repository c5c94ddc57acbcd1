"""The exchange side of the local MEXC (test support): contracts, orders, plan orders, positions.

``MexcBook`` keeps an in-memory book of orders keyed by ``externalOid`` (resubmitting the same id
returns the same order), positions per side, and plan (trigger) orders, and answers the private
futures endpoints as MEXC documents them. ``tests/support/mexc_rest.py`` puts it behind HTTP with
signature checks and the knobs for a bad day.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from tests.support.mexc_shapes import BookOrder, LocalContract, Refused, number


@dataclass(kw_only=True)
class MexcBook:
    """The book and its exchange-side knobs; change any between (or during) requests."""

    contracts: dict[str, LocalContract] = field(
        default_factory=lambda: {s: LocalContract(s) for s in ("BTC_USDT", "ETH_USDT")}
    )
    balance: Decimal = Decimal(10000)
    leverage: int = 10
    mark_prices: dict[str, Decimal] = field(default_factory=dict)
    clock_skew_ms: int = 0
    #: "number" answers order/create with the bare id (contract docs), "object" as ccxt 2026 saw.
    create_reply: str = "number"
    #: "list" answers open_orders with a bare list, "page" with ``{"resultList": [...]}``.
    open_orders_reply: str = "list"
    #: the currency MEXC reports fees in (``feeCurrency``); USDT unless a test says otherwise
    fee_currency: str = "USDT"
    #: externalOid -> fields that replace the order's own in every answer about it (a bad day:
    #: an undocumented state, impossible numbers)
    order_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: plan (trigger) orders by id: they live at the exchange, whoever placed them is gone or not
    plans: dict[str, dict[str, Any]] = field(default_factory=dict)
    orders: dict[str, BookOrder] = field(default_factory=dict)  # externalOid -> order
    positions: dict[tuple[str, int], tuple[Decimal, Decimal]] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(739113560000000000))

    def _now(self) -> int:
        return time.time_ns() // 1_000_000 + self.clock_skew_ms

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
                order = BookOrder(
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
                raise Refused(2040, "order not exist")
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
                raise Refused(600, "Parameter error")
            for item in payload:
                plan = self.plans.get(str(item.get("orderId")) if isinstance(item, dict) else "")
                if plan is not None and plan["state"] == 1:
                    plan["state"] = 2
            return None
        raise Refused(404, "Not Found")

    def _open_orders(self, symbol: str, query: dict[str, str]) -> Any:
        try:
            page = int(query.get("page_num", "1"))
            size = min(int(query.get("page_size", "20")), 100)
        except ValueError as exc:
            raise Refused(600, "Parameter error") from exc
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
            raise Refused(601, "Decoding error") from exc

    def _asset(self) -> dict[str, Any]:
        margin = sum((vol * price for (vol, price) in self.positions.values()), Decimal(0))
        return {
            "currency": "USDT",
            "positionMargin": number(margin / self.leverage),
            "frozenBalance": 0,
            "availableBalance": number(self.balance),
            "cashBalance": number(self.balance),
            "equity": number(self.balance),
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
                        "holdVol": number(vol),
                        "frozenVol": 0,
                        "holdAvgPrice": number(price),
                        "openAvgPrice": number(price),
                        "leverage": self.leverage,
                        "realised": 0,
                        "holdFee": 0,
                    }
                )
        return out

    def _create(self, payload: Any) -> Any:
        if not isinstance(payload, dict):
            raise Refused(600, "Parameter error")
        try:
            symbol = str(payload["symbol"])
            price = Decimal(str(payload["price"]))
            vol = Decimal(str(payload["vol"]))
            side = int(payload["side"])
            order_type = int(payload["type"])
            open_type = int(payload["openType"])
        except (KeyError, ValueError, ArithmeticError) as exc:
            raise Refused(600, "Parameter error") from exc
        external = str(payload.get("externalOid") or f"srv{next(self._ids)}")
        if len(external) > 32:
            raise Refused(2030, "externalOid is too long")
        existing = self.orders.get(external)
        if existing is not None:  # the same client id twice is the same order
            return self._created(existing)
        contract = self.contracts.get(symbol)
        if contract is None:
            raise Refused(1001, "Contract not exist!")
        if not contract.api_allowed:
            raise Refused(1002, "Contract not allow place order!")
        if side not in (1, 2, 3, 4) or order_type not in (1, 5) or open_type not in (1, 2):
            raise Refused(600, "Parameter error")
        if vol < contract.min_vol or vol > contract.max_vol or vol % contract.vol_unit:
            raise Refused(2011, "Order quantity error!")
        if price <= 0 or price % contract.price_unit:
            raise Refused(2015, "Price or quantity accuracy error")
        fill_price = self.mark_prices.get(symbol, price)
        position_type = 1 if side in (1, 4) else 2
        held, _ = self.positions.get((symbol, position_type), (Decimal(0), Decimal(0)))
        if side in (2, 4) and held < vol:
            raise Refused(2009, "Position does not exist or has been closed")
        if side in (1, 3):
            margin = vol * contract.contract_size * fill_price / self.leverage
            if margin > self.balance:
                raise Refused(2005, "Balance insufficient!")
        order = BookOrder(
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

    def _trade(self, order: BookOrder, vol: Decimal, price: Decimal, *, maker: bool) -> None:
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
            raise Refused(600, "Parameter error") from exc
        contract = self.contracts.get(plan["symbol"])
        if contract is None:
            raise Refused(1001, "Contract not exist!")
        if plan["side"] not in (1, 2, 3, 4) or plan["trigger_type"] not in (1, 2):
            raise Refused(600, "Parameter error")
        if plan["trigger_price"] <= 0 or plan["trigger_price"] % contract.price_unit:
            raise Refused(3001, "Trigger price error")
        if plan["vol"] < contract.min_vol or plan["vol"] % contract.vol_unit:
            raise Refused(2011, "Order quantity error!")
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
            "vol": number(plan["vol"]),
            "triggerPrice": number(plan["trigger_price"]),
            "triggerType": plan["trigger_type"],
            "executeCycle": plan["execute_cycle"],
            "orderType": plan["order_type"],
            "trend": plan["trend"],
            "openType": plan["open_type"],
            "state": plan["state"],
        }

    def _created(self, order: BookOrder) -> Any:
        if self.create_reply == "object":
            return {"orderId": str(order.order_id), "ts": order.create_time}
        return order.order_id

    def _cancel(self, payload: Any) -> list[dict[str, Any]]:
        if not isinstance(payload, list) or not 0 < len(payload) <= 50:
            raise Refused(600, "Parameter error")
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
