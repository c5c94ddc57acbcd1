"""``claire db upgrade`` and ``claire verify``: the ledger's schema and its hash chain.

``verify`` checks the whole chain, or only from a trusted anchor (``--since``, see
:mod:`pipeline.verify_since`), or across the archive and the table (``--archive``, see
:mod:`cli.archive`); it prints the head ``POSITION:HASH`` an operator keeps as the next anchor.
Exit 1 when the chain is broken.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from eventstore import VerifyResult
    from eventstore.logins import Login

from adapters.process import CHECK_FAILED, OK, UsageError
from cli.options import database_url

_ANCHOR = re.compile(r"^(\d+):([0-9a-fA-F]{64})$")


def parse_anchor(text: str) -> tuple[int, bytes]:
    """``POSITION:HASHHEX`` (as printed by ``claire verify``) -> (position, hash)."""
    match = _ANCHOR.match(text.strip())
    if not match:
        raise UsageError(f"bad anchor {text!r}: expected POSITION:HASH (64 hex digits)")
    return int(match.group(1)), bytes.fromhex(match.group(2))


def _db_upgrade(args: argparse.Namespace) -> int:
    from eventstore.errors import MigrationRefused, StoreUnavailable
    from eventstore.logins import LoginSettingsError
    from eventstore.migrations import upgrade

    url = database_url(args)
    logins = _configured_logins(url) if args.create_logins else []
    try:
        revision = upgrade(url)
        if logins:
            from eventstore.logins import ensure_logins

            asyncio.run(ensure_logins(url, logins))
    except (StoreUnavailable, MigrationRefused, LoginSettingsError) as error:
        raise UsageError(str(error)) from error
    print(f"database at revision {revision}")
    for login in logins:
        print(f"login {login.name} ready (member of {login.group})")
    return OK


def _configured_logins(url: str) -> list[Login]:
    """The service logins from the environment, checked before anything is changed."""
    from adapters.process import load_environment
    from eventstore.logins import LoginSettingsError, logins_from, owner_of

    try:
        return logins_from(load_environment(), owner=owner_of(url))
    except LoginSettingsError as error:
        raise UsageError(str(error)) from error


async def _verify(url: str, expect: tuple[int, bytes] | None) -> VerifyResult:
    from eventstore import EventStore

    store = await EventStore.connect(url, max_connections=1)
    try:
        return await store.verify(expect=expect)
    finally:
        await store.close()


def _verify_command(args: argparse.Namespace) -> int:
    from eventstore import EventStoreError, StoreUnavailable, VerifyResult

    expect = parse_anchor(args.expect) if args.expect else None
    url = database_url(args)
    if args.archive:
        from cli.archive import verify_archive_command

        if expect is not None:
            raise UsageError("--archive and --expect cannot be combined")
        try:
            return verify_archive_command(args, url)
        except (StoreUnavailable, OSError) as error:
            raise UsageError(f"cannot reach the ledger database: {error}") from error
    since: tuple[int, bytes] | None = None
    if getattr(args, "since", None):
        from pipeline.verify_since import BadAnchorFile, read_anchor, verify_since

        if expect is not None:
            raise UsageError("--since and --expect cannot be combined")
        try:
            since = read_anchor(args.since, parse_anchor)
        except BadAnchorFile as error:
            raise UsageError(str(error)) from error
    try:
        if since is not None:
            result = asyncio.run(verify_since(url, since))
        else:
            result = asyncio.run(_verify(url, expect))
    except StoreUnavailable as error:
        raise UsageError(str(error)) from error
    except EventStoreError as error:  # whatever the database holds: a message, never a traceback
        print(f"verify FAILED: {error}", file=sys.stderr)
        return CHECK_FAILED
    assert isinstance(result, VerifyResult)
    print(f"head {result.anchor}")
    if not result.ok:
        # No anchor from a ledger that failed: it would vouch for a state nobody can trust.
        where = f" at position {result.first_bad_position}" if result.first_bad_position else ""
        print(f"verify FAILED{where}: {result.problem}", file=sys.stderr)
        return CHECK_FAILED
    if args.anchor:
        try:
            Path(args.anchor).write_text(result.anchor + "\n", encoding="utf-8")
        except OSError as error:
            raise UsageError(f"--anchor {args.anchor}: cannot write it: {error.strerror}") from None
    if since is not None and since[0] > 0:
        print(
            f"verify ok: {result.events_checked - since[0]} events after the anchor at "
            f"{since[0]}, chain intact"
        )
        return OK
    print(f"verify ok: {result.events_checked} events, chain intact")
    return OK


def add_db(commands: argparse._SubParsersAction) -> None:
    """``claire db upgrade [--create-logins]``."""
    db = commands.add_parser("db", help="database schema")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_commands.add_parser("upgrade", help="migrate the database to the newest schema")
    upgrade.add_argument(
        "--create-logins",
        action="store_true",
        help="also create/update the services' least-privilege logins (names and passwords from"
        " CLAIRE_APP_LOGIN/_PASSWORD and CLAIRE_PROJECTOR_LOGIN/_PASSWORD)",
    )
    upgrade.set_defaults(handler=_db_upgrade)


def add_verify(commands: argparse._SubParsersAction) -> None:
    """``claire verify [--anchor FILE | --expect POSITION:HASH | --since FILE | --archive DIR]``."""
    verify = commands.add_parser("verify", help="check the ledger's hash chain and immutability")
    verify.add_argument("--anchor", metavar="FILE", help="write the head POSITION:HASH to FILE")
    verify.add_argument(
        "--expect", metavar="POSITION:HASH", help="fail unless this earlier head still holds"
    )
    verify.add_argument(
        "--since",
        metavar="FILE",
        help="check only from the trusted anchor in FILE (written by --anchor) to the head",
    )
    verify.add_argument(
        "--archive", metavar="DIR", help="check the chain across the archive in DIR and the table"
    )
    verify.set_defaults(handler=_verify_command)
