"""The registry's SQL on the ``handles`` table, and the one write transaction.

Every registry write (identifiers, operators' identity handles, prefixes, delegations,
tokens) runs in :func:`write_transaction` on a :class:`Db`: ONE transaction that
changes the rows, appends the audit row and sends the invalidation NOTIFY (which
PostgreSQL delivers only after the commit), and that returns to its caller only once
every resolver process has applied the invalidation (resolver/core/channel.py).
Writes of identifiers (1) lock the current record, (2) check that the caller owns the
identifier's prefix or an ancestor (registry/ownership.py), (3) change the row, (4)
audit, (5) notify. Nothing is written when any step fails.

Every statement that reads or writes ``handles`` for the registry is in this package:
here the write transaction and the record SQL shared by its modules, ``records.py``
(single writes), ``bulk.py``, ``identity.py`` (operators' identity handles),
``queries.py`` (listing, reverse lookup).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import asyncpg

from registry.permissions import Principal
from resolver.core.channel import (
    INVALIDATE_CHANNEL,
    LEASES,
    CommitSync,
    NoSync,
    payloads,
)
from resolver.core.identifier import Identifier

if TYPE_CHECKING:
    from registry.store.group import WriteGroups

Stored = dict[str, Any]

# handle is the identifier's key (case folded unless the node is case-sensitive);
# spelling the identifier as first written, when it differs (core/identifier.py)
INSERT_RECORD = """INSERT INTO handles (handle, prefix, "values", public_json, spelling)
                   VALUES ($1, $2, $3, $4, $5) ON CONFLICT (handle) DO NOTHING RETURNING true"""
UPDATE_RECORD = """UPDATE handles SET "values" = $2, public_json = $3, updated_at = now()
                   WHERE handle = $1"""


@dataclass(frozen=True)
class Db:
    """Where writes go, how to wait until this process has seen their invalidation, and
    the node's group commit of whole-record writes (``group.py``; None: each alone)."""

    pool: asyncpg.Pool
    sync: CommitSync = NoSync()
    groups: WriteGroups | None = None
    # seals operators' new secrets (registry/secrets.py); derived from the node's key, so
    # empty where that key is not at hand (a command run elsewhere)
    seal_key: bytes = b""


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
            try:
                async with conn.transaction():
                    tx = WriteTx(conn, waiter.token)
                    yield tx
            except asyncpg.ReadOnlySQLTransactionError:
                # the server takes no writes now (a primary being demoted or a standby
                # after a failover): the pool connects again, where the DSN says
                conn.terminate()
                raise
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


async def locked_values(conn: asyncpg.Connection, key: str) -> list[Stored] | None:
    values: list[Stored] | None = await conn.fetchval(
        'SELECT "values" FROM handles WHERE handle = $1 FOR UPDATE', key
    )
    return values


def spelling_of(ident: Identifier) -> str | None:
    """What ``handles.spelling`` keeps: the spelling, when the key differs from it."""
    spelling = ident.spelling
    return None if spelling == ident.key else spelling


