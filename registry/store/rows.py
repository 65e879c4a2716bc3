"""A record's row as the write modules read and write it: locked, then stored with the
public view of its lifecycle state (``resolver/core/lifecycle.py``). No checks here."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg

from registry.store import Stored, WriteTx, spelling_of
from resolver.core import lifecycle
from resolver.core.identifier import Identifier

LOCKED = """SELECT "values", template, template_version, state, state_info FROM handles
            WHERE handle = $1 FOR UPDATE"""
INSERT = """INSERT INTO handles (handle, prefix, "values", public_json, spelling, template,
                                 template_version, state, state_info)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
            ON CONFLICT (handle) DO NOTHING RETURNING true"""
UPDATE = """UPDATE handles SET "values" = $2, public_json = $3, template = $4,
                   template_version = $5, state = $6, state_info = $7, updated_at = now()
            WHERE handle = $1"""


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
    public = lifecycle.public_view(rec.values, state, info)
    if create:
        return bool(await tx.conn.fetchval(  # network op
            INSERT, ident.key, ident.prefix.text, rec.values, public, spelling_of(ident),
            rec.template, rec.version, state, info))
    await tx.conn.execute(UPDATE, ident.key, rec.values, public, rec.template, rec.version,
                          state, info)  # network op
    return True




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
    await tx.notify([ident.key])
