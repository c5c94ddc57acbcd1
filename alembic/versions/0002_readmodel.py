"""Read models, checkpoints, the audit views and the projector/auditor grants.

Every read model is a view ``readmodel.<name>`` over a physical generation ``<name>_g1``; a
rebuild fills ``_g2`` and repoints the view in one transaction (see ``projections/postgres.py``).
The physical tables and views belong to ``claire_projector`` so a rebuild, running as that role,
can create, repoint and drop them; it may read the ledger and nothing more there.

The ``audit`` views read the ledger alone, never the projections, so what they cite is the
source of truth itself (positions and hashes), current up to the last committed event.

Revision ID: 0002_readmodel
Revises: 0001_ledger
Create Date: 2025-11-25
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002_readmodel"
down_revision: str | None = "0001_ledger"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PROJECTIONS = ("alerts", "orders", "portfolio", "risk", "trades")

#: table -> (column definitions in the order projections/ writes them, extra index columns)
TABLES: dict[str, tuple[str, tuple[str, ...]]] = {
    "fills": (
        """position bigint PRIMARY KEY, event_id uuid NOT NULL, client_order_id text NOT NULL,
        fill_id text NOT NULL, symbol text NOT NULL, side text NOT NULL, price numeric NOT NULL,
        contracts numeric NOT NULL, notional numeric NOT NULL, fee numeric NOT NULL,
        fee_currency text NOT NULL, liquidity text NOT NULL, reduce_only boolean NOT NULL,
        final boolean NOT NULL, at timestamptz NOT NULL, day date NOT NULL,
        causation_position bigint, correlation_id uuid, hash bytea NOT NULL""",
        ("day", "client_order_id"),
    ),
    "orders": (
        """client_order_id text PRIMARY KEY, symbol text NOT NULL, side text NOT NULL,
        order_type text NOT NULL, intent text NOT NULL, reduce_only boolean NOT NULL,
        contracts numeric NOT NULL, limit_price numeric, status text NOT NULL,
        filled_contracts numeric NOT NULL, average_price numeric, fees numeric NOT NULL,
        fill_count integer NOT NULL, exchange_order_id text, reason text,
        requested_position bigint NOT NULL, cause_position bigint,
        requested_at timestamptz NOT NULL, updated_position bigint NOT NULL,
        updated_at timestamptz NOT NULL""",
        ("status",),
    ),
    "order_events": (
        """position bigint PRIMARY KEY, client_order_id text NOT NULL, event_type text NOT NULL,
        status text NOT NULL, filled_contracts numeric NOT NULL,
        remaining_contracts numeric NOT NULL, at timestamptz NOT NULL""",
        ("client_order_id",),
    ),
    "risk_verdicts": (
        """position bigint PRIMARY KEY, event_id uuid NOT NULL, symbol text,
        decision text NOT NULL, layer text NOT NULL, reason text NOT NULL, intent text NOT NULL,
        side text, requested_contracts numeric NOT NULL, approved_contracts numeric NOT NULL,
        numbers jsonb NOT NULL, detail text NOT NULL, at timestamptz NOT NULL, day date NOT NULL,
        causation_position bigint, correlation_id uuid, hash bytea NOT NULL""",
        ("day", "layer"),
    ),
    "trading_state_history": (
        """position bigint PRIMARY KEY, previous text NOT NULL, state text NOT NULL,
        changed_by text NOT NULL, reason text NOT NULL, at timestamptz NOT NULL,
        causation_position bigint, correlation_id uuid, hash bytea NOT NULL""",
        (),
    ),
    "circuit_breakers": (
        """position bigint PRIMARY KEY, action text NOT NULL, layer text NOT NULL, symbol text,
        reason text NOT NULL, numbers jsonb NOT NULL, at timestamptz NOT NULL,
        causation_position bigint""",
        (),
    ),
    "stop_losses": (
        """position bigint PRIMARY KEY, symbol text NOT NULL, entry_price numeric NOT NULL,
        mark_price numeric NOT NULL, loss_pct numeric NOT NULL, contracts numeric NOT NULL,
        at timestamptz NOT NULL, causation_position bigint""",
        (),
    ),
    "alerts": (
        """position bigint PRIMARY KEY, severity text NOT NULL, code text NOT NULL,
        message text NOT NULL, symbol text, at timestamptz NOT NULL, causation_position bigint,
        correlation_id uuid""",
        ("severity",),
    ),
    "positions": (
        """symbol text PRIMARY KEY, direction text NOT NULL, contracts numeric NOT NULL,
        contract_size numeric NOT NULL, average_entry numeric NOT NULL, mark numeric NOT NULL,
        notional numeric NOT NULL, unrealised_pnl numeric NOT NULL,
        realised_pnl numeric NOT NULL, fees numeric NOT NULL, funding numeric NOT NULL,
        updated_position bigint NOT NULL, updated_at timestamptz NOT NULL""",
        (),
    ),
    "exposure": (
        """account text PRIMARY KEY, equity numeric NOT NULL, cash numeric NOT NULL,
        gross_notional numeric NOT NULL, exposure_ratio numeric NOT NULL,
        unrealised_pnl numeric NOT NULL, realised_pnl numeric NOT NULL, fees numeric NOT NULL,
        funding numeric NOT NULL, open_positions integer NOT NULL, drawdown numeric NOT NULL,
        updated_position bigint NOT NULL, updated_at timestamptz NOT NULL""",
        (),
    ),
    "equity_daily": (
        """day date PRIMARY KEY, start_equity numeric NOT NULL, peak_equity numeric NOT NULL,
        low_equity numeric NOT NULL, close_equity numeric NOT NULL, drawdown numeric NOT NULL,
        max_drawdown numeric NOT NULL, updated_position bigint NOT NULL,
        updated_at timestamptz NOT NULL""",
        (),
    ),
}

ROLE = """
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'claire_projector') THEN
        BEGIN
            CREATE ROLE claire_projector NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
    END IF;
