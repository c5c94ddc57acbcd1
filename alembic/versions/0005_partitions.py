"""The ledger becomes a partitioned table, converted in place: no event is rewritten.

Why: one table makes every vacuum, index rebuild and backup proportional to the whole history,
and old events can only leave it (``claire archive``) as whole partitions.

How the existing table is kept as it is:

* ``ledger.events`` is renamed ``ledger.events_p0`` and attached as the first partition of a new
  ``ledger.events`` partitioned by range of ``position`` (PostgreSQL 15's own partitioning).
  ATTACH reads the table once to check the bound; it writes nothing, so every row, its hash and
  ``claire verify``'s result are unchanged. Its primary key and indexes become the partition's
  part of the parent's indexes (same definitions: PostgreSQL attaches them, builds nothing).
* Uniqueness that a partitioned table cannot enforce (a unique index must contain the partition
  key): ``event_id`` and ``(stream, stream_version)``. They move to two side tables filled by a
  statement-level AFTER INSERT trigger on the parent, which sees every inserted row whatever the
  path (INSERT, INSERT .. SELECT, COPY): a duplicate raises ``unique_violation`` as the old
  UNIQUE constraints did, so the append path's fallbacks keep working unchanged.
  ``ledger.stream_versions`` also keeps each stream's last version after its rows are archived,
  so a stream never restarts at version 1.
* The refusal triggers move to the parent (row triggers are cloned onto every partition,
  present and future); TRUNCATE triggers are per table, so each partition gets its own.
* ``ledger.ensure_partitions(n)`` (SECURITY DEFINER, executable by ``claire_app``) creates
  partitions ahead of need: after it, partitions cover the head plus ``n`` plus two spare
  partitions. The store calls it before an append could come near the end
  (``eventstore.postgres``); no cron, no extension.
* ``ledger.archived`` records what ``claire archive`` moved out (ranges, boundary hashes, file
  digests), so the auditor query and ``claire verify`` continue the chain from the archive.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Positions per partition unless an operator changes ``ledger.partitioning.size``.
DEFAULT_PARTITION_SIZE = 10_000_000

#: Indexes of the parent, same definitions as 0001/0004 gave the table (attached, not rebuilt).
INDEXES = (
    "CREATE INDEX events_occurred_at ON ledger.events (occurred_at)",
    "CREATE INDEX events_correlation_id ON ledger.events (correlation_id)"
    " WHERE correlation_id IS NOT NULL",
    "CREATE INDEX events_causation_id ON ledger.events (causation_id)"
    " WHERE causation_id IS NOT NULL",
    "CREATE INDEX events_event_type ON ledger.events (event_type, position)"
    " WHERE event_type <> 'market.trade'",
    # read_stream's order: the unique constraint that served it cannot stay on a partition of a
    # table partitioned by position, so a plain index takes its place (built once, on upgrade).
    "CREATE INDEX events_stream_version ON ledger.events (stream, stream_version)",
)

ENSURE_PARTITIONS = """
CREATE FUNCTION ledger.ensure_partitions(wanted bigint DEFAULT 0) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, ledger AS $$
DECLARE
    step bigint;
    bound bigint;
    target bigint;
    name text;
BEGIN
    -- Serialises creators; appenders (ROW EXCLUSIVE) are not blocked by ATTACH's lock.
    PERFORM pg_advisory_xact_lock(202612030005);
    SELECT p.size, p.upper INTO step, bound FROM ledger.partitioning p;
    target := (SELECT h.position FROM ledger.head h) + greatest(wanted, 0) + 2 * step;
    WHILE bound <= target LOOP
        name := format('events_p%s', lpad(bound::text, 19, '0'));
        EXECUTE format('CREATE TABLE ledger.%I (LIKE ledger.events INCLUDING DEFAULTS'
                       ' INCLUDING CONSTRAINTS)', name);
        EXECUTE format('CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON ledger.%I'
                       ' FOR EACH STATEMENT EXECUTE FUNCTION ledger.refuse_change()', name);
        EXECUTE format('ALTER TABLE ledger.events ATTACH PARTITION ledger.%I'
                       ' FOR VALUES FROM (%s) TO (%s)', name, bound, bound + step);
        bound := bound + step;
    END LOOP;
    UPDATE ledger.partitioning SET upper = bound;
    RETURN bound;
