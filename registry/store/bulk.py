"""Bulk registration: many records in one transaction, all or nothing, with COPY.

Typed records are checked first, all of them (``registry/conformance.py``: templates read
once per version, references and unique codes checked in one query each, against what
is stored and against the other records of the request); if any record fails, the
answer lists the records that failed and why, and nothing is stored. The codes of the
records go in with their rows, in the same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import asyncpg

from registry import record_check as rc
from registry import templates
from registry.conformance import (
    Conformed,
    Known,
    Requested,
    check_codes,
    check_references,
    choose,
    conform_to,
    version_of,
)
from registry.ownership import check_write
from registry.permissions import Principal
from registry.store import Db, Stored, WriteTx, spelling_of, write_transaction
from registry.store.codes import Code, as_stored, copy_codes, replace_codes
from registry.store.rows import required_templates
from resolver.core import codec
from resolver.core.channel import CREATED_MARK
from resolver.core.errors import BulkInvalid, IdentifierExists, StateConflict
from resolver.core.identifier import Identifier

COLUMNS = ["handle", "prefix", "values", "public_json", "spelling", "template",
           "template_version", "shared_json"]
MAX_REPORTED = 100  # failing records named in the answer, at most


class Entry(NamedTuple):
    """One record of a bulk request, as parsed (a named tuple: one per record)."""

    ident: Identifier
    values: list[Stored]
    requested: Requested = Requested()


async def _existing(conn: asyncpg.Connection, keys: list[str]) -> dict[str, asyncpg.Record]:
    rows = await conn.fetch('SELECT handle, "values", template, template_version, state '
                            "FROM handles WHERE handle = ANY($1::text[]) FOR UPDATE",
                            keys)  # network op
    return {r["handle"]: r for r in rows}


async def conform(conn: asyncpg.Connection, entries: Sequence[Entry],
                  existing: dict[str, asyncpg.Record]) -> list[Conformed]:
    """Every record as it will be written, or every failing record at once.

    :raises BulkInvalid: naming each failing record, its identifier and its problems.
    :raises StateConflict: a record to replace is retired or replaced.
    """
    for e in entries if existing else ():
        row = existing.get(e.ident.key)
        if row is not None and row["state"] in ("retired", "replaced"):
            raise StateConflict(f"nothing was registered: {e.ident.spelling} is {row['state']}")
    required = await required_templates(conn, [e.ident for e in entries])
    typed = bool(required) or any(e.requested.template for e in entries) or any(
        r["template"] for r in existing.values())
    if not typed:
        return [Conformed(e.values) for e in entries]
    known: Known = {}
    out = []
    for e in entries:
        row = existing.get(e.ident.key)
        own = (row["template"], row["template_version"]) if row is not None else (None, None)
        choice = choose(e.ident, e.requested, own, required.get(e.ident.prefix.text))
        if choice is None:
            out.append(Conformed(e.values))
            continue
        found = known.get(choice)
        if found is None:        # once per template version of the request
            found = await version_of(conn, choice, known)
        out.append(conform_to(e.ident, e.values, e.requested, found))
    # (a request's records follow a few template versions: what they need is known once)
    if any(rc.plan(v.definition).references for v in known.values()):
        await check_references(conn, out, {e.ident.key: r.template
                                           for e, r in zip(entries, out)})
    # codes taken by stored records: the unique index refuses them at the COPY, and only
    # then are they looked for (bulk_put), so a request that takes none pays no query
    if any(rc.plan(v.definition).indexed for v in known.values()):
        await check_codes(conn, out, stored=False)
    if any(r.problems for r in out):
        _raise_failing(entries, out)
    return out


def _raise_failing(entries: Sequence[Entry], records: Sequence[Conformed]) -> None:
    """:raises BulkInvalid: naming each record with problems, and them."""
    failing = [(n, e, r) for n, (e, r) in enumerate(zip(entries, records)) if r.problems]
    if failing:
        raise BulkInvalid(
            f"nothing was registered: {len(failing)} of {len(entries)} records do not conform "
            "to their templates", failing=len(failing), records=[
                {"record": n, "handle": e.ident.spelling,
                 "errors": [p.to_json() for p in r.problems]}
                for n, e, r in failing[:MAX_REPORTED]])


async def _old_codes(conn: asyncpg.Connection, existing: dict[str, asyncpg.Record],
                     entries: Sequence[Entry]) -> list[Code]:
    out: list[Code] = []
    prefixes = {e.ident.key: e.ident.prefix.text for e in entries}
    for key, row in existing.items():
        if row["template"] is None:
            continue
        found = await templates.for_existing(conn, row["template"], row["template_version"])
        out += as_stored([(prefixes[key], t, v, key, u, p)
                          for t, v, u, p in rc.indexed(row["values"], found.definition)],
                         row["state"])
    return out


async def bulk_put(db: Db, principal: Principal, entries: Sequence[Entry], *,
                   overwrite: bool) -> tuple[int, int]:
    """Register many records in one transaction, all or nothing. Returns (created, replaced).

    Rows go in with COPY: straight into ``handles`` when nothing may be replaced
    (a unique violation then aborts the whole batch), through a temporary table
    and one ``INSERT ... ON CONFLICT`` otherwise.

    :raises IdentifierExists: when ``overwrite`` is false and any identifier exists,
        naming some of them.
    :raises BulkInvalid: some records do not conform (each named, with why).
    """
    keys = [e.ident.key for e in entries]
    actor_id = principal.operator_id or None
    # creating only: nothing positive can be cached for these, one notification will do
    changed = keys if overwrite else [CREATED_MARK]
    records: list[Conformed] = []
    try:
        async with write_transaction(db) as tx:
            conn = tx.conn
            await check_write(conn, principal, keys, {e.ident.prefix for e in entries})
            existing = await _existing(conn, keys) if overwrite else {}
            records = await conform(conn, entries, existing)
            rows = []
            for e, rec in zip(entries, records):
                # encoded once, for handles and audit; new records are active
                stored, public = codec.stored_columns(rec.values)
                rows.append((e.ident.key, e.ident.prefix.text, stored, public,
                             spelling_of(e.ident), rec.template, rec.version,
                             codec.shared_json(rec.values)))
            codes = [c for e, rec in zip(entries, records) for c in as_stored(
                rec.codes, existing[e.ident.key]["state"] if e.ident.key in existing
                else "active")] if any(rec.codes for rec in records) else []
            if not overwrite:
                created, replaced = await _create(tx, principal, actor_id, rows), 0
                await copy_codes(conn, codes, {e.ident.key: spelling_of(e.ident)
                                               for e in entries})
            else:
                replaced = await _replace(tx, principal, actor_id, rows, list(existing))
                created = len(rows) - replaced
                await replace_codes(conn, await _old_codes(conn, existing, entries), codes)
            await tx.notify(changed)
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name == "codes_unique":
            # nothing was stored; now say which records hold codes others have
            async with db.pool.acquire() as conn:
                await check_codes(conn, records)  # network op
            _raise_failing(entries, records)
            raise IdentifierExists("nothing was registered: a unique code of these records "
                                   "was taken meanwhile by another identifier; try again"
                                   ) from None
        existing_names = await db.pool.fetch(
            "SELECT coalesce(spelling, handle) AS handle FROM handles "
            "WHERE handle = ANY($1::text[]) ORDER BY handle LIMIT 10", keys,
        )
        names = ", ".join(r["handle"] for r in existing_names)
        raise IdentifierExists(
            f"nothing was registered: some identifiers already exist ({names}); "
            "send overwrite=true to replace them" if names else
            "nothing was registered: a unique code was taken meanwhile; try again"
        ) from None
    return created, replaced


async def _create(tx: WriteTx, principal: Principal, actor_id: int | None,
                  rows: Sequence[tuple[object, ...]]) -> int:
    conn = tx.conn
    await conn.copy_records_to_table("handles", records=rows, columns=COLUMNS)  # network op
    # a creation's audit row refers to the record (after NULL: docs/architecture.md)
    await conn.copy_records_to_table(  # network op
        "audit", records=[(actor_id, principal.name, "create", r[0], r[1]) for r in rows],
        columns=["operator_id", "actor", "action", "handle", "prefix"])
    return len(rows)


async def _replace(tx: WriteTx, principal: Principal, actor_id: int | None,
                   rows: Sequence[tuple[object, ...]], locked: list[str]) -> int:
    """Replace the ``locked`` records and create the others. An identifier created by
    another transaction since the lock (neither locked nor new any more) fails the whole
    request: replacing it would lose that creation's values from the audit trail.

    :raises IdentifierExists: such an identifier (the caller may try again)."""
    conn = tx.conn
    await conn.execute(
        'CREATE TEMP TABLE _bulk (handle text COLLATE "C" PRIMARY KEY, prefix text,'
        ' "values" json, public_json bytea, spelling text, template text, '
        "template_version integer, shared_json bytea) ON COMMIT DROP")
    await conn.copy_records_to_table("_bulk", records=rows, columns=COLUMNS)  # network op
    replaced: int = await conn.fetchval(
        """WITH a AS (
             INSERT INTO audit (operator_id, actor, action, handle, prefix, before, after)
             SELECT $1, $2, CASE WHEN h.handle IS NULL THEN 'create' ELSE 'replace' END,
                    b.handle, b.prefix, h."values",
                    CASE WHEN h.handle IS NOT NULL THEN b."values" END
             FROM _bulk b LEFT JOIN handles h USING (handle)
             RETURNING before)
           SELECT count(*) FILTER (WHERE before IS NOT NULL) FROM a""",
        actor_id, principal.name)  # network op
    written = await conn.execute(
        """INSERT INTO handles (handle, prefix, "values", public_json, spelling, template,
                                template_version, shared_json)
           SELECT handle, prefix, "values", public_json, spelling, template, template_version,
                  shared_json
           FROM _bulk
           ON CONFLICT (handle) DO UPDATE
           SET "values" = EXCLUDED."values", public_json = EXCLUDED.public_json,
               template = EXCLUDED.template, template_version = EXCLUDED.template_version,
               shared_json = EXCLUDED.shared_json, updated_at = now()
           WHERE handles.handle = ANY($1::text[])""", locked)  # network op
    if int(written.rsplit(" ", 1)[-1]) != len(rows):
        raise IdentifierExists("nothing was registered: some identifiers were created "
                               "meanwhile by another writer; try again")
    return replaced
