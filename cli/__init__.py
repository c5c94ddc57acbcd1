"""The command lines ``claire`` and ``replay``: parse, build config, call one function, exit code.

Every argparse tree of the project lives here, and nothing below imports it: ``pipeline/``,
``replay/`` and ``eventstore/`` are libraries the commands call. :mod:`cli.main` is ``claire``'s
parser and error mapping; each other module holds the commands of one concern
(:mod:`cli.ledger`, :mod:`cli.archive`, :mod:`cli.run`, :mod:`cli.status`,
:mod:`cli.projections`, :mod:`cli.operator`, :mod:`cli.replay` with :mod:`cli.sweep`).
Exit codes (:mod:`adapters.process`): 0 fine, 1 a check found a problem, 2 bad usage or
configuration (or no reachable ledger).
"""
