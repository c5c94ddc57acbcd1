"""Least-privilege logins for the deployment: one per kind of service, never the owner.

The migrations create the privilege roles (``claire_app``: read and append the ledger;
``claire_projector``: read the ledger, write the read models) as NOLOGIN group roles. A
deployment needs *login* roles that are members of them, with passwords from its ``.env``, so no
service has to connect as the database owner (a superuser in the PostgreSQL image), who could
switch off the ledger's refusal triggers. ``claire db upgrade --create-logins`` runs
:func:`ensure_logins` after the migrations: idempotent (a second run only resets the passwords
to the configured ones) and safe against a concurrent run.

An existing login of that name is reset to exactly its job: no membership but its one group role
(without ADMIN OPTION), no role-level settings (in any database), no connection limit, no
special attributes, no direct privileges on the ``ledger``, ``readmodel`` or ``public`` schemas
or their objects. A login that owns anything is refused: its ownership is not reassigned behind
the operator's back.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import asyncpg

from eventstore.errors import StoreUnavailable

#: login variable, password variable, default login name, the group role it joins.
LOGINS = (
    ("CLAIRE_APP_LOGIN", "CLAIRE_APP_PASSWORD", "claire_service", "claire_app"),
    (
        "CLAIRE_PROJECTOR_LOGIN",
        "CLAIRE_PROJECTOR_PASSWORD",
        "claire_projection",
        "claire_projector",
    ),
)
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_RESERVED = {"claire_app", "claire_projector", "claire_auditor", "postgres"}
_PASSWORD = re.compile(r"^[A-Za-z0-9_-]{12,128}$")


class LoginSettingsError(ValueError):
    """A login name or password is missing or unusable; lists every problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("cannot create the service logins:\n  " + "\n  ".join(problems))


@dataclass(frozen=True)
class Login:
    """A login role to create (or update) as a member of ``group``; ``repr`` hides the password."""

    name: str
    password: str
    group: str

    def __repr__(self) -> str:
        return f"Login(name={self.name!r}, group={self.group!r})"


def owner_of(url: str) -> str | None:
    """The login the migrate job connects as (the owner), from its URL; None when not named."""
    try:
        user = urlsplit(url).username
    except ValueError:
        return None
    return unquote(user) if user else None


def logins_from(environment: Mapping[str, str], owner: str | None = None) -> list[Login]:
    """The configured logins, every problem reported at once (passwords are never echoed).

    ``owner`` is the login the job itself connects as: a service login may never be it.
    """
    problems: list[str] = []
    logins = []
    for name_var, password_var, default, group in LOGINS:
        name = environment.get(name_var, "").strip() or default
        password = environment.get(password_var, "").strip()
        if not _NAME.match(name) or name in _RESERVED or name.startswith("pg_"):
            problems.append(
                f"{name_var}={name!r}: a new role name (lower-case letters, digits, _) "
                f"other than {', '.join(sorted(_RESERVED))} and not starting with pg_"
            )
        elif name == owner:
            problems.append(
                f"{name_var}={name!r}: that is the database owner this job connects as; "
                "a service login must be a role of its own"
            )
        if not password:
            problems.append(f"{password_var} is not set")
        elif not _PASSWORD.match(password):
            problems.append(
                f"{password_var}: 12 to 128 letters, digits, '-' or '_' (it goes into a URL)"
            )
        logins.append(Login(name=name, password=password, group=group))
    if len({login.name for login in logins}) < len(logins):
        problems.append("the service logins must have different names")
    if problems:
        raise LoginSettingsError(problems)
    return logins


# The statement text is built on the server with format(%I, %L): names and passwords are quoted
# by PostgreSQL itself, never spliced in by us.
_CREATE = """
SELECT format(
    CASE WHEN EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)
         THEN 'ALTER ROLE %I WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION'
              ' NOBYPASSRLS INHERIT PASSWORD %L'
         ELSE 'CREATE ROLE %I WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION'
              ' NOBYPASSRLS INHERIT PASSWORD %L'
    END, $1::text, $2::text)
"""
_GRANT = "SELECT format('GRANT %I TO %I', $1::text, $2::text)"
_LOCK_KEY = 0x0C1A1E_0002  # pg_advisory_xact_lock key for role changes (roles are cluster-wide)
_SCHEMAS = ("ledger", "readmodel", "public")

