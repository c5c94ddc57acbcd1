"""docs/SWEEPS.md "Execution": ``--jobs 1``, ``--jobs 2`` and a real Dask cluster give the same
results; a worker that dies has its combinations retried once on a fresh pool, and a
combination that fails again is reported (``sweep_failed``, exit 1), never silently missing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator

import psutil
import pytest

from tests.blackbox_attack.sweeps.sweep_helpers import FROM, TO, replay
from tests.support.cli_run import tool_path

pytestmark = pytest.mark.db

GRID = ("STOP_LOSS_PCT=1,3", "MAX_POSITION_PCT=10:30:20")
BIG_GRID = ("STOP_LOSS_PCT=1,3", "MAX_POSITION_PCT=10:40:10")  # 8 combinations


def results(lines: list[dict]) -> dict[bytes, dict]:
    return {
        json.dumps(line["parameters"], sort_keys=True).encode(): line["figures"]
        for line in lines
        if line["type"] == "sweep_result"
    }


def ranked(lines: list[dict]) -> list[str]:
    return [json.dumps(line, sort_keys=True) for line in lines if line["type"] != "window"]


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as local:
        yield local.scheduler_address


def run(ledger: str, *argv: str) -> list[dict]:
    result = replay(
        "--from", FROM, "--to", TO, "--database-url", ledger, "--json", "--sweep", *GRID, *argv
    )  # fmt: skip
    assert result.code == 0, result.err[-1500:]
    assert "Traceback" not in result.err
    return result.lines()


def test_sweep_when_run_with_one_or_two_jobs_or_on_a_dask_cluster_then_output_is_identical(
    ledger: str, cluster: str
) -> None:
    one = run(ledger, "--jobs", "1")
    two = run(ledger, "--jobs", "2")
    dask = run(ledger, "--cluster", cluster)
    assert len(results(one)) == 4
    assert ranked(one) == ranked(two) == ranked(dask)


def _workers(parent: psutil.Process, seen: set[int]) -> list[psutil.Process]:
    found = []
    for child in parent.children(recursive=True):
        try:
            line = " ".join(child.cmdline())
        except psutil.Error:
            continue
        if "spawn_main" in line and child.pid not in seen:
            found.append(child)
    return found


def _sweep_killing_workers(ledger: str, kills: int) -> tuple[int, list[dict], int]:
    """Run a 8-combination sweep on one worker process and SIGKILL ``kills`` distinct
    workers (the first one, then the one the retry starts) while it runs."""
    proc = subprocess.Popen(
        [
            tool_path("replay"), "--from", FROM, "--to", TO, "--database-url", ledger,
            "--json", "--jobs", "1", "--sweep", *BIG_GRID,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )  # fmt: skip
    parent = psutil.Process(proc.pid)
    seen: set[int] = set()
    killed = 0
    deadline = time.monotonic() + 25
    while killed < kills and proc.poll() is None and time.monotonic() < deadline:
        for worker in _workers(parent, seen):
            seen.add(worker.pid)
            time.sleep(0.5)  # let it start its first combination
            try:
                os.kill(worker.pid, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
            break
        time.sleep(0.05)
    out, err = proc.communicate(timeout=60)
    assert "Traceback" not in err
    return proc.returncode, [json.loads(x) for x in out.splitlines() if x.strip()], killed


def test_sweep_when_a_worker_is_killed_once_then_its_combinations_are_retried_and_all_reported(
    ledger: str,
) -> None:
    code, lines, killed = _sweep_killing_workers(ledger, kills=1)
    assert killed == 1
    undisturbed = replay(
        "--from", FROM, "--to", TO, "--database-url", ledger, "--json", "--jobs", "1",
        "--sweep", *BIG_GRID,
    )  # fmt: skip
    assert code == 0
    assert ranked(lines) == ranked(undisturbed.lines())


def test_sweep_when_the_retry_worker_is_killed_too_then_lost_combinations_are_reported_failed(
    ledger: str,
) -> None:
    code, lines, killed = _sweep_killing_workers(ledger, kills=2)
    assert killed == 2
    done = [line for line in lines if line["type"] == "sweep_result"]
    failed = [line for line in lines if line["type"] == "sweep_failed"]
    (summary,) = [line for line in lines if line["type"] == "sweep"]
    assert code == 1
    assert failed and all(line["error"] for line in failed)
    assert summary["failed"] == len(failed)
    names = {json.dumps(line["parameters"], sort_keys=True) for line in done + failed}
    assert len(names) == len(done) + len(failed) == 8
    assert summary["combinations"] == 8


def test_sweep_when_a_dask_worker_dies_mid_sweep_then_every_combination_is_still_reported(
    ledger: str,
) -> None:
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as local,
        Client(local.scheduler_address) as client,
    ):
        pids = sorted(client.run(os.getpid).values())
        proc = subprocess.Popen(
            [
                tool_path("replay"), "--from", FROM, "--to", TO, "--database-url", ledger,
                "--json", "--cluster", local.scheduler_address, "--sweep", *BIG_GRID,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )  # fmt: skip
        time.sleep(2.5)  # usually mid-sweep; the outcome must hold whenever the worker dies
        os.kill(pids[0], signal.SIGKILL)
        out, err = proc.communicate(timeout=90)
    assert "Traceback" not in err
    lines = [json.loads(x) for x in out.splitlines() if x.strip()]
    undisturbed = replay(
        "--from", FROM, "--to", TO, "--database-url", ledger, "--json", "--jobs", "1",
        "--sweep", *BIG_GRID,
    )  # fmt: skip
    assert proc.returncode == 0, err[-800:]
    assert ranked(lines) == ranked(undisturbed.lines())
