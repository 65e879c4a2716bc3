"""The code index: the values of unique and searchable template items, for "which
identifier under prefix P has T = V" in one index lookup (migrations 0007, 0009-0011).

The table has one index, ``codes_unique (type, FOLD(value), prefix, value, slot)
INCLUDE (handle, is_public, spelled)``: every query here names ``type``, and
``FOLD(value)`` (the value with its case folded as the database folds it) as well as
the value, so that the index serves it, and reads nothing the index does not hold.

A code row is what a lookup needs to answer: ``is_public`` is true when the value is
public and the record is not a draft (:func:`as_stored`), ``spelled`` the record's
spelling (taken from the record when the code is written; NULL: its key)."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from resolver.core.errors import IdentifierExists

Code = tuple[str, str, str, str, bool, bool]  # (prefix, type, value, handle, unique, public)
COLUMNS = ["prefix", "type", "value", "handle", "is_unique", "is_public", "spelled"]


def as_stored(codes: Sequence[Code], state: str) -> list[Code]:
    """A record's codes as its state has them stored: a draft's are not public (nobody's
    to find without the right to see what is not public)."""
    if state != "draft":
        return list(codes)
    return [(p, t, v, h, u, False) for p, t, v, h, u, _ in codes]



def fold(expr: str) -> str:
    """The SQL for ``expr`` with its case folded: the index's second column (0010)."""
    return f'lower({expr} COLLATE "default") COLLATE "C"'


DELETE = f"""DELETE FROM codes USING unnest($1::text[], $2::text[], $3::text[], $4::text[])
               AS d(prefix, type, value, handle)
             WHERE codes.type = d.type AND {fold('codes.value')} = {fold('d.value')}
               AND codes.prefix = d.prefix AND codes.value = d.value
               AND codes.handle = d.handle"""
# (written after the record, in its transaction: the spelling is the record's own)
INSERT = """INSERT INTO codes (prefix, type, value, handle, is_unique, is_public, spelled)
            SELECT d.*, h.spelling
            FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bool[],
                        $6::bool[]) AS d(prefix, type, value, handle, is_unique, is_public)
            LEFT JOIN handles h ON h.handle = d.handle"""
# one probe of the code index: it holds the answer (drafts' codes are not public)
_FOUND = """SELECT {distinct} c.handle, coalesce(c.spelled, c.handle) AS spelled
            FROM codes c
            WHERE c.type = $2 AND {match} AND c.prefix = $1 AND (c.is_public OR $3)
            ORDER BY {order} LIMIT $4"""
# slot is '' for a unique code and the identifier for a searchable one (0009): one value
# names an identifier once, in key order; a range of values may name it under several
EXACT = _FOUND.format(distinct="", match=f"{fold('c.value')} = {fold('$5')} AND c.value = $5",
                      order="c.slot")
# a range of codes: the range of their folded forms ($6, $7), then the exact one
STARTS = _FOUND.format(
    distinct="DISTINCT", order="c.handle",
    match=f"{fold('c.value')} >= $6 AND {fold('c.value')} < $7 AND starts_with(c.value, $5)")
# the scope: prefixes $1 and their descendants
_SCOPED = """(prefix = ANY($1::text[]) OR EXISTS (SELECT 1 FROM unnest($1::text[]) s
                                                 WHERE starts_with(prefix, s || '.')))"""
FOLDED = f"""SELECT DISTINCT handle FROM codes
             WHERE type = $2 AND {fold('value')} >= $3 AND {fold('value')} < $4 AND {_SCOPED}
             ORDER BY handle LIMIT $5"""
FOLDED_EXACT = f"""SELECT DISTINCT handle FROM codes
                   WHERE type = $2 AND {fold('value')} = {fold('$3')} AND {_SCOPED}
                   ORDER BY handle LIMIT $4"""
FOLD = f"SELECT {fold('$1::text')}"


def _columns(codes: Sequence[Code]) -> list[list[object]]:
    return [list(col) for col in zip(*codes)] if codes else [[] for _ in COLUMNS]


async def replace_codes(conn: asyncpg.Connection, old: Sequence[Code],
                        new: Sequence[Code]) -> None:
    """Swap a record's codes (only what changed is touched).

    :raises IdentifierExists: a unique code was taken meanwhile by another identifier.
    """
    keep = set(old) & set(new)
    gone = [c for c in old if c not in keep]
    added = [c for c in new if c not in keep]
    if gone:
        await conn.execute(DELETE, *_columns(gone)[:4])  # network op
    if added:
        try:
            await conn.execute(INSERT, *_columns(added)[:6])  # network op
        except asyncpg.UniqueViolationError:
            raise IdentifierExists("a unique code of this record was taken meanwhile by "
                                   "another identifier; try again") from None


async def copy_codes(conn: asyncpg.Connection, codes: Sequence[Code],
                     spellings: dict[str, str | None]) -> None:
    """Many new records' codes at once (bulk registration), in the caller's transaction;
    ``spellings`` maps their keys to their spellings (None: as the key)."""
    if codes:
        await conn.copy_records_to_table(
            "codes", records=[(*c, spellings[c[3]]) for c in codes],
            columns=COLUMNS)  # network op


async def lookup(conn: asyncpg.Connection, prefix: str, type_: str, value: str,
                 restricted: bool, limit: int = 100, start: bool = False) -> list[str]:
    """The identifiers (as spelled) of ``prefix`` with the code ``value`` of ``type_``
    (with ``start``: a code that begins so); with ``restricted``, codes of values that are
    not public and drafts too. One lookup (or range scan) of the code index."""
    if start:
        low = await conn.fetchval(FOLD, value)  # network op
        rows = await conn.fetch(STARTS, prefix, type_, restricted, limit, value, low,
                                _above(low))  # network op
    else:
        rows = await conn.fetch(EXACT, prefix, type_, restricted, limit, value)  # network op
    return [r["spelled"] for r in rows]


def _above(start: str) -> str:
    """The least string above every string that begins ``start`` (in code-point order, the
    "C" collation of the index): its last character raised by one, past the surrogates,
    which UTF-8 cannot carry."""
    while start and start[-1] == "\U0010ffff":
        start = start[:-1]
    if not start:
        return "\U0010ffff" * 64
    nxt = ord(start[-1]) + 1
    return start[:-1] + chr(0xE000 if 0xD800 <= nxt < 0xE000 else nxt)


async def folded(conn: asyncpg.Connection, prefixes: Sequence[str], type_: str, text: str,
                 whole: bool, limit: int) -> list[str]:
    """The identifiers (keys) under ``prefixes`` (descendants included) with a code of ``type_`` equal to ``text``
    (``whole``) or beginning with it, ignoring case as ILIKE does: candidates for reverse
    lookup, which checks them against every term. Range scans of the code index."""
    if whole:
        rows = await conn.fetch(FOLDED_EXACT, list(prefixes), type_, text, limit)  # network op
    else:
        low = await conn.fetchval(FOLD, text)  # network op
        rows = await conn.fetch(FOLDED, list(prefixes), type_, low, _above(low),
                                limit)  # network op
    return [r["handle"] for r in rows]
