"""Attack on the least-privilege logins (docs/OPERATIONS.md "Least privilege in the deployment").

Every test runs ``claire db upgrade --create-logins`` for real against a PostgreSQL cluster of
this module's own (roles are cluster-wide) and then acts as the logins it made. The oracle is the
table in docs/OPERATIONS.md: the appending services' login may read and append the ledger and
read the read models; the projector's login may read the ledger and write the read models; both
are refused everything beyond that.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import asyncpg
import pytest

from eventstore.admin import create_database, drop_database
from tests.blackbox_attack.ops.conftest import Run, claire, with_database, with_login
from tests.blackbox_attack.ops.ops_helpers import example_env

APP_PW = "app-Password_0123"
PROJ_PW = "proj-Password_4567"

# Beyond the job of any service login (both roles).
BEYOND_ANY = [
    "UPDATE ledger.events SET payload = payload",
    "DELETE FROM ledger.events",
    "TRUNCATE ledger.events",
    "DROP TABLE ledger.events",
    "ALTER TABLE ledger.events DISABLE TRIGGER ALL",
    "ALTER TABLE ledger.events DISABLE TRIGGER events_append_only",
    "SET session_replication_role = replica",
    "CREATE ROLE a20_intruder",
    "CREATE TABLE ledger.a20_intruder (x int)",
    "CREATE TABLE public.a20_intruder (x int)",
    "CREATE SCHEMA a20_intruder",
    "DELETE FROM ledger.event_ids",
    "UPDATE ledger.event_ids SET position = position",
    "DELETE FROM ledger.head",
    "TRUNCATE ledger.head",
    "UPDATE ledger.partitioning SET size = size",
    "DELETE FROM ledger.snapshots",
    "UPDATE ledger.snapshots SET position = position",
    "UPDATE ledger.stream_versions SET stream = stream",
    "DROP FUNCTION ledger.refuse_change() CASCADE",
    "SET ROLE postgres",
    "SET ROLE claire_auditor",
    "GRANT claire_auditor TO CURRENT_USER",
    "GRANT claire_projector TO CURRENT_USER",
    "ALTER ROLE CURRENT_USER SUPERUSER",
    "ALTER ROLE CURRENT_USER CREATEROLE",
    "COPY (SELECT 1) TO '/tmp/a20_intruder'",
    "UPDATE public.alembic_version SET version_num = version_num",
]
BEYOND_APP = [
    *BEYOND_ANY,
    "SET ROLE claire_projector",
    "DELETE FROM readmodel.positions_g1",
    "TRUNCATE readmodel.orders_g1",
    "UPDATE readmodel.checkpoints SET position = position",
    "DELETE FROM readmodel.checkpoints",
    "CREATE TABLE readmodel.a20_intruder (x int)",
]
BEYOND_PROJECTOR = [
    *BEYOND_ANY,
    "SET ROLE claire_app",
    "INSERT INTO ledger.events SELECT * FROM ledger.events WHERE false",
    "UPDATE ledger.head SET position = position",
    "INSERT INTO ledger.snapshots SELECT * FROM ledger.snapshots WHERE false",
]
# The job: reading the ledger (both), appending (app), moving the head (app), read models.
JOB_APP = [
    "SELECT count(*) FROM ledger.events",
    "INSERT INTO ledger.events SELECT * FROM ledger.events WHERE false",
    "INSERT INTO ledger.snapshots SELECT * FROM ledger.snapshots WHERE false",
    "SELECT count(*) FROM readmodel.positions",
    "SELECT count(*) FROM readmodel.checkpoints",
]
JOB_PROJECTOR = [
    "SELECT count(*) FROM ledger.events",
    "SELECT count(*) FROM readmodel.checkpoints",
    "UPDATE readmodel.checkpoints SET position = position",
    "DELETE FROM readmodel.positions_g1",
]


async def attempt(url: str, statement: str) -> str | None:
    """None when ``statement`` succeeds (rolled back), else the error's class and message."""
    connection = await asyncpg.connect(url)
    try:
        transaction = connection.transaction()
        await transaction.start()
        try:
            await connection.execute(statement)
        except asyncpg.PostgresError as error:
            return f"{type(error).__name__}: {error}"
        finally:
            await transaction.rollback()
    finally:
        await connection.close()
    return None


