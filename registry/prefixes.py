"""Prefix allocation and listing.

The prefix tree is what China's identifier system calls top-level (``88``),
secondary (``88.100``) and enterprise (``88.100.7``) nodes. A top-level prefix is
created by an administrator; a child prefix by the owner of any ancestor, who may
assign it to any operator.
"""

from __future__ import annotations

import asyncpg

from registry.accounts import find_operator
from registry.ownership import administers
from registry.permissions import Principal
from registry.store import Db, audit, write_transaction
from resolver.core.channel import zone_key
from resolver.core.errors import InsufficientPermissions, PrefixExists
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


async def list_prefixes(conn: asyncpg.Connection) -> list[dict[str, object]]:
    rows = await conn.fetch(
        """SELECT p.prefix, p.parent, o.name AS owner FROM prefixes p
           JOIN operators o ON o.id = p.owner_id ORDER BY p.prefix"""
    )
    return [dict(r) for r in rows]
