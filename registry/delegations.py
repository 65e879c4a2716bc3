"""Delegating a prefix to other nodes (the node hierarchy).

The owner of a prefix (or of an ancestor, or an administrator) records which servers
answer for it: their HTTP base URL, optional binary-protocol address and Ed25519
public key, with a TTL. Resolvers then answer referrals for the prefix and everything
under it (unless a deeper delegation exists), signed by this node's key: that
signature over the child's key is the link of the chain of trust.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from registry.ownership import require
from registry.permissions import Principal
from registry.store import Db, audit, write_transaction
from resolver.core import signing
from resolver.core.channel import zone_key
from resolver.core.delegation import Delegation, Server
from resolver.core.errors import BadRequest, PrefixNotFound
from resolver.core.identifier import Prefix

MAX_SERVERS = 16


def parse_servers(raw: Any) -> tuple[Server, ...]:
    """:raises BadRequest: not 1..16 servers with an http(s) URL and a valid key."""
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_SERVERS:
        raise BadRequest(f"servers must be a list of 1 to {MAX_SERVERS} "
                         '{"url": "https://node.example", "key": "<Ed25519 public key>"}')
    out = []
    for n, item in enumerate(raw):
        try:
            server = Server.from_json(item)
        except ValueError as exc:
            raise BadRequest(f"server {n}: {exc}") from None
        if not server.url.startswith(("http://", "https://")):
            raise BadRequest(f"server {n}: url must start with http:// or https://")
        try:
            signing.load_public_key(server.key)
        except signing.BadSignature as exc:
            raise BadRequest(f"server {n}: key is not an Ed25519 public key ({exc.message})") \
                from None
        out.append(server)
    return tuple(out)


async def _check(conn: asyncpg.Connection, actor: Principal, prefix: Prefix) -> None:
    if not await conn.fetchval("SELECT true FROM prefixes WHERE prefix = $1", prefix.text):
        raise PrefixNotFound(f"prefix {prefix.text} is not allocated here; create it first")
    await require(conn, actor, [prefix], "delegate")


async def delegate(db: Db, actor: Principal, delegation: Delegation) -> None:
    """Record (or replace) the delegation of ``delegation.prefix``.

    :raises PrefixNotFound, InsufficientPermissions:
    """
    async with write_transaction(db) as tx:
        conn = tx.conn
        prefix = Prefix(delegation.prefix)
        await _check(conn, actor, prefix)
        body = delegation.to_json()
        before = await conn.fetchval(
            "SELECT json_build_object('servers', servers, 'ttl', ttl) FROM delegations "
            "WHERE prefix = $1 FOR UPDATE", prefix.text)
        await conn.execute(
            """INSERT INTO delegations (prefix, servers, ttl) VALUES ($1, $2, $3)
               ON CONFLICT (prefix) DO UPDATE
               SET servers = EXCLUDED.servers, ttl = EXCLUDED.ttl, updated_at = now()""",
            prefix.text, body["servers"], delegation.ttl)
        await audit(conn, actor, "delegation_set", prefix=prefix.text, before=before, after=body)
        await tx.notify([zone_key(prefix.text)])


async def undelegate(db: Db, actor: Principal, prefix: Prefix) -> None:
    """:raises PrefixNotFound: the prefix is not delegated."""
    async with write_transaction(db) as tx:
        conn = tx.conn
        await _check(conn, actor, prefix)
        before = await conn.fetchval(
            "DELETE FROM delegations WHERE prefix = $1 "
            "RETURNING json_build_object('servers', servers, 'ttl', ttl)", prefix.text)
        if before is None:
            raise PrefixNotFound(f"prefix {prefix.text} is not delegated")
        await audit(conn, actor, "delegation_delete", prefix=prefix.text, before=before)
        await tx.notify([zone_key(prefix.text)])


async def list_delegations(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    rows = await conn.fetch("SELECT prefix, servers, ttl FROM delegations ORDER BY prefix")
    return [dict(r) for r in rows]
