"""Single writes of identifiers: create or replace, add values, delete (records or
values), move through the lifecycle; each in the one write transaction
(``registry.store.write_transaction``), typed records checked against their template
first (``registry/conformance.py``), their codes kept in step (``codes.py``).
"""

from __future__ import annotations

import time
from typing import Any

import asyncpg

from registry.conformance import (
    Conformed,
    Requested,
    check_codes,
    check_references,
    conform,
    raise_problems,
)
from registry.ownership import check_write
from registry.permissions import Principal
from registry.store import Db, Stored, WriteTx, audit, write_transaction
from registry.store.codes import as_stored, replace_codes
from registry.store.group import PutWrite, put_alone
from registry.store.rows import (
    Current,
    Plain,
    codes_of,
    locked,
    required_templates,
    store,
    writable,
)
from resolver.core import lifecycle
from resolver.core.errors import (
    BadRequest,
    IdentifierNotFound,
    StateConflict,
    ValuesNotFound,
)
from resolver.core.identifier import Identifier, parse
from resolver.core.record import check_record


async def _conformed(conn: asyncpg.Connection, ident: Identifier, values: list[Stored],
                     requested: Requested, current: Current | None) -> Conformed:
    own = (current.template, current.version) if current else (None, None)
    rec = await conform(conn, ident, values, requested, own, (await required_templates(conn, [ident])).get(ident.prefix.text))
    await check_references(conn, [rec])
    await check_codes(conn, [rec])
    raise_problems(rec)
    return rec


async def put_record(
    db: Db, principal: Principal, ident: Identifier, values: list[Stored],
    *, overwrite: bool, requested: Requested = Requested(), state: str = "active",
) -> bool:
    """Create the record, or replace it whole when ``overwrite``; typed records checked
    first. ``state`` "draft" creates a draft. Returns True if created.

    :raises IdentifierExists: it exists and ``overwrite`` is false.
    :raises RecordInvalid: it does not conform to its template (every problem).
    :raises StateConflict: retired or replaced.
    """
    check_record(values)
    if state not in ("active", "draft"):
        raise BadRequest("a record is created active or draft; use POST /api/lifecycle to "
                         "retire or replace it")
    return await _put(db, PutWrite(principal, ident, values, overwrite, requested, state))


async def _put(db: Db, write: PutWrite) -> bool:
    """``write`` in the node's next group commit (group.py), or alone; True if created."""
    if db.groups is None:
        return await put_alone(db, write)  # network op
    return await db.groups.put(db, write)  # network op


async def _existing(tx: WriteTx, principal: Principal, ident: Identifier) -> Current:
    """The record the caller may change, locked until the transaction ends.

    :raises InsufficientPermissions: see registry/ownership.py ``check_write``.
    :raises IdentifierNotFound: no such record.
    """
    await check_write(tx.conn, principal, [ident.key], [ident.prefix])
    current = await locked(tx.conn, ident.key)
    if current is None:
        raise IdentifierNotFound(f"handle {ident.key} not found")
    return current


async def put_values(
    db: Db, principal: Principal, ident: Identifier, values: list[Stored],
    *, overwrite: bool, requested: Requested = Requested(),
) -> None:
    """Add values to an existing record, replacing same-index values when ``overwrite``;
    the record as it will be is checked against its template.

    :raises IdentifierNotFound: no such record.
    :raises ValueExists: an index is taken and ``overwrite`` is false.
    :raises RecordInvalid, StateConflict: as for :func:`put_record`.
    """
    check_record(values)
    await _put(db, PutWrite(principal, ident, values, overwrite, requested, merge=True))


async def delete(
    db: Db, principal: Principal, ident: Identifier, indexes: frozenset[int] = frozenset()
) -> None:
    """Delete the record, or only the values at ``indexes`` (the rest still conforming).

    :raises IdentifierNotFound: no such record.
    :raises ValuesNotFound: an index is not in the record (nothing is removed).
    :raises StateConflict: retired (kept for ever) or replaced.
    """
    async with write_transaction(db) as tx:
        conn = tx.conn
        current = await _existing(tx, principal, ident)
        writable(ident, current)
        old = await codes_of(conn, ident, current)
        if not indexes:
            await conn.execute("DELETE FROM handles WHERE handle = $1", ident.key)
            await replace_codes(conn, old, [])
            after = None
            action = "delete"
        else:
            present = {v["index"] for v in current.values}
            missing = sorted(indexes - present)
            if missing:
                raise ValuesNotFound(f"handle {ident.key} has no values at index {missing}")
            rec = await _conformed(conn, ident, [v for v in current.values
                                                 if v["index"] not in indexes],
                                   Requested(), current)
            await store(tx, ident, rec, current.state, current.info, create=False)
            await replace_codes(conn, old, as_stored(rec.codes, current.state))
            after = rec.values
            action = "remove_values"
        await audit(conn, principal, action, handle=ident.key, prefix=ident.prefix.text,
                    before=current.values, after=after)
        await tx.notify([ident.key])


async def move(db: Db, principal: Principal, ident: Identifier, state: str,
               reason: str = "", successor: str | None = None) -> dict[str, Any]:
    """Move an identifier through its lifecycle (resolver/core/lifecycle.py); returns the new
    state's information.

    :raises StateConflict: a move the lifecycle does not allow.
    :raises BadRequest: no successor for "replaced", or one that does not exist.
    """
    if state not in lifecycle.STATES:
        raise BadRequest(f"state must be one of {', '.join(lifecycle.STATES)}, got {state!r}")
    async with write_transaction(db) as tx:
        conn = tx.conn
        current = await _existing(tx, principal, ident)
        if state == current.state:
            return current.info or {"state": state}
        if state not in lifecycle.MOVES[current.state]:
            raise StateConflict(f"{ident.spelling} is {current.state} and cannot become {state}"
                                + (": retired is final" if current.state == "retired" else ""))
        info: dict[str, Any] = {"state": state, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                   time.gmtime()),
                                "epoch": int(time.time())}
        if reason:
            info["reason"] = reason[:1000]
        if state == "replaced":
            if not successor:
                raise BadRequest("a replaced identifier needs its successor")
            target = parse(successor)
            row = await conn.fetchrow("SELECT state FROM handles WHERE handle = $1", target.key)
            if row is None or row["state"] == "draft" or target.key == ident.key:
                raise BadRequest(f"the successor {successor} does not exist here")
            info["successor"] = target.spelling
        rec = Plain(current.values, current.template, current.version)
        await store(tx, ident, rec, state, info, create=False)
        if current.state == "draft":     # its codes become anybody's to find
            await replace_codes(conn, await codes_of(conn, ident, current),
                                await codes_of(conn, ident, current, state))
        await audit(conn, principal, f"state_{state}", handle=ident.key,
                    prefix=ident.prefix.text, before={"state": current.state}, after=info)
        await tx.notify([ident.key])
    return info