END
$$
"""

# One statement per append, set-based: a probe and an insert per row and side table, the cost
# the two UNIQUE indexes had. The transition table holds exactly the rows this statement added.
KEEP_UNIQUE = """
CREATE FUNCTION ledger.keep_unique() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, ledger AS $$
BEGIN
    INSERT INTO ledger.event_ids (event_id, position)
    SELECT n.event_id, n.position FROM new_rows n;
    INSERT INTO ledger.stream_versions (stream, stream_version)
    SELECT n.stream, n.stream_version FROM new_rows n;
    RETURN NULL;
END
$$
"""


def _upgrade_statements(size: int = DEFAULT_PARTITION_SIZE) -> list[str]:
    # Named as PostgreSQL named the old table's (ATTACH matches CHECK constraints by name).
    columns = """
        position           bigint      NOT NULL CONSTRAINT events_position_check
            CHECK (position > 0),
        stream             text        NOT NULL CONSTRAINT events_stream_check
            CHECK (stream ~ '^[A-Za-z0-9_.:-]+$' AND length(stream) <= 200),
        stream_version     bigint      NOT NULL CONSTRAINT events_stream_version_check
            CHECK (stream_version > 0),
        event_id           uuid        NOT NULL,
        event_type         text        NOT NULL CONSTRAINT events_event_type_check
            CHECK (event_type ~ '^[a-z0-9_.]+$' AND length(event_type) <= 100),
        schema_version     integer     NOT NULL CONSTRAINT events_schema_version_check
            CHECK (schema_version > 0),
        occurred_at        timestamptz NOT NULL,
        recorded_at        timestamptz NOT NULL,
        causation_id       uuid,
        causation_position bigint,
        correlation_id     uuid,
        payload            jsonb       NOT NULL CONSTRAINT events_payload_check
            CHECK (jsonb_typeof(payload) = 'object'),
        hash               bytea       NOT NULL CONSTRAINT events_hash_check
            CHECK (octet_length(hash) = 32),
        PRIMARY KEY (position)
    """
    return [
        # Nobody appends while the table changes shape (readers wait for the commit too).
        "LOCK TABLE ledger.head, ledger.events IN ACCESS EXCLUSIVE MODE",
        # Views bind to a table, not a name: keep their text to re-bind them to the parent.
        """
        CREATE TEMP TABLE claire_0005_views ON COMMIT DROP AS
        SELECT DISTINCT v.oid::regclass::text AS name, pg_get_viewdef(v.oid) AS body
        FROM pg_depend d
        JOIN pg_rewrite r ON r.oid = d.objid
        JOIN pg_class v ON v.oid = r.ev_class
        WHERE d.refobjid = 'ledger.events'::regclass AND v.relkind = 'v'
        """,
        "ALTER TABLE ledger.events RENAME TO events_p0",
        "ALTER TABLE ledger.events_p0 RENAME CONSTRAINT events_pkey TO events_p0_pkey",
        "ALTER INDEX ledger.events_occurred_at RENAME TO events_p0_occurred_at",
        "ALTER INDEX ledger.events_correlation_id RENAME TO events_p0_correlation_id",
        "ALTER INDEX ledger.events_causation_id RENAME TO events_p0_causation_id",
        "ALTER INDEX ledger.events_event_type RENAME TO events_p0_event_type",
        # Row triggers move to the parent (cloned back onto this partition at ATTACH).
        "DROP TRIGGER events_append_only ON ledger.events_p0",
        f"CREATE TABLE ledger.events ({columns}) PARTITION BY RANGE (position)",
        *INDEXES,
        "CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON ledger.events"
        " FOR EACH ROW EXECUTE FUNCTION ledger.refuse_change()",
        "CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON ledger.events"
        " FOR EACH STATEMENT EXECUTE FUNCTION ledger.refuse_change()",
        # The side tables of global uniqueness, filled from the existing rows once.
        """
        CREATE TABLE ledger.event_ids (
            event_id uuid   PRIMARY KEY,
            position bigint NOT NULL
        )
        """,
        """
        CREATE TABLE ledger.stream_versions (
            stream         text   NOT NULL,
            stream_version bigint NOT NULL,
            PRIMARY KEY (stream, stream_version)
        )
        """,
        "INSERT INTO ledger.event_ids SELECT event_id, position FROM ledger.events_p0",
        "INSERT INTO ledger.stream_versions SELECT stream, stream_version FROM ledger.events_p0",
        # Their job is done by the side tables now (dropping an index rewrites no row).
        "ALTER TABLE ledger.events_p0 DROP CONSTRAINT events_event_id_key,"
        " DROP CONSTRAINT events_stream_stream_version_key",
        """
        CREATE TABLE ledger.partitioning (
            singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
            size      bigint  NOT NULL CHECK (size > 0),
            upper     bigint  NOT NULL CHECK (upper > 1)
        )
        """,
        # The first partition holds every existing position and the rest of its block.
        # The size: the database's setting ``claire.partition_size`` if an operator set one
        # (``ALTER DATABASE .. SET claire.partition_size = N`` before upgrading), else the default.
        f"""
        INSERT INTO ledger.partitioning (size, upper)
        SELECT s.size, (h.position / s.size + 1) * s.size + 1
        FROM ledger.head h, (SELECT coalesce(nullif(current_setting('claire.partition_size', true),
                                                    '')::bigint, {size}) AS size) s
        """,
        """
        DO $$
        BEGIN
            EXECUTE format('ALTER TABLE ledger.events ATTACH PARTITION ledger.events_p0'
                           ' FOR VALUES FROM (1) TO (%s)',
                           (SELECT upper FROM ledger.partitioning));
        END
        $$
        """,
        """
        DO $$
        DECLARE
            view record;
        BEGIN
            FOR view IN SELECT name, body FROM claire_0005_views ORDER BY name LOOP
                EXECUTE format('CREATE OR REPLACE VIEW %s AS %s', view.name, view.body);
            END LOOP;
        END
        $$
        """,
        """
        CREATE TABLE ledger.archived (
            partition      text        PRIMARY KEY,
            first_position bigint      NOT NULL CHECK (first_position > 0),
            last_position  bigint      NOT NULL CHECK (last_position >= first_position),
            first_hash     bytea       NOT NULL CHECK (octet_length(first_hash) = 32),
            last_hash      bytea       NOT NULL CHECK (octet_length(last_hash) = 32),
            row_count      bigint      NOT NULL,
            file           text        NOT NULL,
            file_sha256    text        NOT NULL,
            archived_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
            UNIQUE (first_position)
        )
        """,
        "CREATE TRIGGER archived_append_only BEFORE UPDATE OR DELETE ON ledger.archived"
        " FOR EACH ROW EXECUTE FUNCTION ledger.refuse_change()",
        ENSURE_PARTITIONS,
        KEEP_UNIQUE,
        "CREATE TRIGGER events_unique AFTER INSERT ON ledger.events"
        " REFERENCING NEW TABLE AS new_rows"
        " FOR EACH STATEMENT EXECUTE FUNCTION ledger.keep_unique()",
        "SELECT ledger.ensure_partitions(0)",
        # Privileges: the parent's, as 0001/0002 gave them; partitions and side tables belong
        # to the owner alone (access goes through the parent and the definer functions).
        "REVOKE ALL ON ledger.events, ledger.event_ids, ledger.stream_versions,"
        " ledger.partitioning, ledger.archived FROM PUBLIC",
        "GRANT SELECT, INSERT ON ledger.events TO claire_app",
        "GRANT SELECT ON ledger.events TO claire_auditor, claire_projector",
        "GRANT SELECT ON ledger.stream_versions, ledger.event_ids TO claire_app",
        "GRANT SELECT ON ledger.archived, ledger.partitioning"
        " TO claire_app, claire_auditor, claire_projector",
        "REVOKE ALL ON FUNCTION ledger.ensure_partitions(bigint), ledger.keep_unique() FROM PUBLIC",
        "GRANT EXECUTE ON FUNCTION ledger.ensure_partitions(bigint) TO claire_app",
    ]


def upgrade() -> None:
    for statement in _upgrade_statements():
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError(
        "0005 is not reversible in place: restore a pre-0005 backup (see docs/ARCHIVE.md)"
    )
