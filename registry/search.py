"""Reverse lookup: the identifiers that hold a value of a given type matching a pattern.

The contract of EUDAT's B2HANDLE-HRLS servlet, which pyhandle's ``search_handle`` calls
(handle-facts §2.9, §4.4): ``GET /hrls/handles?URL=*example.org*&CHECKSUM=...`` answers a
JSON array of identifiers. Every ``TYPE=pattern`` term must match (AND); ``*`` in a
pattern stands for any text, everything else is literal; matching ignores case.

What a caller may find: identifiers under the prefixes it administers (all of them for
an administrator), matched only on values it may read there (public or admin-readable;
never a secret key). The scan walks those prefixes' key ranges and reads each record's
JSON, so it is bounded by a statement timeout: a search that needs longer is refused
with advice to narrow it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import asyncpg

from resolver.core.errors import BadRequest

MAX_TERMS = 10
MAX_PATTERN = 1024
TIMEOUT_SECONDS = 10

_TERM = """EXISTS (SELECT 1 FROM json_array_elements(h."values") v
                   WHERE v->>'type' = ${t} AND v->'data'->>'value' ILIKE ${p} ESCAPE '\\'
                     AND (substr(v->>'permissions', 1, 1) = '1'
                          OR substr(v->>'permissions', 3, 1) = '1'))"""
# identifiers under prefix P, descendants included, lie in ['P.', 'P0') (column COLLATE "C":
# '.' < '/' < '0')
_SCOPED = """SELECT h.handle FROM unnest($1::text[]) AS s(prefix)
             JOIN handles h ON h.handle >= s.prefix || '.' AND h.handle < s.prefix || '0'
             WHERE {terms} ORDER BY h.handle LIMIT $2 OFFSET $3"""
_EVERYWHERE = """SELECT h.handle FROM handles h
                 WHERE {terms} ORDER BY h.handle LIMIT $1 OFFSET $2"""


def like_pattern(pattern: str) -> str:
    """An HRLS pattern (``*`` = any text) as a LIKE pattern with ``\\`` as the escape."""
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%")


def outermost(prefixes: Iterable[str]) -> list[str]:
    """The prefixes none of whose ancestors is in the set (their ranges cover the rest)."""
    chosen = sorted(set(prefixes), key=lambda p: p.count("."))
    out: list[str] = []
    for p in chosen:
        if not any(p.startswith(q + ".") for q in out):
            out.append(p)
    return sorted(out)


def check_terms(terms: Sequence[tuple[str, str]]) -> None:
    """:raises BadRequest: no term, too many, or an empty or oversized one."""
    if not terms:
        raise BadRequest("give at least one TYPE=pattern, e.g. URL=*example.org*")
    if len(terms) > MAX_TERMS:
        raise BadRequest(f"at most {MAX_TERMS} search terms, got {len(terms)}")
    for type_, pattern in terms:
        if not type_ or not pattern.strip("*"):
            raise BadRequest(f"search term {type_}={pattern!r} matches everything; "
                             "give some text to look for")
        if len(pattern) > MAX_PATTERN or len(type_) > 255:
            raise BadRequest(f"search term {type_[:40]} is over {MAX_PATTERN} characters")


async def search(conn: asyncpg.Connection, scopes: list[str] | None,
                 terms: Sequence[tuple[str, str]], limit: int, offset: int) -> list[str]:
    """Identifiers, in key order, under ``scopes`` (None: everywhere) matching every term.

    :raises BadRequest: the search did not finish within TIMEOUT_SECONDS.
    """
    check_terms(terms)
    first = 4 if scopes is not None else 3
    args: list[object] = [scopes, limit, offset] if scopes is not None else [limit, offset]
    clauses = []
    for n, (type_, pattern) in enumerate(terms):
        clauses.append(_TERM.format(t=first + 2 * n, p=first + 2 * n + 1))
        args += [type_, like_pattern(pattern)]
    query = (_SCOPED if scopes is not None else _EVERYWHERE).format(terms=" AND ".join(clauses))
    try:
        async with conn.transaction(readonly=True):
            await conn.execute(f"SET LOCAL statement_timeout = '{TIMEOUT_SECONDS}s'")
            rows = await conn.fetch(query, *args)
    except asyncpg.QueryCanceledError:
        raise BadRequest(
            f"the search did not finish within {TIMEOUT_SECONDS} s; narrow it with "
            "prefix=, a longer pattern or another term"
        ) from None
    return [r["handle"] for r in rows]
