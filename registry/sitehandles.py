"""Prefix handles: ``0.NA/<prefix>`` for every prefix homed on this node, as the Handle
System describes a prefix (handle-facts §1.1, §1.6): ``HS_SITE`` at index 1 (this node's
site: where to send requests for identifiers under the prefix) and ``HS_ADMIN`` at index
100 (the prefix owner's identity). They are ordinary records, so they resolve the same
over REST and the native protocol, through the cache, and a Handle client pointed at
this node finds the prefix here. Other values an administrator puts there stay.

A node that speaks the native protocol (``--handle-port``) writes them: at start for
every prefix whose record is missing or says something else (its address or ports
changed, its owner changed), and when a prefix is allocated or transferred. Delegated
prefixes are the child node's to describe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from registry.store import Db, Stored, audit, write_transaction
from registry.store.rows import SYSTEM, put_system_record
from resolver.core.identifier import parse
from resolver.core.record import ADMIN_PERMISSIONS_ALL

SITE_INDEX, ADMIN_INDEX = 1, 100
PREFIX_HANDLES = """
    SELECT p.prefix, o.identity, h."values" FROM prefixes p
    JOIN operators o ON o.id = p.owner_id
    LEFT JOIN delegations d ON d.prefix = p.prefix
    LEFT JOIN handles h ON h.handle = '0.NA/' || p.prefix
    WHERE d.prefix IS NULL AND (cardinality($1::text[]) = 0 OR p.prefix = ANY($1::text[]))
    ORDER BY p.prefix"""


@dataclass
class Site:
    """This node's site (the ``site`` object of ``GET /api/site``), once its ports are
    open; None: the node does not publish prefix handles."""

    value: dict[str, Any] | None = None


def wanted(site: dict[str, Any], identity: str) -> list[Stored]:
    """The values idres keeps in a prefix handle."""
    index, _, handle = identity.partition(":")
    return [
        {"index": SITE_INDEX, "type": "HS_SITE", "data": {"format": "site", "value": site}},
        {"index": ADMIN_INDEX, "type": "HS_ADMIN", "data": {"format": "admin", "value": {
            "handle": handle, "index": int(index), "permissions": ADMIN_PERMISSIONS_ALL}}},
    ]


def _same(have: Stored, want: Stored) -> bool:
    return bool(have["type"] == want["type"] and have["data"] == want["data"])


async def sync(db: Db, site: Site, prefixes: list[str] | None = None) -> int:
    """Write the prefix handles that are missing or out of date (of ``prefixes``, or all);
    returns how many were written."""
    if site.value is None:
        return 0
    rows = await db.pool.fetch(PREFIX_HANDLES, prefixes or [])  # network op
    written = 0
    for row in rows:
        want = wanted(site.value, row["identity"])
        have = {v["index"]: v for v in row["values"] or []}
        if all(w["index"] in have and _same(have[w["index"]], w) for w in want):
            continue
        kept = [v for i, v in have.items() if i not in (SITE_INDEX, ADMIN_INDEX)]
        ident = parse(f"0.NA/{row['prefix']}")
        async with write_transaction(db) as tx:
            await put_system_record(tx, ident, sorted([*want, *kept], key=lambda v: v["index"]))
            if row["values"] is None:   # (a replacement has its row already)
                await audit(tx.conn, SYSTEM, "system_record", handle=ident.key,
                            prefix=ident.prefix.text)
        written += 1
    return written
