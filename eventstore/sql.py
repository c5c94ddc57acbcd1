"""Every SQL statement of the event store, as named constants (STYLE.md principle 6).

Only :mod:`eventstore.postgres` executes them; the auditor query is also printed in
the README ("The ledger") for use in ``psql`` without our code.
"""

from __future__ import annotations

from aggregates.envelope import ENVELOPE_FIELDS
from eventstore.canonical import CANONICAL_SQL

#: LISTEN/NOTIFY channel; every append notifies it with the new head position at commit.
CHANNEL = "claire_ledger"

# The column lists below are built from the envelope's one field list
# (aggregates.envelope.ENVELOPE_FIELDS): a row of ledger.events is the envelope, the payload and
# the hash.
_ENVELOPE = ", ".join(ENVELOPE_FIELDS)
COLUMNS = f"{_ENVELOPE}, payload, hash"

# Simple-query protocol (two statements, one round trip). The row lock on the single head row
# serialises appenders until COMMIT: it is what makes positions commit-ordered and gapless.
BEGIN_AND_LOCK_HEAD = "BEGIN ISOLATION LEVEL READ COMMITTED; SELECT 1 FROM ledger.head FOR UPDATE"

#: A stored event's identity for a re-append: its canonical text with the position, stream
#: version and recorded_at as 0 (eventstore.plan.content builds the same text for a new event).
STORED_CONTENT = (
    "concat_ws('|', 0, e.stream, 0, e.event_id, e.event_type, e.schema_version, "
    "(extract(epoch FROM e.occurred_at) * 1000000)::bigint, 0, "
    "coalesce(e.causation_id::text, ''), coalesce(e.causation_position::text, ''), "
    "coalesce(e.correlation_id::text, ''), e.payload::text)"
)

# Runs after the lock is held, so its snapshot sees every commit before ours.
READ_APPEND_STATE = f"""
SELECT h.position, h.hash,
       ARRAY(SELECT coalesce((SELECT v.stream_version FROM ledger.stream_versions v
                              WHERE v.stream = s.stream
                              ORDER BY v.stream_version DESC LIMIT 1), 0)
             FROM unnest($1::text[]) WITH ORDINALITY AS s(stream, i)
             ORDER BY s.i) AS versions,
       (SELECT array_agg(e.event_id ORDER BY e.position)
        FROM ledger.event_ids e WHERE e.event_id = ANY($2::uuid[])) AS known_ids,
       (SELECT array_agg(e.position ORDER BY e.position)
        FROM ledger.event_ids e WHERE e.event_id = ANY($2::uuid[])) AS known_positions,
       (SELECT array_agg({STORED_CONTENT} ORDER BY e.position)
        FROM ledger.event_ids i JOIN ledger.events e ON e.position = i.position
        WHERE i.event_id = ANY($2::uuid[])) AS known_contents
FROM ledger.head h
"""

# Moves the head from $3 to $1 (taking its row lock, held until COMMIT) and inserts the rows
# only if the head was where the caller computed the chain from. In autocommit this is the whole
# append in one round trip; inside the locked transaction it always applies.
APPLY_APPEND = f"""
WITH moved AS (
    UPDATE ledger.head SET position = $1, hash = $2 WHERE position = $3 RETURNING position
), inserted AS (
    INSERT INTO ledger.events ({COLUMNS})
    SELECT r.position, r.stream, r.stream_version, r.event_id, r.event_type, r.schema_version,
           r.occurred_at, $4::timestamptz, r.causation_id, r.causation_position,
           r.correlation_id, r.payload::jsonb, r.hash
    FROM unnest($5::bigint[], $6::text[], $7::bigint[], $8::uuid[], $9::text[], $10::int[],
                $11::timestamptz[], $12::uuid[], $13::bigint[], $14::uuid[], $15::text[],
                $16::bytea[])
         AS r(position, stream, stream_version, event_id, event_type, schema_version,
              occurred_at, causation_id, causation_position, correlation_id, payload, hash)
    WHERE EXISTS (SELECT 1 FROM moved)
)
SELECT position, pg_notify('{CHANNEL}', position::text) FROM moved
"""

