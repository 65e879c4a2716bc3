"""Write transactions on identifiers.

Each write runs in ONE transaction that (1) locks the current record, (2) checks
that the caller owns the identifier's prefix or an ancestor, (3) changes the row,
(4) appends the audit row and (5) sends the invalidation NOTIFY, which PostgreSQL
delivers only after the commit. Nothing is written when any step fails.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from registry.permissions import Principal, may_administer
from resolver.core import codec
from resolver.core.channel import (
    COUNT_LISTENERS,
    CREATED_MARK,
    INVALIDATE_CHANNEL,
    CommitSync,
    NoSync,
    payloads,
)
from resolver.core.errors import (
    IdentifierExists,
    IdentifierNotFound,
    InsufficientPermissions,
    ValueExists,
    ValuesNotFound,
)
from resolver.core.identifier import Identifier, Prefix
from resolver.core.record import check_record

Stored = dict[str, Any]

INSERT_RECORD = """INSERT INTO handles (handle, prefix, "values", public_json) VALUES ($1, $2, $3, $4)
                   ON CONFLICT (handle) DO NOTHING RETURNING true"""
UPDATE_RECORD = """UPDATE handles SET "values" = $2, public_json = $3, updated_at = now()
                   WHERE handle = $1"""


@dataclass(frozen=True)
class Db:
    """Where writes go, and how to wait until this process has seen their invalidation."""

    pool: asyncpg.Pool
    sync: CommitSync = NoSync()


@dataclass
class WriteTx:
    """An open write transaction and the token its invalidations carry."""

    conn: asyncpg.Connection
    token: str | None
    notified: bool = False

    async def notify(self, keys: Iterable[str]) -> None:
        await notify(self.conn, keys, self.token)
        self.notified = True


@contextlib.asynccontextmanager
async def write_transaction(db: Db) -> AsyncIterator[WriteTx]:
    """A transaction whose invalidations every resolver process has applied before the
    block's caller gets control back (resolver/core/channel.py: read-your-writes)."""
    waiter = db.sync.expect()
    listeners = 0
    try:
        async with db.pool.acquire() as conn, conn.transaction():
            tx = WriteTx(conn, waiter.token)
            yield tx
            if tx.notified and waiter.token is not None:
                listeners = await conn.fetchval(COUNT_LISTENERS)  # the processes to hear from
    except BaseException:
        waiter.cancel()
        raise
    await waiter.wait(listeners)

# the operator (other than the caller) whose identity handle is among $1, if any
IDENTITY_OWNER = """
    SELECT name, substr(identity, strpos(identity, ':') + 1) AS handle FROM operators
    WHERE substr(identity, strpos(identity, ':') + 1) = ANY($1::text[]) AND id <> $2 LIMIT 1"""


async def owners_of(conn: asyncpg.Connection, prefixes: Iterable[Prefix]) -> dict[str, int]:
    """Owner ids of every registered prefix in the lineages of ``prefixes`` (one query)."""
    names = sorted({p.text for prefix in prefixes for p in prefix.lineage()})
    rows = await conn.fetch(
        "SELECT prefix, owner_id FROM prefixes WHERE prefix = ANY($1::text[])", names
    )
    return {r["prefix"]: r["owner_id"] for r in rows}


async def check_write(conn: asyncpg.Connection, principal: Principal, ident: Identifier) -> None:
    """:raises InsufficientPermissions: unless the caller may administer the identifier's
    prefix, and the identifier is not another operator's identity handle."""
    if principal.is_admin:
        return
    owners = await owners_of(conn, [ident.prefix])
    if not may_administer(principal, ident.prefix, owners):
        raise InsufficientPermissions(
            f"operator {principal.name!r} may not write under prefix {ident.prefix.text}: "
            "it owns neither that prefix nor one of its ancestors"
        )
    await check_identities(conn, principal, [ident.key])


async def check_identities(conn: asyncpg.Connection, principal: Principal, keys: list[str]) -> None:
    """An operator's identity handle holds its secret's hash: only that operator or an
    administrator may change it, even when someone else owns the prefix it lives under.

    :raises InsufficientPermissions: naming the identity handle and its operator.
    """
    row = await conn.fetchrow(IDENTITY_OWNER, keys, principal.operator_id)
    if row is not None:
        raise InsufficientPermissions(
            f"{row['handle']} is the identity handle of operator {row['name']!r}; only that "
            "operator or an administrator may change it"
        )


