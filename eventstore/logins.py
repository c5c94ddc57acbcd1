"""Least-privilege logins for the deployment: one per kind of service, never the owner.

The migrations create the privilege roles (``claire_app``: read and append the ledger;
``claire_projector``: read the ledger, write the read models) as NOLOGIN group roles. A
deployment needs *login* roles that are members of them, with passwords from its ``.env``, so no
service has to connect as the database owner (a superuser in the PostgreSQL image), who could
switch off the ledger's refusal triggers. ``claire db upgrade --create-logins`` runs
:func:`ensure_logins` after the migrations: idempotent (a second run only resets the passwords
to the configured ones) and safe against a concurrent run.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

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


def logins_from(environment: Mapping[str, str]) -> list[Login]:
    """The configured logins, every problem reported at once (passwords are never echoed)."""
    problems: list[str] = []
    logins = []
    for name_var, password_var, default, group in LOGINS:
        name = environment.get(name_var, "").strip() or default
        password = environment.get(password_var, "").strip()
        if not _NAME.match(name) or name in _RESERVED:
            problems.append(
                f"{name_var}={name!r}: a new role name (lower-case letters, digits, _) "
                f"other than {', '.join(sorted(_RESERVED))}"
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


async def ensure_logins(url: str, logins: list[Login]) -> None:
    """Create or update each login as a member of its group role, in one transaction."""
    try:
        conn = await asyncpg.connect(url)
    except (OSError, asyncpg.PostgresError) as error:
        raise StoreUnavailable(f"cannot connect to the database: {error}") from error
    try:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
            for login in logins:
                await conn.execute(await conn.fetchval(_CREATE, login.name, login.password))
                await conn.execute(await conn.fetchval(_GRANT, login.group, login.name))
    finally:
        await conn.close()