# Batches of COPY_MIN_EVENTS or more: inside a transaction, move the head first (its row lock is
# held until COMMIT, so appenders stay serialised), then bring the rows in by binary COPY, which
# PostgreSQL ingests faster than an unnest INSERT. Same rows, constraints and NOTIFY at commit.
BEGIN = "BEGIN ISOLATION LEVEL READ COMMITTED"
COPY_MIN_EVENTS = 200
#: A big append is validated and copied in chunks of this many events, so the server ingests
#: one chunk while the client validates the next.
STREAM_CHUNK_EVENTS = 200
MOVE_HEAD = f"""
UPDATE ledger.head SET position = $1, hash = $2 WHERE position = $3
RETURNING position, pg_notify('{CHANNEL}', position::text)
"""
#: The order of :meth:`eventstore.plan.Plan.rows`: recorded_at (one per transaction) last.
COPY_COLUMNS = (
    *(name for name in ENVELOPE_FIELDS if name != "recorded_at"),
    "payload",
    "hash",
    "recorded_at",
)

READ_HEAD = "SELECT position, hash FROM ledger.head"

READ_ALL = f"""
SELECT {COLUMNS} FROM ledger.events WHERE position > $1 ORDER BY position LIMIT $2
"""

READ_STREAM = f"""
SELECT {COLUMNS} FROM ledger.events
WHERE stream = $1 AND stream_version >= $2
ORDER BY stream_version LIMIT $3
"""

# The read side (eventstore/reader.py). Per round trip, one row: the count, the last position
# (or stream version), the event ids and hashes as arrays (binary, cheap to decode), and every
# other field of each row as one JSON array, joined into one JSON array of rows that the client
# decodes in one msgspec call. Timestamps render in the session's TimeZone, which the store's
# pool pins to UTC. The aggregates read their input in the subquery's order (one plain Aggregate
# over a sorted subquery, no join: PostgreSQL documents this as working); the reader also checks
# it, so per-aggregate ORDER BY sorts (about a fifth of this query's server time) are not needed.
#
# {ids}: for a reader that hands the chunks to the hash-chain check (``replay --verify``), each
# row also ends with its event id as text, for the check to read from the same bytes; the fold
# skips it (msgspec ignores trailing array items). Measured: cheaper than the replay process
# turning the UUIDs into text, and than decoding the ids from the JSON (msgspec builds each
# uuid.UUID in Python), so plain reads do without it.
#
# The row's fields: the envelope's without the event id (which comes as a binary array). The
# reader's ``_Row`` and the chain check's ``_Link`` decode them by place (array-like structs) and
# a unit test holds their fields to this order.
ROW_COLUMNS = tuple(name for name in ENVELOPE_FIELDS if name != "event_id")
_ROW_JSON = f"json_build_array({', '.join(ROW_COLUMNS)}, {{current}}, payload{{ids}})::text"

# Whether the client may decode the payload straight into the tagged union: the row's
# schema_version is its class's current one ({versions}: {{type: version}}, from the code) and the
# payload's tag is the row's type. Rendered as JSON true/false; false (or unknown: NULL) sends the
# whole chunk down the row-by-row path.
_CURRENT = (
    "coalesce(schema_version = ({versions}::jsonb ->> event_type)::int"
    " AND payload ->> 'type' = event_type, false)"
)

_AGGREGATES = (
    "array_agg(event_id), array_agg(hash), convert_to('[' || string_agg({row}, ',') || ']', 'UTF8')"
)


def _read_all(ids: str) -> str:
    # $1 after, $2 limit, $3 versions (jsonb).
    row = _ROW_JSON.format(current=_CURRENT.format(versions="$3"), ids=ids)
    return f"""
SELECT count(*)::int, max(position), {_AGGREGATES.format(row=row)}
FROM (SELECT * FROM ledger.events WHERE position > $1 ORDER BY position LIMIT $2) e
"""


READ_ALL_JSON = _read_all("")
READ_ALL_JSON_WITH_IDS = _read_all(", event_id")

# $1 stream, $2 from version, $3 limit, $4 versions (jsonb).
READ_STREAM_JSON = f"""
SELECT count(*)::int, max(stream_version),
       {_AGGREGATES.format(row=_ROW_JSON.format(current=_CURRENT.format(versions="$4"), ids=""))}
FROM (SELECT * FROM ledger.events WHERE stream = $1 AND stream_version >= $2
      ORDER BY stream_version LIMIT $3) e
"""

