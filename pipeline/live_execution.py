"""Live execution on MEXC: persist before acting, reconcile before any new order.

Only started when live mode is explicitly enabled (``TRADING_MODE=live``,
``LIVE_TRADING_CONFIRMED=yes`` and keys), and only after the venue's start-up probe passed. The
order was appended by the risk manager before this service ever sees it; the exchange's answer is
appended after. The client order id is MEXC's ``externalOid``, so a resend after a crash or a
timeout is recognised by the exchange instead of trading twice. After every (re)start, and after
any answer that could not be established, the service compares the ledger's open orders with the
exchange's and records what it corrected (``ExecutionReconciled``) before it sends anything new.
Fills are polled from the exchange's order state (MEXC's private WebSocket is not used here).

What the service learns from the log is one value, :class:`aggregates.live_book.LiveBookState`;
a restart restores it from the latest usable snapshot and folds only the tail, and snapshots are
taken as the decision services take theirs (docs/SNAPSHOTS.md).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Literal

from adapters.mexc.errors import MexcError, MexcOutcomeUnknown
from adapters.mexc.live import LiveTradingRefused, LiveVenue
from adapters.mexc.rest_types import Order
from aggregates import events as ev
from aggregates.envelope import NewEvent, RecordedEvent, derived, utc_from_ms
from aggregates.live_book import LiveBookState, PendingRequest
from aggregates.orders import OrderBook, OrderState, OrderStatus
from aggregates.portfolio import DAY_MS
from aggregates.snapshot import CODECS
from eventstore import EventStore
from eventstore.snapshots import Snapshots
from pipeline.activation import record_contract_specs
from pipeline.decider import append_grouped
from pipeline.live_reports import (
    answers,
    fee_currency,
    implausible,
    report_events,
    reported_fee,
    stop_price,
)
from pipeline.snapshotting import SnapshotWriter, latest_usable, restore_tail
from pipeline.source import LedgerFeed

_log = logging.getLogger(__name__)

PRODUCER = "execution-live"  # also its snapshots' machine name (aggregates.snapshot.CODECS)


class LiveExecution:
    """Sends the ledger's requested orders to MEXC and records every answer and fill."""

    def __init__(
        self,
        venue: LiveVenue,
        store: EventStore,
        feed: Callable[[int], LedgerFeed],
        *,
        now_ms: Callable[[], int],
        poll_seconds: float = 2.0,
        capital: Decimal | None = None,
        capital_tolerance_pct: Decimal = Decimal(10),
        capital_mismatch: Literal["warn", "refuse"] = "warn",
        equity_every_seconds: float = 60.0,
        stop_loss_pct: Decimal | None = None,
        snapshots: Snapshots | None = None,
        snapshot_every: int = 0,
    ) -> None:
        self._venue = venue
        self._store = store
        self._feed = feed
        self._now_ms = now_ms
        self._poll_seconds = poll_seconds
        self._capital = capital
        self._tolerance_pct = capital_tolerance_pct
        self._on_mismatch = capital_mismatch
        self._equity_every = equity_every_seconds
        self._stop_pct = stop_loss_pct
        #: ``snapshot_every`` > 0 takes a snapshot every that many events and at each UTC day
        self._snapshots = snapshots
        self._writer = (
            SnapshotWriter(snapshots, PRODUCER, self._written) if snapshots is not None else None
        )
        self._snapshot_every = snapshot_every
        self.snapshots_taken = 0
        #: the position of the snapshot the last restore started from (0: from position 1)
        self.snapshot_position = 0
        self._fresh_state()

    def _fresh_state(self) -> None:
        """Everything learnt from the log, empty: each run() rebuilds it from the log alone.

        The supervisor calls run() again on the same object after the ledger was lost; folding
        the log a second time into the book already held would replay transitions it has seen
        (``IllegalTransition``) and end the service instead of resuming it.
        """
        self.state = LiveBookState()
        self._needs_reconcile = True
        self._applied: set[uuid.UUID] = set()  # applied locally, before the feed brings them back
        self._recording = 0  # appends under way whose events are not applied yet
        self._reported: set[tuple[str, str | None, str]] = set()  # venue input recorded this run
        self._price_step: dict[str, Decimal] = {}
        self._filled_since_protect = False
        self.last_position = 0
        self._snapshot_at = 0
        self._snapshot_day = -1
        self._snapshot_due = False

    @property
    def book(self) -> OrderBook:
        return self.state.book

    async def run(self) -> None:
        try:
            await self._run()
        finally:  # its HTTP session, reopened on the next run() (no unclosed-session warning)
            await self._venue.close()

    async def _run(self) -> None:
        self._fresh_state()
        startup = await self._venue.start()  # refuses (LiveTradingRefused) unless all is well
        await record_contract_specs(self._store, startup.contracts)
        self._price_step = {spec.symbol: spec.price_step for spec in startup.contracts}
        recorded = await self.record_equity()
        if recorded is not None and not recorded.within_tolerance:
            detail = (
                f"the futures account holds {recorded.equity} USDT, the configured capital is "
                f"{recorded.configured_capital} ({recorded.difference_pct:+.2f} %, tolerance "
                f"{self._tolerance_pct} %): move funds, or set INITIAL_EQUITY_USDT to the"
                " capital the bot may trade"
            )
            if self._on_mismatch == "refuse":
                raise LiveTradingRefused("capital_mismatch", detail)
            _log.warning("capital mismatch: %s", detail)
        await self._restore()
        await self.reconcile()
        loops = {
            asyncio.create_task(self._follow(), name="live-execution-follow"),
            asyncio.create_task(self._poll_forever(), name="live-execution-poll"),
        }
        try:  # whichever loop fails first ends run() with its error (the supervisor decides)
            done, _ = await asyncio.wait(loops, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
        finally:
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)

    async def _follow(self) -> None:
        async for recorded in self._feed(self.last_position).events():
            day = recorded.event.at_ms // DAY_MS
            if day > self._snapshot_day:  # UTC midnight: a snapshot of the day before's end
                self._snapshot_due |= self._snapshot_day >= 0
                self._snapshot_day = day
                self._snapshot_if_due()
            self.last_position = recorded.position
            self._fold(recorded)
            if isinstance(recorded.event, ev.OrderRequested):
                if self._needs_reconcile:
                    await self.reconcile()
                request = self.state.requests.get(recorded.event.client_order_id)
                if request is not None:
                    await self._send(request)
            self._snapshot_if_due()

    async def _restore(self) -> None:
        """Fold the log from the latest usable snapshot (else from position 1)."""
        after = 0
        found = await latest_usable(self._snapshots, PRODUCER)
        if found is not None:
            self.state, after = found.state, found.snapshot.position
        self.last_position = self._snapshot_at = self.snapshot_position = after
        async for recorded in restore_tail(self._store, PRODUCER, after):
            self.last_position = recorded.position
            self._snapshot_day = max(self._snapshot_day, recorded.event.at_ms // DAY_MS)
            self.state.fold(recorded)
        self._snapshot_if_due()

    def _fold(self, recorded: RecordedEvent) -> None:
        if recorded.event_id in self._applied:
            self._applied.discard(recorded.event_id)
            return
        self.state.fold(recorded)

    # --------------------------------------------------------------------------- snapshots

    def _snapshot_if_due(self) -> None:
        every = self._snapshot_every
        if every and (self._snapshot_due or self.last_position - self._snapshot_at >= every):
            self._snapshot_due = not self.snapshot_now()

    def snapshot_now(self) -> bool:
        """Snapshot the state at the last position read; False if it cannot be taken now.

        Only a state that is exactly the fold of positions 1..p may be stored as the snapshot at
        p: not while an event recorded here is applied but not yet read back from the log (it
        lies past p), nor while an append is under way. The bytes are encoded now (those of this
        moment); the database write runs beside the live path.
        """
        if self._writer is None or self.last_position <= self._snapshot_at:
            return True
        if self._applied or self._recording or self._writer.busy:
            return False  # (a write still under way: the next trigger takes one)
        self._snapshot_at = self.last_position
        self._writer.write(self.last_position, CODECS[PRODUCER].encode(self.state))
        return True

    def _written(self, position: int) -> None:
        self.snapshots_taken += 1

    async def wait_snapshots(self) -> None:
        """Wait for a snapshot being written (tests, shutdown)."""
        if self._writer is not None:
            await self._writer.wait()

    # --------------------------------------------------------------------------- orders

    async def _record(self, news: list[NewEvent]) -> None:
        """Append and apply at once, so the next decision here already sees it.

        The ids are marked before the append: the feed may hand the new events back while the
        append is still returning, and each must be applied once (here), never twice.
        """
        self._recording += 1
        try:
            self._applied.update(new.event_id for new in news)
            await append_grouped(self._store, news)
            for new in news:
                self.state.apply(new.event)
        finally:
            self._recording -= 1

    async def _send(self, request: PendingRequest) -> None:
        order = request.order
        state = self.book.get(order.client_order_id)
        if state is None or state.status is not OrderStatus.REQUESTED:
            return  # already answered (a restart re-reads the log)
        try:
            answers = await self._venue.submit(order)
        except MexcOutcomeUnknown as error:
            _log.error("no answer for order %s: reconciling (%s)", order.client_order_id, error)
            self._needs_reconcile = True
            return
        finally:
            await self._record_malformed(order.client_order_id, order.symbol)
        await self._append(request, answers)

    async def _append(self, request: PendingRequest, events: list[ev.Event]) -> None:
        await self._record(derived(PRODUCER, request.cause(), events))

    async def reconcile(self) -> ev.ExecutionReconciled:
        """Make the ledger agree with the exchange about every order it believes open."""
        corrections: list[str] = []
        for state in self.book.open_orders():
            corrections.extend(await self._reconcile_order(state))
        ours = {state.client_order_id for state in self.book}
        venue_open = await self._venue.open_orders()
        for order in venue_open:
            if order.client_order_id not in ours:
                corrections.append(
                    f"exchange order {order.exchange_order_id} ({order.symbol}) is not ours; "
                    "left untouched"
                )
        for order in venue_open:
            if order.client_order_id not in ours:
                await self._venue_input(
                    "unknown_order",
                    "CRITICAL",
                    f"open order {order.exchange_order_id} ({order.side} {order.contracts}"
                    f" {order.symbol}) was not sent by this bot; left untouched",
                    None,
                    order.symbol,
                )
        venue_positions = await self._venue.positions()
        for position in venue_positions:
            corrections.append(
                f"exchange position {position.symbol} {position.direction} {position.contracts}"
                f" @ {position.entry_price}"
            )
        await self._check_positions(venue_positions)
        await self._reconcile_stops(corrections)
        await self._protect(venue_positions)
        await self._record_malformed(None, None)
        event = ev.ExecutionReconciled(
            at_ms=self._now_ms(),
            venue="mexc",
            open_orders=tuple(o.client_order_id for o in venue_open if o.client_order_id),
            corrections=tuple(c[:2000] for c in corrections[:500]),
        )
        await self._store.append(
            "execution",
            [NewEvent(event=event, event_id=uuid.uuid4(), occurred_at=utc_from_ms(event.at_ms))],
        )
        self._needs_reconcile = False
        return event

    async def _reconcile_order(self, state: OrderState) -> list[str]:
        request = self.state.requests.get(state.client_order_id)
        found = await self._venue.find_order(state.client_order_id, state.symbol)
        if found is None:
            if state.status is OrderStatus.REQUESTED and request is not None:
                await self._send(request)  # never reached the exchange: send it now, once
                return [f"order {state.client_order_id} had not reached the exchange; sent"]
            return [f"order {state.client_order_id} unknown at the exchange"]
        notes = []
        if state.status is OrderStatus.REQUESTED and request is not None:
            accepted = ev.OrderAccepted(
                at_ms=found.create_time or self._now_ms(),
                client_order_id=state.client_order_id,
                exchange_order_id=str(found.order_id),
                symbol=state.symbol,
            )
            await self._append(request, [accepted])
            notes.append(f"order {state.client_order_id} was accepted (answer had been lost)")
        notes.extend(await self._sync_fills(self.book.get(state.client_order_id) or state, found))
        return notes

    async def _sync_fills(self, state: OrderState, found: Order) -> list[str]:
        """Record what the exchange filled beyond what the ledger knows; then its final state."""
        request = self.state.requests.get(state.client_order_id)
        if request is None:
            return []
        problem = implausible(state, found)
        if problem is not None:
            kind, severity, detail = problem
            await self._venue_input(kind, severity, detail, state.client_order_id, state.symbol)
            return [f"order {state.client_order_id}: {detail}"]
        currency = fee_currency(found)
        if currency != "USDT" and Decimal(found.deal_vol) > state.filled_contracts:
            await self._venue_input(
                "fee_currency",
                "WARNING",
                f"fee reported in {(found.fee_currency or '')[:20]!r}, not USDT: recorded as"
                " reported; the portfolio counts it as USDT",
                state.client_order_id,
                state.symbol,
            )
        coid = state.client_order_id
        fee = reported_fee(
            found,
            self.state.fee_paid(coid, "taker"),
            self.state.fee_paid(coid, "maker"),
            request.order.order_type == "limit",
        )
        events = report_events(state, found, fee, currency, self._now_ms())
        if not events:
            return []
        await self._record(answers(PRODUCER, request, events))
        self._filled_since_protect = True
        return [f"order {state.client_order_id}: recorded {ev.event_type(e)}" for e in events]

    async def record_equity(self) -> ev.ExecutionVenueEquity | None:
        """Record the venue's futures equity against the configured capital (none configured:
        nothing to compare, nothing recorded)."""
        if self._capital is None:
            return None
        try:
            equity, available = await self._venue.equity()
        except MexcError as error:
            _log.warning("reading the account's equity failed: %s", error)
            await self._record_malformed(None, None)
            return None
        difference = (equity - self._capital) / self._capital * 100 if self._capital else Decimal(0)
        event = ev.ExecutionVenueEquity(
            at_ms=self._now_ms(),
            venue="mexc",
            currency="USDT",
            equity=equity,
            available=available,
            configured_capital=self._capital,
            difference_pct=difference.quantize(Decimal("0.0001")),
            within_tolerance=abs(difference) <= self._tolerance_pct,
        )
        await self._store.append(
            "execution",
            [NewEvent(event=event, event_id=uuid.uuid4(), occurred_at=utc_from_ms(event.at_ms))],
        )
        return event

    async def _poll_forever(self) -> None:
        loop = asyncio.get_running_loop()
        equity_due = loop.time() + self._equity_every
        while True:
            await asyncio.sleep(self._poll_seconds)
            if loop.time() >= equity_due:
                equity_due = loop.time() + self._equity_every
                await self.record_equity()
                try:  # a stop can expire or be cancelled at the exchange: check, re-place
                    await self._reconcile_stops([])
                    await self._protect()
                except MexcError as error:
                    _log.warning("checking the exchange stops failed, retrying: %s", error)
            for state in self.book.open_orders():
                if state.status is OrderStatus.REQUESTED:
                    continue
                try:
                    found = await self._venue.find_order(state.client_order_id, state.symbol)
                except MexcError as error:
                    _log.warning("polling %s failed: %s", state.client_order_id, error)
                    await self._record_malformed(state.client_order_id, state.symbol)
                    continue
                if found is not None:
                    await self._sync_fills(state, found)
            if self._filled_since_protect:
                try:
                    await self._protect()
                except MexcError as error:
                    _log.warning("protecting positions failed, retrying: %s", error)

    async def _venue_input(
        self, kind: str, severity: str, detail: str, client_order_id: str | None, symbol: str | None
    ) -> None:
        """Record (once per run) something the venue said that cannot be taken as it is.

        The alerts service reports it; nothing is decided from it. Never a crash, never only a
        log line: the ledger keeps what the exchange said.
        """
        key = (kind, client_order_id, detail)
        if key in self._reported:
            return
        self._reported.add(key)
        _log.error("venue input rejected (%s) %s: %s", kind, client_order_id or "-", detail)
        event = ev.ExecutionVenueInputRejected(
            at_ms=self._now_ms(),
            venue="mexc",
            kind=kind,
            severity=severity,  # type: ignore[arg-type]
            detail=detail[:2000],
            client_order_id=client_order_id,
            symbol=symbol,
        )
        await self._store.append(
            "execution",
            [NewEvent(event=event, event_id=uuid.uuid4(), occurred_at=utc_from_ms(event.at_ms))],
        )

    async def _record_malformed(self, client_order_id: str | None, symbol: str | None) -> None:
        for detail in self._venue.take_malformed():
            await self._venue_input(
                "unparseable_answer", "WARNING", detail, client_order_id, symbol
            )

    async def _check_positions(self, positions: list) -> None:
        """The exchange's net position per symbol must be what the ledger's fills add up to."""
        ledger = self.state.net_contracts()
        venue: dict[str, Decimal] = {}
        for position in positions:
            signed = position.contracts if position.direction == "long" else -position.contracts
            venue[position.symbol] = venue.get(position.symbol, Decimal(0)) + signed
        for symbol in sorted(set(ledger) | set(venue)):
            held, known = venue.get(symbol, Decimal(0)), ledger.get(symbol, Decimal(0))
            if held != known:
                await self._venue_input(
                    "position_mismatch",
                    "CRITICAL",
                    f"the exchange holds {held} contracts of {symbol}, the ledger's fills add up"
                    f" to {known}: fills the bot did not send or did not see",
                    None,
                    symbol,
                )

    # ----------------------------------------------------------------- exchange-resident stops

    async def _reconcile_stops(self, corrections: list[str]) -> None:
        """After a (re)start, and periodically: the ledger's stops must be the exchange's.

        A stop gone from the exchange (triggered, expired or cancelled there) is ended; one
        requested but never confirmed is adopted if the exchange holds it, else ended."""
        if self._stop_pct is None:
            return
        for symbol, stop in list(self.state.stops.items()):
            held = await self._venue.stops(symbol)
            ids = {str(plan.id) for plan in held}
            if stop.exchange_id is not None and stop.exchange_id in ids:
                continue
            known = {s.exchange_id for s in self.state.stops.values()}
            twin = next(
                (
                    plan
                    for plan in held
                    if str(plan.id) not in known
                    and plan.vol == stop.contracts
                    and plan.trigger_price == stop.trigger
                ),
                None,
            )
            if stop.exchange_id is None and twin is not None:
                await self._stop_event(
                    ev.ExecutionStopPlaced, stop.stop_id, symbol, exchange_stop_id=str(twin.id)
                )
                corrections.append(f"stop {stop.stop_id} ({symbol}) found at the exchange")
                continue
            reason = "gone_from_exchange" if stop.exchange_id else "never_placed"
            await self._stop_event(ev.ExecutionStopEnded, stop.stop_id, symbol, reason=reason)
            corrections.append(f"stop {stop.stop_id} ({symbol}): {reason}")

    async def _protect(self, positions: list | None = None) -> None:
        """Every position the bot holds gets one reduce-only stop at the exchange, at
        ``STOP_LOSS_PCT`` from the exchange's entry price; the stop follows the position (moved
        when it changes, cancelled when flat). Each stop is recorded before it is sent."""
        if self._stop_pct is None:
            return
        self._filled_since_protect = False
        if positions is None:
            positions = await self._venue.positions()
        venue = {p.symbol: p for p in positions}
        net = self.state.net_contracts()
        for symbol in sorted(set(net) | set(self.state.stops)):
            want = None
            position = venue.get(symbol)
            ours = net.get(symbol, Decimal(0))
            if position is not None and ours != 0 and (ours > 0) == (position.direction == "long"):
                contracts = min(abs(ours), position.contracts)
                trigger = stop_price(
                    position.entry_price,
                    position.direction,
                    self._stop_pct,
                    self._price_step.get(symbol, Decimal("0.1")),
                )
                want = (position.direction, contracts, trigger)
            current = self.state.stops.get(symbol)
            if current is not None:
                if (current.direction, current.contracts, current.trigger) == want:
                    continue
                if current.exchange_id is not None:
                    await self._venue.cancel_stop(symbol, current.exchange_id)
                await self._stop_event(
                    ev.ExecutionStopEnded,
                    current.stop_id,
                    symbol,
                    reason="position_flat" if want is None else "position_changed",
                )
            if want is not None:
                await self._place_stop(symbol, *want)

    async def _place_stop(
        self, symbol: str, direction: str, contracts: Decimal, trigger: Decimal
    ) -> None:
        stop_id = uuid.uuid4().hex
        await self._stop_event(
            ev.ExecutionStopRequested,
            stop_id,
            symbol,
            direction=direction,
            contracts=contracts,
            trigger_price=trigger,
        )
        try:
            exchange_id = await self._venue.place_stop(symbol, direction, contracts, trigger)
        except MexcOutcomeUnknown as error:
            _log.error("stop %s on %s: no answer, reconciling (%s)", stop_id, symbol, error)
            self._needs_reconcile = True
            return
        except MexcError as error:
            _log.error("stop %s on %s refused: %s", stop_id, symbol, error)
            await self._stop_event(ev.ExecutionStopEnded, stop_id, symbol, reason="refused")
            await self._venue_input(
                "stop_refused", "CRITICAL", f"the exchange refused the stop: {error}", None, symbol
            )
            return
        await self._stop_event(
            ev.ExecutionStopPlaced, stop_id, symbol, exchange_stop_id=exchange_id
        )

    async def _stop_event(self, kind: type, stop_id: str, symbol: str, **fields: object) -> None:
        event = kind(at_ms=self._now_ms(), stop_id=stop_id, symbol=symbol, **fields)
        await self._record(
            [NewEvent(event=event, event_id=uuid.uuid4(), occurred_at=utc_from_ms(event.at_ms))]
        )