async def allowed(url: str, statements: list[str]) -> list[str]:
    """The statements that were NOT refused for lack of privilege."""
    slipped = []
    for statement in statements:
        outcome = await attempt(url, statement)
        if outcome is None or not outcome.startswith(
            ("InsufficientPrivilegeError", "ObjectNotInPrerequisiteStateError")
        ):
            slipped.append(f"{statement} -> {outcome or 'ALLOWED'}")
    return slipped


async def refused(url: str, statements: list[str]) -> list[str]:
    """The statements of the job that failed."""
    failed = []
    for statement in statements:
        outcome = await attempt(url, statement)
        if outcome is not None:
            failed.append(f"{statement} -> {outcome}")
    return failed


@pytest.fixture
async def database(cluster_url: str) -> AsyncIterator[str]:
    name = f"a20_{secrets.token_hex(4)}"
    url = await create_database(cluster_url, name)
    yield url
    await drop_database(cluster_url, name)


@pytest.fixture
def names() -> tuple[str, str]:
    tag = secrets.token_hex(3)
    return f"svc_{tag}", f"proj_{tag}"


async def admin(cluster_url: str, *statements: str) -> None:
    connection = await asyncpg.connect(cluster_url)
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


def create_logins(url: str, app: str, projector: str, **extra: str) -> Run:
    env = {
        "DATABASE_URL": url,
        "CLAIRE_APP_LOGIN": app,
        "CLAIRE_APP_PASSWORD": APP_PW,
        "CLAIRE_PROJECTOR_LOGIN": projector,
        "CLAIRE_PROJECTOR_PASSWORD": PROJ_PW,
    }
    env.update(extra)
    return claire(["db", "upgrade", "--create-logins"], env)


def assert_clean(run: Run, *secret: str) -> None:
    assert "Traceback" not in run.text, run.text
    for value in secret:
        assert value not in run.text, f"a password appears in the output: {run.text}"


async def test_create_logins_when_run_twice_then_each_login_does_its_job_and_nothing_more(
    database: str, names: tuple[str, str]
) -> None:
    app, projector = names
    for _ in range(2):
        run = create_logins(database, app, projector)
        assert run.code == 0, run.text
        assert_clean(run, APP_PW, PROJ_PW)
    app_url = with_login(database, app, APP_PW)
    projector_url = with_login(database, projector, PROJ_PW)
    slipped = await refused(app_url, JOB_APP)
    assert slipped == [], "\n".join(slipped)
    slipped = await refused(projector_url, JOB_PROJECTOR)
    assert slipped == [], "\n".join(slipped)
    slipped = await allowed(app_url, BEYOND_APP)
    assert slipped == [], "\n".join(slipped)
    slipped = await allowed(projector_url, BEYOND_PROJECTOR)
    assert slipped == [], "\n".join(slipped)


async def role_row(cluster_url: str, role: str) -> asyncpg.Record:
    connection = await asyncpg.connect(cluster_url)
    try:
        return await connection.fetchrow(
            "SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls,"
            " rolcanlogin, rolinherit, rolconnlimit, rolconfig,"
            " ARRAY(SELECT b.rolname::text FROM pg_auth_members m JOIN pg_roles b"
            "  ON b.oid = m.roleid WHERE m.member = r.oid ORDER BY 1) AS member_of,"
            " ARRAY(SELECT m.admin_option FROM pg_auth_members m WHERE m.member = r.oid)"
            "  AS admin_options"
            " FROM pg_roles r WHERE rolname = $1",
            role,
        )
    finally:
        await connection.close()


# A pre-existing login, prepared by someone else, must come out as exactly a claire_app login.
PREPARED = {
    "superuser": "ALTER ROLE {r} SUPERUSER CREATEDB CREATEROLE REPLICATION BYPASSRLS",
    "member_of_projector": "GRANT claire_projector TO {r}",
    "member_of_auditor_and_pg_write_all_data": "GRANT claire_auditor, pg_write_all_data TO {r}",
    "direct_update_grant": "GRANT UPDATE, DELETE, TRUNCATE, TRIGGER ON ledger.events TO {r}",
    "admin_option_on_claire_app": "GRANT claire_app TO {r} WITH ADMIN OPTION",
    "replica_by_default": "ALTER ROLE {r} SET session_replication_role = replica",
    "noinherit": "ALTER ROLE {r} NOINHERIT",
    "connection_limit_zero": "ALTER ROLE {r} CONNECTION LIMIT 0",
    "read_only_by_default": "ALTER ROLE {r} SET default_transaction_read_only = on",
}


