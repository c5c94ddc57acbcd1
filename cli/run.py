"""``claire demo``, ``claire run`` and ``claire preflight``: the commands that start services.

``run`` reads the runtime settings (:mod:`adapters.settings`) and the trading configuration
(:mod:`aggregates.config`) from the environment, every problem reported at once, and refuses
with one sentence, before any service starts, a ledger without the schema or live trading
without a passed preflight (:mod:`pipeline.startup`, :mod:`pipeline.preflight`).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from adapters.process import CHECK_FAILED, OK, UsageError
from cli.options import database_url, positive_seconds


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _load():
    """Environment -> (runtime settings, trading config), every problem reported at once."""
    from adapters.process import load_environment
    from adapters.settings import SettingsError, parse_settings
    from aggregates.config import ConfigError, parse_config

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


def _run(args: argparse.Namespace) -> int:
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


def _preflight(args: argparse.Namespace) -> int:
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


def add_demo(commands: argparse._SubParsersAction) -> None:
    """``claire demo [--data-dir DIR] [--speed X] [--verbose]``."""
    demo = commands.add_parser("demo", help="run the whole system on a bundled market tape")
    demo.add_argument("--data-dir", default=".data", help="where the embedded servers keep data")
    demo.add_argument("--speed", type=float, default=40.0, help="tape speed-up (default 40)")
    demo.add_argument("--verbose", action="store_true", help="log every service's progress")
    demo.set_defaults(handler=_demo)


def add_run(commands: argparse._SubParsersAction) -> None:
    """``claire run [--service NAME ...] [--duration SECONDS]``."""
    run = commands.add_parser("run", help="run the live pipeline (paper unless live is enabled)")
    run.add_argument(
        "--service",
        action="append",
        choices=("feed", "signal", "risk", "execution", "projector", "relay", "alerts"),
        help="run only this service (repeatable); default: all in one process",
    )
    run.add_argument("--duration", type=positive_seconds, help="stop cleanly after SECONDS")
    run.set_defaults(handler=_run)


def add_preflight(commands: argparse._SubParsersAction) -> None:
    """``claire preflight [--speed X] [--verbose]``."""
    preflight = commands.add_parser(
        "preflight", help="end-to-end check on the bundled tape; live trading requires a pass"
    )
    preflight.add_argument("--speed", type=float, default=40.0, help="tape speed-up (default 40)")
    preflight.add_argument("--verbose", action="store_true", help="log every service's progress")
    preflight.set_defaults(handler=_preflight)
