"""Database connections: the embedded server or a DSN, the database, the pool."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import orjson

from resolver.core.identifier import set_case_sensitive
from resolver.pg.embedded import DATABASE, EmbeddedPostgres
from resolver.pg.migrate import MigrationError, migrate

log = logging.getLogger("idres.pg")


def redact(dsn: str) -> str:
    """The DSN without its passwords, for logs, metrics and messages: the user's (a ``/``
    or ``@`` in it included: everything up to the last ``@`` is the user part), and
    ``password``/``sslpassword`` parameters, in URL or keyword form."""
    scheme, sep, rest = dsn.partition("://")
    if not sep:
        return _SECRET_WORD.sub(r"\1***", dsn)
    at = rest.rfind("@")
    if at >= 0:
        user, colon, _ = rest[:at].partition(":")
        rest = f"{user}:***@{rest[at + 1:]}" if colon else rest
    return scheme + "://" + _SECRET_PARAM.sub(r"\1***", rest)


_SECRET_PARAM = re.compile(r"([?&](?:ssl)?password=)[^&]*", re.IGNORECASE)
_SECRET_WORD = re.compile(r"\b((?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def _encode_json(value: Any) -> bytes:
    # bytes are JSON encoded already (bulk writes encode a record once for two tables)
    return value if isinstance(value, bytes) else orjson.dumps(value)


def _encode_jsonb(value: Any) -> bytes:
    return b"\x01" + _encode_json(value)  # jsonb's binary format: a version byte, then text


def _decode_jsonb(data: bytes) -> Any:
    return orjson.loads(data[1:])


async def init_connection(conn: asyncpg.Connection) -> None:
    """Per-connection set-up: json and jsonb as Python objects through orjson."""
    await conn.set_type_codec("json", schema="pg_catalog", encoder=_encode_json,
                              decoder=orjson.loads, format="binary")
    await conn.set_type_codec("jsonb", schema="pg_catalog", encoder=_encode_jsonb,
                              decoder=_decode_jsonb, format="binary")


async def _ensure_database(dsn: str) -> None:
    parts = urlsplit(dsn)
    admin_dsn = urlunsplit((parts.scheme, parts.netloc, "/postgres", parts.query, ""))
    conn = await asyncpg.connect(admin_dsn)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE):
            with contextlib.suppress(asyncpg.DuplicateDatabaseError):
                await conn.execute(f'CREATE DATABASE "{DATABASE}"')
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def database(dsn: str | None, data_dir: Path, *, create: bool) -> AsyncIterator[str]:
    """Yield a DSN: the given one, or the embedded server's (started and stopped here).
    Only ``create`` makes a new embedded database (``serve`` and ``init`` do; every other
    command refuses, so that it never writes into a database nobody serves).

    :raises NoCluster: no embedded database in ``data_dir`` and not ``create``.
    """
    if dsn:
        yield dsn
        return
    embedded = EmbeddedPostgres(data_dir)
    url = await asyncio.to_thread(embedded.start, create)
    try:
        await _ensure_database(url)
        yield url
    finally:
        await asyncio.to_thread(embedded.stop)


async def release_reset(conn: asyncpg.Connection) -> None:
    """What a connection needs when it goes back to the pool: only a rollback if a
    transaction was left open (a cancelled request). asyncpg's default reset sends
    ``RESET ALL; UNLISTEN *; CLOSE ALL; ...`` on every release, one more round trip per
    query; our code sets no session state on pooled connections (LISTEN and advisory
    locks use dedicated connections), so that round trip buys nothing."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


async def create_pool(dsn: str, min_size: int = 2, max_size: int = 10,
                      timeout: float = 10) -> asyncpg.Pool:
    """A pool whose connections decode JSONB; fails fast when the server is unreachable
    (``timeout`` seconds to connect)."""
    pool = await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, init=init_connection, timeout=timeout,
        command_timeout=30, reset=release_reset,
    )
    assert pool is not None
    return pool


async def migrate_dsn(dsn: str, case_sensitive: bool | None = None) -> list[str]:
    """Bring the schema up to date, then take the database's case mode for this process
    (``case_sensitive``, when given, sets it on a database that holds no identifier yet).

    :raises MigrationError: see ``migrate``; the mode asked for is not the database's.
    """
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        applied = await migrate(conn)
        await apply_case_mode(conn, case_sensitive)
        return applied
    finally:
        await conn.close()


async def apply_case_mode(conn: asyncpg.Connection, wanted: bool | None) -> bool:
    """Suffixes compare as the database says (``node_settings.case_sensitive``, set by
    migration 0006); the keys of stored identifiers depend on it, so it can change only
    while the database holds none.

    :raises MigrationError: ``wanted`` differs from the mode of a database with data.
    """
    stored = await conn.fetchval("SELECT value FROM node_settings WHERE name = 'case_sensitive'")
    mode: bool = stored == "true"
    if wanted is not None and wanted != mode:
        if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM handles)"):
            have = "case-sensitive" if mode else "case-insensitive (the default)"
            raise MigrationError(
                f"this database is {have} and already holds identifiers: its keys depend on "
                "that, so it cannot change; drop --case-sensitive/IDRES_CASE_SENSITIVE or use "
                "a new database")
        await conn.execute("""INSERT INTO node_settings VALUES ('case_sensitive', $1)
                              ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value""",
                           "true" if wanted else "false")
        mode = wanted
    set_case_sensitive(mode)
    return mode
