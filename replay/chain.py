"""``--verify``'s hash-chain check: a worker process fed the chunks the fold reads.

Why: the check used to read the whole log a second time in a worker (:meth:`EventStore.verify`),
which cost as much CPU as the fold beside it, on a machine with two cores. Now the replay's own
read hands each raw chunk (JSON rows and hashes: two byte strings) to this worker through a
pipe, and :class:`eventstore.chain.ChainCheck` checks the links from those bytes while the fold
goes on. Whatever the read did not cover (the fold stops past the window once nothing is open)
is checked by :meth:`EventStore.verify` resumed from the last checked link, which also checks
the head row and the refusal triggers, as a whole ``verify()`` does.

The chunks go as raw messages written by the replay's own thread (no pickling, no feeder
thread: measured, a ``multiprocessing.Queue`` cost the fold ~0.4 µs per event). The pipe is
enlarged to hold a few chunks, so a write rarely waits; when it does, that is the back-pressure
that keeps memory bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import multiprocessing
from multiprocessing.connection import Connection

from eventstore.chain import ChainCheck

ChainOutcome = tuple[bool, int, int | None, str | None]

#: Bytes the chunk pipe may hold (a chunk is about 0.4 MB); Linux caps it (pipe-max-size).
PIPE_BYTES = 1 << 20
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)

#: Sent instead of a chunk's rows (which always start with ``[``): the read is over.
_END = b"end"


class ChainWorker:
    """A started worker: :meth:`submit` each chunk, await :meth:`result`, always :meth:`close`."""

    def __init__(self, url: str, start: tuple[int, bytes] | None = None) -> None:
        """``start``: (position, its stored hash), when the read begins after that position
        (a replay from snapshots); the links from there on are checked."""
        context = multiprocessing.get_context("spawn")
        chunks_in, self._chunks = context.Pipe(duplex=False)
        self._results, results_out = context.Pipe(duplex=False)
        with contextlib.suppress(OSError):  # a smaller pipe only means more waiting
            fcntl.fcntl(self._chunks.fileno(), _F_SETPIPE_SZ, PIPE_BYTES)
        self._process = context.Process(
            target=_work, args=(url, chunks_in, results_out, start), name="chain-check", daemon=True
        )
        self._process.start()
        chunks_in.close()  # the worker's ends: a dead worker then breaks our writes
        results_out.close()

    def submit(self, body: bytes, hashes: list[bytes]) -> None:
        """An :data:`eventstore.reader.ChunkSink`: the chunk as two byte strings."""
        self._send(body)
        self._send(b"".join(hashes))

    async def result(self) -> ChainOutcome:
        """(ok, events checked, first bad position, problem) once the read is over."""
        self._send(_END)
        return await asyncio.to_thread(self._wait)

    def close(self) -> None:
        """Stop the worker (at once if it is still checking) and release the pipes."""
        self._chunks.close()  # the worker sees the end of its input and stops
        self._process.join(timeout=5)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join()
        self._results.close()

    def _send(self, data: bytes) -> None:
        try:
            self._chunks.send_bytes(data)
        except OSError:  # BrokenPipeError too: not the CLI's "stdout went away"
            raise RuntimeError(self._died()) from None

    def _wait(self) -> ChainOutcome:
        while not self._results.poll(1):
            if not self._process.is_alive() and not self._results.poll(0):
                raise RuntimeError(self._died())
        try:
            outcome = self._results.recv()
        except EOFError:
            raise RuntimeError(self._died()) from None
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def _died(self) -> str:
        self._process.join(timeout=1)
        return f"the chain-check worker died (exit code {self._process.exitcode})"


def _work(
    url: str, chunks: Connection, results: Connection, start: tuple[int, bytes] | None = None
) -> None:
    """The worker's body: check every chunk, then the rest of the ledger from the database."""
    from replay.verify import rare_collections

    try:
        with rare_collections():
            check = ChainCheck()
            if start is not None:
                check.expected, check.previous = start[0] + 1, start[1]
            else:  # the table's chain starts after what ``claire archive`` moved out of it
                check.expected, check.previous = asyncio.run(_archive_floor(url))
            while True:
                try:
                    body = chunks.recv_bytes()
                except EOFError:
                    return  # closed early: nobody waits for a result
                if body == _END:
                    break
                check.feed(body, chunks.recv_bytes())
            outcome: object = asyncio.run(_finish(url, check))
    except Exception as error:  # handed to the replay process, raised there
        outcome = error
    try:
        results.send(outcome)
    except Exception as error:  # one that cannot travel (pickling): send its text
        results.send(RuntimeError(f"chain check failed: {error!r}"))


async def _archive_floor(url: str) -> tuple[int, bytes]:
    """The first position the table holds and the chain hash before it."""
    from eventstore import sql
    from eventstore.driver import connect

    conn = await connect(url)
    try:
        row = await conn.fetchrow(sql.ARCHIVE_FLOOR)
    finally:
        await conn.close()
    return row[0] + 1, row[1]


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
