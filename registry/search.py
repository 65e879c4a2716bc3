"""Reverse lookup: the identifiers that hold a value of a given type matching a pattern.

The contract of EUDAT's B2HANDLE-HRLS servlet, which pyhandle's ``search_handle`` calls
(handle-facts §2.9, §4.4): ``GET /hrls/handles?URL=*example.org*&CHECKSUM=...`` answers a
JSON array of identifiers. Every ``TYPE=pattern`` term must match (AND); ``*`` in a
pattern stands for any text, everything else is literal; matching ignores case.

What a caller may find: identifiers under the prefixes it administers (all of them for
an administrator), matched only on values it may read there (public or admin-readable;
never a secret key). The scan walks those prefixes' key ranges and reads each record's
JSON (registry/store.py ``match_handles``), so it is bounded by a statement timeout: a
search that needs longer is refused with advice to narrow it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import asyncpg

from registry.store.queries import match_handles
from resolver.core.errors import BadRequest

MAX_TERMS = 10
MAX_PATTERN = 1024
TIMEOUT_SECONDS = 10


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
