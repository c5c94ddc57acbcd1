"""Which ledger a ``claire`` command talks to: one precedence for every command, run as the
operator runs it (the installed ``claire`` script, a child process).

Option, then ``DATABASE_URL`` in the environment, then in ``.env``, then the demo's ledger
(adapters/process.py). The candidates here point at closed ports 1, 2 and 3 of this machine, so
the refusal names the port of the ledger the command chose.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from dotenv import dotenv_values

from tests.integration.replay.replay_helpers import append_log, market, session

CLAIRE = Path(sys.executable).with_name("claire")
#: A complete trading configuration, so that ``claire run`` gets as far as its ledger.
TRADING = {
    k: v for k, v in dotenv_values(Path(__file__).parents[3] / "pipeline" / "demo.env").items() if v
}
OPTION, ENVIRONMENT, DOTENV = (f"postgresql://nobody@127.0.0.1:{port}/none" for port in (1, 2, 3))

COMMANDS = {
    "verify": ["verify"],
    "replay": ["replay", "--from", "2025-06-02"],
    "status": ["status"],
    "run": ["run", "--duration", "1"],
    "rebuild": ["projections", "rebuild"],
    "operator": ["operator", "halt"],
}


def claire(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """``claire ARGV`` in ``cwd`` with only ``env`` configured; (exit code, stdout, stderr)."""
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    done = subprocess.run(
        [str(CLAIRE), *argv],
        env={**base, **TRADING, **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done.returncode, done.stdout, done.stderr


def chosen_port(code: int, err: str) -> int:
    """The closed port the command tried (refused with a message, no traceback)."""
    assert code in (1, 2), err  # ``projections rebuild`` answers an unreachable ledger with 1
    assert "Traceback" not in err, err
    found = re.findall(r"'127\.0\.0\.1', (\d+)\)", err)
    assert found, err
    assert len(set(found)) == 1, err
    return int(found[0])


@pytest.mark.parametrize("command", COMMANDS.values(), ids=COMMANDS.keys())
def test_command_when_option_environment_and_dotenv_name_ledgers_then_the_option_wins(
    command: list[str], tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text(f"DATABASE_URL={DOTENV}\n")
    code, _, err = claire(
        ["--database-url", OPTION, *command], tmp_path, {"DATABASE_URL": ENVIRONMENT}
    )
    assert chosen_port(code, err) == 1


@pytest.mark.parametrize("command", COMMANDS.values(), ids=COMMANDS.keys())
def test_command_when_environment_and_dotenv_name_ledgers_then_the_environment_wins(
    command: list[str], tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text(f"DATABASE_URL={DOTENV}\n")
    code, _, err = claire(command, tmp_path, {"DATABASE_URL": ENVIRONMENT})
    assert chosen_port(code, err) == 2


@pytest.mark.parametrize("command", COMMANDS.values(), ids=COMMANDS.keys())
def test_command_when_only_dotenv_names_a_ledger_then_it_is_used(
    command: list[str], tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text(f"DATABASE_URL={DOTENV}\n")
    code, _, err = claire(command, tmp_path)
    assert chosen_port(code, err) == 3


@pytest.mark.parametrize("command", [COMMANDS["verify"], COMMANDS["replay"], COMMANDS["status"]])
def test_command_when_nothing_names_a_ledger_and_no_demo_ran_then_exit_2_saying_how_to_set_one(
    command: list[str], tmp_path: Path
) -> None:
    code, _, err = claire(command, tmp_path)
    assert code == 2, err
    assert "Traceback" not in err, err
    assert "set DATABASE_URL, pass --database-url, or run `make demo` first" in err


def test_claire_replay_when_its_own_option_follows_a_global_one_then_its_own_wins(
    tmp_path: Path,
) -> None:
    code, _, err = claire(
        ["--database-url", ENVIRONMENT, "replay", "--from", "2025-06-02", "--database-url", OPTION],
        tmp_path,
    )
    assert chosen_port(code, err) == 1


@pytest.mark.db
async def test_claire_replay_when_database_url_stands_before_the_command_then_that_ledger_replays(
    fresh_database_url, tmp_path: Path
) -> None:
    url = await fresh_database_url()
    await append_log(url, session(market(seed=5, minutes=40)))
    code, out, err = claire(
        ["--database-url", url, "replay", "--from", "2025-06-02", "--verify", "-q"],
        tmp_path,
        {"DATABASE_URL": ENVIRONMENT},
    )
    assert code == 0, err
    assert "zero divergences" in out
