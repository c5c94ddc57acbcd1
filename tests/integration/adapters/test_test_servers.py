"""The fixtures every integration test stands on: real servers, throwaway databases, namespaces."""

from __future__ import annotations

import asyncpg
import pytest
import redis.asyncio as aioredis

from eventstore.admin import create_database, drop_database, quote_identifier, with_database

pytestmark = [pytest.mark.db]


async def test_query_when_database_url_given_then_server_answers_in_its_own_database(
    database_url: str,
) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SELECT 1 + 1") == 2
        name = await conn.fetchval("SELECT current_database()")
    finally:
        await conn.close()
    assert name.startswith("claire_test_")


async def test_table_when_created_in_fresh_database_then_invisible_in_the_session_database(
    database_url: str, fresh_database_url
) -> None:
    fresh = await fresh_database_url(migrate=False)
    assert fresh != database_url
    conn = await asyncpg.connect(fresh)
    try:
        await conn.execute("CREATE TABLE only_here (x int)")
    finally:
        await conn.close()
    conn = await asyncpg.connect(database_url)
    try:
        seen = await conn.fetchval("SELECT to_regclass('only_here') IS NOT NULL")
    finally:
        await conn.close()
    assert seen is False


async def test_create_database_when_name_needs_quoting_then_it_round_trips(
    postgres_server_url: str,
) -> None:
    name = 'claire_test_odd "name" é'
    url = await create_database(postgres_server_url, name)
    try:
        conn = await asyncpg.connect(url)
        try:
            assert await conn.fetchval("SELECT current_database()") == name
        finally:
            await conn.close()
    finally:
        await drop_database(postgres_server_url, name)
    conn = await asyncpg.connect(postgres_server_url)
    try:
        left = await conn.fetchval("SELECT count(*) FROM pg_database WHERE datname = $1", name)
    finally:
        await conn.close()
    assert left == 0


def test_quote_identifier_when_name_has_quotes_then_they_are_doubled() -> None:
    assert quote_identifier('a"b') == '"a""b"'
    with pytest.raises(ValueError):
        quote_identifier("")


def test_with_database_when_url_has_socket_query_then_query_is_kept() -> None:
    url = with_database("postgresql://postgres:@/postgres?host=/tmp/x", "claire_test_1")
    assert url == "postgresql://postgres:@/claire_test_1?host=/tmp/x"


@pytest.mark.redis
async def test_ping_when_redis_url_given_then_redis_answers_under_the_namespace(
    redis_url: str, redis_namespace: str, redis_run_namespace: str
) -> None:
    assert redis_namespace.startswith(redis_run_namespace)
    client = aioredis.from_url(redis_url)
    try:
        assert await client.ping() is True
        key = f"{redis_namespace}:probe"
        await client.set(key, b"here", ex=60)
        assert await client.get(key) == b"here"
        await client.delete(key)
    finally:
        await client.aclose()
