"""Bearer tokens: issued to an operator, listed, revoked. Stored as SHA-256 hashes only.

An operator manages its own tokens; an administrator manages anyone's. Revocation takes
effect at the next request (authentication reads the table every time). Each issue and
revocation is in the audit trail, with the token's id and label, never the token.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from registry import secrets
from registry.permissions import Principal
from registry.store import Db, audit, write_transaction
from resolver.core.errors import InsufficientPermissions, TokenNotFound

MAX_LABEL = 100


def _iso(t: Any) -> str | None:
    return None if t is None else t.strftime("%Y-%m-%dT%H:%M:%SZ")


async def create_token(db: Db, actor: Principal, owner: Principal,
                       label: str = "") -> tuple[int, str]:
    """A new token for ``owner`` (``actor`` is ``owner`` or an administrator):
    (its id, the token, which exists only in this return value)."""
    _check(actor, owner.operator_id, owner.name)
    token = secrets.new_token()
    async with write_transaction(db) as tx:
        conn = tx.conn
        token_id: int = await conn.fetchval(
            "INSERT INTO tokens (operator_id, token_hash, label) VALUES ($1, $2, $3) RETURNING id",
            owner.operator_id, secrets.hash_token(token), label[:MAX_LABEL],
        )
        await audit(conn, actor, "token_create",
                    after={"operator": owner.name, "token": token_id, "label": label[:MAX_LABEL]})
    return token_id, token


async def list_tokens(conn: asyncpg.Connection, actor: Principal,
                      owner: Principal) -> list[dict[str, Any]]:
    """``owner``'s tokens, oldest first: id, label, created, revoked (null while valid)."""
    _check(actor, owner.operator_id, owner.name)
    rows = await conn.fetch(
        "SELECT id, label, created_at, revoked_at FROM tokens WHERE operator_id = $1 ORDER BY id",
        owner.operator_id,
    )
    return [{"id": r["id"], "label": r["label"], "created": _iso(r["created_at"]),
             "revoked": _iso(r["revoked_at"])} for r in rows]


async def revoke_token(db: Db, actor: Principal, token_id: int) -> dict[str, Any]:
    """Revoke one token (revoking a revoked token changes nothing).

    :raises TokenNotFound: no such token, or (to anyone else but an administrator) a
        token of another operator: its existence is not revealed.
    """
    async with write_transaction(db) as tx:
        conn = tx.conn
        row = await conn.fetchrow(
            """SELECT t.id, t.operator_id, o.name, t.label, t.revoked_at FROM tokens t
               JOIN operators o ON o.id = t.operator_id WHERE t.id = $1 FOR UPDATE OF t""",
            token_id,
        )
        if row is None or not (actor.is_admin or row["operator_id"] == actor.operator_id):
            raise TokenNotFound(f"no token {token_id} of yours")
        revoked = row["revoked_at"]
        if revoked is None:
            revoked = await conn.fetchval(
                "UPDATE tokens SET revoked_at = now() WHERE id = $1 RETURNING revoked_at",
                token_id,
            )
            await audit(conn, actor, "token_revoke",
                        before={"operator": row["name"], "token": token_id, "label": row["label"]})
    return {"id": token_id, "operator": row["name"], "label": row["label"],
            "revoked": _iso(revoked)}


def _check(actor: Principal, owner_id: int, owner_name: str) -> None:
    if not (actor.is_admin or actor.operator_id == owner_id):
        raise InsufficientPermissions(
            f"operator {actor.name!r} may not manage the tokens of {owner_name!r}"
        )
