"""MEXC market-data client: connect, subscribe, keep alive, reconnect, hand events on in batches.

It never crashes on what the exchange sends: a frame the protocol rejects is counted through
``on_malformed(reason)``, logged with its path-bearing detail, and skipped. A connection that stops
answering ``{"method":"ping"}`` is dead even if TCP says otherwise (MEXC stalls happen), so it is
dropped and re-established with exponential backoff and jitter, and every wanted subscription is
sent again. The sink receives events in batches: whatever piled up while it was busy (group-commit
style), so batches grow under load and stay small, hence fast, when the market is quiet.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import websockets
from websockets.asyncio.client import ClientConnection, connect

from adapters.backoff import Backoff
from adapters.mexc import protocol
from adapters.mexc.protocol import Acked, MexcParser, Pong, ProtocolLimits, Pushed, Rejected
from aggregates.events import Event

log = logging.getLogger("claire.mexc.feed")

#: Reason for a deal of a contract we never subscribed to (not in ``protocol.REASONS``: the
#: frame itself is well-formed, the feed just did not ask for it).
UNEXPECTED_SYMBOL = "unexpected_symbol"

Sink = Callable[[Sequence[Event]], Awaitable[None]] | asyncio.Queue


class FeedState(enum.StrEnum):
    IDLE = "idle"
    CONNECTING = "connecting"
    LIVE = "live"
    BACKOFF = "backoff"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class FeedConfig:
    """Tunables; defaults follow MEXC's advice (ping every 10-20 s, dropped after 60 s silent)."""

    url: str = protocol.DEFAULT_URL
    ping_interval: float = 15.0
    pong_timeout: float = 10.0
    open_timeout: float = 10.0
    close_timeout: float = 2.0
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    backoff_factor: float = 2.0
    stable_after: float = 30.0
    tickers: bool = True
    kline_interval: protocol.KlineInterval | None = None
    max_batch: int = 2000
    max_pending: int = 50_000
    limits: ProtocolLimits = field(default_factory=ProtocolLimits)


@dataclass(slots=True)
class FeedStats:
    """Counters for metrics and health (monotonic times from the event loop's clock)."""

    frames: int = 0
    events: int = 0
    batches: int = 0
    malformed: int = 0
    connects: int = 0
    reconnects: int = 0
    subscription_errors: int = 0
    sink_errors: int = 0
    dropped_unsubscribed: int = 0
    pongs: int = 0
    last_frame_at: float | None = None
    connected_since: float | None = None
    last_disconnect_reason: str = ""


class _DeadConnection(Exception):
    pass


