"""Reads of ``handles`` for the registry: listing a prefix, reverse lookup."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from resolver.core.identifier import Prefix

COUNT_UNDER = "SELECT count(*) FROM handles WHERE handle >= $1 AND handle < $2"
LIST_UNDER = """SELECT coalesce(spelling, handle) AS handle FROM handles
                WHERE handle >= $1 AND handle < $2 ORDER BY handle LIMIT $3 OFFSET $4"""


async def list_handles(
    conn: asyncpg.Connection, prefix: Prefix, page: int, page_size: int
) -> tuple[int, list[str]]:
    """(total count, one page of identifiers) directly under ``prefix``, in key order."""
    # every key of P lies in ['P/', 'P0'): '0' follows '/' in byte order (column COLLATE "C")
    low, high = prefix.text + "/", prefix.text + "0"
    total: int = await conn.fetchval(COUNT_UNDER, low, high)  # network op
    if page_size == 0:
        return total, []
    rows = await conn.fetch(LIST_UNDER, low, high, page_size, page * page_size)  # network op
    return total, [r["handle"] for r in rows]


_TERM = """EXISTS (SELECT 1 FROM json_array_elements(h."values") v
                   WHERE v->>'type' = ${t} AND v->'data'->>'value' ILIKE ${p} ESCAPE '\\'
                     AND (substr(v->>'permissions', 1, 1) = '1'
                          OR substr(v->>'permissions', 3, 1) = '1'))"""
# identifiers under prefix P, descendants included, lie in ['P.', 'P0') (column COLLATE "C":
# '.' < '/' < '0'); one range scan of the primary key per prefix
_RANGE = """SELECT coalesce(h.spelling, h.handle) AS handle FROM handles h
            WHERE h.handle >= $1 AND h.handle < $2 AND {terms} ORDER BY h.handle LIMIT $3"""
_AMONG = """SELECT coalesce(h.spelling, h.handle) AS handle FROM handles h
            WHERE h.handle = ANY($1::text[]) AND {terms} ORDER BY h.handle LIMIT $2 OFFSET $3"""
_EVERYWHERE = """SELECT coalesce(h.spelling, h.handle) AS handle FROM handles h
                 WHERE {terms} ORDER BY h.handle LIMIT $1 OFFSET $2"""


def _where(count: int, first: int) -> str:
    """``count`` term clauses whose parameters start at ``$first``."""
    return " AND ".join(_TERM.format(t=first + 2 * n, p=first + 2 * n + 1) for n in range(count))


async def match_handles(conn: asyncpg.Connection, under: str | None,
                        terms: Sequence[tuple[str, str]], limit: int, offset: int = 0,
                        among: Sequence[str] | None = None) -> list[str]:
    """Identifiers in key order, under prefix ``under`` (descendants included; None:
    everywhere, skipping ``offset``) or ``among`` those keys (skipping ``offset``), with a
    readable value of each term's type whose data matches its LIKE pattern (``\\``
    escapes). Never a secret key's value."""
    args = [x for term in terms for x in term]
    if among is not None:
        rows = await conn.fetch(_AMONG.format(terms=_where(len(terms), 4)),
                                list(among), limit, offset, *args)  # network op
    elif under is None:
        rows = await conn.fetch(_EVERYWHERE.format(terms=_where(len(terms), 3)),
                                limit, offset, *args)  # network op
    else:
        rows = await conn.fetch(_RANGE.format(terms=_where(len(terms), 4)),
                                under + ".", under + "0", limit, *args)  # network op
    return [r["handle"] for r in rows]


# An audit row as it is read. A creation's row refers to the record it created (after
# NULL, registry/store/bulk.py and group.py): the record as created is the `before` of the
# identifier's next row that holds values (every later write of a record's values keeps
# them in `before`), or, with none, the record as it is now; read in the query's one
# snapshot (docs/architecture.md, the audit trail). For every reader of the trail.
AUDIT_COLUMNS = """a.id, a.at, a.actor, a.action, a.handle, a.prefix, a.before,
       CASE WHEN a.after IS NULL AND a.action = 'create' AND a.handle IS NOT NULL
       THEN coalesce(
         (SELECT n.before FROM audit n
          WHERE n.handle = a.handle AND n.id > a.id AND json_typeof(n.before) = 'array'
          ORDER BY n.id LIMIT 1),
         (SELECT h."values" FROM handles h WHERE h.handle = a.handle))
       ELSE a.after END AS after"""


async def indexes_of(pool: asyncpg.Pool, key: str) -> set[int] | None:
    """The indexes of an identifier's values, None when it does not exist."""
    found = await pool.fetchval(  # network op
        """SELECT array_agg((v->>'index')::int) FROM handles h,
           json_array_elements(h."values") v WHERE h.handle = $1""", key)
    if found is None:
        exists = await pool.fetchval("SELECT true FROM handles WHERE handle = $1", key)
        return set() if exists else None
    return set(found)
