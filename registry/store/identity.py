"""Operators' identity handles (registry/accounts.py), written in the write transaction."""

from __future__ import annotations

import asyncpg

from registry.store import INSERT_RECORD, UPDATE_RECORD, Stored, WriteTx, locked_values, spelling_of
from resolver.core import codec
from resolver.core.errors import IdentifierExists
from resolver.core.identifier import Identifier

IDENTITY = """SELECT o.id, o.name, o.identity, o.is_admin, o.disabled_at, h."values"
              FROM operators o
              JOIN handles h ON h.handle = $2 WHERE o.identity = $1"""


async def create_identity(tx: WriteTx, ident: Identifier, values: list[Stored]) -> None:
    """Write a new operator's identity handle in the write transaction ``tx``.

    :raises IdentifierExists: the handle exists already.
    """
    inserted = await tx.conn.fetchval(INSERT_RECORD, ident.key, ident.prefix.text, values,
                                      codec.public_json(values), spelling_of(ident))  # network op
    if not inserted:
        raise IdentifierExists(f"the identity handle {ident.spelling} already exists")
    await tx.notify([ident.key])


async def replace_identity_value(tx: WriteTx, handle: str, value: Stored) -> list[Stored]:
    """Put ``value`` at its index of the identity handle (made again if it was lost), in
    the write transaction ``tx``; returns the values it had (for the audit row's
    ``before``: every write of a record's values keeps them there)."""
    values = await locked_values(tx.conn, handle) or []
    kept = [v for v in values if v["index"] != value["index"]]
    stored = sorted([*kept, value], key=lambda v: v["index"])
    if values:
        await tx.conn.execute(UPDATE_RECORD, handle, stored, codec.public_json(stored))
    else:
        await tx.conn.execute(INSERT_RECORD, handle, handle.partition("/")[0], stored,
                              codec.public_json(stored), None)
    await tx.notify([handle])
    return values


async def fetch_identity(pool: asyncpg.Pool, identity: str, handle: str) -> asyncpg.Record | None:
    """The operator with admin identity ``identity`` and the values of its identity
    ``handle`` (id, name, identity, is_admin, values), or None."""
    row: asyncpg.Record | None = await pool.fetchrow(IDENTITY, identity, handle)  # network op
    return row