async def audit(
    conn: asyncpg.Connection, principal: Principal, action: str, *, handle: str | None = None,
    prefix: str | None = None, before: Any = None, after: Any = None,
) -> None:
    await conn.execute(
        """INSERT INTO audit (operator_id, actor, action, handle, prefix, before, after)
           VALUES ($1, $2, $3, $4, $5, $6, $7)""",
        principal.operator_id or None, principal.name, action, handle, prefix, before, after,
    )


async def notify(conn: asyncpg.Connection, keys: Iterable[str], token: str | None = None) -> None:
    for payload in payloads(keys, token):
        await conn.execute("SELECT pg_notify($1, $2)", INVALIDATE_CHANNEL, payload)


async def _locked_values(conn: asyncpg.Connection, key: str) -> list[Stored] | None:
    values: list[Stored] | None = await conn.fetchval(
        'SELECT "values" FROM handles WHERE handle = $1 FOR UPDATE', key
    )
    return values


async def put_record(
    db: Db, principal: Principal, ident: Identifier, values: list[Stored],
    *, overwrite: bool,
) -> bool:
    """Create the record, or replace it whole when ``overwrite``. Returns True if created.

    :raises IdentifierExists: it exists and ``overwrite`` is false.
    """
    check_record(values)
    after = values
    async with write_transaction(db) as tx:
        conn = tx.conn
        await check_write(conn, principal, ident)
        before = await _locked_values(conn, ident.key)
        if before is None:
            inserted = await conn.fetchval(
                INSERT_RECORD, ident.key, ident.prefix.text, after, codec.public_json(after)
            )
            if not inserted:  # created concurrently since our SELECT
                if not overwrite:
                    raise IdentifierExists(f"handle {ident.key} already exists")
                before = await _locked_values(conn, ident.key)
        elif not overwrite:
            raise IdentifierExists(f"handle {ident.key} already exists")
        if before is not None:
            await conn.execute(UPDATE_RECORD, ident.key, after, codec.public_json(after))
        await audit(conn, principal, "create" if before is None else "replace",
                    handle=ident.key, prefix=ident.prefix.text, before=before, after=after)
        await tx.notify([ident.key])
    return before is None


async def put_values(
    db: Db, principal: Principal, ident: Identifier, values: list[Stored],
    *, overwrite: bool,
) -> None:
    """Add values to an existing record, replacing same-index values when ``overwrite``.

    :raises IdentifierNotFound: no such record.
    :raises ValueExists: an index is taken and ``overwrite`` is false.
    """
    check_record(values)
    async with write_transaction(db) as tx:
        conn = tx.conn
        await check_write(conn, principal, ident)
        before = await _locked_values(conn, ident.key)
        if before is None:
            raise IdentifierNotFound(f"handle {ident.key} not found")
        new = {v["index"]: v for v in values}
        taken = sorted(i for i in new if any(b["index"] == i for b in before))
        if taken and not overwrite:
            raise ValueExists(f"handle {ident.key} already has values at index {taken}")
        after = [new.pop(b["index"], b) for b in before] + list(new.values())
        check_record(after)
        await conn.execute(UPDATE_RECORD, ident.key, after, codec.public_json(after))
        await audit(conn, principal, "add_values", handle=ident.key, prefix=ident.prefix.text,
                    before=before, after=after)
        await tx.notify([ident.key])


async def delete(
    db: Db, principal: Principal, ident: Identifier, indexes: frozenset[int] = frozenset()
) -> None:
    """Delete the record, or only the values at ``indexes``.

    :raises IdentifierNotFound: no such record.
    :raises ValuesNotFound: an index is not in the record (nothing is removed).
    """
    async with write_transaction(db) as tx:
        conn = tx.conn
        await check_write(conn, principal, ident)
        before = await _locked_values(conn, ident.key)
        if before is None:
            raise IdentifierNotFound(f"handle {ident.key} not found")
        if not indexes:
            await conn.execute("DELETE FROM handles WHERE handle = $1", ident.key)
            after = None
            action = "delete"
        else:
            present = {v["index"] for v in before}
            missing = sorted(indexes - present)
            if missing:
                raise ValuesNotFound(f"handle {ident.key} has no values at index {missing}")
            after = [v for v in before if v["index"] not in indexes]
            await conn.execute(UPDATE_RECORD, ident.key, after, codec.public_json(after))
            action = "remove_values"
        await audit(conn, principal, action, handle=ident.key, prefix=ident.prefix.text,
                    before=before, after=after)
        await tx.notify([ident.key])


