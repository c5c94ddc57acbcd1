"""``--verify``'s hash-chain check: a worker process fed the chunks the fold reads.

Why: the check used to read the whole log a second time in a worker (:meth:`EventStore.verify`),
which cost as much CPU as the fold beside it, on a machine with two cores. Now the replay's own
read hands each raw chunk (JSON rows, ids, hashes: three byte strings) to this worker through a
bounded queue, and :class:`eventstore.chain.ChainCheck` checks the links from those bytes while
the fold goes on. Whatever the read did not cover (the fold stops past the window once nothing
is open) is checked by :meth:`EventStore.verify` resumed from the last checked link, which also
checks the head row and the refusal triggers, as a whole ``verify()`` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import pickle
import queue
import uuid
from typing import Any

from eventstore.chain import ChainCheck

#: Chunks in flight at most (about 0.35 MB each): bounds memory if the worker falls behind.
DEPTH = 8

ChainOutcome = tuple[bool, int, int | None, str | None]

_END = "end"


class ChainWorker:
    """A started worker: :meth:`submit` each chunk, await :meth:`result`, always :meth:`close`."""

    def __init__(self, url: str) -> None:
        context = multiprocessing.get_context("spawn")
        self._chunks: Any = context.Queue(DEPTH)
        # Never keep this process waiting at exit to flush chunks nobody will read (the worker
        # gone): what matters reaches the worker before :meth:`result` returns.
        self._chunks.cancel_join_thread()
        self._results: Any = context.Queue(1)
        self._process = context.Process(
            target=_work, args=(url, self._chunks, self._results), name="chain-check", daemon=True
        )
        self._process.start()

    def submit(self, body: bytes, ids: list[uuid.UUID], hashes: list[bytes]) -> None:
        """An :data:`eventstore.reader.ChunkSink`: the chunk as plain bytes (cheap to send)."""
        self._put((body, " ".join(map(str, ids)), b"".join(hashes)))

    async def result(self) -> ChainOutcome:
        """(ok, events checked, first bad position, problem) once the read is over."""
        self._put(_END)
        return await asyncio.to_thread(self._wait)

    def close(self) -> None:
        """Stop the worker (at once if it is still checking) and release the queues."""
        if self._process.is_alive():
            with contextlib.suppress(queue.Full):
                self._chunks.put(None, timeout=5)
            self._process.join(timeout=5)
            if self._process.is_alive():
                self._process.terminate()
                self._process.join()
        self._chunks.close()
        self._results.close()

    def _put(self, item: object) -> None:
        while True:
            try:
                self._chunks.put(item, timeout=1)
                return
            except queue.Full:
                self._alive()

    def _wait(self) -> ChainOutcome:
        while True:
            try:
                outcome = self._results.get(timeout=1)
            except queue.Empty:
                self._alive()
                continue
            if isinstance(outcome, BaseException):
                raise outcome
            return outcome  # type: ignore[no-any-return]

    def _alive(self) -> None:
        if not self._process.is_alive():
            raise RuntimeError(f"the chain-check worker died (exit code {self._process.exitcode})")


def _work(url: str, chunks: Any, results: Any) -> None:
    """The worker's body: check every chunk, then the rest of the ledger from the database."""
    from replay.verify import rare_collections

    try:
        with rare_collections():
            check = ChainCheck()
            while True:
                item = chunks.get()
                if item is None:
                    return  # closed early: nobody waits for a result
                if item == _END:
                    break
                check.feed(*item)
            outcome = asyncio.run(_finish(url, check))
    except Exception as error:  # handed to the replay process, raised there
        try:
            pickle.dumps(error)
        except Exception:  # one that cannot travel: send its text
            error = RuntimeError(f"chain check failed: {error!r}")
        results.put(error)
        return
    results.put(outcome)


async def _finish(url: str, check: ChainCheck) -> ChainOutcome:
    if not check.ok:  # EventStore.verify stops at the first bad link too
        return False, check.checked, check.first_bad, check.problem
    from eventstore import EventStore

    store = await EventStore.connect(url, max_connections=1)
    try:
        result = await store.verify(resume=(check.expected - 1, check.previous))
    finally:
        await store.close()
    return result.ok, result.events_checked, result.first_bad_position, result.problem
