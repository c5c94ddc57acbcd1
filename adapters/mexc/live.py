"""Live execution on MEXC futures: opt-in, gated, and failing closed.

Nothing here runs by accident. A :class:`LiveVenue` can only be built from a
:class:`LiveModeEnabled` token, and the only way to get one is
:meth:`LiveModeEnabled.from_settings`, which demands ``TRADING_MODE=live``,
``LIVE_TRADING_CONFIRMED=yes`` and both keys (the pipeline passes its validated settings; nothing
here reads the environment). :meth:`LiveVenue.start` then probes the exchange and raises
:class:`LiveTradingRefused` unless the server answers, the key works for account and trade reads,
every traded contract is enabled with ``apiAllowed``, and the key has *no* withdrawal rights
(the spot withdraw endpoint must fail with 700007). Orders are refused before start-up.

Exchange answers come back as ledger events (``OrderAccepted``, ``OrderRejected``,
``OrderCancelled``); a definite refusal is an event, an unknown outcome is an exception
(:class:`~adapters.mexc.errors.MexcOutcomeUnknown`) that sends the caller to reconciliation.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Literal

import msgspec

from adapters.mexc.errors import MexcError, MexcOrderRefused, MexcOutcomeUnknown
from adapters.mexc.rest import DEFAULT_REST_URL, NO_PERMISSION, MexcRestClient, wall_clock_ms
from adapters.mexc.rest_types import ContractDetail, CreateOrder, CreatePlanOrder, Order, PlanOrder
from adapters.secrets import Secret, scrub
from aggregates.events import (
    ContractSpecified,
    Event,
    OrderAccepted,
    OrderCancelled,
    OrderRejected,
    OrderRequested,
    Side,
)

log = logging.getLogger(__name__)

#: MEXC order ``side`` for (our side, reduce_only) in one-way mode (ccxt's mapping).
_SIDE_CODE: dict[tuple[str, bool], Literal[1, 2, 3, 4]] = {
    ("buy", False): 1,  # open long
    ("buy", True): 2,  # close short
    ("sell", False): 3,  # open short
    ("sell", True): 4,  # close long
}
_SIDE_OF_CODE: dict[int, tuple[Side, bool]] = {v: k for k, v in _SIDE_CODE.items()}  # type: ignore[misc]
_ORDER_STATES = {1: "pending", 2: "open", 3: "filled", 4: "cancelled", 5: "invalid"}


class LiveTradingRefused(Exception):
    """Live trading will not start (or go on); ``reason`` is a stable code, the text says why."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"live trading refused: {reason}" + (f" ({detail})" if detail else ""))


class LiveModeEnabled:
    """Proof that the operator asked for live trading, confirmed it, and supplied keys."""

    __slots__ = ("api_key", "api_secret")
    api_key: Secret
    api_secret: Secret

    def __init__(self) -> None:
        raise TypeError("use LiveModeEnabled.from_settings(...)")

    @classmethod
    def from_settings(
        cls,
        *,
        trading_mode: str,
        live_trading_confirmed: str,
        api_key: Secret | None,
        api_secret: Secret | None,
    ) -> LiveModeEnabled:
        """The token, or :class:`LiveTradingRefused` naming every missing condition."""
        problems = []
        if trading_mode != "live":
            problems.append(f"TRADING_MODE is {trading_mode!r}, not 'live'")
        if live_trading_confirmed != "yes":
            problems.append(f"LIVE_TRADING_CONFIRMED is {live_trading_confirmed!r}, not 'yes'")
        if not isinstance(api_key, Secret) or not api_key:
            problems.append("MEXC_API_KEY is missing")
        if not isinstance(api_secret, Secret) or not api_secret:
            problems.append("MEXC_API_SECRET is missing")
        if problems:
            raise LiveTradingRefused("live_mode_not_enabled", "; ".join(problems))
        token = object.__new__(cls)
        object.__setattr__(token, "api_key", api_key)
        object.__setattr__(token, "api_secret", api_secret)
        return token

    def __repr__(self) -> str:
        return "LiveModeEnabled(api_key=***, api_secret=***)"


