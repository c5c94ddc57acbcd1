"""Canonical bytes of a decision machine's state, and the state back from them (docs/SNAPSHOTS.md).

A snapshot lets a service resume a fold at position p instead of position 1. That is only safe
if the restored state is *the same state*: equal values, and also the same insertion order of
every dict (a machine that walks its open orders or positions decides in that order). So:

* dicts keep their insertion order (msgspec writes and reads them in order);
* sets, whose iteration order depends on the process's hash seed, are written sorted, so that
  two processes holding equal states write equal bytes (``--verify`` compares their SHA-256);
* deques are written as arrays and read back as deques;
* Decimals are written as their exact string (``str`` keeps the exponent: ``1.50`` stays
  ``1.50``), never as a float;
* the bytes name their machine: a two-item array ``[machine, state]``, so another machine's
  state (which could otherwise decode, every field having a default) is refused.

Pure: no I/O, no clock. ``SCHEMA`` is the version of this byte layout; a change to a state's
fields changes the code version recorded with each snapshot (see ``eventstore.snapshots``), so
an old snapshot is never read into a new layout.
"""

from __future__ import annotations

import hashlib
import typing
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from aggregates.live_book import LiveBookState
from aggregates.paper import PaperState
from aggregates.risk.state import RiskState
from aggregates.screener import ScreenerLog
from aggregates.signal import SignalState

#: The snapshot byte layout's version (bump on any change to how states are written).
SCHEMA = 2


class SnapshotDecodeError(ValueError):
    """The bytes are not a state of this machine (truncated, edited, another layout)."""


def _encode_hook(value: object) -> object:
    if isinstance(value, deque):
        return list(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise NotImplementedError(f"snapshot: cannot encode {type(value).__name__}")


def _decode_hook(kind: type, value: object) -> object:
    if typing.get_origin(kind) is deque:
        (item,) = typing.get_args(kind)
        return deque(msgspec.convert(value, list[item], dec_hook=_decode_hook))  # type: ignore[valid-type]
    raise NotImplementedError(f"snapshot: cannot decode {kind}")


_ENCODER = msgspec.msgpack.Encoder(enc_hook=_encode_hook)


def _sorted_priced(state: PaperState) -> object:
    # msgspec writes a frozenset natively, in hash order: give it a sorted tuple instead
    # (read back into the declared frozenset).
    return msgspec.structs.replace(state, priced=tuple(sorted(state.priced)))


@dataclass(frozen=True)
class StateCodec:
    """How one machine's state becomes canonical bytes and back."""

    machine: str
    state_type: type
    prepare: Callable[[Any], object] = lambda state: state
    #: The trading mode whose deployments run this machine ("any": both). Paper execution and
    #: live execution never run side by side; the archive's retention floor uses this to tell
    #: which of them this ledger's restores need (``eventstore.archive_export``).
    mode: Literal["any", "paper", "live"] = "any"

    def encode(self, state: Any) -> bytes:
        """Canonical bytes, tagged with the machine: equal states (values and dict order) give
        equal bytes."""
        return _ENCODER.encode((self.machine, self.prepare(state)))

    def decode(self, data: bytes) -> Any:
        """The state written by :meth:`encode`; :class:`SnapshotDecodeError` if it is not one
        (truncated, edited, another layout, or another machine's state)."""
        tag, body = self._read(data, tuple[str, msgspec.Raw])
        if tag != self.machine:
            raise SnapshotDecodeError(
                f"{self.machine}: not a snapshot state: the bytes hold a {tag!r} state"
            )
        return self._read(body, self.state_type)

    def _read(self, data: bytes, kind: Any) -> Any:
        try:
            return msgspec.msgpack.decode(data, type=kind, dec_hook=_decode_hook)
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError, TypeError) as error:
            raise SnapshotDecodeError(f"{self.machine}: not a snapshot state: {error}") from error


#: Every fold a service restores from the log, by machine name (the screener's is the ingest's,
#: ``execution-live`` is live execution's order book: ``pipeline.live_execution``).
CODECS: dict[str, StateCodec] = {
    "signal": StateCodec("signal", SignalState),
    "risk": StateCodec("risk", RiskState),
    "paper": StateCodec("paper", PaperState, _sorted_priced, mode="paper"),
    "screener": StateCodec("screener", ScreenerLog),
    "execution-live": StateCodec("execution-live", LiveBookState, mode="live"),
}


def digest(data: bytes) -> bytes:
    """The SHA-256 recorded with a snapshot's state bytes."""
    return hashlib.sha256(data).digest()
