"""``claire archive`` and ``claire verify --archive``: parse, call eventstore.archive, exit codes.

0 fine; 1 the archive (or the export) has a problem, named; 2 bad usage or no database.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from adapters.process import CHECK_FAILED, OK, UsageError
from cli.options import database_url


def _archive(args: argparse.Namespace) -> int:
    from eventstore.archive import ArchiveError, archive
    from eventstore.errors import StoreUnavailable
    from replay.window import parse_moment

    before = parse_moment(args.before, option="--before")  # a UsageError if it is not a date
    url = database_url(args)
    try:
        report = asyncio.run(archive(url, before, Path(args.to)))
    except ArchiveError as error:
        print(f"archive FAILED: {error}", file=sys.stderr)
        return CHECK_FAILED
    except (StoreUnavailable, OSError) as error:
        raise UsageError(f"cannot reach the ledger database: {error}") from None
    for manifest in report.archived:
        print(
            f"archived {manifest.partition}: positions {manifest.first_position}.."
            f"{manifest.last_position} ({manifest.row_count} events) -> {manifest.file}"
        )
    print(f"retention floor {report.floor} ({report.floor_reason}); stopped: {report.stopped}")
    return OK


def verify_archive_command(args: argparse.Namespace, url: str) -> int:
    """``claire verify --archive DIR``: the chain across the archive files and the live table."""
    from eventstore.archive import verify_archive

    result = asyncio.run(verify_archive(url, Path(args.archive)))
    if not result.ok:
        where = []
        if result.file:
            where.append(f"file {result.file}")
        if result.first_bad_position:
            where.append(f"position {result.first_bad_position}")
        at = f" at {', '.join(where)}" if where else ""
        print(f"verify --archive FAILED{at}: {result.problem}", file=sys.stderr)
        return CHECK_FAILED
    print(
        f"verify --archive ok: {result.files} files, {result.archived_events} archived events, "
        f"{result.live_events} live events, one chain intact"
    )
    return OK


def add_archive(commands: argparse._SubParsersAction) -> None:
    """``claire archive --before DATE --to DIR``."""
    archive = commands.add_parser(
        "archive", help="move whole old partitions of the ledger into Parquet files"
    )
    archive.add_argument(
        "--before", required=True, metavar="DATE", help="archive partitions recorded before DATE"
    )
    archive.add_argument("--to", required=True, metavar="DIR", help="the archive directory")
    archive.set_defaults(handler=_archive)
