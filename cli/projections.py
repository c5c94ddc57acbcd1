"""``claire projections rebuild [NAME] [--archive DIR]``: rebuild read models from the ledger.

The rebuild itself (atomic, by generation) is :func:`projections.projector.rebuild`; this
module checks the options and prints one line per projection rebuilt.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from adapters.process import CHECK_FAILED, OK, UsageError
from cli.options import database_url


def _rebuild(args: argparse.Namespace) -> int:
    from eventstore.errors import EventStoreError
    from projections.projector import (
        CheckpointMoved,
        RebuildRefused,
        UnknownProjection,
        rebuild,
    )

    archive = Path(args.archive) if args.archive else None
    if archive is not None and not archive.is_dir():
        raise UsageError(f"--archive {archive}: the folder does not exist")
    try:
        results = asyncio.run(rebuild(database_url(args), args.name, archive=archive))
    except UnknownProjection as error:
        raise UsageError(str(error)) from error
    except (RebuildRefused, CheckpointMoved) as error:  # a fold refusal, no archive given, ...
        print(f"claire projections rebuild: {error}", file=sys.stderr)
        return CHECK_FAILED
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


def add_projections(commands: argparse._SubParsersAction) -> None:
    """``claire projections rebuild``."""
    projections = commands.add_parser("projections", help="read models")
    projection_commands = projections.add_subparsers(dest="projections_command", required=True)
    rebuild = projection_commands.add_parser("rebuild", help="rebuild read models atomically")
    rebuild.add_argument("name", nargs="?", help="one projection (default: all)")
    rebuild.add_argument(
        "--archive", metavar="DIR", help="read archived positions from DIR (claire archive)"
    )
    rebuild.set_defaults(handler=_rebuild)