@pytest.mark.parametrize("prepared", list(PREPARED), ids=list(PREPARED))
async def test_create_logins_when_the_app_login_preexists_with_extra_powers_then_reset_to_its_job(
    database: str, cluster_url: str, names: tuple[str, str], prepared: str
) -> None:
    app, projector = names
    # The schema first (so grants on its tables can be prepared), then the tampered login.
    first = create_logins(database, app, projector)
    assert first.code == 0, first.text
    await admin(database, PREPARED[prepared].format(r=app))
    run = create_logins(database, app, projector)
    assert run.code == 0, run.text
    assert_clean(run, APP_PW, PROJ_PW)
    row = await role_row(cluster_url, app)
    assert row["rolcanlogin"]
    assert not any(
        row[k]
        for k in ("rolsuper", "rolcreatedb", "rolcreaterole", "rolreplication", "rolbypassrls")
    )
    app_url = with_login(database, app, APP_PW)
    slipped = await refused(app_url, JOB_APP)
    assert slipped == [], "\n".join(slipped)
    connection = await asyncpg.connect(app_url)
    try:
        assert await connection.fetchval("SHOW session_replication_role") == "origin"
        assert await connection.fetchval("SHOW default_transaction_read_only") == "off"
    finally:
        await connection.close()
    slipped = await allowed(app_url, BEYOND_APP)
    assert slipped == [], "\n".join(slipped)
    assert list(row["member_of"]) == ["claire_app"]
    assert not any(row["admin_options"])


async def test_create_logins_when_the_app_login_owns_a_ledger_table_then_exit_2_naming_it(
    database: str, cluster_url: str, names: tuple[str, str]
) -> None:
    """Ownership is not silently reassigned: the operator is told what the login owns."""
    app, projector = names
    first = create_logins(database, app, projector)
    assert first.code == 0, first.text
    await admin(database, f"ALTER TABLE ledger.snapshots OWNER TO {app}")
    run = create_logins(database, app, projector)
    assert_clean(run, APP_PW, PROJ_PW)
    assert run.code == 2, run.text
    assert "CLAIRE_APP_LOGIN" in run.text and "ledger.snapshots" in run.text, run.text
    connection = await asyncpg.connect(database)
    try:
        owner = await connection.fetchval(
            "SELECT tableowner FROM pg_tables WHERE schemaname = 'ledger'"
            " AND tablename = 'snapshots'"
        )
    finally:
        await connection.close()
    assert owner == app


async def snapshot_of_cluster(cluster_url: str, database: str) -> tuple[object, ...]:
    """Roles (with attributes and memberships) and the tables of ``database``."""
    connection = await asyncpg.connect(cluster_url)
    try:
        roles = await connection.fetch(
            "SELECT rolname, rolsuper, rolcanlogin, rolpassword IS NOT NULL,"
            " ARRAY(SELECT roleid::regrole::text FROM pg_auth_members WHERE member = a.oid"
            " ORDER BY 1) FROM pg_authid a ORDER BY 1"
        )
    finally:
        await connection.close()
    connection = await asyncpg.connect(database)
    try:
        tables = await connection.fetch(
            "SELECT schemaname, tablename FROM pg_tables"
            " WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2"
        )
    finally:
        await connection.close()
    return tuple(map(tuple, roles)), tuple(map(tuple, tables))


BAD_PASSWORDS = {
    "eleven_chars": "abcdefghijk",
    "one_too_long": "a" * 129,
    "quote": "abcdefghijk'l",
    "url_breaker": "abcdef@ghij/kl",
    "space": "abcdefgh ijkl",
    "percent": "abcdefgh%41ijkl",
    "unicode_letters": "pässwörterbuch",
    "empty": "",
}


