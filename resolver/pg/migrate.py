"""Apply ``migrations/*.sql`` exactly once each, in order.

Safe when several processes start at once: the whole run holds a PostgreSQL
advisory lock, and each file is applied in its own transaction together with its
row in ``schema_migrations``. An applied file whose text changed since is an
error: migrations are append-only.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import asyncpg

log = logging.getLogger("idres.migrate")

_LOCK_ID = 0x1D7E5_0001  # arbitrary, constant: "idres migrations"


@dataclass(frozen=True)
class Migration:
    version: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


class MigrationError(RuntimeError):
    """The database schema cannot be brought up to date."""


def migrations_dir() -> Path:
    """The SQL files: packaged in the wheel, or the repository's folder in a checkout."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "_migrations", here.parent / "migrations"):
        if candidate.is_dir():
            return candidate
    raise MigrationError("no migrations folder found next to the resolver package")


def load(folder: Path | None = None) -> list[Migration]:
    folder = folder or migrations_dir()
    return [Migration(p.stem, p.read_text()) for p in sorted(folder.glob("*.sql"))]


async def migrate(conn: asyncpg.Connection, folder: Path | None = None) -> list[str]:
    """Bring the schema up to date; returns the versions applied now."""
    todo = load(folder)
    applied_now: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_ID)
    try:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version text PRIMARY KEY,
                   checksum text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = {r["version"]: r["checksum"] for r in await conn.fetch(
            "SELECT version, checksum FROM schema_migrations")}
        for m in todo:
            if m.version in done:
                if done[m.version] != m.checksum:
                    raise MigrationError(
                        f"migration {m.version} was changed after it was applied; "
                        "add a new migration instead"
                    )
                continue
            log.info("applying migration %s", m.version)
            async with conn.transaction():
                await conn.execute(m.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, checksum) VALUES ($1, $2)",
                    m.version, m.checksum,
                )
            applied_now.append(m.version)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_ID)
    return applied_now
