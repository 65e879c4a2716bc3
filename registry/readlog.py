"""Read logs (docs/sharing.md): who read which identifier's shared values, and when.

An owner turns one on for a prefix (its identifiers and its descendants') or for a
template (its records). Every read by a party other than the owner that shows shared
values of such a record leaves a row, written by the read itself (one statement for a
whole batch) before the answer leaves. Reads by the owner, and reads that show only
public values, leave none. The log keeps the newest ``max_rows`` rows (the writer trims
the oldest, about every thousandth row).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import asyncpg
import orjson

from registry.ownership import require
from registry.permissions import Principal
from registry.store import Db, audit, write_transaction
from resolver.core.channel import SHARING_MARK
from resolver.core.errors import BadRequest
from resolver.core.identifier import Prefix, parse, parse_prefix

MAX_ROWS = int(os.environ.get("IDRES_READ_LOG_ROWS", "1000000"))

# one row per identifier read whose prefix lineage or template has a read log on
LOG = """INSERT INTO read_log (party, handle, prefix, template, types)
         SELECT $1, h.handle, h.prefix, h.template,
                ARRAY(SELECT json_array_elements_text(r.types::json))
         FROM unnest($2::text[], $3::text[]) AS r(handle, types)
         JOIN handles h ON h.handle = r.handle
         WHERE EXISTS (SELECT 1 FROM read_logs l
                       WHERE l.scope = h.template OR l.scope = h.prefix
                          OR starts_with(h.prefix, l.scope || '.'))
         RETURNING id"""
TRIM = "DELETE FROM read_log WHERE id <= $1"


def _scope(text: str) -> tuple[str, Prefix]:
    """(the scope as stored, the prefix whose owner may set it): a prefix, or a
    template's identifier."""
    if "/" in text:
        ident = parse(text)
        return ident.key, ident.prefix
    prefix = parse_prefix(text)
    return prefix.text, prefix


async def set_log(db: Db, actor: Principal, scope: str, enabled: bool) -> dict[str, Any]:
    """Turn the read log of ``scope`` on or off (who administers it)."""
    stored, prefix = _scope(scope)
    async with write_transaction(db) as tx:
        await require(tx.conn, actor, [prefix], "turn on a read log under")
        if enabled:
            await tx.conn.execute("INSERT INTO read_logs (scope) VALUES ($1) "
                                  "ON CONFLICT (scope) DO NOTHING", stored)
        else:
            await tx.conn.execute("DELETE FROM read_logs WHERE scope = $1", stored)
        await tx.notify([SHARING_MARK])
        await audit(tx.conn, actor, "read_log_on" if enabled else "read_log_off",
                    prefix=prefix.text, after={"scope": stored})
    return {"scope": stored, "enabled": enabled}


async def record(pool: asyncpg.Pool, party: str, reads: Sequence[tuple[str, list[str]]]) -> None:
    """Log ``party``'s reads (identifier key, the shared types it was shown) of records
    that have a read log on; the others are left out by the statement itself."""
    if not reads:
        return
    rows = await pool.fetch(LOG, party, [k for k, _ in reads],
                            [orjson.dumps(t).decode() for _, t in reads])  # network op
    if rows and any(r["id"] % 1000 == 0 for r in rows):
        newest = max(r["id"] for r in rows)
        await pool.execute(TRIM, newest - MAX_ROWS)  # network op


async def entries(conn: asyncpg.Connection, actor: Principal, handle: str | None,
                  prefix: str | None, limit: int, before: int) -> list[dict[str, Any]]:
    """The read log of one identifier or of a prefix (and its descendants), newest first;
    who administers it."""
    if handle is not None:
        ident = parse(handle)
        where, key, lineage = "handle = $1", ident.key, ident.prefix
    elif prefix is not None:
        p = parse_prefix(prefix)
        where, key, lineage = "(prefix = $1 OR starts_with(prefix, $1 || '.'))", p.text, p
    else:
        raise BadRequest("give ?handle=PREFIX/SUFFIX or ?prefix=PREFIX")
    await require(conn, actor, [lineage], "read the read log of")
    rows = await conn.fetch(
        f"SELECT id, at, party, handle, template, types FROM read_log WHERE {where} "  # noqa: S608 - ours
        "AND id < $2 ORDER BY id DESC LIMIT $3", key, before, limit)
    return [{"id": r["id"], "at": r["at"].strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
             "party": r["party"], "handle": r["handle"], "template": r["template"],
             "types": list(r["types"])} for r in rows]
