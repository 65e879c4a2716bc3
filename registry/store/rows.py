"""A record's row as the write modules read and write it: locked, then stored with the
public view of its lifecycle state (``resolver/core/lifecycle.py``). No checks here."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg

from registry import record_check as rc
from registry import templates
from registry.permissions import Principal
from registry.store import Stored, WriteTx, audit, spelling_of
from registry.store.codes import Code, as_stored
from resolver.core import lifecycle
from resolver.core.errors import StateConflict
from resolver.core.identifier import Identifier

# the templates prefixes require, read under a shared lock per prefix of the lineage:
# requiring a template (registry/api/records.py put_prefix) takes it exclusively, so no
# write that read "no template" commits between its check of the records and its commit
REQUIRED = """WITH held AS MATERIALIZED (
                SELECT n, pg_advisory_xact_lock_shared(hashtextextended('idres.template ' || n, 0))
                FROM unnest($1::text[]) AS n)
              SELECT prefix, template FROM prefixes JOIN held ON prefix = held.n
              WHERE template IS NOT NULL"""
REQUIRING = "SELECT pg_advisory_xact_lock(hashtextextended('idres.template ' || $1, 0))"
LOCKED = """SELECT "values", template, template_version, state, state_info FROM handles
            WHERE handle = $1 FOR UPDATE"""
INSERT = """INSERT INTO handles (handle, prefix, "values", public_json, spelling, template,
                                 template_version, state, state_info, shared_json)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
            ON CONFLICT (handle) DO NOTHING RETURNING true"""
UPDATE = """UPDATE handles SET "values" = $2, public_json = $3, template = $4,
                   template_version = $5, state = $6, state_info = $7, shared_json = $8,
                   updated_at = now()
            WHERE handle = $1"""


async def required_templates(conn: asyncpg.Connection,
                             idents: Iterable[Identifier]) -> dict[str, str]:
    """Prefix (of these identifiers) → the template the nearest prefix of its lineage that
    requires one requires (prefixes that need none are left out)."""
    prefixes = {i.prefix.text: i.prefix for i in idents}   # a bulk request: a few prefixes
    lineages = {text: [p.text for p in prefix.lineage()] for text, prefix in prefixes.items()}
    names = sorted({p for lineage in lineages.values() for p in lineage})
    rows = await conn.fetch(REQUIRED, names)  # network op
    by_prefix = {r["prefix"]: r["template"] for r in rows}
    out = {}
    for prefix, lineage in lineages.items():
        found = next((by_prefix[p] for p in lineage if p in by_prefix), None)
        if found is not None:
            out[prefix] = found
    return out


# the registry itself, as the actor of what it writes on its own (a template's record)
SYSTEM = Principal(0, "idres", "", False)


@dataclass
class Current:
    """A record as stored, locked by the transaction."""

    values: list[Stored]
    template: str | None
    version: int | None
    state: str
    info: dict[str, Any] | None


async def locked(conn: asyncpg.Connection, key: str) -> Current | None:
    row = await conn.fetchrow(LOCKED, key)  # network op
    if row is None:
        return None
    return Current(row["values"], row["template"], row["template_version"], row["state"],
                   row["state_info"])


class Typed(Protocol):
    """What is stored of a checked record: its values and the template it follows."""

    values: list[Stored]
    template: str | None
    version: int | None


@dataclass
class Plain:
    values: list[Stored]
    template: str | None = None
    version: int | None = None


async def store(tx: WriteTx, ident: Identifier, rec: Typed, state: str,
                 info: dict[str, Any] | None, create: bool) -> bool:
    stored, public = lifecycle.columns(rec.values, state, info)
    shared = lifecycle.shared_view(rec.values, state)
    if create:
        return bool(await tx.conn.fetchval(  # network op
            INSERT, ident.key, ident.prefix.text, stored, public, spelling_of(ident),
            rec.template, rec.version, state, info, shared))
    await tx.conn.execute(UPDATE, ident.key, stored, public, rec.template, rec.version,
                          state, info, shared)  # network op
    return True




async def codes_of(conn: asyncpg.Connection, ident: Identifier, current: Current | None,
                   state: str | None = None) -> list[Code]:
    """The codes the record holds now (to replace), as stored for its state (or, with
    ``state``, as they are to be stored for that one)."""
    if current is None or current.template is None:
        return []
    found = await templates.for_existing(conn, current.template, current.version or 0)
    return as_stored([(ident.prefix.text, t, v, ident.key, u, p)
                      for t, v, u, p in rc.indexed(current.values, found.definition)],
                     state or current.state)


def writable(ident: Identifier, current: Current | None) -> None:
    """:raises StateConflict: a retired record is never changed or reused; a replaced
    one is made active again first."""
    if current is not None and current.state in ("retired", "replaced"):
        raise StateConflict(
            f"{ident.spelling} is {current.state}: a retired identifier is never changed or "
            "reused" if current.state == "retired" else
            f"{ident.spelling} is replaced by {(current.info or {}).get('successor')}: make it "
            "active again first (POST /api/lifecycle)")



async def put_system_record(tx: WriteTx, ident: Identifier, values: list[Stored],
                            state: str = "active") -> None:
    """Write a record the registry itself keeps (a template's own record), created or
    replaced, in the write transaction ``tx`` (the caller checked ownership)."""
    current = await locked(tx.conn, ident.key)
    stamped = [{"ttl": 86400, "timestamp": int(time.time()), "permissions": "1110", **v}
               for v in values]
    rec = Plain(stamped)
    if current is None:
        await store(tx, ident, rec, state, None, create=True)
    else:
        await store(tx, ident, rec, state, None, create=False)
        # every write of a record's values keeps the values it replaced in an audit row
        # (a creation's row refers to them: docs/architecture.md, the audit trail); a
        # template's record replaced at its template's next step is in the template's rows
        if all(v["type"] != templates.TEMPLATE_TYPE for v in current.values):
            await audit(tx.conn, SYSTEM, "system_record", handle=ident.key,
                        prefix=ident.prefix.text, before=current.values, after=stamped)
    await tx.notify([ident.key])
