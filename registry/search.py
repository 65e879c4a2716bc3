"""Reverse lookup: the identifiers that hold a value of a given type matching a pattern.

The contract of EUDAT's B2HANDLE-HRLS servlet, which pyhandle's ``search_handle`` calls
(handle-facts §2.9, §4.4): ``GET /hrls/handles?URL=*example.org*&CHECKSUM=...`` answers a
JSON array of identifiers. Every ``TYPE=pattern`` term must match (AND); ``*`` in a
pattern stands for any text, everything else is literal; matching ignores case.

What a caller may find: identifiers under the prefixes it administers (all of them for
an administrator), matched only on values it may read there (public or admin-readable;
never a secret key). The scan walks those prefixes' key ranges and reads each record's
JSON (registry/store/queries.py ``match_handles``), so it is bounded by a statement
timeout: a search that needs longer is refused with advice to narrow it.

The code index (docs/records.md) answers instead when it holds every value a term can
match: the term is exact (``order.code=ORD-0042``) or anchored at its start
(``asset.equipment_code=EQ-CNC-*``), and the search is scoped (``prefix=``, or
an operator's own prefixes) and every prefix in scope requires a template
whose every version indexes that type. The index gives the candidates (ignoring case,
as the scan does), and the same term checks as the scan choose among them, so both
answer alike; only the cost differs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import asyncpg

from registry.sharing import seen_by
from registry.store.codes import folded
from registry.store.queries import match_handles
from registry.templates import indexes_throughout
from resolver.core.errors import BadRequest
from resolver.core.identifier import Prefix, parse_prefix
from resolver.core.sharing import View, glob

MAX_TERMS = 10
MAX_PATTERN = 1024
TIMEOUT_SECONDS = 10
MAX_INDEXED_PREFIXES = 100   # beyond this many prefixes in scope, the scan
MAX_CANDIDATES = 100_000     # an index lookup finding more falls back to the scan


def like_pattern(pattern: str) -> str:
    """An HRLS pattern (``*`` = any text) as a LIKE pattern with ``\\`` as the escape."""
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%")


def outermost(prefixes: Iterable[str]) -> list[str]:
    """The prefixes none of whose ancestors is in the set (their ranges cover the rest),
    in the order of their key ranges."""
    chosen = sorted(set(prefixes), key=lambda p: p.count("."))
    out: list[str] = []
    for p in chosen:
        if not any(p.startswith(q + ".") for q in out):
            out.append(p)
    return sorted(out, key=lambda p: p + ".")


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
    like = [(type_, like_pattern(pattern)) for type_, pattern in terms]
    found: list[str] = []
    try:
        async with conn.transaction(readonly=True):
            await conn.execute(f"SET LOCAL statement_timeout = '{TIMEOUT_SECONDS}s'")
            among = await _from_index(conn, scopes, terms)
            if among is not None:
                return await match_handles(conn, None, like, limit, offset,
                                           among=among)  # network op
            if scopes is None:
                return await match_handles(conn, None, like, limit, offset)  # network op
            for prefix in scopes:  # disjoint ranges, in key order
                found += await match_handles(conn, prefix, like,
                                             offset + limit - len(found))  # network op
                if len(found) >= offset + limit:
                    break
    except asyncpg.QueryCanceledError:
        raise BadRequest(
            f"the search did not finish within {TIMEOUT_SECONDS} s; narrow it with "
            "prefix=, a longer pattern or another term"
        ) from None
    return found[offset:offset + limit]


def anchored(pattern: str) -> tuple[str, bool] | None:
    """(text, whole) of a pattern the code index can answer: no ``*`` but trailing ones
    (``whole``: none at all)."""
    text = pattern.rstrip("*")
    if not text or "*" in text:
        return None
    return text, text == pattern


async def _from_index(conn: asyncpg.Connection, scopes: list[str] | None,
                      terms: Sequence[tuple[str, str]]) -> list[str] | None:
    """The candidates the code index gives for one of the terms, or None when no term
    can be answered from it (then the scan)."""
    usable = [(t, a) for t, p in terms if (a := anchored(p)) is not None]
    if not usable or scopes is None:  # everywhere: records under no allocated prefix too
        return None
    rows = await conn.fetch(
        "SELECT prefix FROM prefixes WHERE prefix = ANY($1::text[]) OR "
        "EXISTS (SELECT 1 FROM unnest($1::text[]) s WHERE starts_with(prefix, s || '.')) "
        "LIMIT $2", scopes, MAX_INDEXED_PREFIXES + 1)  # network op
    if len(rows) > MAX_INDEXED_PREFIXES:
        return None
    # records under an unallocated descendant follow what its nearest allocated ancestor
    # requires: checking the allocated prefixes in scope and the scopes covers them all
    prefixes = sorted({*scopes, *(r["prefix"] for r in rows)})
    lineages = {p: [q.text for q in parse_prefix(p).lineage()] for p in prefixes}
    requiring = {r["prefix"]: r for r in await conn.fetch(
        "SELECT prefix, template, template_complete FROM prefixes "
        "WHERE prefix = ANY($1::text[]) AND template IS NOT NULL",
        sorted({q for lineage in lineages.values() for q in lineage}))}  # network op
    templates: set[str] = set()
    for lineage in lineages.values():
        nearest = next((requiring[q] for q in lineage if q in requiring), None)
        if nearest is None or not nearest["template_complete"]:
            return None
        templates.add(nearest["template"])
    for type_, (text, whole) in usable:
        if await indexes_throughout(conn, sorted(templates), type_):  # network op
            found = await folded(conn, scopes, type_, text, whole,
                                 MAX_CANDIDATES + 1)  # network op
            return found if len(found) <= MAX_CANDIDATES else None
    return None


async def search_as_reader(conn: asyncpg.Connection, view: View, prefix: Prefix | None,
                           terms: Sequence[tuple[str, str]], limit: int,
                           offset: int) -> list[str]:
    """The reverse lookup of a reader (docs/sharing.md): under the prefixes its grants
    reach (``prefix``: that one, if they reach it), the identifiers where every term
    matches a value the reader may read. The scan (or the index) finds candidates over
    every readable value; each candidate is kept only if the reader's own view of it
    matches too, so that no identifier is found by a value the reader may not read."""
    reach = {g.scope for g in view.grants if "/" not in g.scope}
    if prefix is not None:
        scopes = [prefix.text] if any(p.text in reach for p in prefix.lineage()) else []
    else:
        scopes = outermost(reach)
    if not scopes:
        return []
    candidates = await search(conn, scopes, terms, offset + limit, 0)  # network op
    if not candidates:
        return []
    wanted = [(t, glob(p)) for t, p in terms]
    found = [spelled for spelled, seen in await seen_by(conn, view, candidates)  # network op
             if all(any(v["type"] == t and m.match(str(v["data"]["value"])) for v in seen)
                    for t, m in wanted)]
    return found[offset:offset + limit]
