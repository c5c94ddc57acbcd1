"""``replay --from <date>`` (also ``claire replay``): parse, run, map results to exit codes.

The ``replay`` script's entry point (:func:`main`) and ``claire replay`` (:func:`add_replay`);
the work is the :mod:`replay` library's (walk, verify, what-if, report), the sweep options are
:mod:`cli.sweep`'s.

Exit codes (DESIGN.md, :mod:`adapters.process`): 0 fine, 1 ``--verify`` found a divergence or a
broken hash chain, 2 bad usage — bad dates or options, an empty window, a window past the end, an
invalid ``--what-if`` parameter, no reachable ledger. ``claire replay`` is this same parser,
registered as a subcommand of ``claire`` (:func:`build_parser` with ``add_help=False`` as a
parent), so ``claire --database-url URL replay --from DATE`` takes the global option.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from collections.abc import Callable

    from aggregates.envelope import RecordedEvent
    from replay.session import Output

from adapters.process import CHECK_FAILED, OK, USAGE, UsageError
from aggregates.events import SYMBOL
from cli.options import database_url
from cli.sweep import add_arguments as add_sweep_arguments
from cli.sweep import parse_plan, run_sweep


def build_parser(*, add_help: bool = True, subcommand: bool = False) -> argparse.ArgumentParser:
    """``replay``'s options; ``subcommand``: for ``claire replay``, where ``--database-url`` may
    also stand before the command (left unset here, so the global value is not overwritten)."""
    parser = argparse.ArgumentParser(
        prog="replay",
        add_help=add_help,
        description="Rebuild state from the ledger, walk a window, re-decide and compare "
        "(--verify), try other parameters (--what-if), write an audit report (--report).",
    )
    parser.add_argument(
        "--from", dest="start", required=True, metavar="DATE",
        help="start of the window: YYYY-MM-DD (midnight UTC) or an ISO-8601 timestamp",
    )  # fmt: skip
    parser.add_argument(
        "--to", dest="end", metavar="DATE",
        help="end of the window (exclusive; a date alone means the end of that day)",
    )  # fmt: skip
    parser.add_argument("--symbol", help="show only this symbol's events, e.g. BTC_USDT")
    parser.add_argument(
        "--verify", action="store_true",
        help="re-run signal, risk (and paper) over the log; exit 1 at the first divergence",
    )  # fmt: skip
    parser.add_argument(
        "--what-if", dest="what_if", nargs="+", metavar="KEY=VALUE",
        help="the same recorded market with other parameters; prints actual vs counterfactual",
    )  # fmt: skip
    parser.add_argument("--report", metavar="PATH", help="write a self-contained HTML report")
    parser.add_argument("--json", action="store_true", help="JSON lines for machines")
    parser.add_argument(
        "--quiet", "-q", action="store_true", help="no per-event lines, only days and totals"
    )
    parser.add_argument(
        "--database-url",
        default=argparse.SUPPRESS if subcommand else None,
        help="PostgreSQL URL (default: $DATABASE_URL)",
    )
    add_sweep_arguments(parser)  # --sweep, walk-forward, --jobs, --cluster (docs/SWEEPS.md)
    _snapshot_options(parser)
    parser.add_argument(
        "--archive", metavar="DIR",
        help="read archived positions from the archive in DIR (claire archive), then the table",
    )  # fmt: skip
    return parser


def _snapshot_options(parser: argparse.ArgumentParser) -> None:
    """Snapshots (docs/SNAPSHOTS.md): start from verified snapshots unless told not to."""
    parser.add_argument(
        "--no-snapshots", dest="no_snapshots", action="store_true",
        help="fold from position 1 even when verified snapshots before the window exist",
    )  # fmt: skip
    parser.add_argument(
        "--all", dest="verify_all", action="store_true",
        help="with --verify: every segment between consecutive snapshots, in parallel "
        "(no --from needed)",
    )  # fmt: skip
    if "--jobs" not in parser._option_string_actions:  # another feature may define it too
        parser.add_argument(
            "--jobs", type=int, metavar="N", help="worker processes (default: one per core)"
        )
    for action in parser._actions:  # --all covers the whole log: --from is then not needed
        if action.dest == "start":
            action.required = False


def _verify_all(args: argparse.Namespace, out_stream: TextIO) -> int:
    """``replay --verify --all [--jobs N]``: every snapshot segment (replay/segments.py)."""
    if not args.verify:
        raise UsageError("--all needs --verify")
    if args.jobs is not None and args.jobs < 1:
        raise UsageError(f"--jobs {args.jobs}: expected at least 1")
    if args.archive is not None and not Path(args.archive).is_dir():
        raise UsageError(f"--archive {args.archive}: the folder does not exist")
    url = database_url(args)
    archive = Path(args.archive) if args.archive else None
    return asyncio.run(_run_all(url, args.jobs, args.json, out_stream, archive))


async def _run_all(
    url: str, jobs: int | None, json: bool, out_stream: TextIO, archive: Path | None = None
) -> int:
    from eventstore import EventStore, EventStoreError, StoreUnavailable
    from replay.segments import verify_all
    from replay.session import Output

    try:
        store = await EventStore.connect(url, max_connections=2)
    except StoreUnavailable as error:
        raise UsageError(str(error)) from error
    try:
        result = await verify_all(url, store, jobs, archive)
    except StoreUnavailable as error:
        raise UsageError(str(error)) from error
    except EventStoreError as error:  # a bad archive file (named), an unreadable row
        print(f"replay: the ledger could not be read: {error}", file=sys.stderr)
        return CHECK_FAILED
    finally:
        await store.close()
    Output(out_stream, json=json).emit(result.to_json(), result.render())
    return OK if result.ok else CHECK_FAILED


def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None) -> int:
    """Run ``replay``; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return OK if exit_.code == 0 else USAGE
    return run(args, stdout if stdout is not None else sys.stdout)


