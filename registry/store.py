"""The registry's SQL on the ``handles`` table, and the one write transaction.

Every registry write (identifiers, operators' identity handles, prefixes, delegations,
tokens) runs in :func:`write_transaction` on a :class:`Db`: ONE transaction that
changes the rows, appends the audit row and sends the invalidation NOTIFY (which
PostgreSQL delivers only after the commit), and that returns to its caller only once
every resolver process has applied the invalidation (resolver/core/channel.py).
Writes of identifiers (1) lock the current record, (2) check that the caller owns the
identifier's prefix or an ancestor (registry/ownership.py), (3) change the row, (4)
audit, (5) notify. Nothing is written when any step fails.

Every statement that reads or writes ``handles`` for the registry is in this module.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from registry.ownership import check_write
from registry.permissions import Principal
from resolver.core import codec
from resolver.core.channel import (
    CREATED_MARK,
    INVALIDATE_CHANNEL,
    LEASES,
    CommitSync,
    NoSync,
    payloads,
)
from resolver.core.errors import (
    IdentifierExists,
    IdentifierNotFound,
    ValueExists,
    ValuesNotFound,
)
from resolver.core.identifier import Identifier, Prefix
from resolver.core.record import check_record

Stored = dict[str, Any]

# handle is the identifier's key (case folded unless the node is case-sensitive);
# spelling the identifier as first written, when it differs (core/identifier.py)
INSERT_RECORD = """INSERT INTO handles (handle, prefix, "values", public_json, spelling)
                   VALUES ($1, $2, $3, $4, $5) ON CONFLICT (handle) DO NOTHING RETURNING true"""
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


ACQUIRE_TIMEOUT = 5.0  # seconds to get a connection for a write: fail fast when the
                       # database is away (503), instead of hanging on a dead pool


@contextlib.asynccontextmanager
async def write_transaction(db: Db) -> AsyncIterator[WriteTx]:
    """A transaction whose caller gets control back only when no resolver process may
    serve what it changed from its cache: after the commit, every listener whose lease
    is valid has acknowledged its invalidation or seen that lease run out (the writer's
    rule, resolver/core/channel.py)."""
    waiter = db.sync.expect()
    leases: dict[str, float] | None = {}
    try:
        async with db.pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn:
            async with conn.transaction():
                tx = WriteTx(conn, waiter.token)
                yield tx
            # committed: the leases to honour are those valid now (any renewed later
            # covers this write)
            if tx.notified and waiter.token is not None:
                try:
                    rows = await conn.fetch(LEASES)  # network op
                    leases = {r["listener"]: r["left_s"] for r in rows}
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                    leases = None  # unknown: the waiter outwaits a whole lease
    except BaseException:
        waiter.cancel()
        raise
    await waiter.wait(leases)

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


def _spelling(ident: Identifier) -> str | None:
    """What ``handles.spelling`` keeps: the spelling, when the key differs from it."""
    spelling = ident.spelling
    return None if spelling == ident.key else spelling


async def _existing(tx: WriteTx, principal: Principal, ident: Identifier) -> list[Stored]:
    """The record the caller may change, locked until the transaction ends.

    :raises InsufficientPermissions: see registry/ownership.py ``check_write``.
    :raises IdentifierNotFound: no such record.
    """
    await check_write(tx.conn, principal, [ident.key], [ident.prefix])
    before = await _locked_values(tx.conn, ident.key)
    if before is None:
        raise IdentifierNotFound(f"handle {ident.key} not found")
    return before


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
        await check_write(conn, principal, [ident.key], [ident.prefix])
        before = await _locked_values(conn, ident.key)
        if before is None:
            inserted = await conn.fetchval(
                INSERT_RECORD, ident.key, ident.prefix.text, after, codec.public_json(after),
                _spelling(ident))
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
        before = await _existing(tx, principal, ident)
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
        before = await _existing(tx, principal, ident)
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


COLUMNS = ["handle", "prefix", "values", "public_json", "spelling"]


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
        rows.append((ident.key, ident.prefix.text, encoded, public, _spelling(ident)))
    actor_id = principal.operator_id or None
    # creating only: nothing positive can be cached for these, one notification will do
    changed = [r[0] for r in rows] if overwrite else [CREATED_MARK]
    try:
        async with write_transaction(db) as tx:
            conn = tx.conn
            await check_write(conn, principal, [r[0] for r in rows], prefixes)
            if not overwrite:
                await conn.copy_records_to_table("handles", records=rows, columns=COLUMNS)
                await conn.copy_records_to_table(
                    "audit",
                    records=[(actor_id, principal.name, "create", k, p, v)
                             for k, p, v, _, _ in rows],
                    columns=["operator_id", "actor", "action", "handle", "prefix", "after"],
                )
                created, replaced = len(rows), 0
            else:
                await conn.execute(
                    'CREATE TEMP TABLE _bulk (handle text COLLATE "C" PRIMARY KEY, prefix text,'
                    ' "values" jsonb, public_json bytea, spelling text) ON COMMIT DROP'
                )
                await conn.copy_records_to_table("_bulk", records=rows, columns=COLUMNS)
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
                    """INSERT INTO handles (handle, prefix, "values", public_json, spelling)
                       SELECT handle, prefix, "values", public_json, spelling FROM _bulk
                       ON CONFLICT (handle) DO UPDATE
                       SET "values" = EXCLUDED."values", public_json = EXCLUDED.public_json,
                           updated_at = now()"""
                )
                created = len(rows) - replaced
            await tx.notify(changed)
    except asyncpg.UniqueViolationError:
        existing = await db.pool.fetch(
            "SELECT coalesce(spelling, handle) AS handle FROM handles "
            "WHERE handle = ANY($1::text[]) ORDER BY handle LIMIT 10", [r[0] for r in rows],
        )
        names = ", ".join(r["handle"] for r in existing)
        raise IdentifierExists(
            f"nothing was registered: some identifiers already exist ({names}); "
            "send overwrite=true to replace them"
        ) from None
    return created, replaced


# --- operators' identity handles (registry/accounts.py) ---------------------------------

IDENTITY = """SELECT o.id, o.name, o.identity, o.is_admin, h."values" FROM operators o
              JOIN handles h ON h.handle = $2 WHERE o.identity = $1"""


async def create_identity(tx: WriteTx, ident: Identifier, values: list[Stored]) -> None:
    """Write a new operator's identity handle in the write transaction ``tx``.

    :raises IdentifierExists: the handle exists already.
    """
    inserted = await tx.conn.fetchval(INSERT_RECORD, ident.key, ident.prefix.text, values,
                                      codec.public_json(values), _spelling(ident))  # network op
    if not inserted:
        raise IdentifierExists(f"the identity handle {ident.spelling} already exists")
    await tx.notify([ident.key])


async def replace_identity_value(tx: WriteTx, handle: str, value: Stored) -> None:
    """Put ``value`` at its index of the identity handle (made again if it was lost), in
    the write transaction ``tx``."""
    values = await _locked_values(tx.conn, handle) or []
    kept = [v for v in values if v["index"] != value["index"]]
    stored = sorted([*kept, value], key=lambda v: v["index"])
    if values:
        await tx.conn.execute(UPDATE_RECORD, handle, stored, codec.public_json(stored))
    else:
        await tx.conn.execute(INSERT_RECORD, handle, handle.partition("/")[0], stored,
                              codec.public_json(stored), None)
    await tx.notify([handle])


async def fetch_identity(pool: asyncpg.Pool, identity: str, handle: str) -> asyncpg.Record | None:
    """The operator with admin identity ``identity`` and the values of its identity
    ``handle`` (id, name, identity, is_admin, values), or None."""
    row: asyncpg.Record | None = await pool.fetchrow(IDENTITY, identity, handle)  # network op
    return row


# --- listing and reverse lookup ------------------------------------------------------------

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
_EVERYWHERE = """SELECT coalesce(h.spelling, h.handle) AS handle FROM handles h
                 WHERE {terms} ORDER BY h.handle LIMIT $1 OFFSET $2"""


def _where(count: int, first: int) -> str:
    """``count`` term clauses whose parameters start at ``$first``."""
    return " AND ".join(_TERM.format(t=first + 2 * n, p=first + 2 * n + 1) for n in range(count))


async def match_handles(conn: asyncpg.Connection, under: str | None,
                        terms: Sequence[tuple[str, str]], limit: int, offset: int = 0) -> list[str]:
    """Identifiers in key order, under prefix ``under`` (descendants included; None:
    everywhere, skipping ``offset``), with a readable value of each term's type whose
    data matches its LIKE pattern (``\\`` escapes). Never a secret key's value."""
    args = [x for term in terms for x in term]
    if under is None:
        rows = await conn.fetch(_EVERYWHERE.format(terms=_where(len(terms), 3)),
                                limit, offset, *args)  # network op
    else:
        rows = await conn.fetch(_RANGE.format(terms=_where(len(terms), 4)),
                                under + ".", under + "0", limit, *args)  # network op
    return [r["handle"] for r in rows]
