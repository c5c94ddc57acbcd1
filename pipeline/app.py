"""`claire run`: wire the services to the ledger, the bus and the exchange, and run them.

Each service has one job and talks to the others only through the ledger and the topics:

* ``feed``: MEXC market data (and the screener) and the clock, appended in batches;
* ``signal``, ``risk``: the decision machines, each folding the log in global order;
* ``execution``: the paper exchange (a machine too), or the live MEXC venue when enabled;
* ``projector``: the read models; ``relay``: fans committed events out on Redis;
* ``alerts``: tells a human.

All of them in one process (the default) or one per process/container (``--service``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from adapters.backoff import Backoff
from adapters.bus import BusUnavailable, RedisBus, raise_if_cancelled
from adapters.http import HealthState, HttpServer
from adapters.metrics import Metrics
from adapters.mexc.feed import FeedConfig, MexcFeed
from adapters.mexc.live import LiveModeEnabled, LiveVenue
from adapters.settings import RuntimeSettings
from aggregates import events as ev
from aggregates.config import TradingConfig
from aggregates.machine import Machine
from aggregates.paper import PaperExchange
from aggregates.risk.machine import RiskMachine
from aggregates.screener import ScreenerConfig
from aggregates.signal import SignalMachine
from eventstore import EventStore, connection_lost
from eventstore.snapshots import Snapshots
from pipeline import heartbeats
from pipeline.activation import activate_config, record_contract_specs
from pipeline.alerts import AlertsService
from pipeline.decider import DecisionService
from pipeline.ingest import Clock, MarketIngest, TimeSource
from pipeline.instruments import Instruments, probe_ledger
from pipeline.live_execution import LiveExecution
from pipeline.relay import Relay
from pipeline.source import LedgerFeed, LogFollower, SharedFeed
from projections.projector import Projector

_log = logging.getLogger(__name__)
#: A service that lost the ledger starts again after 0.5 s, doubling to 10 s.
_RESTART_BACKOFF = Backoff(0.5, 10.0)

SERVICES = ("feed", "signal", "risk", "execution", "projector", "relay", "alerts")
DECIDERS = ("signal", "risk", "execution")


def wall_clock_ms() -> int:
    """The live deployment's time source for clock events (never used by decision code)."""
    return time.time_ns() // 1_000_000


@dataclass
class RunOptions:
    """How to run: which services, for how long, against which market."""

    services: Sequence[str] = SERVICES
    duration: float | None = None
    until: asyncio.Event | None = None
    now_ms: TimeSource = wall_clock_ms
    contract_specs: Sequence[ev.ContractSpecified] = ()
    feed_config: FeedConfig | None = None
    snapshot_every_ms: int = 60_000
    http_host: str = "127.0.0.1"
    drain_timeout: float = 30.0
    on_started: Callable[[Pipeline], None] | None = None


@dataclass
class Pipeline:
    """The running parts, for health, metrics, tests and the demo's summary."""

    store: EventStore
    metrics: Metrics
    health: HealthState
    instruments: Instruments
    deciders: dict[str, DecisionService] = field(default_factory=dict)
    feed: MexcFeed | None = None
    ingest: MarketIngest | None = None
    clock: Clock | None = None
    projector: Projector | None = None
    relay: Relay | None = None
    alerts: AlertsService | None = None
    http_port: int | None = None


class BusConnector:
    """One shared Redis client for the process (its pool reconnects on first use after a loss)."""

    def __init__(self, url: str | None, namespace: str, metrics: Metrics) -> None:
        self._url = url
        self._namespace = namespace
        self._metrics = metrics
        self._bus: RedisBus | None = None

    async def __call__(self) -> RedisBus:
        if self._url is None:
            raise BusUnavailable("no REDIS_URL configured")
        if self._bus is None:
            try:
                self._bus = await RedisBus.connect(
                    self._url, self._namespace, on_malformed=self._metrics.count_malformed
                )
            except BusUnavailable:
                self._metrics.set_dependency("redis", False)
                raise
            self._metrics.set_dependency("redis", True)
        return self._bus

    async def close(self) -> None:
        if self._bus is not None:
            await self._bus.close()


