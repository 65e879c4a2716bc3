"""Reads on the ``handles`` table. SQL strings are module constants."""

from __future__ import annotations

from typing import Any

import asyncpg

FETCH_RECORD = 'SELECT "values" FROM handles WHERE handle = $1'


async def fetch_record(pool: asyncpg.Pool, key: str) -> list[dict[str, Any]] | None:
    """The stored values of one identifier (one primary-key lookup), or None."""
    values: list[dict[str, Any]] | None = await pool.fetchval(FETCH_RECORD, key)  # network op
    return values
