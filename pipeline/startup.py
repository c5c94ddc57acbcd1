"""Start-up checks of ``claire run``: refuse early, with one sentence naming the reason.

A refused start is not a crash: the operator gets one line saying what is wrong and what to do
(exit 2), never a traceback. Checked here, before any service starts:

* the database holds the ledger schema at the revision this code needs (else: run
  ``claire db upgrade``), so no service dies half-way on a missing table;
* in live mode, the gates of :mod:`pipeline.preflight` (a passing end-to-end check for this code
  version in the ledger).

The refusals raised while the services start (the venue's probe: ``LiveTradingRefused``) are
mapped to the same exit code by the command.
"""

from __future__ import annotations

from eventstore.migrations import head_revision, schema_state


class StartRefused(Exception):
    """``claire run`` will not start; the message names the reason and the remedy."""


async def check_schema(url: str) -> str:
    """The database's revision if it is the one this code needs; else :class:`StartRefused`.

    Raises :class:`StoreUnavailable` when the database cannot be reached at all.
    """
    current, has_ledger = await schema_state(url)
    wanted = head_revision()
    if current is None or not has_ledger:
        raise StartRefused(
            "the database has no ledger schema (it was never migrated): run `claire db upgrade`"
        )
    if current != wanted:
        raise StartRefused(
            f"the database schema is at revision {current}, this code needs {wanted}: "
            "run `claire db upgrade`"
        )
    return current
