"""Running our command-line tools from tests: as a real process, or in-process through ``main``.

The one home for every test that runs ``claire`` or ``replay`` and reads its exit code, stdout
and stderr. A real process proves what an operator sees (the installed entry point, the exit
status the shell gets, nothing printed by the interpreter on a crash); the in-process run calls
the same ``main(argv)`` the entry point calls, a hundred times cheaper, for the many argument
cases where what is proven is the message and the exit code.

The CLI's entry points are imported here and nowhere else in the black-box tests: when they
move, this is the one line to change.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cli.main import main as claire_main
from cli.replay import main as replay_main

#: where the installed entry points (``claire``, ``replay``) live: beside this interpreter
BIN = Path(sys.executable).parent
#: the repository's root (a working directory without surprises for the tools)
ROOT = Path(__file__).resolve().parents[2]

MAINS: dict[str, Callable[[Sequence[str]], int]] = {"claire": claire_main, "replay": replay_main}


@dataclass(frozen=True)
class CliRun:
    """What one run of a tool left: its exit code, stdout and stderr."""

    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err

    def lines(self) -> list[dict[str, Any]]:
        """stdout as JSON lines (``--json``)."""
        return [json.loads(line) for line in self.out.splitlines() if line.strip()]

    def of(self, kind: str) -> list[dict[str, Any]]:
        """The JSON lines of one ``type``."""
        return [line for line in self.lines() if line["type"] == kind]


def tool_path(tool: str) -> str:
    """The installed entry point of ``tool`` (``claire`` or ``replay``)."""
    return str(BIN / tool)


def environment(
    *, drop: Sequence[str] = (), drop_prefixes: Sequence[str] = (), **values: str
) -> dict[str, str]:
    """This process's environment without ``drop`` (names or ``drop_prefixes``), plus ``values``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in drop and not (drop_prefixes and k.startswith(tuple(drop_prefixes)))
    }
    env.update(values)
    return env


def run_tool(
    tool: str,
    *args: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | str | None = None,
    timeout: float = 120,
) -> CliRun:
    """Run ``tool args`` as a real process; ``env`` replaces the whole environment when given."""
    done = subprocess.run(
        [tool_path(tool), *args],
        capture_output=True,
        text=True,
        env=None if env is None else dict(env),
        cwd=cwd,
        timeout=timeout,
        check=False,
    )
    return CliRun(done.returncode, done.stdout, done.stderr)


async def run_tool_async(
    tool: str,
    *args: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | str | None = None,
    limit_s: float = 120,
) -> CliRun:
    """``run_tool`` without blocking the event loop (a test's own servers keep answering)."""
    return await asyncio.to_thread(run_tool, tool, *args, env=env, cwd=cwd, timeout=limit_s)


def run_main(tool: str, *args: str) -> CliRun:
    """Run ``tool``'s ``main(argv)`` in this process, stdout and stderr captured.

    An exception escaping ``main`` fails the test: from a real process it would be a traceback.
    """
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = MAINS[tool](list(args))
        except Exception as escaped:  # a real process would print a traceback
            raise AssertionError(f"{tool} {list(args)}: {escaped!r} escaped main") from escaped
    return CliRun(code, out.getvalue(), err.getvalue())


def assert_no_traceback(result: CliRun) -> None:
    assert "Traceback" not in result.text, result.text