class LiveStartup(msgspec.Struct, frozen=True, kw_only=True):
    """What the start-up probe established, for the ledger (no secrets in it)."""

    server_time_ms: int
    clock_offset_ms: int
    contracts: tuple[ContractSpecified, ...]
    withdraw_probe_code: int


class VenueOrder(msgspec.Struct, frozen=True, kw_only=True):
    """An order as the exchange reports it, for reconciliation."""

    client_order_id: str | None
    exchange_order_id: str
    symbol: str
    side: Side
    reduce_only: bool
    contracts: Decimal
    filled_contracts: Decimal
    price: Decimal
    state: Literal["pending", "open", "filled", "cancelled", "invalid", "unknown"]


class VenuePosition(msgspec.Struct, frozen=True, kw_only=True):
    """A position as the exchange reports it, for reconciliation."""

    symbol: str
    direction: Literal["long", "short"]
    contracts: Decimal
    entry_price: Decimal
    position_id: str
    margin_mode: Literal["isolated", "cross", "unknown"]


def venue_order(order: Order) -> VenueOrder:
    """Our plain view of a MEXC order."""
    side, reduce_only = _SIDE_OF_CODE.get(order.side, ("buy", False))
    return VenueOrder(
        client_order_id=order.external_oid or None,
        exchange_order_id=str(order.order_id),
        symbol=order.symbol,
        side=side,
        reduce_only=reduce_only,
        contracts=order.vol,
        filled_contracts=order.deal_vol,
        price=order.price,
        state=_ORDER_STATES.get(order.state, "unknown"),  # type: ignore[arg-type]
    )


def _contract_spec(detail: ContractDetail, at_ms: int) -> ContractSpecified:
    return ContractSpecified(
        at_ms=at_ms,
        symbol=detail.symbol,
        contract_size=detail.contract_size,
        min_contracts=detail.min_vol,
        max_contracts=detail.max_vol,
        contracts_step=detail.vol_unit,
        price_step=detail.price_unit,
        taker_fee_rate=detail.taker_fee_rate,
        maker_fee_rate=detail.maker_fee_rate,
        api_allowed=detail.api_allowed,
        source="exchange",
    )


