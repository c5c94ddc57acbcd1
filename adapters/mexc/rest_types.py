"""Typed MEXC futures REST payloads: what we decode from replies and encode into requests.

Tolerant where MEXC varies (unknown fields ignored, optional ones defaulted), strict where it
matters: sizes and prices are ``Decimal`` read from the JSON text, and a contract without an
``apiAllowed`` flag counts as not allowed (fail closed).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

import msgspec

# --------------------------------------------------------------------------- response types


class _Tolerant(msgspec.Struct, rename="camel", kw_only=True, frozen=True):
    """MEXC adds fields over time: ignore the unknown ones, type the ones we use."""


class ContractDetail(_Tolerant, frozen=True):
    """One contract of ``contract/detail``; a missing ``apiAllowed`` counts as *not* allowed."""

    symbol: str
    contract_size: Decimal
    min_vol: Decimal
    max_vol: Decimal
    vol_unit: Decimal
    price_unit: Decimal
    taker_fee_rate: Decimal = Decimal(0)
    maker_fee_rate: Decimal = Decimal(0)
    api_allowed: bool = False
    state: int = 0
    max_leverage: int | None = None


class Asset(_Tolerant, frozen=True):
    """One currency of ``account/assets``."""

    currency: str
    available_balance: Decimal = Decimal(0)
    frozen_balance: Decimal = Decimal(0)
    position_margin: Decimal = Decimal(0)
    equity: Decimal = Decimal(0)
    unrealized: Decimal = Decimal(0)


class Position(_Tolerant, frozen=True):
    """One open position (``positionType`` 1 long, 2 short; ``holdVol`` in contracts)."""

    position_id: int | str
    symbol: str
    position_type: int
    hold_vol: Decimal
    hold_avg_price: Decimal = Decimal(0)
    open_type: int = 0
    state: int = 1
    leverage: Decimal | None = None
    liquidate_price: Decimal | None = None


class Order(_Tolerant, frozen=True):
    """One order (``state`` 1 uninformed, 2 uncompleted, 3 completed, 4 cancelled, 5 invalid)."""

    order_id: int | str
    symbol: str
    side: int
    vol: Decimal
    price: Decimal = Decimal(0)
    order_type: int = 0
    state: int = 0
    external_oid: str | None = None
    deal_vol: Decimal = Decimal(0)
    deal_avg_price: Decimal = Decimal(0)
    open_type: int = 0
    create_time: int = 0
    update_time: int = 0
    #: fees charged so far on this order, as the exchange reports them, by liquidity
    taker_fee: Decimal = Decimal(0)
    maker_fee: Decimal = Decimal(0)
    fee_currency: str | None = None


class PlanOrder(_Tolerant, frozen=True):
    """A trigger (plan) order: ``state`` 1 untriggered, 2 cancelled, 3 executed, 4 invalid,
    5 failed; ``triggerType`` 1 when the price rises to ``triggerPrice``, 2 when it falls to it."""

    id: int | str
    symbol: str
    side: int
    vol: Decimal
    trigger_price: Decimal
    trigger_type: int = 0
    state: int = 1


class OrderPage(_Tolerant, frozen=True):
    result_list: list[Order] = []


class CreatedOrderReply(_Tolerant, frozen=True):
    order_id: int | str
    ts: int | None = None


class CancelResult(_Tolerant, frozen=True):
    """One line of ``order/cancel``: ``error_code`` 0 means cancelled."""

    order_id: int | str
    error_code: int = 0
    error_msg: str = ""


class Envelope(msgspec.Struct):
    success: bool | None = None
    code: int | None = None
    data: msgspec.Raw = msgspec.Raw(b"null")
    message: str | None = None
    msg: str | None = None


# --------------------------------------------------------------------------- requests


class CreateOrder(msgspec.Struct, rename="camel", omit_defaults=True, kw_only=True, frozen=True):
    """POST ``order/create`` body: side 1 open long, 2 close short, 3 open short, 4 close long;
    type 1 limit, 5 market; openType 1 isolated, 2 cross; ``externalOid`` <= 32 characters."""

    symbol: str
    price: Decimal
    vol: Decimal
    side: Literal[1, 2, 3, 4]
    type: Literal[1, 2, 3, 4, 5, 6]
    open_type: Literal[1, 2]
    external_oid: str
    leverage: int | None = None
    reduce_only: bool = False


class CreatePlanOrder(
    msgspec.Struct, rename="camel", omit_defaults=True, kw_only=True, frozen=True
):
    """POST ``planorder/place``: a market order of ``vol`` on ``side`` once the last price
    (``trend`` 1) crosses ``triggerPrice``; ``executeCycle`` 2 keeps it for 7 days."""

    symbol: str
    vol: Decimal
    side: Literal[1, 2, 3, 4]
    open_type: Literal[1, 2]
    trigger_price: Decimal
    trigger_type: Literal[1, 2]
    execute_cycle: Literal[1, 2] = 2
    order_type: Literal[1, 5] = 5
    trend: Literal[1, 2, 3] = 1
    reduce_only: bool = True
    leverage: int | None = None


class SubmittedOrder(msgspec.Struct, frozen=True, kw_only=True):
    """An order MEXC has: its id, its time if MEXC told us, and whether it was found by query."""

    order_id: str
    ts: int | None = None
    recovered: bool = False
