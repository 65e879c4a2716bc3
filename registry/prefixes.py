"""Prefix allocation and listing.

The prefix tree is what China's identifier system calls top-level (``88``),
secondary (``88.100``) and enterprise (``88.100.7``) nodes. A top-level prefix is
created by an administrator; a child prefix by the owner of any ancestor, who may
assign it to any operator.
"""

from __future__ import annotations

import asyncpg

from registry.accounts import find_operator
from registry.ownership import administers, require
from registry.permissions import Principal
from registry.store import Db, audit, write_transaction
from registry.store.rows import REQUIRING
from registry.templates import for_write
from resolver.core.channel import zone_key
from resolver.core.errors import (
    InsufficientPermissions,
    PrefixExists,
    PrefixNotFound,
    StateConflict,
)
from resolver.core.identifier import Prefix


async def create_prefix(db: Db, actor: Principal, prefix: Prefix, owner: str) -> Principal:
    """Allocate ``prefix`` to the operator named ``owner``; returns the owner.

    :raises InsufficientPermissions: the actor owns no ancestor (top level: not admin).
    :raises OperatorNotFound: no such owner.
    :raises PrefixExists: already allocated.
    """
    async with write_transaction(db) as tx:
        conn = tx.conn
        parent = prefix.parent()
        if not actor.is_admin:
            if parent is None:
                raise InsufficientPermissions(
                    f"only an administrator may allocate a top-level prefix ({prefix.text})"
                )
            if not await administers(conn, actor, parent):
                raise InsufficientPermissions(
                    f"operator {actor.name!r} may not allocate prefix {prefix.text}: "
                    f"it owns neither {parent.text} nor an ancestor of it"
                )
        target = await find_operator(conn, owner)
        inserted = await conn.fetchval(
            """INSERT INTO prefixes (prefix, parent, owner_id) VALUES ($1, $2, $3)
               ON CONFLICT DO NOTHING RETURNING true""",
            prefix.text, parent.text if parent else None, target.operator_id,
        )
        if not inserted:
            raise PrefixExists(f"prefix {prefix.text} is already allocated")
        await audit(conn, actor, "prefix_create", prefix=prefix.text,
                    after={"prefix": prefix.text, "owner": target.name})
        await tx.notify([zone_key(prefix.text)])
    return target


async def transfer_prefix(db: Db, actor: Principal, prefix: Prefix,
                          owner: str) -> tuple[str, str]:
    """Give ``prefix`` to the operator named ``owner``: the prefix's owner may give it away,
    and whoever administers its parent (or an administrator) may reassign it. Returns the
    (old, new) owners' names; audited.

    :raises PrefixNotFound: not allocated here.
    :raises InsufficientPermissions, OperatorNotFound:
    """
    async with write_transaction(db) as tx:
        conn = tx.conn
        row = await conn.fetchrow(
            "SELECT p.owner_id, o.name FROM prefixes p JOIN operators o ON o.id = p.owner_id "
            "WHERE p.prefix = $1 FOR UPDATE OF p", prefix.text)
        if row is None:
            raise PrefixNotFound(f"prefix {prefix.text} is not allocated here")
        await require(conn, actor, [prefix], "transfer")   # its owner, or above it
        target = await find_operator(conn, owner)
        await conn.execute("UPDATE prefixes SET owner_id = $2 WHERE prefix = $1",
                           prefix.text, target.operator_id)
        await audit(conn, actor, "prefix_transfer", prefix=prefix.text,
                    before={"owner": row["name"]}, after={"owner": target.name})
    return row["name"], target.name


async def list_prefixes(conn: asyncpg.Connection) -> list[dict[str, object]]:
    rows = await conn.fetch(
        """SELECT p.prefix, p.parent, o.name AS owner FROM prefixes p
           JOIN operators o ON o.id = p.owner_id ORDER BY p.prefix"""
    )
    return [dict(r) for r in rows]


async def require_template(db: Db, actor: Principal, prefix: Prefix, template: str | None,
                           force: bool = False) -> tuple[str | None, bool]:
    """Make every record under ``prefix`` (its descendants included) follow ``template``
    (None: stop requiring one). Returns (the template's key, whether every record there
    follows it already: only then does the reverse lookup answer from the code index).

    :raises StateConflict: records there do not follow it and not ``force`` (the answer
        names them).
    :raises BadRequest: no published template of that name.
    """
    async with write_transaction(db) as tx:
        conn = tx.conn
        await require(conn, actor, [prefix], "set the template of")
        key = None
        if template is not None:
            key = (await for_write(conn, template, None)).handle
        before = await conn.fetchval("SELECT template FROM prefixes WHERE prefix = $1 FOR UPDATE",
                                     prefix.text)
        others: list[str] = []
        if key is not None:
            # the records under it (descendant prefixes too) that do not follow it; writes
            # there wait for this lock (REQUIRING), so none slips in before the commit
            await conn.execute(REQUIRING, prefix.text)
            others = [r["h"] for r in await conn.fetch(
                "SELECT coalesce(spelling, handle) AS h FROM handles WHERE handle >= $1 "
                "AND handle < $2 AND template IS DISTINCT FROM $3 AND NOT EXISTS "
                "(SELECT 1 FROM templates t WHERE t.handle = handles.handle) "  # templates'
                "ORDER BY handle LIMIT 11",
                prefix.text + ".", prefix.text + "0", key)]
            if others and not force:
                refused = StateConflict(
                    f"records under {prefix.text} do not follow template {key} (give them "
                    'the template first, or send "force": true to require it of new writes '
                    "only)")
                refused.details = {"records": others[:10], "more": len(others) > 10}
                raise refused
        found = await conn.fetchval(
            "UPDATE prefixes SET template = $2, template_complete = $3 WHERE prefix = $1 "
            "RETURNING true", prefix.text, key, key is not None and not others)
        if not found:
            raise PrefixNotFound(f"prefix {prefix.text} is not allocated here")
        await audit(conn, actor, "prefix_template", prefix=prefix.text,
                    before={"template": before}, after={"template": key, "forced": bool(others)})
        await tx.notify([zone_key(prefix.text)])
    return key, key is not None and not others
