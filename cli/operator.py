"""``claire operator ACTION``: record an operator's command (halt, flatten, ...) in the ledger.

The command is a fact like any other (``OperatorCommandIssued`` on the ``operator`` stream); the
risk decisions that obey it read it from the ledger, so it is replayed and audited with them.
"""

from __future__ import annotations

import argparse
import asyncio
import uuid
from datetime import UTC, datetime

from adapters.process import OK
from cli.options import database_url


def _operator(args: argparse.Namespace) -> int:
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


def add_operator(commands: argparse._SubParsersAction) -> None:
    """``claire operator {reduce,halt,resume,flatten,reset_drawdown} [--operator WHO] [--note]``."""
    operator = commands.add_parser("operator", help="record an operator command in the ledger")
    operator.add_argument(
        "action", choices=("reduce", "halt", "resume", "flatten", "reset_drawdown")
    )
    operator.add_argument("--operator", default="cli", help="who gives the command")
    operator.add_argument("--note", default="", help="why")
    operator.set_defaults(handler=_operator)
