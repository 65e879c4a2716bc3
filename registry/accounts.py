"""Operators, their admin identities and tokens; turning credentials into a Principal.

An operator's identity is a Handle admin identity ``INDEX:HANDLE`` such as
``300:88.100.7/ADMIN``. Creating the operator creates that handle: an ``HS_ADMIN``
value (index 100, publicly readable, so pyhandle's start-up check finds it) and an
``HS_SECKEY`` value at INDEX holding the secret's hash, with permissions ``0100``
(nobody may read it, not even administrators). Authentication reads that value.
"""

from __future__ import annotations

import asyncio
import base64
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import asyncpg

from registry import secrets
from registry.bearers import Bearers
from registry.permissions import Principal, unreadable_hidden
from registry.store import Db, audit, write_transaction
from registry.store import identity as identities
from resolver.core import codec
from resolver.core.errors import (
    AuthenticationFailed,
    BadRequest,
    InsufficientPermissions,
    InvalidIdentifier,
    OperatorExists,
    OperatorNotFound,
)
from resolver.core.identifier import parse
from resolver.core.record import HandleValue

DEFAULT_IDENTITY_PREFIX = "0.OPERATOR"
SECKEY_PERMISSIONS = "0100"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")


@dataclass(frozen=True)
class NewOperator:
    """The result of creating an operator: the secret and token exist only here."""

    principal: Principal
    secret: str
    token: str


def parse_identity(text: str) -> tuple[int, str]:
    """``INDEX:HANDLE`` → (index, normalised handle key).

    :raises InvalidIdentifier: no colon, a non-numeric index or a malformed handle.
    """
    index_text, colon, handle = text.partition(":")
    if not colon or not index_text.isdigit() or not 0 < int(index_text) < 2**31:
        raise InvalidIdentifier(
            f"admin identity {text!r} must look like INDEX:HANDLE, e.g. 300:88.100.7/ADMIN"
        )
    return int(index_text), parse(handle).key


