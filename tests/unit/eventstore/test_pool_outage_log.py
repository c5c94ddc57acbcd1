"""While PostgreSQL is down, asyncpg's pool retry is logged as one line, never a traceback."""

from __future__ import annotations

import io
import logging

import eventstore.driver  # noqa: F401  (installs the filter on asyncpg's pool logger)


def test_pool_log_when_floor_restore_fails_with_exc_info_then_one_line_naming_the_error() -> None:
    sink = io.StringIO()
    handler = logging.StreamHandler(sink)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    pool_log = logging.getLogger("asyncpg.pool")
    pool_log.addHandler(handler)
    try:
        try:
            raise FileNotFoundError(2, "No such file or directory")
        except FileNotFoundError:
            pool_log.warning("Failed to restore the pool connection floor; retrying", exc_info=True)
    finally:
        pool_log.removeHandler(handler)
    lines = sink.getvalue().splitlines()
    assert len(lines) == 1, lines
    assert "Traceback" not in sink.getvalue()
    assert lines[0].startswith("WARNING asyncpg.pool: Failed to restore the pool connection floor")
    assert "FileNotFoundError" in lines[0]