@pytest.mark.parametrize("bad", list(BAD_PASSWORDS), ids=list(BAD_PASSWORDS))
async def test_create_logins_when_a_password_is_unusable_then_exit_2_naming_it_and_nothing_changed(
    database: str, cluster_url: str, names: tuple[str, str], bad: str
) -> None:
    app, projector = names
    before = await snapshot_of_cluster(cluster_url, database)
    run = create_logins(database, app, projector, CLAIRE_PROJECTOR_PASSWORD=BAD_PASSWORDS[bad])
    assert run.code == 2, run.text
    assert "CLAIRE_PROJECTOR_PASSWORD" in run.text
    assert_clean(run, APP_PW)
    if BAD_PASSWORDS[bad]:
        assert BAD_PASSWORDS[bad] not in run.text, "the rejected password is echoed"
    # "before anything is changed": not migrated, no login created.
    assert await snapshot_of_cluster(cluster_url, database) == before


async def test_create_logins_when_every_value_is_bad_then_every_problem_is_named(
    database: str, cluster_url: str
) -> None:
    before = await snapshot_of_cluster(cluster_url, database)
    run = claire(
        ["db", "upgrade", "--create-logins"],
        {"DATABASE_URL": database, "CLAIRE_APP_PASSWORD": "short"},
    )
    assert run.code == 2, run.text
    assert "CLAIRE_APP_PASSWORD" in run.text and "CLAIRE_PROJECTOR_PASSWORD" in run.text
    assert_clean(run, "short")
    assert await snapshot_of_cluster(cluster_url, database) == before


# Login names that are not a fresh service login: taking one over would hand a service a
# stronger role (or strip the owner / a group role), so it must be refused with exit 2.
TAKEN_NAMES = [
    "claire_app",
    "claire_projector",
    "claire_auditor",
    "pg_write_all_data",
    "pg_newly_reserved",
]


@pytest.mark.parametrize("taken", TAKEN_NAMES)
async def test_create_logins_when_the_app_login_names_a_group_role_then_refused_and_nothing_changed(
    database: str, cluster_url: str, names: tuple[str, str], taken: str
) -> None:
    app, projector = names
    first = create_logins(database, app, projector)  # migrated, the group roles exist
    assert first.code == 0, first.text
    before = await snapshot_of_cluster(cluster_url, database)
    run = create_logins(database, taken, projector)
    assert_clean(run, APP_PW, PROJ_PW)
    after = await snapshot_of_cluster(cluster_url, database)
    assert run.code == 2, f"exit {run.code}: {run.text}"
    assert after == before


async def test_create_logins_when_the_app_login_is_the_owner_itself_then_refused(
    database: str, cluster_url: str, names: tuple[str, str]
) -> None:
    """The migrate job's own login (the owner, a superuser) named as the services' login."""
    _, projector = names
    owner = f"owner_{secrets.token_hex(3)}"
    await admin(cluster_url, f"CREATE ROLE {owner} LOGIN SUPERUSER")
    try:
        owner_url = with_login(database, owner, "unused-password")
        run = create_logins(owner_url, owner, projector)
        row = await role_row(cluster_url, owner)
        assert row["rolsuper"], f"the owner demoted itself (exit {run.code}): {run.text}"
        assert_clean(run, APP_PW, PROJ_PW)
        assert run.code == 2, f"exit {run.code}: {run.text}"
    finally:
        await admin(cluster_url, f"ALTER ROLE {owner} SUPERUSER")


ODD_NAMES = {
    "quote_injection": "svc'; DROP ROLE victim; --",
    "double_quote_injection": 'svc"; DROP ROLE victim; --',
    "upper_case": "ClaireSvc",
    "space": "claire svc",
    "sixty_four_chars": "s" * 64,
}