# What a pre-existing login owns, anywhere in the cluster (pg_shdepend is shared).
_OWNED = """
SELECT CASE WHEN d.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
            THEN pg_describe_object(d.classid, d.objid, d.objsubid)
            ELSE 'an object in database '
                 || coalesce((SELECT datname FROM pg_database WHERE oid = d.dbid), 'of the cluster')
       END
FROM pg_shdepend d JOIN pg_roles r ON r.oid = d.refobjid
WHERE r.rolname = $1 AND d.deptype = 'o'
ORDER BY 1
"""
# Everything a pre-existing login may have been given beyond its one group role: memberships,
# settings, a connection limit, direct grants in our schemas, and default privileges naming it
# (which would hand it every table some role creates later).
_RESET = """
SELECT format('REVOKE %I FROM %I', g.rolname, $1::text)
FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles r ON r.oid = m.member
WHERE r.rolname = $1
UNION ALL
SELECT format('ALTER ROLE %I IN DATABASE %I RESET ALL', $1::text, d.datname)
FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole
JOIN pg_database d ON d.oid = s.setdatabase
WHERE r.rolname = $1
UNION ALL
SELECT format('ALTER ROLE %I RESET ALL', $1::text)
UNION ALL
SELECT format('ALTER ROLE %I CONNECTION LIMIT -1', $1::text)
UNION ALL
SELECT format('REVOKE ALL ON DATABASE %I FROM %I', current_database(), $1::text)
UNION ALL
SELECT format('REVOKE ALL ON %s IN SCHEMA %I FROM %I', kind, n.nspname, $1::text)
FROM unnest(ARRAY['ALL TABLES', 'ALL SEQUENCES', 'ALL FUNCTIONS']) AS kind
CROSS JOIN pg_namespace n WHERE n.nspname = ANY($2::text[])
UNION ALL
SELECT format('REVOKE ALL ON SCHEMA %I FROM %I', n.nspname, $1::text)
FROM pg_namespace n WHERE n.nspname = ANY($2::text[])
UNION ALL
SELECT format('ALTER DEFAULT PRIVILEGES FOR ROLE %I%s REVOKE ALL ON %s FROM %I',
              o.rolname,
              CASE WHEN d.defaclnamespace = 0 THEN ''
                   ELSE format(' IN SCHEMA %I', n.nspname) END,
              CASE d.defaclobjtype WHEN 'r' THEN 'TABLES' WHEN 'S' THEN 'SEQUENCES'
                   WHEN 'f' THEN 'FUNCTIONS' WHEN 'T' THEN 'TYPES' ELSE 'SCHEMAS' END,
              $1::text)
FROM pg_default_acl d JOIN pg_roles o ON o.oid = d.defaclrole
LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace
WHERE EXISTS (SELECT 1 FROM aclexplode(d.defaclacl) a JOIN pg_roles g ON g.oid = a.grantee
              WHERE g.rolname = $1)
"""


async def ensure_logins(url: str, logins: list[Login]) -> None:
    """Create or reset each login as a member of its group role only, in one transaction.

    Raises :class:`LoginSettingsError` (nothing changed) when a login is the connecting role
    itself or owns any object.
    """
    try:
        conn = await asyncpg.connect(url)
    except (OSError, asyncpg.PostgresError) as error:
        raise StoreUnavailable(f"cannot connect to the database: {error}") from error
    try:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
            await _refuse_unfit(conn, logins)
            for login in logins:
                await conn.execute(await conn.fetchval(_CREATE, login.name, login.password))
                for statement in await conn.fetch(_RESET, login.name, list(_SCHEMAS)):
                    await conn.execute(statement[0])
                await conn.execute(await conn.fetchval(_GRANT, login.group, login.name))
    except asyncpg.PostgresError as error:  # e.g. an owner that may not create roles
        raise LoginSettingsError([f"cannot create or reset the service logins: {error}"]) from error
    finally:
        await conn.close()


async def _refuse_unfit(conn: asyncpg.Connection, logins: list[Login]) -> None:
    """Every login that is the connecting role or owns something, reported at once."""
    problems = []
    current = await conn.fetchval("SELECT current_user")
    for (name_var, *_), login in zip(LOGINS, logins, strict=True):
        if login.name == current:
            problems.append(
                f"{name_var}={login.name!r}: that is the role this job connects as; "
                "a service login must be a role of its own"
            )
            continue
        owned = [row[0] for row in await conn.fetch(_OWNED, login.name)]
        if owned:
            shown = ", ".join(owned[:5]) + (f" and {len(owned) - 5} more" if len(owned) > 5 else "")
            problems.append(
                f"{name_var}={login.name!r} owns {shown}; a service login owns nothing: "
                f"reassign them first (REASSIGN OWNED BY {login.name} TO <owner>)"
            )
    if problems:
        raise LoginSettingsError(problems)
