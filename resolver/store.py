"""Reads on the ``handles`` table. SQL strings are module constants."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from resolver.core.codec import DERIVED, derive_public, public_json
from resolver.core.delegation import Delegation, Server, Zone

Values = list[dict[str, Any]]

# The database went away or is refusing us: a resolution falls back to a stale answer
# or answers 503, never a stack trace. During a failover that includes a server shutting
# down or restarting, and one that takes no writes for a moment (a primary being demoted,
# or promoted and not yet sure the old one is gone).
DATABASE_DOWN: tuple[type[BaseException], ...] = (
    OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError, asyncpg.TooManyConnectionsError, asyncio.TimeoutError,
    asyncpg.AdminShutdownError, asyncpg.CrashShutdownError, asyncpg.ReadOnlySQLTransactionError,
)

FETCH_RECORD = """SELECT "values", template, state, public_json FROM handles
                  WHERE handle = $1"""
# public_json is NULL only for rows written before migration 0002: then send "values";
# empty (codec.DERIVED) when it is derived from the stored JSON (migration 0012)
# drafts do not exist for anyone but their owner (resolver/core/lifecycle.py)
# (with the shared values and the template, for authorized answers from the cache)
FETCH_PUBLIC = """SELECT public_json, CASE WHEN public_json IS NULL THEN "values" END AS v,
                         CASE WHEN public_json = '' THEN convert_to("values"::text, 'UTF8')
                         END AS d, shared_json, template
                  FROM handles WHERE handle = $1 AND state <> 'draft'"""
FETCH_PUBLICS = """SELECT handle, public_json, CASE WHEN public_json IS NULL THEN "values" END AS v,
                          CASE WHEN public_json = '' THEN convert_to("values"::text, 'UTF8')
                          END AS d, shared_json, template
                   FROM handles WHERE handle = ANY($1::text[]) AND state <> 'draft'"""
# what resolution reads of a record: its public values (output-form JSON), its shared
# values (the same, None: none) and the template it follows
Fetched = tuple[bytes, bytes | None, str | None]

# lookup by code (the code index, migrations 0007, 0009-0011), many at once: for each
# (prefix, type, value) the identifiers, as spelled, that hold it in a public value;
# drafts are nobody's to find (their codes are not public). The index's key is (type,
# folded value, prefix, value, slot), slot the identifier or '' for a unique code: no
# identifier twice, in key order; it includes what the answer needs (index-only)
FIND_CODES = """SELECT q.n, f.spelled
                FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY
                     AS q(prefix, type, value, n)
                CROSS JOIN LATERAL (
                  SELECT c.handle, coalesce(c.spelled, c.handle) AS spelled
                  FROM codes c
                  WHERE c.type = q.type
                    AND lower(c.value COLLATE "default") COLLATE "C"
                        = lower(q.value COLLATE "default") COLLATE "C"
                    AND c.prefix = q.prefix AND c.value = q.value AND c.is_public
                  ORDER BY c.slot LIMIT $4) f
                ORDER BY q.n, f.handle"""


async def fetch_record(pool: asyncpg.Pool, key: str) -> asyncpg.Record | None:
    """The stored values, template, state and public view of one identifier (one
    primary-key lookup), or None."""
    row: asyncpg.Record | None = await pool.fetchrow(FETCH_RECORD, key)  # network op
    return row


FETCH_RECORDS = """SELECT handle, "values", template, state, public_json FROM handles
                   WHERE handle = ANY($1::text[])"""


async def fetch_records(pool: asyncpg.Pool, keys: list[str]) -> dict[str, asyncpg.Record]:
    """:func:`fetch_record` for many identifiers in one query; absent keys are missing."""
    rows = await pool.fetch(FETCH_RECORDS, keys)  # network op
    return {r["handle"]: r for r in rows}


def _fetched(row: asyncpg.Record) -> Fetched:
    public: bytes | None = row["public_json"]
    if public is None:
        public = public_json(row["v"])
    elif public == DERIVED:
        public = derive_public(row["d"])
    return public, row["shared_json"], row["template"]


async def fetch_public(pool: asyncpg.Pool, key: str) -> Fetched | None:
    """What resolution reads of one identifier (:data:`Fetched`); None if it does not
    exist. One primary-key lookup, nothing decoded."""
    row = await pool.fetchrow(FETCH_PUBLIC, key)  # network op
    return None if row is None else _fetched(row)


async def fetch_publics(pool: asyncpg.Pool, keys: list[str]) -> dict[str, Fetched]:
    """:func:`fetch_public` for many identifiers in one query; absent keys are missing."""
    rows = await pool.fetch(FETCH_PUBLICS, keys)  # network op
    return {r["handle"]: _fetched(r) for r in rows}


async def fetch_zone(pool: asyncpg.Pool) -> Zone:
    """The prefixes allocated here and the delegations recorded for some of them."""
    prefixes = await pool.fetch("SELECT prefix FROM prefixes")  # network op
    rows = await pool.fetch("SELECT prefix, servers, ttl FROM delegations")  # network op
    return Zone({r["prefix"] for r in prefixes}, {
        r["prefix"]: Delegation(r["prefix"], tuple(Server.from_json(s) for s in r["servers"]),
                                r["ttl"]) for r in rows})


async def find_codes(pool: asyncpg.Pool, wanted: list[tuple[str, str, str]],
                     limit: int) -> list[list[str]]:
    """For each (prefix, type, value), the identifiers that hold that code publicly (at
    most ``limit`` each, in key order). One query for all of them."""
    rows = await pool.fetch(FIND_CODES, [w[0] for w in wanted], [w[1] for w in wanted],
                            [w[2] for w in wanted], limit)  # network op
    out: list[list[str]] = [[] for _ in wanted]
    for r in rows:
        out[r["n"] - 1].append(r["spelled"])
    return out


# the sharing tables (migration 0008), whole, for resolver/sharing.py's snapshot
SHARING_READERS = """SELECT name, token_hash, extract(epoch FROM expires_at) AS expires,
                            revoked_at IS NOT NULL AS revoked FROM readers"""
SHARING_GRANTS = """SELECT id, grantee, scope, types, template,
                           extract(epoch FROM expires_at) AS expires FROM grants
                    WHERE revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())"""
SHARING_MEMBERS = """SELECT m.member, g.name FROM reader_group_members m
                     JOIN reader_groups g ON g.id = m.group_id"""
SHARING_LOGS = "SELECT scope FROM read_logs"


async def fetch_sharing(pool: asyncpg.Pool) -> tuple[list[asyncpg.Record], list[asyncpg.Record],
                                                     list[asyncpg.Record], list[asyncpg.Record]]:
    """(readers, live grants, group memberships, read-log scopes), read in one
    repeatable-read transaction so that they agree with each other."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read",
                                                        readonly=True):
        return (await conn.fetch(SHARING_READERS), await conn.fetch(SHARING_GRANTS),  # network op
                await conn.fetch(SHARING_MEMBERS), await conn.fetch(SHARING_LOGS))
