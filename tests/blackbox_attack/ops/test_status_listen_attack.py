"""Attack on ``claire status --listen`` (docs/OPERATIONS.md: "every service heard on health")."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from tests.blackbox_attack.ops.ops_helpers import CLAIRE, beat, example_env
from tests.support.cli_run import assert_no_traceback, run_main, run_tool

UNREACHABLE = "postgresql://x@127.0.0.1:9/x"


async def listen_while_beating(
    database: str, redis_url: str, messages: list[bytes], seconds: str = "3"
) -> subprocess.CompletedProcess[str]:
    namespace = f"a20st{secrets.token_hex(4)}"
    env = {**example_env(), "DATABASE_URL": database, "REDIS_URL": redis_url}
    env["CLAIRE_BUS_NAMESPACE"] = namespace
    with tempfile.TemporaryDirectory(prefix="a20st-") as cwd:
        proc = await asyncio.create_subprocess_exec(
            CLAIRE,
            "status",
            "--listen",
            seconds,
            env={"PATH": "/usr/bin:/bin", **env},
            cwd=cwd,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        client = aioredis.from_url(redis_url)
        try:
            for _ in range(int(float(seconds) * 4) + 8):
                for message in messages:
                    await client.publish(f"{namespace}:health", message)
                await asyncio.sleep(0.25)
                if proc.returncode is not None:
                    break
        finally:
            await client.aclose()
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return subprocess.CompletedProcess([], proc.returncode, out.decode(), err.decode())


async def test_status_listen_when_services_and_garbage_are_on_health_then_lists_each_service(
    fresh_database_url: Callable[..., Awaitable[str]], redis_url: str
) -> None:
    database = await fresh_database_url(migrate=True)
    done = await listen_while_beating(
        database,
        redis_url,
        [
            beat("risk", interval_s="1", instance="host-a:11", version="9.9.9", lag="3"),
            beat("risk", interval_s="1", instance="host-b:12", version="9.9.9", lag="0"),
            beat("feed", interval_s="1", instance="host-c:13", **{"dependency.mexc_ws": "down"}),
            b"garbage",
            b'{"service": 1}',
        ],
    )
    text = done.stdout + done.stderr
    assert done.returncode == 0, text
    assert "Traceback" not in text
    assert "risk" in done.stdout and "feed" in done.stdout, done.stdout


BAD_SECONDS = ["-1", "0", "abc", "nan", "inf", ""]


@pytest.mark.parametrize("bad", BAD_SECONDS)
def test_status_listen_when_the_seconds_are_bad_then_exit_2_without_traceback(
    bad: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    for name, value in {**example_env(), "DATABASE_URL": UNREACHABLE}.items():
        monkeypatch.setenv(name, value)
    done = run_main("claire", "status", "--listen", bad)
    assert done.code == 2, done.text
    assert_no_traceback(done)


def test_status_listen_when_a_process_gets_bad_seconds_then_exit_2_without_traceback() -> None:
    env = {"PATH": "/usr/bin:/bin", **example_env(), "DATABASE_URL": UNREACHABLE}
    with tempfile.TemporaryDirectory(prefix="a20st-") as cwd:
        done = run_tool("claire", "status", "--listen", "nan", env=env, cwd=cwd, timeout=60)
    assert done.code == 2, done.text
    assert_no_traceback(done)