async def run_pipeline(
    settings: RuntimeSettings, config: TradingConfig, options: RunOptions | None = None
) -> Pipeline:
    """Run the chosen services until cancelled or ``options.duration`` has passed."""
    options = options or RunOptions()
    unknown = set(options.services) - set(SERVICES)
    if unknown:
        raise ValueError(f"unknown service(s) {sorted(unknown)}; known: {', '.join(SERVICES)}")
    if settings.database_url is None:
        raise ValueError("DATABASE_URL is required to run the pipeline")
    database_url = settings.database_url.reveal()
    asyncio.get_running_loop().set_exception_handler(_orphaned_connect_quiet)
    metrics = Metrics()
    name = options.services[0] if len(options.services) == 1 else "claire"
    consumers = [s for s in options.services if s in (*DECIDERS, "alerts")]
    # Redis is this process's dependency only if one of its services uses it: the relay
    # publishes to it, a lone consumer follows it (several share one log follower instead).
    # A dependency declared but never reported up would hold /health at 503 for ever.
    uses_redis = "relay" in options.services or (len(consumers) == 1 and bool(settings.redis_url))
    health = HealthState(
        name, metrics, dependencies=("postgres", "redis") if uses_redis else ("postgres",)
    )
    store = await EventStore.connect(database_url)
    health.set_dependency("postgres", True)
    instruments = Instruments(metrics)
    bus = BusConnector(
        settings.redis_url.reveal() if settings.redis_url else None, settings.bus_namespace, metrics
    )
    pipeline = Pipeline(store=store, metrics=metrics, health=health, instruments=instruments)
    http = HttpServer(metrics, health)
    tasks: dict[str, asyncio.Task[None]] = {}
    try:
        pipeline.http_port = await http.start(options.http_host, settings.metrics_port)
        if any(s in DECIDERS for s in options.services):
            now = options.now_ms()
            await activate_config(store, config, now)
            await record_contract_specs(store, options.contract_specs)

        def ledger_feed(position: int) -> LedgerFeed:
            return LedgerFeed(
                store,
                bus if settings.redis_url else None,
                after=position,
                on_source_change=lambda source: health.set_dependency(
                    "redis", source == "redis", f"reading from {source}"
                ),
            )

        def supervise(name: str, run: Callable[[], Awaitable[None]]) -> None:
            tasks[name] = asyncio.create_task(_supervised(name, run, health), name=f"claire-{name}")

        feed_from: Callable[[int], Any] = ledger_feed
        if len(consumers) > 1:  # one source for the whole process: its own commits, first hand
            hub = SharedFeed(store, LogFollower(store, (await store.head())[0]))
            supervise("hub", hub.run)
            feed_from = hub.feed

        machines: dict[str, Machine[Any]] = {
            "signal": SignalMachine(),
            "risk": RiskMachine(),
            "execution": PaperExchange(),
        }
        live = "execution" in options.services and settings.live_enabled
        if live:
            live_execution = _live_execution(settings, store, feed_from, options, config)
            supervise("execution", live_execution.run)
        for service in DECIDERS:
            if service in options.services and not (live and service == "execution"):
                decider = DecisionService(
                    machines[service],
                    store,
                    feed_from,
                    on_decided=instruments.decided(service),
                    on_input=instruments.observed(service),
                    snapshots=Snapshots(store),
                    snapshot_every=settings.snapshot_every_events,
                )
                pipeline.deciders[service] = decider
                supervise(service, decider.run)
        if "projector" in options.services:

            async def run_projector() -> None:
                pipeline.projector = await Projector.open(database_url, store=store)
                try:
                    await pipeline.projector.run()
                finally:
                    with contextlib.suppress(Exception):
                        await pipeline.projector.close()

            supervise("projector", run_projector)
        if "relay" in options.services:
            pipeline.relay = Relay(
                store,
                bus,
                on_bus=lambda up, detail: health.set_dependency("redis", up, detail),
            )
            supervise("relay", pipeline.relay.run)
        if "alerts" in options.services:
            alerts = pipeline.alerts = AlertsService(feed_from, after=(await store.head())[0])
            supervise("alerts", lambda: alerts.run())
        if "feed" in options.services:
            _start_feed(pipeline, settings, options, tasks)
        tasks["heartbeat"] = asyncio.create_task(_heartbeat(pipeline, options), name="heartbeat")
        if settings.redis_url is not None:
            tasks["beats"] = asyncio.create_task(
                _publish_beats(pipeline, bus, name, settings.heartbeat_interval_seconds),
                name="claire-beats",
            )
            if "alerts" in options.services:
                tasks["watch"] = asyncio.create_task(
                    _watch_beats(pipeline, bus, settings.heartbeat_interval_seconds),
                    name="claire-watch",
                )
        if options.on_started is not None:
            options.on_started(pipeline)
        await _wait(tasks, options.duration, options.until)
        await _drain(pipeline, tasks, options.drain_timeout)
        return pipeline
    finally:
        if pipeline.ingest is not None:
            pipeline.ingest.stop_retrying()  # shutting down: do not wait for a lost ledger
        await stop_tasks(tasks.values())
        await bus.close()
        await http.stop()
        await store.close()


