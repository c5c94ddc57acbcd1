"""Throwaway databases on any PostgreSQL server: for the demo, the tests and the benchmarks.

Every run works in a database of its own, never in a shared one. This is database
administration, so it lives beside the ledger's other SQL (``asyncpg`` stays inside
``eventstore/``).
"""

from __future__ import annotations

from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg

CREATE_DATABASE = "CREATE DATABASE {name}"
DROP_DATABASE = "DROP DATABASE IF EXISTS {name} WITH (FORCE)"


def quote_identifier(name: str) -> str:
    """SQL identifier quoting: wrap in double quotes, double any inside."""
    if not name or "\x00" in name:
        raise ValueError(f"not a usable database name: {name!r}")
    return '"' + name.replace('"', '""') + '"'


def with_database(server_url: str, name: str) -> str:
    """The same server URL pointing at database ``name`` (query, e.g. ``?host=``, is kept)."""
    parts = urlsplit(server_url)
    return urlunsplit(parts._replace(path="/" + quote(name, safe="")))


async def _execute(server_url: str, statement: str) -> None:
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def create_database(server_url: str, name: str) -> str:
    """Create database ``name`` on the server behind ``server_url``; return its URL."""
    await _execute(server_url, CREATE_DATABASE.format(name=quote_identifier(name)))
    return with_database(server_url, name)


async def drop_database(server_url: str, name: str) -> None:
    """Drop database ``name`` if it exists, disconnecting anyone still on it."""
    await _execute(server_url, DROP_DATABASE.format(name=quote_identifier(name)))
