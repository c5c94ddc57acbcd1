"""A service told to stop does stop, even when a library swallowed the cancel on the way.

redis-py sends through ``asyncio.wait_for``, which on Python 3.11 drops a cancel that arrives
just as the send completes; the task is left ``cancelling()`` but runs on. A refused live start
(``key_rejected``) once hung forever this way. The stubborn tasks below swallow a cancel the
same way; the guard ``asyncio.timeout`` only turns a hang into a failure.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from adapters.bus import raise_if_cancelled
from pipeline.app import _orphaned_connect_quiet, stop_tasks

HANG_GUARD_S = 30


async def _swallows_first_cancel(turns: list[int]) -> None:
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        turns.append(1)  # swallowed, as wait_for does when the awaited send just finished
    await asyncio.Event().wait()


async def test_stop_tasks_when_a_task_swallows_its_cancel_then_it_is_cancelled_again_and_ends() -> (
    None
):
    turns: list[int] = []
    stubborn = asyncio.create_task(_swallows_first_cancel(turns))
    polite = asyncio.create_task(asyncio.Event().wait())
    await asyncio.sleep(0)
    async with asyncio.timeout(HANG_GUARD_S):
        await stop_tasks([stubborn, polite], patience=0.01)
    assert stubborn.cancelled() and polite.cancelled()
    assert turns == [1]


async def test_stop_tasks_when_a_task_failed_then_its_error_is_retrieved_not_raised() -> None:
    async def fails() -> None:
        raise RuntimeError("the service's own error")

    failed = asyncio.create_task(fails())
    await asyncio.sleep(0)
    await stop_tasks([failed])
    assert isinstance(failed.exception(), RuntimeError)


async def test_bus_loop_when_its_cancel_was_swallowed_then_the_next_turn_ends_it() -> None:
    turns: list[int] = []

    async def loop_over_bus() -> None:
        while True:
            raise_if_cancelled()
            try:
                await asyncio.sleep(0.001)
            except asyncio.CancelledError:
                turns.append(1)  # the library swallowed it; the task is still cancelling()

    task = asyncio.create_task(loop_over_bus())
    await asyncio.sleep(0)
    task.cancel()
    async with asyncio.timeout(HANG_GUARD_S):
        done, _ = await asyncio.wait({task})
    assert task in done and task.cancelled()
    assert turns == [1]


async def test_loop_handler_when_an_abandoned_connect_failed_then_no_error_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    loop = asyncio.get_running_loop()
    lost = ConnectionError("unexpected connection_lost() call")
    _orphaned_connect_quiet(
        loop, {"message": "Future exception was never retrieved", "exception": lost}
    )
    assert [r.levelname for r in caplog.records] == ["DEBUG"]


async def test_loop_handler_when_another_error_was_never_retrieved_then_it_stays_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = asyncio.get_running_loop()
    bug = RuntimeError("a real bug")
    _orphaned_connect_quiet(
        loop, {"message": "Task exception was never retrieved", "exception": bug}
    )
    assert [r.levelname for r in caplog.records] == ["ERROR"]
