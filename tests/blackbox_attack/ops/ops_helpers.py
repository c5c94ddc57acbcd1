"""Process harness of the operations attack: real ``claire`` services, real Redis/PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import msgspec

from aggregates.events import AnyEvent
from tests.support.cli_run import tool_path

ROOT = Path(__file__).resolve().parents[3]
CLAIRE = tool_path("claire")


def example_env() -> dict[str, str]:
    """Every variable of .env.example, as documented (the trading values are required)."""
    values = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Service:
    """One ``claire`` child process, its log, and its metrics port."""

    def __init__(self, args: list[str], env: Mapping[str, str], workdir: Path, name: str) -> None:
        self.port = int(env.get("METRICS_PORT", "0"))
        self.log = workdir / f"{name}.log"
        base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
        base["PYTHONUNBUFFERED"] = "1"
        with self.log.open("wb") as handle:
            self.popen = subprocess.Popen(
                [CLAIRE, *args],
                env={**base, **env},
                stdout=handle,
                stderr=subprocess.STDOUT,
                cwd=workdir,
            )

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=3) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()


async def wait_for(
    probe: Callable[[], Awaitable[Any]], what: str, patience: float = 25.0, every: float = 0.2
) -> Any:
    deadline = time.monotonic() + patience
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        await asyncio.sleep(every)


async def ledger_rows(url: str) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(url)
    try:
        return await connection.fetch(
            "SELECT position, event_type, payload::text AS payload FROM ledger.events"
            " ORDER BY position"
        )
    finally:
        await connection.close()


def undecodable(rows: list[asyncpg.Record]) -> list[str]:
    """Stored events that do not satisfy their own documented type (aggregates/events.py)."""
    bad = []
    for row in rows:
        try:
            msgspec.json.decode(row["payload"], type=AnyEvent)
        except msgspec.ValidationError as error:
            bad.append(f"{row['position']} {row['event_type']}: {error}")
    return bad


async def service_alerts(url: str) -> list[tuple[str, str]]:
    """(severity, service) of every ServiceAlertRaised in the ledger, in order."""
    out = []
    for row in await ledger_rows(url):
        if row["event_type"] == "service.alert_raised":
            payload = json.loads(row["payload"])
            out.append((payload["severity"], payload["service"]))
    return out


def beat(service: str, *, at: datetime | None = None, **payload: str) -> bytes:
    """A well-formed heartbeat on the documented wire form (adapters.bus.Heartbeat)."""
    stamp = (at or datetime.now(UTC)).isoformat().replace("+00:00", "Z")
    return json.dumps({"service": service, "at": stamp, "payload": payload}).encode()


def metric(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        head, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total
