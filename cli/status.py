"""``claire status [--listen SECONDS]``: the read models' summary, snapshots, services heard.

Reads only: the status projection (:mod:`projections.status`), the snapshot lines
(:mod:`pipeline.snapshot_status`) and, with ``--listen``, the heartbeats on the bus.
"""

from __future__ import annotations

import argparse
import asyncio

from adapters.process import OK, UsageError
from cli.options import database_url, positive_seconds


def _status(args: argparse.Namespace) -> int:
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
    from adapters.settings import SettingsError, parse_settings
    from pipeline.heartbeats import listen, render_heard

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


def add_status(commands: argparse._SubParsersAction) -> None:
    """``claire status [--listen SECONDS]``."""
    status = commands.add_parser("status", help="positions, exposure, drawdown, trading state")
    status.add_argument(
        "--listen",
        type=positive_seconds,
        metavar="SECONDS",
        help="also list the services heard on the health topic within SECONDS",
    )
    status.set_defaults(handler=_status)