@pytest.mark.parametrize("odd", list(ODD_NAMES), ids=list(ODD_NAMES))
async def test_create_logins_when_the_login_name_is_odd_then_created_verbatim_or_refused(
    database: str, cluster_url: str, names: tuple[str, str], odd: str
) -> None:
    _, projector = names
    name = ODD_NAMES[odd]
    await admin(cluster_url, "DROP ROLE IF EXISTS victim", "CREATE ROLE victim")
    run = create_logins(database, name, projector)
    assert_clean(run, APP_PW, PROJ_PW)
    assert run.code in (0, 2), run.text
    connection = await asyncpg.connect(cluster_url)
    try:
        assert await connection.fetchval("SELECT count(*) FROM pg_roles WHERE rolname='victim'")
        made = await connection.fetchval(
            "SELECT count(*) FROM pg_roles WHERE rolname = left($1::text, 63)", name
        )
    finally:
        await connection.close()
    if run.code == 0:
        assert made == 1, f"exit 0 but no role named {name!r}: {run.text}"
        url = with_login(database, name, APP_PW)
        slipped = await refused(url, JOB_APP)
        assert slipped == [], "\n".join(slipped)
    else:
        assert "CLAIRE_APP_LOGIN" in run.text


async def test_db_upgrade_when_the_owner_url_is_wrong_then_clear_error_without_its_password(
    cluster_url: str, names: tuple[str, str]
) -> None:
    app, projector = names
    url = with_login(
        cluster_url.replace("/postgres?", "/a20_missing_db?"), "postgres", "S3cret-owner-pw"
    )
    run = create_logins(url, app, projector)
    assert run.code != 0
    assert_clean(run, APP_PW, PROJ_PW, "S3cret-owner-pw")
    assert run.text.strip(), "no error message at all"


async def test_create_logins_when_the_projector_login_preexists_in_claire_app_then_it_cannot_append(
    database: str, cluster_url: str, names: tuple[str, str]
) -> None:
    app, projector = names
    first = create_logins(database, app, projector)
    assert first.code == 0, first.text
    await admin(database, f"GRANT claire_app TO {projector}")
    run = create_logins(database, app, projector)
    assert run.code == 0, run.text
    projector_url = with_login(database, projector, PROJ_PW)
    slipped = await allowed(projector_url, BEYOND_PROJECTOR)
    assert slipped == [], "\n".join(slipped)


@pytest.mark.parametrize(
    "args",
    [
        ["db", "upgrade", "--create-logins"],
        ["status"],
        ["verify"],
        ["run", "--service", "alerts", "--duration", "3"],
    ],
    ids=["db_upgrade", "status", "verify", "run_alerts"],
)
def test_commands_when_the_database_cannot_be_reached_then_the_password_never_appears(
    args: list[str], names: tuple[str, str]
) -> None:
    app, projector = names
    secret = "Leaky-Owner_Pw-12345"
    url = f"postgresql://postgres:{secret}@127.0.0.1:5432/a20_no_such_database_{app}"
    run = claire(
        args,
        {
            **example_env(),
            "DATABASE_URL": url,
            "CLAIRE_APP_LOGIN": app,
            "CLAIRE_APP_PASSWORD": APP_PW,
            "CLAIRE_PROJECTOR_LOGIN": projector,
            "CLAIRE_PROJECTOR_PASSWORD": PROJ_PW,
            "REDIS_URL": "redis://:Leaky-Redis_Pw-999@127.0.0.1:9/0",
            "METRICS_PORT": "0",
            "MEXC_WS_URL": "ws://127.0.0.1:9/ws",
        },
        timeout=60,
    )
    assert run.code != 0 or args[0] == "run", run.text
    assert_clean(run, secret, APP_PW, PROJ_PW, "Leaky-Redis_Pw-999")


def scram_matches(verifier: str | None, password: str) -> bool:
    """Whether a PostgreSQL SCRAM-SHA-256 verifier (pg_authid.rolpassword) is for ``password``."""
    import base64
    import hashlib
    import hmac

    if not verifier or not verifier.startswith("SCRAM-SHA-256$"):
        return False
    head, keys = verifier.split("$", 1)[1].split("$")
    iterations, salt = head.split(":")
    stored_key = keys.split(":")[0]
    salted = hashlib.pbkdf2_hmac(
        "sha256", password.encode(), base64.b64decode(salt), int(iterations)
    )
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    return base64.b64encode(hashlib.sha256(client_key).digest()).decode() == stored_key


async def verifier_of(cluster_url: str, role: str) -> str | None:
    connection = await asyncpg.connect(cluster_url)
    try:
        return await connection.fetchval("SELECT rolpassword FROM pg_authid WHERE rolname=$1", role)
    finally:
        await connection.close()


