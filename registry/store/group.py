"""Group commit of record writes (``PUT`` of a record: create or replace; or of values
at some indexes, ``?index=``).

Single writes that arrive together share one transaction: while a group's transaction
runs, the writes that arrive wait and go together in the next one (at most
:data:`IN_FLIGHT` groups at once, :data:`MAX_GROUP` writes each, one write per
identifier in a group). A group pays once for what every write paid alone: the
connection, BEGIN, the ownership query, the lock and read of the current rows, the
templates prefixes require, the INSERT, the UPDATE, the code index, the audit INSERT,
the notification, COMMIT (its WAL flush), the leases and the acknowledgements of every
resolver process. Measured on one core shared with PostgreSQL: each of those round trips
costs ~0.1 ms of client CPU and as much of the server's, which is what bounded single
writes to ~250/s at 64 connections (benchmarks/run.py).

Each write keeps its own outcome. What the rules refuse (not served here, not the
caller's, exists, retired, does not conform, a code taken) is decided for each write
before anything is written, and the others go on; so a group writes only writes that
would have succeeded alone. What only the database can refuse at the write (a unique
code taken by a transaction that committed meanwhile, a deadlock) rolls the group back
whole, and its writes are then made one by one, each in its own transaction, as they
would have been without grouping. A create that finds its identifier created meanwhile
by another transaction is made alone again (then it replaces it or is refused).
Nothing is acknowledged before the group's commit and the acknowledgements of every
resolver process: read-your-writes holds for each write as before (docs/architecture.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg
import orjson

from registry.conformance import (
    Conformed,
    Known,
    Requested,
    check_codes,
    check_references,
    conform,
    raise_problems,
)
from registry.ownership import write_refusals
from registry.permissions import Principal
from registry.store import Db, Stored, WriteTx, spelling_of, write_transaction
from registry.store.codes import Code, as_stored, replace_codes
from registry.store.rows import Current, codes_of, required_templates, writable
from resolver.core import lifecycle
from resolver.core.channel import INVALIDATE_CHANNEL, payloads
from resolver.core.errors import IdentifierExists, IdentifierNotFound, IdresError, ValueExists
from resolver.core.identifier import Identifier
from resolver.core.record import check_record

MAX_GROUP = 256   # writes in one transaction, at most
IN_FLIGHT = 2     # group transactions running at once, at most

LOCK = """SELECT handle, "values", template, template_version, state, state_info
          FROM handles WHERE handle = ANY($1::text[]) ORDER BY handle FOR UPDATE"""
# every accepted record written, its audit row appended and the notification sent, in one
# statement: the creates (a create that finds its identifier created meanwhile is left
# out, and so is its audit row), the replaces, then the audit rows of what was written
WRITE = """
WITH ins AS (
    INSERT INTO handles (handle, prefix, "values", public_json, spelling, template,
                         template_version, state, shared_json)
    SELECT * FROM unnest($1::text[], $2::text[], $3::json[], $4::bytea[], $5::text[],
                         $6::text[], $7::integer[], $8::text[], $9::bytea[])
    ON CONFLICT (handle) DO NOTHING RETURNING handle),
upd AS (
    UPDATE handles h SET "values" = u.v, public_json = u.p, template = u.t,
           template_version = u.tv, shared_json = u.sh, updated_at = now()
    FROM unnest($10::text[], $11::json[], $12::bytea[], $13::text[], $14::integer[],
                $15::bytea[]) AS u(handle, v, p, t, tv, sh)
    WHERE h.handle = u.handle RETURNING h.handle),
aud AS (
    INSERT INTO audit (operator_id, actor, action, handle, prefix, before, after)
    SELECT a.* FROM unnest($16::bigint[], $17::text[], $18::text[], $19::text[],
                           $20::text[], $21::json[], $22::json[])
                    AS a(operator_id, actor, action, handle, prefix, before, after)
    WHERE a.handle IN (SELECT handle FROM ins UNION ALL SELECT handle FROM upd)
    RETURNING 1),