def _orphaned_connect_quiet(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """A connect cancelled half-way (a service stopped while asyncpg negotiated TLS) leaves a
    future failed with ConnectionError that nobody awaits any more; asyncio would log it as an
    ERROR with a traceback at garbage collection. It is no error: one DEBUG line."""
    error = context.get("exception")
    if context.get("message", "").startswith("Future exception was never retrieved") and (
        isinstance(error, ConnectionError | OSError)
    ):
        _log.debug("an abandoned connection attempt failed: %s", error)
        return
    loop.default_exception_handler(context)


async def stop_tasks(tasks: Iterable[asyncio.Task[Any]], patience: float = 1.0) -> None:
    """Cancel every task and wait until each has ended, whatever it raised.

    A task still running ``patience`` seconds after its cancel is cancelled again: a library may
    swallow a cancel (redis-py's sends, through Python 3.11's ``asyncio.wait_for``), and a
    refused start must end, not hang.
    """
    tasks = list(tasks)
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=patience)
    for task in tasks:
        if not task.cancelled():
            task.exception()  # retrieved: the run's own error is the one that is reported


async def _supervised(name: str, run: Callable[[], Awaitable[None]], health: HealthState) -> None:
    """Run a service; while the ledger is unreachable, wait and start it again.

    Trading pauses safely when PostgreSQL is down: nothing can be decided or sent that is not in
    the ledger, and every service resumes from the log (a decision service re-folds it, so a
    restart is always safe). Any other error is a bug and ends the run loudly.
    """
    waits = 0
    while True:
        try:
            await run()
            return
        except Exception as error:
            task = asyncio.current_task()
            if not connection_lost(error) or (task is not None and task.cancelling()):
                raise
            health.set_dependency("postgres", False, type(error).__name__)
            delay = _RESTART_BACKOFF.delay(waits)
            _log.error(
                "%s paused, the ledger is unreachable (%s); retry in %.1fs", name, error, delay
            )
        await asyncio.sleep(delay)
        waits += 1


def _live_execution(
    settings: RuntimeSettings,
    store: EventStore,
    feed_from: Callable[[int], LedgerFeed],
    options: RunOptions,
    config: TradingConfig | None = None,
) -> LiveExecution:
    """The MEXC venue, behind the explicit live-mode token (refused unless all three are set)."""
    enabled = LiveModeEnabled.from_settings(
        trading_mode=settings.trading_mode,
        live_trading_confirmed="yes" if settings.live_trading_confirmed else "no",
        api_key=settings.mexc_api_key,
        api_secret=settings.mexc_api_secret,
    )
    venue = LiveVenue(enabled, settings.symbols, base_url=settings.mexc_rest_url)
    return LiveExecution(
        venue,
        store,
        feed_from,
        now_ms=options.now_ms,
        capital=config.initial_equity if config is not None else None,
        capital_tolerance_pct=settings.live_capital_tolerance_pct,
        capital_mismatch=settings.live_capital_mismatch,
        stop_loss_pct=config.stop_loss_pct if config is not None else None,
        snapshots=Snapshots(store),
        snapshot_every=settings.snapshot_every_events,
    )


def _start_feed(
    pipeline: Pipeline,
    settings: RuntimeSettings,
    options: RunOptions,
    tasks: dict[str, asyncio.Task[None]],
) -> None:
    screener = None
    if not settings.symbols:
        from decimal import Decimal

        screener = ScreenerConfig(
            top_n=settings.screener_top_n,
            min_volume_24h=Decimal(settings.screener_min_volume_24h),
        )
    feed_config = options.feed_config or FeedConfig(url=settings.mexc_ws_url)
    ingest = MarketIngest(
        pipeline.store,
        screener=screener,
        snapshot_every_ms=options.snapshot_every_ms,
        on_symbols=lambda symbols: feed.set_symbols(symbols),  # the screener steers the feed
        on_appended=pipeline.instruments.appended,
        snapshots=Snapshots(pipeline.store),
        state_snapshot_every=settings.snapshot_every_events,
    )
    feed = MexcFeed(
        ingest,
        symbols=settings.symbols,
        config=feed_config,
        on_malformed=lambda reason: pipeline.metrics.count_malformed("mexc_ws", reason),
        on_reconnect=pipeline.metrics.ws_reconnects_total.inc,
        on_state=lambda state: pipeline.health.set_dependency(
            "mexc_ws", feed.connected, str(state)
        ),
    )
    pipeline.feed, pipeline.ingest = feed, ingest
    pipeline.clock = Clock(pipeline.store, options.now_ms, settings.clock_interval_seconds)

    async def run_feed() -> None:
        chosen = await ingest.restore()
        if chosen and not settings.symbols:
            feed.set_symbols(chosen)
        await feed.run()

    tasks["feed"] = asyncio.create_task(
        _supervised("feed", run_feed, pipeline.health), name="claire-feed"
    )
    tasks["clock"] = asyncio.create_task(pipeline.clock.run(), name="claire-clock")


