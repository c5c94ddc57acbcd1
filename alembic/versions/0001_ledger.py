"""The ledger: append-only events with a hash chain, the chain head, roles and refusals.

Revision ID: 0001_ledger
Revises:
Create Date: 2025-11-25
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0001_ledger"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GENESIS_HEX = "00" * 32

UPGRADE = [
    "CREATE SCHEMA ledger",
    """
    CREATE TABLE ledger.events (
        position           bigint      PRIMARY KEY CHECK (position > 0),
        stream             text        NOT NULL CHECK (stream ~ '^[A-Za-z0-9_.:-]{1,200}$'),
        stream_version     bigint      NOT NULL CHECK (stream_version > 0),
        event_id           uuid        NOT NULL UNIQUE,
        event_type         text        NOT NULL CHECK (event_type ~ '^[a-z0-9_.]{1,100}$'),
        schema_version     integer     NOT NULL CHECK (schema_version > 0),
        occurred_at        timestamptz NOT NULL,
        recorded_at        timestamptz NOT NULL,
        causation_id       uuid,
        causation_position bigint,
        correlation_id     uuid,
        payload            jsonb       NOT NULL CHECK (jsonb_typeof(payload) = 'object'),
        hash               bytea       NOT NULL CHECK (octet_length(hash) = 32),
        UNIQUE (stream, stream_version)
    )
    """,
    "CREATE INDEX events_occurred_at ON ledger.events (occurred_at)",
    "CREATE INDEX events_correlation_id ON ledger.events (correlation_id)"
    " WHERE correlation_id IS NOT NULL",
    "CREATE INDEX events_causation_id ON ledger.events (causation_id)"
    " WHERE causation_id IS NOT NULL",
    """
    CREATE TABLE ledger.head (
        singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
        position  bigint  NOT NULL CHECK (position >= 0),
        hash      bytea   NOT NULL CHECK (octet_length(hash) = 32)
    )
    """,
    f"INSERT INTO ledger.head (singleton, position, hash) VALUES (true, 0, "
    f"decode('{GENESIS_HEX}', 'hex'))",
    """
    CREATE FUNCTION ledger.refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'the ledger is append-only: % on %.% is refused',
            TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME
            USING ERRCODE = 'insufficient_privilege';
    END
    $$
    """,
    """
    CREATE FUNCTION ledger.refuse_head_rewind() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.position < OLD.position THEN
            RAISE EXCEPTION 'the ledger head only moves forward (% -> % refused)',
                OLD.position, NEW.position USING ERRCODE = 'insufficient_privilege';
        END IF;
        RETURN NEW;
    END
    $$
    """,
    "CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON ledger.events"
    " FOR EACH ROW EXECUTE FUNCTION ledger.refuse_change()",
    "CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON ledger.events"
    " FOR EACH STATEMENT EXECUTE FUNCTION ledger.refuse_change()",
    "CREATE TRIGGER head_keep BEFORE DELETE ON ledger.head"
    " FOR EACH ROW EXECUTE FUNCTION ledger.refuse_change()",
    "CREATE TRIGGER head_no_truncate BEFORE TRUNCATE ON ledger.head"
    " FOR EACH STATEMENT EXECUTE FUNCTION ledger.refuse_change()",
    "CREATE TRIGGER head_forward BEFORE UPDATE ON ledger.head"
    " FOR EACH ROW EXECUTE FUNCTION ledger.refuse_head_rewind()",
    # Roles are cluster-wide and many databases may share a server: create them idempotently,
    # tolerating a concurrent migration of another database creating them at the same moment.
    """
    DO $$
    DECLARE
        name text;
    BEGIN
        FOREACH name IN ARRAY ARRAY['claire_app', 'claire_auditor'] LOOP
            IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = name) THEN
                BEGIN
                    EXECUTE format('CREATE ROLE %I NOLOGIN', name);
                EXCEPTION WHEN duplicate_object OR unique_violation THEN
                    NULL;
                END;
            END IF;
        END LOOP;
    END
    $$
    """,
    "REVOKE ALL ON ledger.events, ledger.head FROM PUBLIC",
    "GRANT USAGE ON SCHEMA ledger TO claire_app, claire_auditor",
    "GRANT SELECT, INSERT ON ledger.events TO claire_app",
    "GRANT SELECT, UPDATE ON ledger.head TO claire_app",
    "GRANT SELECT ON ledger.events, ledger.head TO claire_auditor",
]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    # Roles are cluster-wide and may serve other databases: they are left in place.
    op.execute("DROP SCHEMA ledger CASCADE")