END
$$
"""

# Every link of the causal graph above an event: its recorded cause, and two links the log
# implies without a causation column: a fill belongs to the request in its order's stream, and
# a request was allowed by the verdict its risk decision issued alongside it (same cause, same
# symbol, the latest before it; a verdict that caused it directly is already its cause).
# Causes always sit at lower positions, so the recursion ends.
CHAIN_VIEW = """
CREATE VIEW audit.chain AS
SELECT r.position AS root_position, l.position, l.relation, l.child_position,
       e.event_type, e.stream, e.stream_version, e.event_id, e.occurred_at, e.recorded_at,
       e.hash, encode(e.hash, 'hex') AS hash_hex, e.payload
FROM ledger.events r
CROSS JOIN LATERAL (
    WITH RECURSIVE link(position, relation, child_position) AS (
        SELECT r.position, 'self'::text, NULL::bigint
      UNION
        SELECT up.position, up.relation, link.position
        FROM link
        JOIN ledger.events c ON c.position = link.position
        CROSS JOIN LATERAL (
            SELECT c.causation_position AS position, 'caused_by'::text AS relation
            WHERE c.causation_position IS NOT NULL
          UNION ALL
            SELECT o.position, 'order_of_fill'
            FROM ledger.events o
            WHERE c.event_type IN ('order.filled', 'order.partially_filled')
              AND o.stream = c.stream AND o.event_type = 'order.requested'
          UNION ALL
            (SELECT v.position, 'allowed_by'
             FROM ledger.events v
             WHERE c.event_type = 'order.requested' AND v.event_type = 'risk.verdict'
               AND v.causation_id = c.causation_id AND v.position < c.position
               AND v.payload->>'symbol' = c.payload->>'symbol'
             ORDER BY v.position DESC LIMIT 1)
        ) up
    )
    SELECT * FROM link
) l
JOIN ledger.events e ON e.position = l.position
"""

TRADE_AUDIT_VIEW = """
CREATE VIEW audit.trade_audit AS
SELECT f.position AS fill_position, f.event_id AS fill_event_id,
       encode(f.hash, 'hex') AS fill_hash, f.occurred_at, f.recorded_at,
       (f.occurred_at AT TIME ZONE 'UTC')::date AS day,
       f.event_type = 'order.filled' AS final_fill,
       f.payload->>'client_order_id' AS client_order_id, f.payload->>'symbol' AS symbol,
       f.payload->>'side' AS side, (f.payload->>'price')::numeric AS price,
       (f.payload->>'contracts')::numeric AS contracts, (f.payload->>'fee')::numeric AS fee,
       f.payload->>'fee_currency' AS fee_currency,
       o.position AS order_position, encode(o.hash, 'hex') AS order_hash,
       o.payload->>'intent' AS intent, (o.payload->>'contracts')::numeric AS ordered_contracts,
       v.position AS verdict_position, encode(v.hash, 'hex') AS verdict_hash,
       v.payload->>'decision' AS verdict_decision, v.payload->>'layer' AS verdict_layer,
       v.payload->>'reason' AS verdict_reason,
       (v.payload->>'requested_contracts')::numeric AS verdict_requested_contracts,
       (v.payload->>'approved_contracts')::numeric AS verdict_approved_contracts,
       v.payload->'numbers' AS verdict_numbers, v.payload->>'detail' AS verdict_detail,
       s.position AS signal_position, encode(s.hash, 'hex') AS signal_hash,
       s.payload->>'direction' AS signal_direction,
       (s.payload->>'strength')::numeric AS signal_strength,
       g.market_positions, g.market_hashes, g.chain_positions