sent AS (SELECT pg_notify($23, p) FROM unnest($24::text[]) AS p)
SELECT coalesce((SELECT array_agg(handle) FROM ins), '{}') AS inserted,
       (SELECT count(*) FROM aud) AS audited, (SELECT count(*) FROM sent) AS sent"""

# what rolls a group back whole though each write alone would have been decided (a code
# or identifier taken by a transaction that committed meanwhile, a deadlock, one write's
# data the database refuses): its writes are then made alone. A database that is away
# is every write's answer instead (alone, each would wait for it again).
_DOWN = (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
         asyncpg.CannotConnectNowError, asyncpg.AdminShutdownError, asyncpg.CrashShutdownError,
         asyncpg.ReadOnlySQLTransactionError, TimeoutError)


@dataclass(frozen=True)
class PutWrite:
    """One write of a record: create (or, with ``overwrite``, replace) ``ident``; or, with
    ``merge``, add ``values`` to the existing record (replacing those at the same indexes
    when ``overwrite``)."""

    principal: Principal
    ident: Identifier
    values: list[Stored]
    overwrite: bool
    requested: Requested
    state: str = "active"   # of a created record: "active" or "draft"
    merge: bool = False


def _merged(write: PutWrite, current: Current | None) -> list[Stored]:
    """The values ``write`` leaves the record with.

    :raises IdentifierNotFound, StateConflict, ValueExists, IdentifierExists: why not."""
    if write.merge and current is None:
        raise IdentifierNotFound(f"handle {write.ident.key} not found")
    if not write.merge and current is not None and not write.overwrite:
        raise IdentifierExists(f"handle {write.ident.key} already exists")
    writable(write.ident, current)
    if not write.merge or current is None:
        return write.values
    new = {v["index"]: v for v in write.values}
    taken = sorted(i for i in new if any(b["index"] == i for b in current.values))
    if taken and not write.overwrite:
        raise ValueExists(f"handle {write.ident.key} already has values at index {taken}")
    after = [new.pop(b["index"], b) for b in current.values] + list(new.values())
    check_record(after)
    return after


class _Raced(Exception):
    """The identifier was created by another transaction since the group read it."""


Outcome = bool | BaseException   # True: created, False: replaced; or why not


async def put_many(tx: WriteTx, writes: Sequence[PutWrite]) -> list[Outcome]:
    """Make ``writes`` (distinct identifiers) in the transaction ``tx``; each one's
    outcome. Writes the rules refuse are left out, and the others written."""
    conn = tx.conn
    out: list[Outcome | None] = [None] * len(writes)
    for n, why in (await write_refusals(
            conn, [(w.principal, w.ident) for w in writes])).items():  # network op
        out[n] = why
    live = [n for n, o in enumerate(out) if o is None]
    rows = {r["handle"]: r for r in await conn.fetch(
        LOCK, [writes[n].ident.key for n in live])} if live else {}  # network op
    required = await required_templates(conn, [writes[n].ident for n in live])  # network op
    known: Known = {}
    currents: dict[int, Current | None] = {}
    recs: dict[int, Conformed] = {}
    for n in live:
        w, row = writes[n], rows.get(writes[n].ident.key)
        current = None if row is None else Current(
            row["values"], row["template"], row["template_version"], row["state"],
            row["state_info"])
        try:
            values = _merged(w, current)
            own = (current.template, current.version) if current else (None, None)
            recs[n] = await conform(conn, w.ident, values, w.requested, own,
                                    required.get(w.ident.prefix.text), known)  # network op
        except IdresError as exc:
            out[n] = exc
        currents[n] = current
    checked = [recs[n] for n in recs]
    await check_references(conn, checked)  # network op
    # a record refused already takes no code from another one of the group
    await check_codes(conn, [r for r in checked if not r.problems],
                      others="being written at the same time")  # network op
    for n, rec in recs.items():
        try:
            raise_problems(rec)
        except IdresError as exc:
            out[n] = exc
    # in key order, as the rows were locked: two groups never take keys in opposite orders
    good = sorted((n for n in recs if out[n] is None), key=lambda n: writes[n].ident.key)
    creates = [n for n in good if currents[n] is None]
    replaces = [n for n in good if currents[n] is not None]
    inserted = await _write(tx, writes, recs, currents, creates, replaces)  # network op
    for n in creates:
        if writes[n].ident.key not in inserted:
            out[n] = _Raced()
    creates = [n for n in creates if out[n] is None]
    old: list[Code] = []
    for n in replaces:
        old += await codes_of(conn, writes[n].ident, currents[n])  # network op
    new = [c for n in creates for c in as_stored(recs[n].codes, writes[n].state)]
    for n in replaces:
        state = currents[n].state  # type: ignore[union-attr]  # (replaces have a current)
        new += as_stored(recs[n].codes, state)
    await replace_codes(conn, old, sorted(new))
    for n in creates:
        out[n] = True
    for n in replaces:
        out[n] = False
    return [o if o is not None else RuntimeError("no outcome") for o in out]


def _columns(rows: Sequence[tuple[object, ...]], width: int) -> list[list[object]]:
    return [list(col) for col in zip(*rows)] if rows else [[] for _ in range(width)]


async def _write(tx: WriteTx, writes: Sequence[PutWrite], recs: dict[int, Conformed],
                 currents: dict[int, Current | None], creates: list[int],
                 replaces: list[int]) -> set[str]:
    """:data:`WRITE` for the accepted writes; the keys it created."""
    if not creates and not replaces:
        return set()
    cols = {n: lifecycle.columns(recs[n].values, writes[n].state) for n in creates}
    new = [(writes[n].ident.key, writes[n].ident.prefix.text, *cols[n],
            spelling_of(writes[n].ident), recs[n].template, recs[n].version, writes[n].state,
            lifecycle.shared_view(recs[n].values, writes[n].state)) for n in creates]
    changed = []
    for n in replaces:
        current = currents[n]
        assert current is not None
        cols[n] = lifecycle.columns(recs[n].values, current.state, current.info)
        changed.append((writes[n].ident.key, *cols[n], recs[n].template, recs[n].version,
                        lifecycle.shared_view(recs[n].values, current.state)))
    audit = []
    for n in creates + replaces:
        w, current = writes[n], currents[n]
        # a creation's audit row refers to the record instead of copying it (after NULL:
        # docs/architecture.md, the audit trail)
        if current is None:
            action, before, after = "create", None, None
        else:
            action = "add_values" if w.merge else "replace"
            before, after = orjson.dumps(current.values), cols[n][0]
        audit.append((w.principal.operator_id or None, w.principal.name, action, w.ident.key,
                      w.ident.prefix.text, before, after))
    keys = [writes[n].ident.key for n in creates + replaces]
    row = await tx.conn.fetchrow(
        WRITE, *_columns(new, 9), *_columns(changed, 6), *_columns(audit, 7),
        INVALIDATE_CHANNEL, payloads(keys, tx.token))  # network op
    tx.notified = True
    return set(row["inserted"])


async def put_alone(db: Db, write: PutWrite) -> bool:
    """One write in its own transaction (a group of one). A create that raced another
    transaction's is made again: it then finds the record (and replaces it, or is
    refused)."""
    for _ in range(3):
        async with write_transaction(db) as tx:
            outcome = (await put_many(tx, [write]))[0]  # network op
        if not isinstance(outcome, _Raced):
            break
    if isinstance(outcome, _Raced):
        raise IdentifierExists(f"handle {write.ident.key} was created and deleted meanwhile "
                               "by other writes; try again")
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


class WriteGroups:
    """The groups of one :class:`Db`'s whole-record writes (see module docstring)."""

    def __init__(self) -> None:
        self._queue: list[tuple[PutWrite, asyncio.Future[bool]]] = []
        self._running: set[asyncio.Task[None]] = set()
        self._scheduled = False
        self.groups = 0     # transactions made for groups
        self.writes = 0     # writes they carried

    async def put(self, db: Db, write: PutWrite) -> bool:
        """Make ``write`` in the next group; True if it created the record.

        :raises IdresError: why the write was refused (nothing of it was written)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        self._queue.append((write, future))
        self._schedule(db)
        return await future

    def _schedule(self, db: Db) -> None:
        if not self._scheduled and self._queue and len(self._running) < IN_FLIGHT:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._start, db)

    def _start(self, db: Db) -> None:
        self._scheduled = False
        group: list[tuple[PutWrite, asyncio.Future[bool]]] = []
        later: list[tuple[PutWrite, asyncio.Future[bool]]] = []
        keys: set[str] = set()
        for write, future in self._queue:
            if future.done():          # its caller went away before it was written
                continue
            if len(group) < MAX_GROUP and write.ident.key not in keys:
                keys.add(write.ident.key)
                group.append((write, future))
            else:
                later.append((write, future))
        self._queue = later
        if not group:
            return
        task = asyncio.get_running_loop().create_task(self._run(db, group))
        self._running.add(task)
        task.add_done_callback(lambda t: self._finished(t, db))

    def _finished(self, task: asyncio.Task[None], db: Db) -> None:
        self._running.discard(task)
        self._schedule(db)

    @staticmethod
    async def _outcomes(db: Db, writes: list[PutWrite]) -> list[Outcome]:
        if len(writes) == 1:
            try:
                return [await put_alone(db, writes[0])]  # network op
            except Exception as exc:  # noqa: BLE001 - its waiter receives it
                return [exc]
        try:
            async with write_transaction(db) as tx:
                outcomes = await put_many(tx, writes)  # network op
        except _DOWN:
            raise
        except (asyncpg.PostgresError, IdresError):
            # rolled back whole: each write alone, one by one, as without grouping
            outcomes = []
            for w in writes:
                try:
                    outcomes.append(await put_alone(db, w))  # network op
                except Exception as exc:  # noqa: BLE001 - its waiter receives it
                    outcomes.append(exc)
        return outcomes

    async def _run(self, db: Db, group: list[tuple[PutWrite, asyncio.Future[bool]]]) -> None:
        writes = [w for w, _ in group]
        self.groups += 1
        self.writes += len(writes)
        outcomes: list[Outcome]
        try:
            outcomes = await self._outcomes(db, writes)  # network op
            for n, outcome in enumerate(outcomes):
                if isinstance(outcome, _Raced):
                    try:
                        outcomes[n] = await put_alone(db, writes[n])  # network op
                    except Exception as exc:  # noqa: BLE001 - its waiter receives it
                        outcomes[n] = exc
        except BaseException as exc:
            for _, future in group:
                if not future.done():
                    future.set_exception(exc) if isinstance(exc, Exception) else future.cancel()
            raise
        for (_, future), outcome in zip(group, outcomes):
            if future.done():
                continue
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)
