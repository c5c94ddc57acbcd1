"""The operational commands of ``claire``: demo, run, status, projections, operator actions.

Each handler parses, builds configuration, calls one function and maps our errors to exit codes
(STYLE.md principle 8): 0 fine, 1 a check found a problem, 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from adapters.process import CHECK_FAILED, OK, UsageError

DatabaseUrl = Callable[[argparse.Namespace], str]


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _load():
    """Environment -> (runtime settings, trading config), every problem reported at once."""
    from adapters.process import load_environment
    from aggregates.config import ConfigError, parse_config
    from pipeline.settings import SettingsError, parse_settings

    values = load_environment()
    problems = []
    settings = config = None
    try:
        settings = parse_settings(values)
    except SettingsError as error:
        problems.extend(error.problems)
    try:
        config = parse_config(values)
    except ConfigError as error:
        problems.extend(str(error).splitlines()[1:])
    if problems:
        raise UsageError("invalid configuration:\n  " + "\n  ".join(p.strip() for p in problems))
    return settings, config


def _demo(args: argparse.Namespace) -> int:
    from pipeline.demo import run_demo

    _configure_logging(args.verbose)
    return run_demo(Path(args.data_dir), speed=args.speed)


def _run(args: argparse.Namespace, database_url: DatabaseUrl) -> int:
    import dataclasses

    from adapters.secrets import Secret
    from pipeline.app import SERVICES, RunOptions, run_pipeline

    _configure_logging(True)
    settings, config = _load()
    # The one precedence of every command (adapters.process.database_url): the option first.
    settings = dataclasses.replace(settings, database_url=Secret(database_url(args)))
    services = tuple(args.service) if args.service else SERVICES
    _refuse_early(settings, services)
    logging.getLogger("claire").info("starting %s with %s", services, settings.describe())
    try:
        asyncio.run(
            run_pipeline(settings, config, RunOptions(services=services, duration=args.duration))
        )
    except KeyboardInterrupt:
        return OK
    except Exception as error:
        _refused_while_starting(error)
        raise
    return OK


def _refuse_early(settings, services) -> None:
    """Refuse to start, with one sentence, before any service runs (see pipeline.startup)."""
    from eventstore.errors import StoreUnavailable
    from pipeline.startup import StartRefused, check_schema

    url = settings.database_url.reveal()
    try:
        asyncio.run(check_schema(url))
        if settings.live_enabled and "execution" in services:
            from pipeline.preflight import require_preflight

            asyncio.run(require_preflight(url))
    except (StartRefused, StoreUnavailable) as error:
        raise UsageError(str(error)) from None


def _preflight(args: argparse.Namespace, database_url: DatabaseUrl) -> int:
    """``claire preflight``: the end-to-end check live trading requires (pipeline.preflight)."""

    from eventstore.errors import StoreUnavailable
    from pipeline.preflight import code_version, run_preflight
    from pipeline.startup import StartRefused, check_schema

    _configure_logging(args.verbose)
    url = database_url(args)
    try:
        asyncio.run(check_schema(url))  # the pass is recorded there: it must be a ledger
    except (StartRefused, StoreUnavailable) as error:
        raise UsageError(str(error)) from None
    print(f"claire preflight: code version {code_version()}", flush=True)
    outcome = run_preflight(url, speed=args.speed)
    for check in outcome.checks:
        print(f"  ok    {check}")
    for problem in outcome.problems:
        print(f"  FAIL  {problem}")
    if not outcome.passed:
        print(
            "claire preflight: FAILED; nothing recorded, live trading stays refused",
            file=sys.stderr,
        )
        return CHECK_FAILED
    print(f"claire preflight: passed ({outcome.events} events); recorded in the ledger")
    return OK


def _refused_while_starting(error: Exception) -> None:
    """A start refused by a service (the live venue's probe) is exit 2 and one line."""
    from adapters.mexc.live import LiveTradingRefused
    from pipeline.startup import StartRefused

    if isinstance(error, LiveTradingRefused | StartRefused):
        raise UsageError(str(error)) from None


def _status(args: argparse.Namespace, database_url: DatabaseUrl) -> int:
    from projections.status import status

    report = asyncio.run(status(database_url(args)))
    print(report.render())
    from pipeline.snapshot_status import snapshot_lines

    print("\n".join(asyncio.run(snapshot_lines(database_url(args)))))
    if args.listen:
        print(_listen(args.listen))
    return OK


def _listen(seconds: float) -> str:
    """``--listen``: the services heard on the ``health`` topic within ``seconds``."""
    from datetime import UTC, datetime

    from adapters.bus import BusUnavailable, RedisBus
    from adapters.process import load_environment
    from pipeline.heartbeats import listen, render_heard
    from pipeline.settings import SettingsError, parse_settings

    try:
        settings = parse_settings(load_environment())
    except SettingsError as error:
        raise UsageError(str(error)) from error
    if settings.redis_url is None:
        raise UsageError("--listen needs REDIS_URL (heartbeats travel on Redis)")
    url, namespace = settings.redis_url.reveal(), settings.bus_namespace

    async def heard() -> str:
        bus = await RedisBus.connect(url, namespace)
        try:
            beats = await listen(lambda: _same(bus), seconds)
        finally:
            await bus.close()
        return render_heard(beats, datetime.now(UTC))

    try:
        return asyncio.run(heard())
    except BusUnavailable as error:
        raise UsageError(f"cannot listen on health: {error}") from error


async def _same(bus):
    return bus


def _rebuild(args: argparse.Namespace, database_url: DatabaseUrl) -> int:
    from eventstore.errors import EventStoreError
    from projections.projector import UnknownProjection, rebuild

    archive = Path(args.archive) if args.archive else None
    if archive is not None and not archive.is_dir():
        raise UsageError(f"--archive {archive}: the folder does not exist")
    try:
        results = asyncio.run(rebuild(database_url(args), args.name, archive=archive))
    except UnknownProjection as error:
        raise UsageError(str(error)) from error
    except EventStoreError as error:  # a bad archive file, an unreadable row: named, exit 1
        print(f"claire projections rebuild: {error}", file=sys.stderr)
        return CHECK_FAILED
    for result in results:
        rate = result.events / result.seconds if result.seconds else 0.0
        print(
            f"rebuilt {result.projection}: {result.events} events up to position "
            f"{result.position} (generation {result.generation}, {rate:,.0f} events/s)"
        )
    return OK


def _operator(args: argparse.Namespace, database_url: DatabaseUrl) -> int:
    from aggregates import events as ev
    from aggregates.envelope import NewEvent
    from eventstore import EventStore

    now = datetime.now(UTC)
    event = ev.OperatorCommandIssued(
        at_ms=int(now.timestamp() * 1000),
        command=args.action,
        operator=args.operator,
        note=args.note,
    )

    async def record() -> int:
        async with await EventStore.connect(database_url(args), max_connections=1) as store:
            (position,) = await store.append(
                "operator", [NewEvent(event=event, event_id=uuid.uuid4(), occurred_at=now)]
            )
            return position

    position = asyncio.run(record())
    print(f"recorded operator command {args.action!r} at position {position}")
    return OK


def register(
    commands: argparse._SubParsersAction,
    database_url: DatabaseUrl,
) -> None:
    """Add the operational subcommands to ``claire``'s parser."""
    demo = commands.add_parser("demo", help="run the whole system on a bundled market tape")
    demo.add_argument("--data-dir", default=".data", help="where the embedded servers keep data")
    demo.add_argument("--speed", type=float, default=40.0, help="tape speed-up (default 40)")
    demo.add_argument("--verbose", action="store_true", help="log every service's progress")
    demo.set_defaults(handler=_demo)

    run = commands.add_parser("run", help="run the live pipeline (paper unless live is enabled)")
    run.add_argument(
        "--service",
        action="append",
        choices=("feed", "signal", "risk", "execution", "projector", "relay", "alerts"),
        help="run only this service (repeatable); default: all in one process",
    )
    run.add_argument("--duration", type=_positive_seconds, help="stop cleanly after SECONDS")
    run.set_defaults(handler=lambda args: _run(args, database_url))

    status = commands.add_parser("status", help="positions, exposure, drawdown, trading state")
    status.add_argument(
        "--listen",
        type=_positive_seconds,
        metavar="SECONDS",
        help="also list the services heard on the health topic within SECONDS",
    )
    status.set_defaults(handler=lambda args: _status(args, database_url))

    projections = commands.add_parser("projections", help="read models")
    projection_commands = projections.add_subparsers(dest="projections_command", required=True)
    rebuild = projection_commands.add_parser("rebuild", help="rebuild read models atomically")
    rebuild.add_argument("name", nargs="?", help="one projection (default: all)")
    rebuild.add_argument(
        "--archive", metavar="DIR", help="read archived positions from DIR (claire archive)"
    )
    rebuild.set_defaults(handler=lambda args: _rebuild(args, database_url))

    from replay.cli import build_parser as replay_parser
    from replay.cli import run as run_replay

    replay = commands.add_parser(
        "replay",
        parents=[replay_parser(add_help=False, subcommand=True)],
        description=replay_parser().description,
        help="forensic replay, --verify, --what-if, --report (same as `replay`)",
    )
    replay.set_defaults(handler=lambda args: run_replay(args, sys.stdout))

    operator = commands.add_parser("operator", help="record an operator command in the ledger")
    operator.add_argument(
        "action", choices=("reduce", "halt", "resume", "flatten", "reset_drawdown")
    )
    operator.add_argument("--operator", default="cli", help="who gives the command")
    operator.add_argument("--note", default="", help="why")
    operator.set_defaults(handler=lambda args: _operator(args, database_url))

    preflight = commands.add_parser(
        "preflight", help="end-to-end check on the bundled tape; live trading requires a pass"
    )
    preflight.add_argument("--speed", type=float, default=40.0, help="tape speed-up (default 40)")
    preflight.add_argument("--verbose", action="store_true", help="log every service's progress")
    preflight.set_defaults(handler=lambda args: _preflight(args, database_url))


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value < 10**9:
        raise argparse.ArgumentTypeError(f"{text!r}: must be a positive number of seconds")
    return value