FROM ledger.events f
CROSS JOIN LATERAL (
    SELECT max(c.position) FILTER (WHERE c.event_type = 'order.requested') AS order_position,
           max(c.position) FILTER (WHERE c.event_type = 'risk.verdict') AS verdict_position,
           max(c.position) FILTER (WHERE c.event_type = 'signal.generated') AS signal_position,
           array_agg(DISTINCT c.position ORDER BY c.position)
               FILTER (WHERE c.event_type LIKE 'market.%') AS market_positions,
           array_agg(DISTINCT c.hash_hex ORDER BY c.hash_hex)
               FILTER (WHERE c.event_type LIKE 'market.%') AS market_hashes,
           array_agg(DISTINCT c.position ORDER BY c.position) AS chain_positions
    FROM audit.chain c
    WHERE c.root_position = f.position
) g
LEFT JOIN ledger.events o ON o.position = g.order_position
LEFT JOIN ledger.events v ON v.position = g.verdict_position
LEFT JOIN ledger.events s ON s.position = g.signal_position
WHERE f.event_type IN ('order.filled', 'order.partially_filled')
"""

HALTS_VIEW = """
CREATE VIEW audit.halts AS
SELECT h.position, encode(h.hash, 'hex') AS hash, h.occurred_at, h.recorded_at,
       h.payload->>'previous' AS previous, h.payload->>'state' AS state,
       h.payload->>'changed_by' AS changed_by, h.payload->>'reason' AS reason,
       c.position AS cause_position, c.event_type AS cause_type,
       encode(c.hash, 'hex') AS cause_hash, c.payload AS cause_payload,
       v.position AS verdict_position, v.payload->>'layer' AS verdict_layer,
       v.payload->>'reason' AS verdict_reason, v.payload->'numbers' AS verdict_numbers,
       a.alerts