# The first position whose source time is at or after $1. occurred_at is not monotonic in
# position, so this is the minimum position over the whole range; the planner picks the
# occurred_at index or the primary key, whichever is cheaper.
#: ``position + 0``: with ``min(position)`` the planner walks the primary key from position 1,
#: filtering on occurred_at (5.3 s at 10 M events for the last day); hiding the key makes it
#: read the occurred_at index over the rows from the moment on: the cost of the work asked.
POSITION_AT = "SELECT min(position + 0) FROM ledger.events WHERE occurred_at >= $1"

#: Rows for ``verify``: the envelope in :data:`ENVELOPE_FIELDS` order, the payload's text, the hash.
VERIFY_COLUMNS = f"{_ENVELOPE}, payload::text, hash"
READ_FOR_VERIFY = f"""
SELECT {VERIFY_COLUMNS}
FROM ledger.events WHERE position > $1 ORDER BY position LIMIT $2
"""

REFUSAL_TRIGGERS = """
SELECT t.tgname, t.tgenabled::text
FROM pg_trigger t
WHERE t.tgrelid IN ('ledger.events'::regclass, 'ledger.head'::regclass) AND NOT t.tgisinternal
"""

EXPECTED_TRIGGERS = frozenset(
    {
        "events_append_only",
        "events_no_truncate",
        "head_keep",
        "head_no_truncate",
        "head_forward",
        "events_unique",
    }
)

# The partitioned log (alembic 0005): partitions ahead of need, and where the archive ends.
#: Makes partitions cover the head + $1 + two spare partitions; returns the first uncovered one.
ENSURE_PARTITIONS = "SELECT ledger.ensure_partitions($1), (SELECT size FROM ledger.partitioning)"
#: The last archived position and its hash (0 and the genesis hash when nothing is archived).
ARCHIVE_FLOOR = f"""
SELECT coalesce(max(last_position), 0),
       coalesce((SELECT last_hash FROM ledger.archived ORDER BY last_position DESC LIMIT 1),
                '\\x{"00" * 32}'::bytea)
FROM ledger.archived
"""

#: The auditor's check, plain SQL: the first position where the chain breaks, and why.
#: Each row must follow its predecessor's position by one and hash to
#: sha256(predecessor's hash || its canonical text); the head row must name the last link.
AUDIT_QUERY = f"""
WITH floor AS (
    SELECT coalesce(max(last_position), 0) AS position,
           coalesce((SELECT last_hash FROM ledger.archived ORDER BY last_position DESC LIMIT 1),
                    '\\x{"00" * 32}'::bytea) AS hash
    FROM ledger.archived
), links AS (
    SELECT position,
           hash,
           coalesce(lag(position) OVER w, (SELECT position FROM floor)) + 1 AS expected_position,
           sha256(coalesce(lag(hash) OVER w, (SELECT hash FROM floor))
                  || convert_to({CANONICAL_SQL}, 'UTF8')) AS recomputed
    FROM ledger.events
    WINDOW w AS (ORDER BY position)
), problems AS (
    SELECT expected_position AS first_bad_position, 'missing or reordered' AS problem
    FROM links WHERE position <> expected_position
    UNION ALL
    SELECT position, 'hash mismatch' FROM links WHERE hash <> recomputed
    UNION ALL
    SELECT coalesce(max(position), (SELECT position FROM floor)) + 1,
           'head does not match the last event'
    FROM links
    HAVING coalesce(max(position), (SELECT position FROM floor))
               <> (SELECT position FROM ledger.head)
        OR coalesce((SELECT hash FROM links ORDER BY position DESC LIMIT 1),
                    (SELECT hash FROM floor)) <> (SELECT hash FROM ledger.head)
)
SELECT first_bad_position, problem FROM problems ORDER BY first_bad_position, problem LIMIT 1
"""

# ``claire verify`` reads everything in one REPEATABLE READ snapshot (eventstore/verify.py): the
# head, the chain, the triggers and the settings below are one consistent state, however many
# appends commit meanwhile.