class LiveVenue:
    """MEXC futures as an execution venue: probe, submit, cancel, and report for reconciliation."""

    def __init__(
        self,
        enabled: LiveModeEnabled,
        symbols: Iterable[str],
        *,
        base_url: str = DEFAULT_REST_URL,
        spot_base_url: str | None = None,
        open_type: Literal[1, 2] = 2,
        leverage: int | None = None,
        timeout_s: float = 10.0,
        now_ms: Callable[[], int] = wall_clock_ms,
        client: MexcRestClient | None = None,
    ) -> None:
        if not isinstance(enabled, LiveModeEnabled):
            raise LiveTradingRefused("live_mode_not_enabled", "a LiveModeEnabled token is required")
        if open_type == 1 and leverage is None:
            raise ValueError("isolated margin (open_type=1) needs a leverage")
        self._secrets = (enabled.api_key, enabled.api_secret)
        self._symbols = tuple(dict.fromkeys(symbols))
        if not self._symbols:
            raise ValueError("a live venue needs at least one symbol")
        self._open_type = open_type
        self._leverage = leverage
        self._now_ms = now_ms
        self._malformed: list[str] = []
        self._client = client or MexcRestClient(
            base_url,
            enabled.api_key,
            enabled.api_secret,
            spot_base_url=spot_base_url,
            timeout_s=timeout_s,
            now_ms=now_ms,
            on_malformed=self._malformed.append,
        )
        self._started: LiveStartup | None = None
        self._symbol_of: dict[str, str] = {}

    async def close(self) -> None:
        await self._client.close()

    async def __aenter__(self) -> LiveVenue:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def take_malformed(self) -> list[str]:
        """Replies that did not decode since the last call (secrets scrubbed), for the ledger."""
        taken, self._malformed[:] = list(self._malformed), []
        return taken

    def _clean(self, text: str) -> str:
        return scrub(text, self._secrets)

    # ----------------------------------------------------------------- start-up probe

    async def start(self) -> LiveStartup:
        """Probe the exchange; raise :class:`LiveTradingRefused` unless every check passes."""
        self._started = None
        try:
            offset = await self._client.sync_clock()
        except MexcError as exc:
            raise self._refused("server_unreachable", exc) from exc
        details = await self._probe_contracts()
        for reason, probe in (
            ("key_rejected", self._client.assets),
            ("key_cannot_read_trades", self._client.open_positions),
        ):
            try:
                await probe()
            except MexcError as exc:
                raise self._refused(reason, exc) from exc
        try:
            probe_code = await self._client.withdraw_permission_probe()
        except MexcError as exc:
            raise self._refused("withdraw_probe_failed", exc) from exc
        if probe_code is None:
            raise LiveTradingRefused(
                "key_has_withdraw_rights",
                "the API key can read withdrawal data; create a key without withdraw scopes",
            )
        if probe_code != NO_PERMISSION:
            raise LiveTradingRefused(
                "withdraw_probe_inconclusive",
                f"expected MEXC code {NO_PERMISSION}, got {probe_code}",
            )
        server_time = self._now_ms() + offset
        self._started = LiveStartup(
            server_time_ms=server_time,
            clock_offset_ms=self._client.clock_offset_ms,
            contracts=tuple(_contract_spec(details[s], server_time) for s in self._symbols),
            withdraw_probe_code=probe_code,
        )
        log.info("live venue ready for %s", ", ".join(self._symbols))
        return self._started

    async def _probe_contracts(self) -> dict[str, ContractDetail]:
        try:
            details = {d.symbol: d for d in await self._client.contract_details()}
        except MexcError as exc:
            raise self._refused("contract_detail_unavailable", exc) from exc
        for symbol in self._symbols:
            detail = details.get(symbol)
            if detail is None:
                raise LiveTradingRefused("contract_unknown", symbol)
            if not detail.api_allowed:
                raise LiveTradingRefused("contract_api_not_allowed", symbol)
            if detail.state != 0:
                raise LiveTradingRefused("contract_not_enabled", f"{symbol} state {detail.state}")
        return details

    def _refused(self, reason: str, exc: MexcError) -> LiveTradingRefused:
        return LiveTradingRefused(reason, self._clean(str(exc)))

    def _require_started(self) -> None:
        if self._started is None:
            raise LiveTradingRefused("not_started", "call start() and let it pass first")

    # ----------------------------------------------------------------- orders

    def order_body(self, order: OrderRequested) -> CreateOrder:
        """The ``order/create`` body for an approved order (one-way position mode)."""
        price = order.limit_price if order.limit_price is not None else order.reference_price
        return CreateOrder(
            symbol=order.symbol,
            price=price,
            vol=order.contracts,
            side=_SIDE_CODE[(order.side, order.reduce_only)],
            type=1 if order.order_type == "limit" else 5,
            open_type=self._open_type,
            external_oid=order.client_order_id,
            leverage=self._leverage,
            reduce_only=order.reduce_only,
        )

    async def submit(self, order: OrderRequested) -> list[Event]:
        """Send an approved order; ``[OrderAccepted]`` or ``[OrderRejected]``.

        Raises :class:`MexcOutcomeUnknown` when MEXC's answer could not be established: the order
        may exist, so the caller must reconcile before anything else happens to it.
        """
        self._require_started()
        if order.symbol not in self._symbols:
            return [self._rejected(order, "live_symbol_not_verified", "symbol not probed")]
        self._symbol_of[order.client_order_id] = order.symbol
        try:
            submitted = await self._client.submit_order(self.order_body(order))
        except MexcOutcomeUnknown:
            raise
        except MexcError as exc:
            if exc.code is None:
                raise MexcOutcomeUnknown(self._clean(str(exc))) from exc
            log.warning("mexc refused %s: %s", order.client_order_id, exc.reason)
            return [self._rejected(order, exc.reason, str(exc))]
        return [
            OrderAccepted(
                at_ms=submitted.ts or self._now_ms(),
                client_order_id=order.client_order_id,
                exchange_order_id=submitted.order_id,
                symbol=order.symbol,
            )
        ]

    def _rejected(self, order: OrderRequested, code: str, message: str) -> OrderRejected:
        return OrderRejected(
            at_ms=self._now_ms(),
            client_order_id=order.client_order_id,
            symbol=order.symbol,
            code=code,
            message=self._clean(message)[:2000],
        )

    async def find_order(self, client_order_id: str, symbol: str | None = None) -> Order | None:
        """The exchange's order for a client order id (searching the traded symbols if needed)."""
        self._require_started()
        known = symbol or self._symbol_of.get(client_order_id)
        for candidate in (known,) if known else self._symbols:
            order = await self._client.order_by_external_id(candidate, client_order_id)
            if order is not None:
                self._symbol_of[client_order_id] = order.symbol
                return order
        return None

    async def cancel(self, client_order_id: str, symbol: str | None = None) -> list[Event]:
        """Cancel an open order: ``[OrderCancelled]``, or ``[]`` if it is no longer open.

        Raises :class:`MexcOrderRefused` (e.g. 2041) when MEXC refuses to cancel an open order.
        """
        order = await self.find_order(client_order_id, symbol)
        if order is None or order.state not in (1, 2):
            return []
        results = await self._client.cancel_orders([str(order.order_id)])
        for result in results:
            if str(result.order_id) == str(order.order_id) and result.error_code != 0:
                raise MexcOrderRefused(result.error_code, self._clean(result.error_msg))
        return [
            OrderCancelled(
                at_ms=self._now_ms(),
                client_order_id=client_order_id,
                symbol=order.symbol,
                reason="cancel_requested",
                remaining_contracts=max(order.vol - order.deal_vol, Decimal(0)),
            )
        ]

    # ----------------------------------------------------------------- exchange-resident stops

    async def place_stop(
        self, symbol: str, direction: str, contracts: Decimal, trigger_price: Decimal
    ) -> str:
        """A reduce-only market stop at the exchange closing ``contracts`` of a ``direction``
        position once the last price crosses ``trigger_price``; the exchange's plan order id."""
        self._require_started()
        long = direction == "long"
        return await self._client.place_plan_order(
            CreatePlanOrder(
                symbol=symbol,
                vol=contracts,
                side=_SIDE_CODE[("sell" if long else "buy", True)],
                open_type=self._open_type,
                trigger_price=trigger_price,
                trigger_type=2 if long else 1,
                leverage=self._leverage,
            )
        )

    async def stops(self, symbol: str) -> list[PlanOrder]:
        """The untriggered plan orders on ``symbol``."""
        self._require_started()
        return await self._client.plan_orders(symbol)

    async def cancel_stop(self, symbol: str, plan_id: str) -> None:
        self._require_started()
        await self._client.cancel_plan_order(symbol, plan_id)

    # ----------------------------------------------------------------- capital

    async def equity(self, currency: str = "USDT") -> tuple[Decimal, Decimal]:
        """The futures account's (equity, available balance) in ``currency`` (0 if none)."""
        self._require_started()
        for asset in await self._client.assets():
            if asset.currency == currency:
                return asset.equity, asset.available_balance
        return Decimal(0), Decimal(0)

    # ----------------------------------------------------------------- reconciliation

    async def open_orders(self) -> list[VenueOrder]:
        """Every open order on the traded symbols, as plain structs."""
        self._require_started()
        found: list[VenueOrder] = []
        for symbol in self._symbols:
            for order in await self._client.open_orders(symbol):
                view = venue_order(order)
                if view.client_order_id:
                    self._symbol_of[view.client_order_id] = symbol
                found.append(view)
        return found

    async def positions(self) -> list[VenuePosition]:
        """Every open position on the account, as plain structs."""
        self._require_started()
        return [
            VenuePosition(
                symbol=p.symbol,
                direction="long" if p.position_type == 1 else "short",
                contracts=p.hold_vol,
                entry_price=p.hold_avg_price,
                position_id=str(p.position_id),
                margin_mode={1: "isolated", 2: "cross"}.get(p.open_type, "unknown"),  # type: ignore[arg-type]
            )
            for p in await self._client.open_positions()
            if p.hold_vol > 0
        ]
