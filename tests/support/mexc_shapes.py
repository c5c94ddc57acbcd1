"""The shapes MEXC's futures REST API answers with (test support for ``mexc_book``/``mexc_rest``).

A contract's detail and an order as MEXC's documentation spells them, and the refusal a private
endpoint answers with (code and message).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any


def number(value: Decimal) -> float | int:
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
            "contractSize": number(self.contract_size),
            "minLeverage": 1,
            "maxLeverage": 125,
            "priceScale": 1,
            "volScale": 0,
            "priceUnit": number(self.price_unit),
            "volUnit": number(self.vol_unit),
            "minVol": number(self.min_vol),
            "maxVol": number(self.max_vol),
            "takerFeeRate": number(self.taker_fee_rate),
            "makerFeeRate": number(self.maker_fee_rate),
            "state": self.state,
            "isNew": False,
            "isHot": True,
            "isHidden": False,
            "apiAllowed": self.api_allowed,
        }


@dataclass
class BookOrder:
    """One order in the local book, answered in MEXC's order shape."""

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
            "price": number(self.price),
            "vol": number(self.vol),
            "leverage": 10,
            "side": self.side,
            "category": 1,
            "orderType": self.order_type,
            "dealAvgPrice": number(self.deal_avg_price),
            "dealVol": number(self.deal_vol),
            "orderMargin": 0,
            "takerFee": number(self.taker_fee),
            "makerFee": number(self.maker_fee),
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


class Refused(Exception):
    """A private endpoint says no: MEXC's error code and message."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
