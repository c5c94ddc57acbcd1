"""The ``claire`` command line: the parser tree, and our errors mapped to exit codes.

Exit codes (:mod:`adapters.process`): 0 fine, 1 a check found a problem, 2 bad usage or
configuration (or the database is unreachable). The ledger is the one
:func:`adapters.process.database_url` names: ``--database-url`` (before the command, or after
``replay``), then ``DATABASE_URL`` from the environment, then from ``.env``, then the demo's.

Each command is added by the module of its concern; the list below is the order ``claire
--help`` shows them in.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from adapters.process import CHECK_FAILED, OK, USAGE, UsageError
from cli import archive, ledger, operator, projections, replay, run, status

_COMMANDS = (
    ledger.add_db,
    ledger.add_verify,
    run.add_demo,
    run.add_run,
    status.add_status,
    projections.add_projections,
    replay.add_replay,
    operator.add_operator,
    run.add_preflight,
    archive.add_archive,
)


def build_parser() -> argparse.ArgumentParser:
    """``claire``'s parser: the global ``--database-url``, then one subparser per command."""
    parser = argparse.ArgumentParser(prog="claire", description="Claire de Binaire")
    parser.add_argument("--database-url", help="PostgreSQL URL (default: $DATABASE_URL)")
    commands = parser.add_subparsers(dest="command", required=True)
    for add in _COMMANDS:
        add(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit code."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(arguments)
    except SystemExit as exit_:
        return OK if exit_.code == 0 else USAGE
    from eventstore.errors import EventStoreError, StoreUnavailable

    try:
        return int(args.handler(args))
    except UsageError as error:
        print(f"claire: {error}", file=sys.stderr)
        return USAGE
    except StoreUnavailable as error:
        print(f"claire: {error}", file=sys.stderr)
        return USAGE
    except EventStoreError as error:  # e.g. a ledger row no command can read: named, no traceback
        print(f"claire: {error}", file=sys.stderr)
        return CHECK_FAILED


if __name__ == "__main__":
    sys.exit(main())