async def create_operator(
    db: Db, actor: Principal, name: str, identity: str | None = None, *, is_admin: bool = False,
) -> NewOperator:
    """Create an operator, its identity handle and a first token, in one write transaction.

    :raises BadRequest: an invalid name.
    :raises OperatorExists: the name or identity is taken.
    :raises IdentifierExists: the identity handle already exists.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise BadRequest(
            "operator name must be 1-64 characters of letters, digits, '.', '_' or '-' "
            "and start with a letter or digit"
        )
    index, handle = parse_identity(identity or f"300:{DEFAULT_IDENTITY_PREFIX}/{name}")
    identity = f"{index}:{handle}"
    secret, token = secrets.new_secret(), secrets.new_token()
    values = [
        HandleValue(100, "HS_ADMIN", "admin",
                    {"handle": handle, "index": index, "permissions": "111111111111"}),
        HandleValue(index, "HS_SECKEY", "string",
                    secrets.hash_secret(secret, db.seal_key, identity),
                    permissions=SECKEY_PERMISSIONS),
    ]
    stored = [codec.to_stored(v.with_timestamp(int(time.time()))) for v in values]
    async with write_transaction(db) as tx:
        conn = tx.conn
        try:
            op_id = await conn.fetchval(
                "INSERT INTO operators (name, identity, is_admin) VALUES ($1, $2, $3) RETURNING id",
                name, identity, is_admin,
            )
        except asyncpg.UniqueViolationError:
            raise OperatorExists(f"an operator named {name!r} or with identity {identity} exists") from None
        await identities.create_identity(tx, parse(handle), stored)
        await conn.execute(
            "INSERT INTO tokens (operator_id, token_hash, label) VALUES ($1, $2, 'initial')",
            op_id, secrets.hash_token(token),
        )
        # the audit keeps the record as created, minus the secret's hash
        await audit(conn, actor, "operator_create", handle=handle,
                    after={"name": name, "identity": identity, "admin": is_admin})
    return NewOperator(Principal(op_id, name, identity, is_admin), secret, token)


async def set_disabled(db: Db, actor: Principal, name: str, disabled: bool) -> dict[str, Any]:
    """Disable an operator (its tokens and secret refused from the next request on) or
    enable it again; administrators only, and not themselves.

    :raises InsufficientPermissions, OperatorNotFound, BadRequest:"""
    if not actor.is_admin:
        raise InsufficientPermissions("only an administrator may disable or enable operators")
    async with write_transaction(db) as tx:
        target = await find_operator(tx.conn, name)
        if disabled and target.operator_id == actor.operator_id:
            raise BadRequest("an administrator may not disable itself")
        await tx.conn.execute(
            "UPDATE operators SET disabled_at = CASE WHEN $2 THEN coalesce(disabled_at, now()) "
            "END WHERE id = $1", target.operator_id, disabled)
        await audit(tx.conn, actor, "operator_disable" if disabled else "operator_enable",
                    after={"operator": target.name})
    return {"operator": target.name, "disabled": disabled}


async def find_operator(conn: asyncpg.Connection, name_or_identity: str) -> Principal:
    """:raises OperatorNotFound: no operator has that name or identity."""
    row = await conn.fetchrow(
        "SELECT id, name, identity, is_admin FROM operators WHERE name = $1 OR identity = $1",
        name_or_identity,
    )
    if row is None and ":" in name_or_identity:
        try:
            index, handle = parse_identity(name_or_identity)
        except InvalidIdentifier:
            pass
        else:
            row = await conn.fetchrow(
                "SELECT id, name, identity, is_admin FROM operators WHERE identity = $1",
                f"{index}:{handle}",
            )
    if row is None:
        raise OperatorNotFound(f"no operator named {name_or_identity!r}")
    return Principal(row["id"], row["name"], row["identity"], row["is_admin"])


async def reset_secret(db: Db, actor: Principal, owner: Principal) -> str:
    """A new secret for ``owner`` (``actor`` is ``owner`` or an administrator); the old
    one stops working at once. Returns the secret, which exists only here.

    :raises InsufficientPermissions: someone else's secret, and not an administrator.
    """
    if not (actor.is_admin or actor.operator_id == owner.operator_id):
        raise InsufficientPermissions(
            f"operator {actor.name!r} may not reset the secret of {owner.name!r}")
    index, handle = parse_identity(owner.identity)
    secret = secrets.new_secret()
    seckey = codec.to_stored(HandleValue(index, "HS_SECKEY", "string",
                                         secrets.hash_secret(secret, db.seal_key,
                                                             f"{index}:{handle}"),
                                         timestamp=int(time.time()),
                                         permissions=SECKEY_PERMISSIONS))
    async with write_transaction(db) as tx:
        # what the identity held (kept for the audit trail's rule: every write of a
        # record's values keeps them), the secret's hash hidden
        before = unreadable_hidden(await identities.replace_identity_value(tx, handle, seckey))
        await audit(tx.conn, actor, "operator_secret_reset", handle=handle, before=before, after={"name": owner.name, "identity": owner.identity})
    return secret


async def list_operators(conn: asyncpg.Connection) -> list[dict[str, object]]:
    rows = await conn.fetch(
        "SELECT name, identity, is_admin, created_at, disabled_at FROM operators ORDER BY name"
    )
    return [{"name": r["name"], "identity": r["identity"], "admin": r["is_admin"],
             "created": r["created_at"].strftime("%Y-%m-%dT%H:%M:%SZ"),
             "disabled": r["disabled_at"].strftime("%Y-%m-%dT%H:%M:%SZ")
             if r["disabled_at"] else None} for r in rows]


async def authenticate(pool: asyncpg.Pool, header: str,
                       bearers: Bearers | None = None) -> Principal:
    """Credentials from an ``Authorization`` header → the operator (a bearer token
    looked up with the others of its loop turn, through ``bearers``).

    ``Basic`` carries ``INDEX:HANDLE`` (colon percent-encoded, as pyhandle sends
    it; an unencoded colon is accepted too) and the secret; ``Bearer`` carries a
    token.

    :raises AuthenticationFailed: malformed, unknown or wrong credentials; the
        message never echoes the secret.
    """
    if not header.isascii() or not header.isprintable():
        # HTTP header values are ASCII; what arrives otherwise (raw bytes that aiohttp
        # decoded as surrogates, control characters) is not a credential
        raise AuthenticationFailed("the Authorization header must be printable ASCII")
    scheme, _, credentials = header.strip().partition(" ")
    scheme = scheme.lower()
    credentials = credentials.strip()
    if scheme == "bearer" and credentials:
        # (shielded: the lookup is shared by the requests of the turn with this token)
        found = await asyncio.shield((bearers or Bearers(pool)).find(
            secrets.hash_token(credentials)))
        if found is None:
            raise AuthenticationFailed("the bearer token is not valid")
        return found
    if scheme == "basic" and credentials:
        try:
            decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):  # binascii.Error is a ValueError
            raise AuthenticationFailed("the Basic credentials are not valid base64 UTF-8") from None
        user, colon, secret = decoded.rpartition(":")
        if not colon or not user:
            raise AuthenticationFailed("Basic credentials must be INDEX:HANDLE and a secret")
        try:
            index, handle = parse_identity(unquote(user))
        except InvalidIdentifier as exc:
            raise AuthenticationFailed(exc.message) from None
        row = await identities.fetch_identity(pool, f"{index}:{handle}", handle)
        stored = None
        if row is not None:
            stored = next((v["data"]["value"] for v in row["values"]
                           if v["index"] == index and v["type"] == "HS_SECKEY"), None)
        if row is None or not isinstance(stored, str) or not secrets.verify_secret(secret, stored):
            raise AuthenticationFailed(f"wrong identity or secret for {index}:{handle}")
        if row["disabled_at"] is not None:     # (said only to whoever has the secret)
            raise AuthenticationFailed(f"operator {row['name']} is disabled")
        return Principal(row["id"], row["name"], row["identity"], row["is_admin"])
    raise AuthenticationFailed("unsupported Authorization scheme: use Basic or Bearer")


async def authenticate_reader(pool: asyncpg.Pool, header: str) -> str | None:
    """The name of the reader (application identity, registry/sharing.py) whose bearer
    token the header carries, or None when it carries no reader's token.

    :raises AuthenticationFailed: the reader's token is revoked or has expired."""
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip() or not header.isascii():
        return None
    row = await pool.fetchrow(
        "SELECT name, revoked_at IS NOT NULL AS revoked, expires_at <= now() AS expired "
        "FROM readers WHERE token_hash = $1", secrets.hash_token(token.strip()))  # network op
    if row is None:
        return None
    if row["revoked"] or row["expired"]:
        raise AuthenticationFailed(f"the token of reader {row['name']} "
                                   f"{'was revoked' if row['revoked'] else 'has expired'}")
    name: str = row["name"]
    return name