async def _heartbeat(pipeline: Pipeline, options: RunOptions) -> None:
    while True:
        pipeline.health.heartbeat()
        await probe_ledger(pipeline.store, pipeline.health)
        risk = pipeline.deciders.get("risk")
        if risk is not None and risk.state is not None:
            portfolio = risk.state.portfolio
            pipeline.metrics.set_portfolio(
                portfolio.equity, portfolio.exposure, portfolio.drawdown_pct
            )
            pipeline.metrics.set_trading_state(risk.state.trading_state)
        last_market = pipeline.instruments.last_market_ms
        if last_market is not None:
            age = (options.now_ms() - last_market) / 1000
            pipeline.metrics.market_data_age_seconds.set(max(age, 0.0))
        if pipeline.projector is not None:
            for projection, lag in pipeline.projector.lag().items():
                pipeline.metrics.projection_lag_events.labels(projection=projection).set(lag.events)
        await asyncio.sleep(1.0)


def _position(pipeline: Pipeline) -> int | None:
    """The least ledger position this process's services have all processed (None: no such)."""
    positions = [d.progress.last_position for d in pipeline.deciders.values()]
    if pipeline.projector is not None:
        positions.append(pipeline.projector.position)
    if pipeline.relay is not None:
        positions.append(pipeline.relay.last)
    if pipeline.alerts is not None:
        positions.append(pipeline.alerts.last)
    return min(positions) if positions else None


async def _publish_beats(pipeline: Pipeline, bus: BusConnector, name: str, interval: float) -> None:
    """A heartbeat on ``health`` every ``interval`` seconds (see :mod:`pipeline.heartbeats`)."""
    instance, version = heartbeats.instance_name(), heartbeats.code_version()
    while True:
        raise_if_cancelled()
        position = _position(pipeline)
        head = None
        if position is not None:
            with contextlib.suppress(Exception):  # the ledger's own health is in the payload
                head = (await pipeline.store.head())[0]
        payload = heartbeats.beat_payload(
            instance=instance,
            version=version,
            interval=interval,
            position=position,
            head=head,
            dependencies=pipeline.health.dependencies_up(),
        )
        await heartbeats.publish_beat(bus, name, payload)
        await asyncio.sleep(interval)


async def _watch_beats(pipeline: Pipeline, bus: BusConnector, interval: float) -> None:
    """The alerts service's ear on ``health``; Redis or the ledger away: wait, listen again."""
    watch = heartbeats.HeartbeatWatch(default_interval=interval)
    recalled = False
    while True:
        raise_if_cancelled()
        try:
            if not recalled:  # who an earlier run left silent: their return is an INFO
                watch.recall(await heartbeats.recorded_alerts(pipeline.store))
                recalled = True
            await heartbeats.watch_heartbeats(
                bus, pipeline.store, watch, now=time.monotonic, now_ms=wall_clock_ms
            )
        except (BusUnavailable, ConnectionError, OSError) as error:
            _log.warning("alerts: not listening on health (%s); retrying", error)
        except Exception as error:
            if not connection_lost(error):
                raise
            _log.warning("alerts: ledger unreachable for a service alert (%s); retrying", error)
        await asyncio.sleep(interval)


async def _wait(
    tasks: dict[str, asyncio.Task[None]], duration: float | None, until: asyncio.Event | None
) -> None:
    """Until the duration is over (or ``until`` is set); a dying service ends the run with its
    error."""

    async def stop_signal() -> None:
        sleeper = asyncio.sleep(duration if duration is not None else 1e12)
        if until is None:
            await sleeper
            return
        waiters = {asyncio.ensure_future(sleeper), asyncio.ensure_future(until.wait())}
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    waiter = asyncio.ensure_future(stop_signal())
    try:
        done, _ = await asyncio.wait({waiter, *tasks.values()}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    for task in done:
        if task is not waiter:
            task.result()
            raise RuntimeError(f"service task {task.get_name()} stopped unexpectedly")


async def _drain(pipeline: Pipeline, tasks: dict[str, asyncio.Task[None]], patience: float) -> None:
    """Stop taking market data, flush it, then let the deciders reach the head and settle."""
    if pipeline.feed is not None:
        await pipeline.feed.stop()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await tasks.pop("feed")
    if "clock" in tasks:
        tasks.pop("clock").cancel()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    while loop.time() < deadline:
        head = (await pipeline.store.head())[0]
        behind = [
            name
            for name, decider in pipeline.deciders.items()
            if decider.progress.last_position < head
        ]
        if pipeline.projector is not None and pipeline.projector.position < head:
            behind.append("projector")
        if not behind:
            await asyncio.sleep(0.2)  # a decision may still be on its way to the ledger
            if (await pipeline.store.head())[0] == head:
                return
            continue
        await asyncio.sleep(0.05)
    _log.warning("stopping before every service reached the head of the ledger")
