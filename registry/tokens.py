"""Bearer tokens: issued to an operator, listed, revoked. Stored as SHA-256 hashes only.

An operator manages its own tokens; an administrator manages anyone's. Revocation takes
effect at the next request (authentication reads the table every time). Each issue and
revocation is in the audit trail, with the token's id and label, never the token.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import asyncpg

from registry import secrets
from registry.permissions import Principal
from registry.store import Db, audit, write_transaction
from resolver.core.errors import BadRequest, InsufficientPermissions, TokenNotFound

MAX_LABEL = 100


def _iso(t: Any) -> str | None:
    return None if t is None else t.strftime("%Y-%m-%dT%H:%M:%SZ")


def expiry(expires: Any, expires_in: Any) -> datetime | None:
    """A token's expiry from ``expires`` (ISO 8601) or ``expires_in`` (seconds); None: never.

    :raises BadRequest: neither a time nor a positive number of seconds."""
    if expires_in is not None:
        if type(expires_in) is not int or not 0 < expires_in <= 10 * 365 * 86400:
            raise BadRequest("expires_in is a number of seconds, at most ten years")
        return datetime.now(timezone.utc) + timedelta(seconds=expires_in)
    if expires is None:
        return None
    try:
        when = datetime.fromisoformat(str(expires).replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"expires must be an ISO 8601 time, not {str(expires)[:40]!r}") from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


async def create_token(db: Db, actor: Principal, owner: Principal,
                       label: str = "", expires: datetime | None = None) -> tuple[int, str]:
    """A new token for ``owner`` (``actor`` is ``owner`` or an administrator), valid until
    ``expires`` (None: until revoked): (its id, the token, which exists only in this
    return value).

    :raises BadRequest: ``expires`` is not in the future."""
    _check(actor, owner.operator_id, owner.name)
    if expires is not None and expires <= datetime.now(timezone.utc):
        raise BadRequest("a token's expiry must be in the future")
    token = secrets.new_token()
    async with write_transaction(db) as tx:
        conn = tx.conn
        token_id: int = await conn.fetchval(
            "INSERT INTO tokens (operator_id, token_hash, label, expires_at) "
            "VALUES ($1, $2, $3, $4) RETURNING id",
            owner.operator_id, secrets.hash_token(token), label[:MAX_LABEL], expires,
        )
        await audit(conn, actor, "token_create",
                    after={"operator": owner.name, "token": token_id, "label": label[:MAX_LABEL],
                           "expires": _iso(expires)})
    return token_id, token


async def list_tokens(conn: asyncpg.Connection, actor: Principal,
                      owner: Principal) -> list[dict[str, Any]]:
    """``owner``'s tokens, oldest first: id, label, created, revoked (null while valid),
    expires (null: never), last used (to the minute; null: never)."""
    _check(actor, owner.operator_id, owner.name)
    rows = await conn.fetch(
        "SELECT id, label, created_at, revoked_at, expires_at, last_used_at FROM tokens "
        "WHERE operator_id = $1 ORDER BY id", owner.operator_id,
    )
    return [{"id": r["id"], "label": r["label"], "created": _iso(r["created_at"]),
             "revoked": _iso(r["revoked_at"]), "expires": _iso(r["expires_at"]),
             "last_used": _iso(r["last_used_at"])} for r in rows]


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
