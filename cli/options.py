"""What several commands share: the ledger's URL from the arguments, and a duration option.

One resolver for ``claire`` and ``replay`` alike, so both name the same ledger by the one
precedence of :func:`adapters.process.database_url` and refuse a missing one the same way.
"""

from __future__ import annotations

import argparse

from adapters.process import UsageError


def database_url(args: argparse.Namespace) -> str:
    """The ledger ``--database-url`` (or the environment, ``.env``, the demo) names.

    :class:`UsageError` (exit 2) when there is none.
    """
    from adapters.process import NoDatabase
    from adapters.process import database_url as resolve

    try:
        return resolve(getattr(args, "database_url", None))
    except NoDatabase as error:
        raise UsageError(str(error)) from error


def positive_seconds(text: str) -> float:
    """An argparse ``type``: a positive number of seconds (``--duration``, ``--listen``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value < 10**9:
        raise argparse.ArgumentTypeError(f"{text!r}: must be a positive number of seconds")
    return value
