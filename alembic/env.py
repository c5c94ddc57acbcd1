"""Alembic environment: renders migrations as SQL (offline mode).

``eventstore.migrations.upgrade`` asks Alembic for the SQL between the database's current
revision and head and runs it through asyncpg in one transaction, so the project needs a single
PostgreSQL driver. Online mode would need a synchronous driver we deliberately do not ship.
"""

from alembic import context

if not context.is_offline_mode():
    raise SystemExit(
        "run migrations with `claire db upgrade` (or `alembic upgrade head --sql` to print them)"
    )

context.configure(
    url=context.config.get_main_option("sqlalchemy.url") or "postgresql://",
    literal_binds=True,
    transactional_ddl=False,
    dialect_opts={"paramstyle": "named"},
)
with context.begin_transaction():
    context.run_migrations()
