"""The chain-check worker's life cycle: it stops when closed early, its errors reach the replay."""

from __future__ import annotations

import time

import pytest

from eventstore import StoreUnavailable
from replay.chain import ChainWorker

NOWHERE = "postgresql://nobody@127.0.0.1:1/nothing"


def test_chain_worker_when_closed_before_the_end_then_it_stops_at_once() -> None:
    worker = ChainWorker(NOWHERE)
    worker.submit(b"[]", [])
    started = time.monotonic()
    worker.close()
    assert time.monotonic() - started < 5
    assert not worker._process.is_alive()


async def test_chain_worker_when_the_database_is_unreachable_then_its_error_is_raised() -> None:
    worker = ChainWorker(NOWHERE)
    try:
        worker.submit(b"[]", [])
        with pytest.raises((StoreUnavailable, RuntimeError)):
            await worker.result()
    finally:
        worker.close()


def test_chain_worker_when_the_worker_died_then_submitting_fails_instead_of_hanging() -> None:
    worker = ChainWorker(NOWHERE)
    try:
        worker._process.kill()
        worker._process.join()
        with pytest.raises(RuntimeError, match="worker died"):
            for _ in range(10):  # the pipe holds a few chunks before a write must fail
                worker.submit(b"[" + b" " * 400_000 + b"]", [])
    finally:
        worker.close()
