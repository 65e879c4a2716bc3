"""Reads on the ``handles`` table. SQL strings are module constants."""

from __future__ import annotations

from typing import Any

import asyncpg

FETCH_RECORD = 'SELECT "values" FROM handles WHERE handle = $1'
FETCH_RECORDS = 'SELECT handle, "values" FROM handles WHERE handle = ANY($1::text[])'

Values = list[dict[str, Any]]


async def fetch_record(pool: asyncpg.Pool, key: str) -> Values | None:
    """The stored values of one identifier (one primary-key lookup), or None."""
    values: Values | None = await pool.fetchval(FETCH_RECORD, key)  # network op
    return values


async def fetch_records(pool: asyncpg.Pool, keys: list[str]) -> dict[str, Values]:
    """The stored values of many identifiers in one query; absent keys are missing."""
    rows = await pool.fetch(FETCH_RECORDS, keys)  # network op
    return {r["handle"]: r["values"] for r in rows}