#: Positions only, to find which row of a page the driver could not decode.
READ_POSITIONS = "SELECT position FROM ledger.events WHERE position > $1 ORDER BY position LIMIT $2"
READ_ONE_FOR_VERIFY = f"""
SELECT {VERIFY_COLUMNS}
FROM ledger.events WHERE position = $1
"""

#: Where ``session_replication_role`` is set to anything but ``origin`` for sessions on this
#: database (``replica`` or ``local`` stop the refusal triggers, enabled as 'O', from firing):
#: this session's value and the value it would reset to (server file, ALTER SYSTEM, ALTER
#: DATABASE/ROLE for this role), and every ALTER DATABASE/ROLE ... SET stored for any role on
#: this database or all databases.
REPLICATION_ROLE_SETTINGS = """
SELECT 'this session (' || source || ')' AS scope, setting AS value
FROM pg_settings WHERE name = 'session_replication_role' AND setting <> 'origin'
UNION ALL
SELECT 'new sessions of this role (default)', reset_val
FROM pg_settings WHERE name = 'session_replication_role' AND reset_val <> 'origin'
UNION ALL
SELECT CASE WHEN s.setdatabase = 0 THEN 'ALTER ROLE ' || r.rolname || ' SET'
            WHEN s.setrole = 0 THEN 'ALTER DATABASE ' || d.datname || ' SET'
            ELSE 'ALTER ROLE ' || r.rolname || ' IN DATABASE ' || d.datname || ' SET' END,
       split_part(c.config, '=', 2)
FROM pg_db_role_setting s
LEFT JOIN pg_database d ON d.oid = s.setdatabase
LEFT JOIN pg_roles r ON r.oid = s.setrole
CROSS JOIN LATERAL unnest(s.setconfig) AS c(config)
WHERE s.setdatabase IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))
  AND lower(split_part(c.config, '=', 1)) = 'session_replication_role'
  AND lower(split_part(c.config, '=', 2)) <> 'origin'
ORDER BY 1
"""

# ---------------------------------------------------------------- big appends (eventstore/big.py)

#: From this many events on, one request is staged in a temporary table by COPY *before* the
#: head lock is taken, and moved into ledger.events by one INSERT .. SELECT under the lock, so a
#: concurrent writer waits for that statement and the COMMIT only, not for the whole ingest.
STAGE_MIN_EVENTS = 10_000

LOCK_HEAD = "SELECT 1 FROM ledger.head FOR UPDATE"

# Runs after the head lock is held: the head and one stream's version, as of every commit before.
READ_STREAM_STATE = """
SELECT h.position, h.hash,
       coalesce((SELECT v.stream_version FROM ledger.stream_versions v WHERE v.stream = $1
                 ORDER BY v.stream_version DESC LIMIT 1), 0) AS version
FROM ledger.head h
"""

# Dropped at COMMIT or ROLLBACK (and with the session, if the client dies): nothing to clean up.
CREATE_STAGE = """
CREATE TEMPORARY TABLE claire_stage (
    i integer NOT NULL, event_id uuid NOT NULL, event_type text NOT NULL,
    schema_version integer NOT NULL, occurred_at timestamptz NOT NULL, causation_id uuid,
    causation_position bigint, correlation_id uuid, payload jsonb NOT NULL
) ON COMMIT DROP;
CREATE TEMPORARY TABLE claire_stage_hash (i integer NOT NULL, hash bytea NOT NULL) ON COMMIT DROP
"""
STAGE_TABLE = "claire_stage"
STAGE_HASH_TABLE = "claire_stage_hash"
STAGE_COLUMNS = (
    "i", "event_id", "event_type", "schema_version", "occurred_at", "causation_id",
    "causation_position", "correlation_id", "payload",
)  # fmt: skip

# $1 head before, $2 stream, $3 stream version before, $4 recorded_at. Row i (1..n) lands at
# position head + i, version + i, with the hash the client chained under the lock.
INSERT_STAGED = f"""
INSERT INTO ledger.events ({COLUMNS})
SELECT $1::bigint + s.i, $2::text, $3::bigint + s.i, s.event_id, s.event_type, s.schema_version,
       s.occurred_at, $4::timestamptz, s.causation_id, s.causation_position, s.correlation_id,
       s.payload, h.hash
FROM pg_temp.claire_stage s JOIN pg_temp.claire_stage_hash h USING (i)
ORDER BY s.i
"""