class MexcFeed:
    """Follows ``symbols`` (deals), optionally all tickers and klines, until :meth:`stop`."""

    def __init__(
        self,
        sink: Sink,
        *,
        symbols: Iterable[str] = (),
        config: FeedConfig | None = None,
        rng: random.Random | None = None,
        on_malformed: Callable[[str], None] | None = None,
        on_state: Callable[[FeedState], None] | None = None,
        on_reconnect: Callable[[], None] | None = None,
        on_subscription_error: Callable[[str | None, str], None] | None = None,
    ) -> None:
        self.config = config or FeedConfig()
        self.stats = FeedStats()
        self._sink = sink
        self._rng = rng or random.Random()
        self._on_malformed = on_malformed
        self._on_state = on_state
        self._on_reconnect = on_reconnect
        self._on_subscription_error = on_subscription_error
        self._parser = MexcParser(self.config.limits)
        self._where = _redacted(self.config.url)
        self._wanted: frozenset[str] = frozenset(symbols)
        self._ever_wanted: set[str] = set(self._wanted)
        self._state = FeedState.IDLE
        self._stopping = asyncio.Event()
        self._resync = asyncio.Event()
        self._pong = asyncio.Event()
        self._buffer: list[Event] = []
        self._has_data = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        # per connection: what we sent, and requests still waiting for their rs.* answer
        self._subscribed: set[str] = set()
        self._status: dict[str, str] = {}
        self._inflight: deque[tuple[str, str | None]] = deque()
        self._dead_reason = ""

    # ---- public surface

    @property
    def state(self) -> FeedState:
        return self._state

    @property
    def connected(self) -> bool:
        return self._state is FeedState.LIVE

    @property
    def symbols(self) -> frozenset[str]:
        return self._wanted

    @property
    def subscriptions(self) -> dict[str, str]:
        """Per symbol on the current connection: ``pending``, ``active`` or ``failed``."""
        return dict(self._status)

    def set_symbols(self, symbols: Iterable[str]) -> None:
        """Follow exactly these contracts from now on (subscribe the new, unsubscribe the gone)."""
        self._wanted = frozenset(symbols)
        self._ever_wanted |= self._wanted
        self._resync.set()

    async def run(self) -> None:
        """Connect and reconnect until :meth:`stop`; the sink gets every batch before it returns."""
        delivery = asyncio.create_task(self._deliver_forever(), name="mexc-feed-sink")
        try:
            await self._connect_forever()
        finally:
            self._set_state(FeedState.STOPPED)
            self._closing = True
            self._has_data.set()
            await delivery  # hands over everything still buffered, then ends

    async def stop(self) -> None:
        self._stopping.set()
        self._room.set()
        if self._task is not None:
            await self._task

    async def __aenter__(self) -> MexcFeed:
        self._task = asyncio.create_task(self.run(), name="mexc-feed")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # ---- connection loop

    async def _connect_forever(self) -> None:
        attempt = 0
        loop = asyncio.get_running_loop()
        while not self._stopping.is_set():
            self._set_state(FeedState.CONNECTING)
            started = loop.time()
            self._dead_reason = ""
            try:
                async with connect(
                    self.config.url,
                    open_timeout=self.config.open_timeout,
                    close_timeout=self.config.close_timeout,
                    ping_interval=None,  # MEXC keepalive is the JSON ping below
                    max_size=max(8 * self.config.limits.max_frame_bytes, 1 << 20),
                    max_queue=64,
                ) as ws:
                    await self._session(ws)
                if not self._stopping.is_set():
                    self.stats.last_disconnect_reason = "closed by the server"
                    log.warning("mexc ws %s closed by the server", self._where)
            except (OSError, TimeoutError, websockets.WebSocketException, _DeadConnection) as error:
                reason = self._dead_reason or f"{type(error).__name__}: {error}"
                if isinstance(error, websockets.ConnectionClosed) and 1009 in (
                    frame.code for frame in (error.sent, error.rcvd) if frame is not None
                ):
                    self._malformed(protocol.OVERSIZED, "frame beyond the socket limit")
                self.stats.last_disconnect_reason = reason[:300]
                log.warning("mexc ws %s disconnected: %s", self._where, reason[:300])
            finally:
                self.stats.connected_since = None
            if self._stopping.is_set():
                break
            attempt = 0 if loop.time() - started >= self.config.stable_after else attempt + 1
            self.stats.reconnects += 1
            if self._on_reconnect is not None:
                self._on_reconnect()
            self._set_state(FeedState.BACKOFF)
            with contextlib.suppress(TimeoutError):  # asyncio.timeout: a cancel is never lost
                async with asyncio.timeout(self._backoff(attempt)):
                    await self._stopping.wait()

    def _backoff(self, attempt: int) -> float:
        """Equal jitter: half the exponential step fixed, half random, capped."""
        cfg = self.config
        schedule = Backoff(cfg.backoff_initial, cfg.backoff_max, cfg.backoff_factor)
        return schedule.delay(attempt, self._rng)

    async def _session(self, ws: ClientConnection) -> None:
        self.stats.connects += 1
        self.stats.connected_since = asyncio.get_running_loop().time()
        self._parser.reset()
        self._subscribed.clear()
        self._status.clear()
        self._inflight.clear()
        if self.config.tickers:
            await self._request(ws, protocol.subscribe_tickers(), None)
        await self._reconcile(ws)
        self._set_state(FeedState.LIVE)
        helpers = [
            asyncio.create_task(self._keepalive(ws), name="mexc-feed-ping"),
            asyncio.create_task(self._follow_symbols(ws), name="mexc-feed-symbols"),
            asyncio.create_task(self._stop_on_request(ws), name="mexc-feed-stop"),
        ]
        try:
            async for frame in ws:
                self._handle(frame)
                if len(self._buffer) >= self.config.max_pending:
                    self._room.clear()
                    await self._room.wait()
        finally:
            for task in helpers:
                task.cancel()
            results = await asyncio.gather(*helpers, return_exceptions=True)
        for result in results:
            if isinstance(result, _DeadConnection):
                raise result

    async def _stop_on_request(self, ws: ClientConnection) -> None:
        await self._stopping.wait()
        await ws.close()

    async def _keepalive(self, ws: ClientConnection) -> None:
        """Ping, wait for pong; a missing pong means the connection is dead even if TCP is up."""
        ping = protocol.encode_request(protocol.ping())
        while True:
            self._pong.clear()
            await ws.send(ping)
            try:
                async with asyncio.timeout(self.config.pong_timeout):
                    await self._pong.wait()
            except TimeoutError:
                self._dead_reason = f"no pong within {self.config.pong_timeout}s"
                if ws.transport is not None:
                    ws.transport.abort()
                raise _DeadConnection(self._dead_reason) from None
            await asyncio.sleep(self.config.ping_interval)

    async def _follow_symbols(self, ws: ClientConnection) -> None:
        while True:
            await self._resync.wait()
            self._resync.clear()
            await self._reconcile(ws)

    async def _reconcile(self, ws: ClientConnection) -> None:
        """Make this connection's subscriptions equal the wanted set; sends only the difference."""
        wanted = self._wanted
        for symbol in sorted(self._subscribed - wanted):
            self._subscribed.discard(symbol)
            self._status.pop(symbol, None)
            await self._request(ws, protocol.unsubscribe_deal(symbol), None)
            if self.config.kline_interval is not None:
                await self._request(ws, protocol.unsubscribe_kline(symbol), None)
        for symbol in sorted(wanted - self._subscribed):
            self._subscribed.add(symbol)
            self._status[symbol] = "pending"
            await self._request(ws, protocol.subscribe_deal(symbol), symbol)
            if self.config.kline_interval is not None:
                request = protocol.subscribe_kline(symbol, self.config.kline_interval)
                await self._request(ws, request, symbol)

    async def _request(self, ws: ClientConnection, request: dict, symbol: str | None) -> None:
        self._inflight.append((request["method"], symbol))
        await ws.send(protocol.encode_request(request))

    # ---- frames

    def _handle(self, frame: str | bytes) -> None:
        self.stats.frames += 1
        self.stats.last_frame_at = asyncio.get_running_loop().time()
        parsed = self._parser.parse(frame)
        if isinstance(parsed, Pushed):
            for skipped in parsed.skipped:
                self._malformed(skipped.reason, skipped.detail)
            if parsed.channel == "push.deal" and parsed.symbol not in self._wanted:
                if parsed.symbol in self._ever_wanted:
                    self.stats.dropped_unsubscribed += 1
                else:
                    self._malformed(UNEXPECTED_SYMBOL, f"deal for {parsed.symbol}")
                return
            if parsed.events:
                self._buffer.extend(parsed.events)
                self.stats.events += len(parsed.events)
                self._has_data.set()
        elif isinstance(parsed, Pong):
            self.stats.pongs += 1
            self._pong.set()
        elif isinstance(parsed, Acked):
            self._acked(parsed)
        elif isinstance(parsed, Rejected):
            self._malformed(parsed.reason, parsed.detail)

    def _acked(self, ack: Acked) -> None:
        """MEXC answers in order and without naming the symbol: match the oldest request."""
        if ack.ok:
            for index, (method, symbol) in enumerate(self._inflight):
                if method == ack.method:
                    del self._inflight[index]
                    if symbol is not None and self._status.get(symbol) == "pending":
                        self._status[symbol] = "active"
                    return
            return
        method, symbol = self._inflight.popleft() if self._inflight else ("", None)
        self.stats.subscription_errors += 1
        if symbol is not None and symbol in self._status:
            self._status[symbol] = "failed"
        log.warning("mexc %s %s refused: %s", method or "request", symbol or "", ack.message)
        if self._on_subscription_error is not None:
            self._on_subscription_error(symbol, ack.message)

    def _malformed(self, reason: str, detail: str) -> None:
        self.stats.malformed += 1
        log.warning("mexc ws malformed message skipped (%s): %s", reason, detail[:300])
        if self._on_malformed is not None:
            self._on_malformed(reason)

    # ---- delivery

    async def _deliver_forever(self) -> None:
        while True:
            await self._has_data.wait()
            if self._buffer:
                await self._deliver_one()
            elif self._closing:
                return
            else:
                self._has_data.clear()

    async def _deliver_one(self) -> None:
        batch = self._buffer[: self.config.max_batch]
        del self._buffer[: self.config.max_batch]
        if not self._buffer and not self._closing:
            self._has_data.clear()
        if len(self._buffer) < self.config.max_pending:
            self._room.set()
        if not batch:
            return
        self.stats.batches += 1
        try:
            if isinstance(self._sink, asyncio.Queue):
                await self._sink.put(batch)
            else:
                await self._sink(batch)
        except Exception:  # the sink is someone else's code: report it, keep the feed alive
            self.stats.sink_errors += 1
            log.exception("mexc feed sink failed; %d events dropped", len(batch))

    def _set_state(self, state: FeedState) -> None:
        if state is not self._state:
            self._state = state
            if self._on_state is not None:
                self._on_state(state)


def _redacted(url: str) -> str:
    """The URL without user info or query: a configured URL may carry credentials."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