FROM ledger.events h
LEFT JOIN ledger.events c ON c.position = h.causation_position
LEFT JOIN LATERAL (
    SELECT w.position, w.payload FROM ledger.events w
    WHERE w.event_type = 'risk.verdict' AND w.causation_id = h.causation_id
    ORDER BY abs(w.position - h.position) LIMIT 1
) v ON true
LEFT JOIN LATERAL (
    SELECT jsonb_agg(jsonb_build_object('position', x.position, 'severity',
               x.payload->>'severity', 'code', x.payload->>'code',
               'message', x.payload->>'message') ORDER BY x.position) AS alerts
    FROM ledger.events x
    WHERE x.event_type = 'alert.raised' AND x.causation_id = h.causation_id
) a ON true
WHERE h.event_type = 'risk.trading_state_changed' AND h.payload->>'state' = 'HALTED'
"""


def _upgrade_statements() -> list[str]:
    statements = [
        ROLE,
        "CREATE SCHEMA readmodel",
        "CREATE SCHEMA audit",
        # Causes are looked up by position (the primary key) and siblings by causation id
        # (indexed by 0001); verdicts and requests by type for the audit views.
        "CREATE INDEX events_event_type ON ledger.events (event_type, position)",
        """
        CREATE TABLE readmodel.checkpoints (
            projection        text        PRIMARY KEY,
            position          bigint      NOT NULL DEFAULT 0 CHECK (position >= 0),
            generation        integer     NOT NULL DEFAULT 1 CHECK (generation >= 1),
            event_recorded_at timestamptz,
            updated_at        timestamptz NOT NULL DEFAULT clock_timestamp()
        )
        """,
        "INSERT INTO readmodel.checkpoints (projection) VALUES "
        + ", ".join(f"('{name}')" for name in PROJECTIONS),
    ]
    for name, (columns, indexes) in TABLES.items():
        statements.append(f"CREATE TABLE readmodel.{name}_g1 ({columns})")
        statements.extend(f"CREATE INDEX ON readmodel.{name}_g1 ({column})" for column in indexes)
        statements.append(f"CREATE VIEW readmodel.{name} AS SELECT * FROM readmodel.{name}_g1")
        statements.append(f"ALTER TABLE readmodel.{name}_g1 OWNER TO claire_projector")
        statements.append(f"ALTER VIEW readmodel.{name} OWNER TO claire_projector")
    views = ", ".join(f"readmodel.{name}" for name in TABLES)
    statements += [
        CHAIN_VIEW,
        TRADE_AUDIT_VIEW,
        HALTS_VIEW,
        # The projector: reads the ledger, owns the read models, nothing else.
        "GRANT USAGE ON SCHEMA ledger TO claire_projector",
        "GRANT SELECT ON ledger.events, ledger.head TO claire_projector",
        "GRANT USAGE, CREATE ON SCHEMA readmodel TO claire_projector",
        "GRANT SELECT, UPDATE ON readmodel.checkpoints TO claire_projector",
        # The auditor: the log (0001) and the views, read-only. No temporary tables either:
        # only the roles that need them get TEMPORARY, not PUBLIC.
        "GRANT USAGE ON SCHEMA readmodel, audit TO claire_auditor, claire_app",
        f"GRANT SELECT ON readmodel.checkpoints, {views} TO claire_auditor, claire_app",
        "GRANT SELECT ON audit.chain, audit.trade_audit, audit.halts TO claire_auditor, claire_app",
        """
        DO $$
        BEGIN
            EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
            EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO claire_app, claire_projector',
                           current_database());
        END
        $$
        """,
    ]
    return statements


def upgrade() -> None:
    for statement in _upgrade_statements():
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP SCHEMA audit CASCADE")
    op.execute("DROP SCHEMA readmodel CASCADE")
    op.execute("DROP INDEX IF EXISTS ledger.events_event_type")
    op.execute(
        """
        DO $$
        BEGIN
            EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO PUBLIC', current_database());
        END
        $$
        """
    )
    op.execute("REVOKE ALL ON SCHEMA ledger FROM claire_projector")
    op.execute("REVOKE ALL ON ledger.events, ledger.head FROM claire_projector")
