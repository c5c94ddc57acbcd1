"""compose.yaml's deployment, run without Docker: every service least-privileged, the ledger sound.

Docker cannot run here, so the test reads ``compose.yaml`` itself (file and test cannot drift):
for each service it takes the command and the environment compose would give the container
(``env_file`` values overridden by ``environment``, ``${...}`` interpolated from a test ``.env``)
and starts it as a separate process. Only what the containers' network decides is rewritten:
the hosts of PostgreSQL and Redis become the test's embedded servers (same login and password)
and every service gets a port of its own for ``/metrics``. The ``migrate`` job runs as the
owner; then the tape is played through the seven services, the ledger is checked, and each
service login is shown refused everything beyond its job.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import yaml

from projections.projector import rebuild
from tests.faults.fault_helpers import (
    CLAIRE,
    TRADING_ENV,
    Proc,
    check_ledger,
    connection,
    count_where,
    free_port,
    machines,
    momentum_tape,
    read_ledger,
    readmodel_rows,
    replay_mismatches,
    spawn,
    start_mexc_server,
    wait_for,
    wall_ms,
    write_jsonl,
)

pytestmark = [pytest.mark.db, pytest.mark.redis, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
PIPELINE = ("feed", "signal", "risk", "execution", "projector", "relay", "alerts")
TRADES = "SELECT count(*) FROM ledger.events WHERE event_type = 'market.trade'"
# PostgreSQL 15 checks SUPERUSER before CREATEROLE, so its refusal names that ("must be superuser").
_REFUSED = (
    "permission denied|must be owner|must be member|must have|must be superuser|not have permission"
)

_VARIABLE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:\?|:-)([^}]*))?\}")


def interpolate(text: str, dotenv: Mapping[str, str]) -> str:
    """Compose's interpolation: ``${X}``, ``${X:-default}``, ``${X:?error}`` and ``$$``."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, operator, argument = match.groups()
        value = dotenv.get(name, "")
        if operator == ":-" and not value:
            return argument
        if operator == ":?" and not value:
            raise AssertionError(f"compose would refuse to start: {argument}")
        return value

    return _VARIABLE.sub(one, text)


def compose_services(dotenv: Mapping[str, str]) -> dict[str, tuple[list[str], dict[str, str]]]:
    """Each service's command and container environment, as compose would start it."""
    document = yaml.safe_load((ROOT / "compose.yaml").read_text())
    started = {}
    for name, service in document["services"].items():
        if not str(service.get("image", "")).startswith("claire-de-binaire"):
            continue
        environment: dict[str, str] = {}
        if service.get("env_file"):
            assert service["env_file"] == [".env"], name
            environment.update(dotenv)
        for key, value in (service.get("environment") or {}).items():
            environment[key] = interpolate(str(value), dotenv)
        started[name] = ([interpolate(str(a), dotenv) for a in service["command"]], environment)
    return started


def _rehost(url: str, server_database_url: str, *, user: str | None = None) -> str:
    """``url``'s login on the test's server and database (the containers' host is not ours)."""
    ours = urlsplit(server_database_url)
    theirs = urlsplit(url)
    login = user if user is not None else f"{theirs.username}:{theirs.password}"
    return urlunsplit(ours._replace(netloc=f"{login}@{ours.hostname or ''}"))


def _argv(command: list[str]) -> list[str]:
    assert command[0] == "claire", command
    return [*CLAIRE, *command[1:]]


def _dotenv(namespace: str, ws_url: str) -> dict[str, str]:
    """The operator's ``.env``: trading values, endpoints and the deployment's secrets."""
    tag = secrets.token_hex(4)
    return {
        **TRADING_ENV,
        "SYMBOLS": "BTC_USDT,ETH_USDT",
        "MEXC_WS_URL": ws_url,
        "MEXC_REST_URL": "http://127.0.0.1:9",
        "CLOCK_INTERVAL_SECONDS": "0.5",
        "CLAIRE_BUS_NAMESPACE": namespace,
        "POSTGRES_PASSWORD": f"owner-{secrets.token_hex(8)}",
        "GRAFANA_ADMIN_PASSWORD": f"grafana-{secrets.token_hex(8)}",
        # Roles are cluster-wide: names of this test's own.
        "CLAIRE_APP_LOGIN": f"claire_service_{tag}",
        "CLAIRE_APP_PASSWORD": f"app-{secrets.token_hex(8)}",
        "CLAIRE_PROJECTOR_LOGIN": f"claire_projection_{tag}",
        "CLAIRE_PROJECTOR_PASSWORD": f"projector-{secrets.token_hex(8)}",
    }


SECRETS = (
    "POSTGRES_PASSWORD",
    "GRAFANA_ADMIN_PASSWORD",
    "CLAIRE_APP_PASSWORD",
    "CLAIRE_PROJECTOR_PASSWORD",
)

#: What neither login may do: rewrite or erase history, disable the refusals, grow privileges.
BEYOND_EVERY_JOB = [
    "UPDATE ledger.events SET stream = 'x'",
    "DELETE FROM ledger.events",
    "TRUNCATE ledger.events",
    "ALTER TABLE ledger.events DISABLE TRIGGER ALL",
    "DROP TRIGGER IF EXISTS events_append_only ON ledger.events",
    "DROP TABLE ledger.events",
    "CREATE TABLE ledger.sneaky (x int)",
    "CREATE ROLE sneaky_superuser SUPERUSER",
    "SET ROLE postgres",
    "SET ROLE claire_auditor",
]
BEYOND_APP = [
    *BEYOND_EVERY_JOB,
    "UPDATE readmodel.checkpoints SET position = 0",
    "SET ROLE claire_projector",
]
BEYOND_PROJECTOR = [
    *BEYOND_EVERY_JOB,
    "INSERT INTO ledger.events SELECT * FROM ledger.events",
    "UPDATE ledger.head SET position = position",
    "SET ROLE claire_app",
]


