"""Bad CLI arguments and configuration: a clear message and exit code 2, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.main import main


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["no-such-command"],
        ["run", "--duration", "-5"],
        ["run", "--duration", "soon"],
        ["run", "--service", "everything"],
        ["verify", "--expect", "not-an-anchor"],
        ["verify", "--expect", "12:abc"],
        ["operator", "explode"],
        ["db"],
    ],
)
def test_main_when_arguments_are_bad_then_exit_2(
    argv: list[str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env, no demo ledger
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    assert main(argv) == 2
    assert capsys.readouterr().err.strip()  # something explains why


def test_run_when_environment_is_bad_then_exit_2_naming_every_problem(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", "postgresql://app:pa55word@127.0.0.1:1/none")
    monkeypatch.setenv("TRADING_MODE", "yolo")
    monkeypatch.setenv("MAX_POSITION_PCT", "-3")
    monkeypatch.setenv("METRICS_PORT", "port")
    assert main(["run", "--duration", "1"]) == 2
    err = capsys.readouterr().err
    for name in ("TRADING_MODE", "MAX_POSITION_PCT", "METRICS_PORT"):
        assert name in err
    assert "pa55word" not in err


def test_verify_when_database_is_unreachable_then_exit_2_without_the_password(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    url = "postgresql://app:pa55word@127.0.0.1:1/none"
    assert main(["--database-url", url, "verify"]) == 2
    err = capsys.readouterr().err
    assert "claire:" in err and "pa55word" not in err