async def bulk_put(
    db: Db, principal: Principal,
    records: Sequence[tuple[Identifier, list[Stored]]], *, overwrite: bool,
) -> tuple[int, int]:
    """Register many records in one transaction, all or nothing. Returns (created, replaced).

    Rows go in with COPY: straight into ``handles`` when nothing may be replaced
    (a unique violation then aborts the whole batch), through a temporary table
    and one ``INSERT ... ON CONFLICT`` otherwise.

    :raises IdentifierExists: when ``overwrite`` is false and any identifier exists,
        naming some of them.
    """
    prefixes = {ident.prefix for ident, _ in records}
    rows = []
    for ident, values in records:
        encoded, public = codec.encode_stored(values)  # encoded once, for handles and audit
        rows.append((ident.key, ident.prefix.text, encoded, public))
    actor_id = principal.operator_id or None
    # creating only: nothing positive can be cached for these, one notification will do
    changed = [r[0] for r in rows] if overwrite else [CREATED_MARK]
    try:
        async with write_transaction(db) as tx:
            conn = tx.conn
            if not principal.is_admin:
                owners = await owners_of(conn, prefixes)
                denied = sorted(p.text for p in prefixes
                                if not may_administer(principal, p, owners))
                if denied:
                    raise InsufficientPermissions(
                        f"operator {principal.name!r} may not write under prefix "
                        f"{', '.join(denied[:10])}: it owns neither that prefix nor an ancestor"
                    )
                await check_identities(conn, principal, [r[0] for r in rows])
            if not overwrite:
                await conn.copy_records_to_table(
                    "handles", records=rows, columns=["handle", "prefix", "values", "public_json"]
                )
                await conn.copy_records_to_table(
                    "audit",
                    records=[(actor_id, principal.name, "create", k, p, v) for k, p, v, _ in rows],
                    columns=["operator_id", "actor", "action", "handle", "prefix", "after"],
                )
                created, replaced = len(rows), 0
            else:
                await conn.execute(
                    'CREATE TEMP TABLE _bulk (handle text COLLATE "C" PRIMARY KEY, prefix text,'
                    ' "values" jsonb, public_json bytea) ON COMMIT DROP'
                )
                await conn.copy_records_to_table(
                    "_bulk", records=rows, columns=["handle", "prefix", "values", "public_json"]
                )
                await conn.execute(
                    "SELECT 1 FROM handles h JOIN _bulk b USING (handle) FOR UPDATE OF h"
                )
                replaced = await conn.fetchval(
                    """WITH a AS (
                         INSERT INTO audit (operator_id, actor, action, handle, prefix, before, after)
                         SELECT $1, $2, CASE WHEN h.handle IS NULL THEN 'create' ELSE 'replace' END,
                                b.handle, b.prefix, h."values", b."values"
                         FROM _bulk b LEFT JOIN handles h USING (handle)
                         RETURNING before)
                       SELECT count(*) FILTER (WHERE before IS NOT NULL) FROM a""",
                    actor_id, principal.name,
                )
                await conn.execute(
                    """INSERT INTO handles (handle, prefix, "values", public_json)
                       SELECT handle, prefix, "values", public_json FROM _bulk
                       ON CONFLICT (handle) DO UPDATE
                       SET "values" = EXCLUDED."values", public_json = EXCLUDED.public_json,
                           updated_at = now()"""
                )
                created = len(rows) - replaced
            await tx.notify(changed)
    except asyncpg.UniqueViolationError:
        existing = await db.pool.fetch(
            "SELECT handle FROM handles WHERE handle = ANY($1::text[]) ORDER BY handle LIMIT 10",
            [r[0] for r in rows],
        )
        names = ", ".join(r["handle"] for r in existing)
        raise IdentifierExists(
            f"nothing was registered: some identifiers already exist ({names}); "
            "send overwrite=true to replace them"
        ) from None
    return created, replaced
