"""Snapshots of decision-machine state, beside the log (docs/SNAPSHOTS.md).

A snapshot is a cache, not a fact: it can always be recomputed by folding the log, so it is not
an event (the ledger stays the record of what happened, and a snapshot written into it would
have to be trusted by every later reader). Each row names the machine, the code and layout
versions, the configuration hash in force and the chain hash at its position, and the SHA-256
of its state bytes: a reader checks all of them against its own code and the log before use.

Only ``claire_app`` (the services) may insert; nobody may change a row once written (the
ledger's refusal trigger); the auditor may read.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = [
    """
    CREATE TABLE ledger.snapshots (
        id             bigserial   PRIMARY KEY,
        machine        text        NOT NULL CHECK (machine ~ '^[a-z0-9_.-]{1,64}$'),
        code_version   text        NOT NULL CHECK (length(code_version) BETWEEN 1 AND 128),
        schema_version integer     NOT NULL CHECK (schema_version > 0),
        config_hash    text        NOT NULL CHECK (config_hash ~ '^([0-9a-f]{64})?$'),
        position       bigint      NOT NULL CHECK (position > 0),
        chain_hash     bytea       NOT NULL CHECK (octet_length(chain_hash) = 32),
        state_digest   bytea       NOT NULL CHECK (octet_length(state_digest) = 32),
        state          bytea       NOT NULL,
        taken_at       timestamptz NOT NULL DEFAULT now(),
        UNIQUE (machine, code_version, schema_version, position)
    )
    """,
    "CREATE TRIGGER snapshots_append_only BEFORE UPDATE OR DELETE ON ledger.snapshots"
    " FOR EACH ROW EXECUTE FUNCTION ledger.refuse_change()",
    # As on ledger.events: TRUNCATE would drop the snapshots the archive's floor relied on.
    "CREATE TRIGGER snapshots_no_truncate BEFORE TRUNCATE ON ledger.snapshots"
    " FOR EACH STATEMENT EXECUTE FUNCTION ledger.refuse_change()",
    "REVOKE ALL ON ledger.snapshots FROM PUBLIC",
    "GRANT SELECT, INSERT ON ledger.snapshots TO claire_app",
    "GRANT USAGE ON SEQUENCE ledger.snapshots_id_seq TO claire_app",
    "GRANT SELECT ON ledger.snapshots TO claire_auditor",
]


#: ``claire run`` refuses to start on a schema other than the one its code needs
#: (``eventstore.migrations.schema_state``): the least-privileged service logins must be able
#: to read which it is.
READ_REVISION = (
    "GRANT SELECT ON public.alembic_version TO claire_app, claire_projector, claire_auditor"
)


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)
    op.execute(READ_REVISION)


def downgrade() -> None:
    op.execute(
        "REVOKE SELECT ON public.alembic_version FROM claire_app, claire_projector, claire_auditor"
    )
    op.execute("DROP TABLE ledger.snapshots")