async def test_create_logins_when_the_passwords_change_then_each_login_takes_the_new_one(
    database: str, cluster_url: str, names: tuple[str, str]
) -> None:
    app, projector = names
    await admin(cluster_url, f"CREATE ROLE {app} LOGIN PASSWORD 'someone-elses-pw'")
    assert create_logins(database, app, projector).code == 0
    assert scram_matches(await verifier_of(cluster_url, app), APP_PW)
    assert scram_matches(await verifier_of(cluster_url, projector), PROJ_PW)
    run = create_logins(
        database,
        app,
        projector,
        CLAIRE_APP_PASSWORD="rotated-app-pw_1",
        CLAIRE_PROJECTOR_PASSWORD="rotated-proj-pw_2",
    )
    assert run.code == 0, run.text
    assert_clean(run, "rotated-app-pw_1", "rotated-proj-pw_2")
    assert scram_matches(await verifier_of(cluster_url, app), "rotated-app-pw_1")
    assert scram_matches(await verifier_of(cluster_url, projector), "rotated-proj-pw_2")
    assert not scram_matches(await verifier_of(cluster_url, app), APP_PW)


DEFAULT_GRANTS = [
    "ALTER DEFAULT PRIVILEGES IN SCHEMA ledger GRANT ALL ON TABLES TO {r}",
    "ALTER DEFAULT PRIVILEGES GRANT ALL ON SEQUENCES TO {r}",
    "ALTER DEFAULT PRIVILEGES IN SCHEMA readmodel GRANT EXECUTE ON FUNCTIONS TO {r}",
    "ALTER DEFAULT PRIVILEGES GRANT USAGE ON TYPES TO {r}",
    "ALTER DEFAULT PRIVILEGES GRANT CREATE ON SCHEMAS TO {r}",
]


async def test_create_logins_when_the_app_login_holds_default_privileges_then_they_are_revoked(
    database: str, names: tuple[str, str]
) -> None:
    app, projector = names
    first = create_logins(database, app, projector)
    assert first.code == 0, first.text
    await admin(database, *(grant.format(r=app) for grant in DEFAULT_GRANTS))
    run = create_logins(database, app, projector)
    assert run.code == 0, run.text
    assert_clean(run, APP_PW, PROJ_PW)
    connection = await asyncpg.connect(database)
    try:
        left = await connection.fetch(
            "SELECT d.defaclobjtype FROM pg_default_acl d, aclexplode(d.defaclacl) a"
            " JOIN pg_roles g ON g.oid = a.grantee WHERE g.rolname = $1",
            app,
        )
        # What the owner creates after the reset hands the login nothing beyond its job.
        await connection.execute("CREATE TABLE ledger.a20_later (x int)")
    finally:
        await connection.close()
    assert [row[0] for row in left] == []
    slipped = await allowed(
        with_login(database, app, APP_PW),
        ["INSERT INTO ledger.a20_later VALUES (1)", "DROP TABLE ledger.a20_later"],
    )
    assert slipped == [], "\n".join(slipped)


async def test_db_upgrade_when_the_owner_may_not_create_roles_then_exit_2_and_nothing_migrated(
    cluster_url: str,
) -> None:
    tag = secrets.token_hex(3)
    owner, password, name = f"weak_{tag}", "weak-Password_0123", f"a20w_{tag}"
    await admin(cluster_url, f"CREATE ROLE {owner} LOGIN PASSWORD '{password}'")
    await admin(cluster_url, f"CREATE DATABASE {name} OWNER {owner}")
    try:
        url = with_login(with_database(cluster_url, name), owner, password)
        run = claire(["db", "upgrade"], {"DATABASE_URL": url})
        assert run.code == 2, run.text
        assert_clean(run, password)
        assert "refused the migration" in run.text
        assert len(run.err.strip().splitlines()) == 1, run.err
        connection = await asyncpg.connect(with_database(cluster_url, name))
        try:
            assert await connection.fetchval("SELECT to_regclass('ledger.events')") is None
        finally:
            await connection.close()
    finally:
        await admin(cluster_url, f"DROP DATABASE {name}", f"DROP ROLE {owner}")