async def _refused_everything_beyond(url: str, statements: list[str]) -> None:
    async with connection(url) as conn:
        assert not await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        for statement in statements:
            async with conn.transaction():
                with pytest.raises(asyncpg.PostgresError, match=_REFUSED):
                    await conn.execute(statement)


def test_compose_services_when_started_then_each_holds_only_its_own_password() -> None:
    dotenv = _dotenv("ns", "ws://127.0.0.1:9")
    services = compose_services(dotenv)
    owner = dotenv["POSTGRES_PASSWORD"]
    assert owner in services["migrate"][1]["DATABASE_URL"]
    for name in PIPELINE:
        environment = services[name][1]
        own = "PROJECTOR" if name == "projector" else "APP"
        login = urlsplit(environment["DATABASE_URL"])
        assert login.username == dotenv[f"CLAIRE_{own}_LOGIN"], name
        assert login.password == dotenv[f"CLAIRE_{own}_PASSWORD"], name
        others = [dotenv[key] for key in SECRETS if key != f"CLAIRE_{own}_PASSWORD"]
        for value in environment.values():
            for other in others:
                assert other not in value, f"{name} holds another login's password"


async def test_compose_deployment_when_run_as_processes_then_least_privileged_and_sound(
    fresh_database_url,
    redis_url: str,
    redis_namespace: str,
    workdir: Path,
    processes: list[Proc],
) -> None:
    url = await fresh_database_url(migrate=False)
    owner = urlsplit(url).username
    lines = momentum_tape(wall_ms() - 90_000, seconds=80)
    tape = write_jsonl(workdir / "tape.jsonl", lines)
    server, ws = start_mexc_server(tape, workdir, "mexc", autoplay_after=3, speed=4)
    processes.append(server)
    dotenv = _dotenv(redis_namespace, ws)
    services = compose_services(dotenv)

    # The one-shot job, as the owner; run twice: creating the logins is idempotent.
    command, environment = services["migrate"]
    assert "--create-logins" in command
    environment["DATABASE_URL"] = _rehost(environment["DATABASE_URL"], url, user=owner)
    for attempt in (1, 2):
        job = spawn(_argv(command), environment, workdir / f"migrate-{attempt}.log", workdir)
        assert await asyncio.to_thread(job.wait, 120) == 0, job.output()

    logins: dict[str, str] = {}
    running: dict[str, Proc] = {}
    for name in PIPELINE:
        command, environment = services[name]
        environment["DATABASE_URL"] = _rehost(environment["DATABASE_URL"], url)
        environment["REDIS_URL"] = redis_url
        environment["METRICS_PORT"] = str(free_port())
        logins[name] = environment["DATABASE_URL"]
        running[name] = spawn(_argv(command), environment, workdir / f"{name}.log", workdir)
        processes.append(running[name])

    async def sessions() -> set[str]:
        async with connection(url) as conn:
            rows = await conn.fetch(
                "SELECT DISTINCT usename FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        return {row[0] for row in rows}

    async def all_connected() -> set[str] | None:
        for name, proc in running.items():
            assert proc.popen.poll() is None, f"{name} died:\n{proc.output()}"
        seen = await sessions()
        return seen if len(seen) == 2 else None

    connected = await wait_for(all_connected, 90, "every service's connection")
    assert connected == {dotenv["CLAIRE_APP_LOGIN"], dotenv["CLAIRE_PROJECTOR_LOGIN"]}

    async def tape_in() -> bool:
        for name, proc in running.items():
            assert proc.popen.poll() is None, f"{name} died:\n{proc.output()}"
        return await count_where(url, TRADES) == len(lines)

    await wait_for(tape_in, 150, "the whole tape in the ledger", interval=1)
    running["feed"].kill9()  # no more clock ticks: the deciders can reach the head

    async def settled() -> list[Any] | None:
        recorded = await read_ledger(url)
        if any(replay_mismatches(recorded, machine) for machine in machines()):
            return None
        async with connection(url) as conn:
            checkpoints = await conn.fetch("SELECT position FROM readmodel.checkpoints")
        if min(row[0] for row in checkpoints) < recorded[-1].position:
            return None
        return recorded

    recorded = await wait_for(settled, 90, "the deciders and the projector at the head", 1)
    counts = check_ledger(recorded)
    assert counts["market.trade"] == len(lines)
    assert counts["config.activated"] == 1
    assert counts["signal.generated"] >= 1 and counts["order.requested"] >= 1
    assert counts["order.filled"] >= 1
    live = await readmodel_rows(url)
    for name in PIPELINE[1:]:
        running[name].kill9()
    await rebuild(url)
    assert await readmodel_rows(url) == live  # the projector (as its login) built them right

    await _refused_everything_beyond(logins["feed"], BEYOND_APP)
    await _refused_everything_beyond(logins["projector"], BEYOND_PROJECTOR)
