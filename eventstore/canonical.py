"""The ledger's canonical form of an event and the SHA-256 chain over it. Pure: no I/O.

Each row's hash is ``sha256(previous_hash || utf8(canonical))`` with 32 zero bytes before
position 1. ``canonical`` is a text an auditor can rebuild from the row in plain SQL
(see :data:`CANONICAL_SQL`): the envelope fields joined by ``|`` and, last, ``payload::text``,
PostgreSQL's own rendering of the jsonb value. ``|`` cannot occur in the fields before the
payload (streams and types are restricted by CHECK constraints and :func:`check_stream`), so
the joined text is unambiguous.

To hash without a round trip, :func:`render_jsonb` reproduces jsonb's text output exactly:
object keys sorted by UTF-8 length then bytes, ``", "`` and ``": "`` separators, strings escaped
like PostgreSQL's ``escape_json``. Floats are refused (their rendering is not ours to predict,
and money is never a float here); so is NUL, which jsonb cannot store.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from hashlib import sha256
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aggregates.envelope import RecordedEvent

GENESIS = bytes(32)

#: The Unix epoch and the timestamps' unit: ``(moment - EPOCH) // MICROSECOND`` is
#: :func:`epoch_micros` without its check, for loops over values already known to be aware.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)

#: Stream names: letters, digits and ``_ . : -``; never ``|`` (the canonical separator).
STREAM_PATTERN = re.compile(r"^[A-Za-z0-9_.:-]{1,200}$")

#: The canonical text of a row of ``ledger.events``, in plain SQL (used by the auditor query).
CANONICAL_SQL = (
    "concat_ws('|', position, stream, stream_version, event_id, event_type, schema_version, "
    "(extract(epoch FROM occurred_at) * 1000000)::bigint, "
    "(extract(epoch FROM recorded_at) * 1000000)::bigint, "
    "coalesce(causation_id::text, ''), coalesce(causation_position::text, ''), "
    "coalesce(correlation_id::text, ''), payload::text)"
)

_SIMPLE = re.compile(r'[^"\\\x00-\x1f]*')
_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
}


class CanonicalError(ValueError):
    """A value that has no canonical jsonb rendering (float, NUL, lone surrogate, odd type)."""


def check_stream(stream: str) -> None:
    """Refuse a stream name the ledger cannot store unambiguously."""
    if not isinstance(stream, str) or not STREAM_PATTERN.fullmatch(stream):
        raise ValueError(f"invalid stream name {stream!r}: expected {STREAM_PATTERN.pattern}")


def _string(text: str) -> str:
    if _SIMPLE.fullmatch(text):
        out = text
    else:
        if "\x00" in text:
            raise CanonicalError("a NUL character (\\u0000) cannot be stored in jsonb")
        parts = []
        for char in text:
            escaped = _ESCAPES.get(char)
            if escaped is not None:
                parts.append(escaped)
            elif char < " ":
                parts.append(f"\\u{ord(char):04x}")
            else:
                parts.append(char)
        out = "".join(parts)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise CanonicalError(f"string is not valid Unicode: {error}") from None
    return f'"{out}"'


def _key_order(key: str) -> tuple[int, bytes]:
    raw = key.encode("utf-8", "surrogatepass")
    return (len(raw), raw)


def render_jsonb(value: object) -> str:
    """The exact text PostgreSQL gives for ``value::jsonb::text`` (JSON builtins, no floats)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = []
        for key in sorted(value, key=_key_order):
            if not isinstance(key, str):
                raise CanonicalError(f"object keys must be strings, got {key!r}")
            items.append(f"{_string(key)}: {render_jsonb(value[key])}")
        return "{" + ", ".join(items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(render_jsonb(item) for item in value) + "]"
    if isinstance(value, float):
        raise CanonicalError("floats are not allowed in ledger payloads (use decimal strings)")
    raise CanonicalError(f"no JSON rendering for {type(value).__name__}")


def render_object(data: dict[str, object], key_order: tuple[str, ...]) -> str:
    """:func:`render_jsonb` of an object whose keys are known and already in jsonb order.

    The hot path for events: a class always has the same keys, so the order is computed once.
    """
    parts = []
    for key in key_order:
        value: Any = data[key]  # dispatched on its exact type below (faster than isinstance)
        kind = type(value)
        if kind is str:
            text = value if _SIMPLE.fullmatch(value) else _string(value)[1:-1]
            parts.append(f'"{key}": "{text}"')
        elif kind is int:
            parts.append(f'"{key}": {value}')
        else:
            parts.append(f'"{key}": {render_jsonb(value)}')
    return "{" + ", ".join(parts) + "}"


def jsonb_key_order(keys: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Keys in the order jsonb stores and prints them (UTF-8 length, then bytes)."""
    return tuple(sorted(keys, key=_key_order))


def epoch_micros(moment: datetime) -> int:
    """Microseconds since the Unix epoch, exactly (what the SQL form computes)."""
    if moment.tzinfo is None:
        raise ValueError(f"timestamp {moment!r} has no time zone")
    return (moment - EPOCH) // MICROSECOND


def canonical_line(
    position: int,
    stream: str,
    stream_version: int,
    event_id: object,
    event_type: str,
    schema_version: int,
    occurred_us: int,
    recorded_us: int,
    causation_id: object,
    causation_position: int | None,
    correlation_id: object,
    payload_text: str,
) -> str:
    """The canonical text from the envelope's fields as the ledger renders them: timestamps in
    epoch microseconds, ids as UUIDs or their text (``str(uuid)`` is PostgreSQL's uuid text), None
    as the empty string (the SQL form's ``coalesce(.., '')``).

    The one Python spelling of :data:`CANONICAL_SQL`: the appender, ``verify``, the chain check
    over the reader's chunks and the in-memory log all call it. Positional, in
    :data:`aggregates.envelope.ENVELOPE_FIELDS` order, and a single f-string, because the chain
    check calls it once per row (``replay --verify``'s hot loop; measured: a function per part of
    the text and a call per link made that check 10 to 18 % slower).
    """
    return (
        f"{position}|{stream}|{stream_version}|{event_id}|{event_type}|{schema_version}|"
        f"{occurred_us}|{recorded_us}|{'' if causation_id is None else causation_id}|"
        f"{'' if causation_position is None else causation_position}|"
        f"{'' if correlation_id is None else correlation_id}|{payload_text}"
    )


def canonical_text(
    *,
    position: int,
    stream: str,
    stream_version: int,
    event_id: uuid.UUID,
    event_type: str,
    schema_version: int,
    occurred_at: datetime,
    recorded_at: datetime,
    causation_id: uuid.UUID | None,
    causation_position: int | None,
    correlation_id: uuid.UUID | None,
    payload_text: str,
) -> str:
    """The same text as :data:`CANONICAL_SQL` builds from the stored row (:func:`canonical_line`
    with the timestamps as datetimes)."""
    return canonical_line(
        position,
        stream,
        stream_version,
        event_id,
        event_type,
        schema_version,
        epoch_micros(occurred_at),
        epoch_micros(recorded_at),
        causation_id,
        causation_position,
        correlation_id,
        payload_text,
    )


def recorded_text(recorded: RecordedEvent, payload_text: str) -> str:
    """:func:`canonical_text` of a committed event's envelope and its payload's jsonb text."""
    return canonical_text(
        position=recorded.position,
        stream=recorded.stream,
        stream_version=recorded.stream_version,
        event_id=recorded.event_id,
        event_type=recorded.event_type,
        schema_version=recorded.schema_version,
        occurred_at=recorded.occurred_at,
        recorded_at=recorded.recorded_at,
        causation_id=recorded.causation_id,
        causation_position=recorded.causation_position,
        correlation_id=recorded.correlation_id,
        payload_text=payload_text,
    )


def next_link(previous_hash: bytes, canonical_utf8: bytes) -> bytes:
    """The next link of the chain: ``sha256(previous_hash || canonical_utf8)``.

    ``canonical_utf8`` is the canonical text as UTF-8 (a caller holding the payload as bytes
    appends them to the encoded envelope text). :func:`chain_links` is the same over many texts.
    """
    return sha256(previous_hash + canonical_utf8).digest()


def chain_links(previous_hash: bytes, canonicals: Iterable[bytes]) -> list[bytes]:
    """:func:`next_link` over consecutive canonical texts (UTF-8): every link after
    ``previous_hash``, in order. One call per chunk, for the loops that hash many rows (a call
    per row costs the chain check 5 %)."""
    links: list[bytes] = []
    append = links.append
    for canonical in canonicals:
        previous_hash = sha256(previous_hash + canonical).digest()
        append(previous_hash)
    return links


def chain(previous_hash: bytes, canonical: str) -> bytes:
    """:func:`next_link` of a canonical text given as ``str``."""
    return next_link(previous_hash, canonical.encode("utf-8"))