def run(args: argparse.Namespace, out_stream: TextIO) -> int:
    """Run parsed ``replay`` options (from ``replay`` or ``claire replay``); the exit code."""
    from replay.window import parse_moment

    try:
        if args.verify_all:
            return _verify_all(args, out_stream)
        if args.start is None:
            raise UsageError("the following argument is required: --from")
        start = parse_moment(args.start, option="--from")
        end = parse_moment(args.end, option="--to", end=True) if args.end else None
        if args.symbol is not None and not SYMBOL.match(args.symbol):
            raise UsageError(f"--symbol {args.symbol!r}: expected a symbol like BTC_USDT")
        overrides = None
        if args.what_if is not None:
            from replay.whatif import parse_overrides

            overrides = parse_overrides(args.what_if)
        args.sweep_plan = parse_plan(args)
        if args.report is not None and not Path(args.report).resolve().parent.is_dir():
            raise UsageError(f"--report {args.report}: the folder does not exist")
        if args.archive is not None and not Path(args.archive).is_dir():
            raise UsageError(f"--archive {args.archive}: the folder does not exist")
        url = database_url(args)
        return asyncio.run(_run(args, url, start, end, overrides, out_stream))
    except UsageError as error:
        print(f"replay: {error}", file=sys.stderr)
        return USAGE
    except BrokenPipeError:
        # The reader went away (``replay ... | head``): stop quietly, as other tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        with contextlib.suppress(OSError, ValueError):
            os.dup2(devnull, out_stream.fileno())
        return CHECK_FAILED


async def _run(args, url, start, end, overrides, out_stream) -> int:
    from aggregates.config import ConfigError
    from eventstore import EventStore, EventStoreError, StoreUnavailable
    from replay.session import Output, replay_pass
    from replay.window import resolve_window

    out = Output(out_stream, json=args.json)
    try:
        store = await EventStore.connect(url, max_connections=2)
    except StoreUnavailable as error:
        raise UsageError(str(error)) from error
    if args.archive:
        from eventstore.archive import ArchivedLog

        # Stands in for the store: its reads start in the archive, the rest is delegated.
        store = ArchivedLog(store, Path(args.archive))  # type: ignore[assignment]
    try:
        window = await resolve_window(store, start, end)
        if overrides is not None:
            from replay.whatif import check_overrides

            try:
                await check_overrides(store, overrides)
            except ConfigError as error:
                raise UsageError(f"--what-if: {error}") from error
        out.emit({"type": "window", **_window_json(window)}, window.describe())
        if args.sweep_plan is not None:
            code, section = await run_sweep(args.sweep_plan, store, window, url, out, args.symbol)
            if args.report:
                from replay.sweep_run import sweep_report

                html = await sweep_report(store, window, url, section, symbol=args.symbol)
                await _write_report(Path(args.report), html, out)
            return code
        report = None
        sinks: tuple[Callable[[RecordedEvent], None], ...] = ()
        if args.report:
            from replay.report import ReportBuilder

            report = ReportBuilder()
            sinks = (report.add,)
        result = await replay_pass(
            store,
            window,
            out,
            symbol=args.symbol,
            verify=args.verify,
            database_url=url,
            quiet=args.quiet,
            sinks=sinks,
            snapshots=not args.no_snapshots,
        )
        out.emit(result.summary.to_json(), result.summary.render())
        code = OK
        if result.verify is not None:
            out.emit(result.verify.to_json(), result.verify.render())
            if not result.verify.ok:
                code = CHECK_FAILED
        comparison = None
        if overrides is not None:
            from replay.whatif import what_if

            comparison = await what_if(store, window, overrides, symbol=args.symbol)
            out.emit(comparison.to_json(), comparison.render())
        if report is not None:
            html = report.render(window, result, comparison)
            await _write_report(Path(args.report), html, out)
        return code
    except StoreUnavailable as error:
        raise UsageError(str(error)) from error
    except EventStoreError as error:
        print(f"replay: the ledger could not be read: {error}", file=sys.stderr)
        return CHECK_FAILED
    finally:
        await store.close()


async def _write_report(path: Path, html: str, out: Output) -> None:
    """``--report PATH``: the HTML written, and where it went said (text or JSON)."""
    try:
        await asyncio.to_thread(path.write_text, html, encoding="utf-8")
    except OSError as error:
        raise UsageError(f"--report {path}: cannot write: {error}") from error
    out.emit({"type": "report", "path": str(path)}, f"report written to {path}")


def _window_json(window) -> dict[str, object]:
    return {
        "from": window.start.isoformat(),
        "to": window.end.isoformat() if window.end else None,
        "first_position": window.first,
        "last_position": window.last,
        "head": window.head,
    }


def add_replay(commands: argparse._SubParsersAction) -> None:
    """``claire replay``: this parser as a subcommand, sharing ``claire``'s ``--database-url``."""
    replay = commands.add_parser(
        "replay",
        parents=[build_parser(add_help=False, subcommand=True)],
        description=build_parser().description,
        help="forensic replay, --verify, --what-if, --report (same as `replay`)",
    )
    replay.set_defaults(handler=lambda args: run(args, sys.stdout))


if __name__ == "__main__":
    sys.exit(main())
