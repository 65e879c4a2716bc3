"""Readers, groups and grants (docs/sharing.md; migration 0008): who besides an
identifier's owner may read its shared values.

* A **reader** is an application identity: a name, the operator that owns it, a bearer
  token of its own (shown once, stored as a SHA-256 hash), an optional expiry. It
  reads; it cannot write or manage anything.
* A **group** is a named set of parties (``reader:NAME``, ``operator:NAME``, of any
  enterprise), owned by the operator that made it.
* A **grant** lets a party (``reader:``, ``operator:`` or ``group:NAME``) read the
  shared values under a prefix the granter administers, or of one identifier there,
  whose type matches a pattern, optionally of one template's records, until an
  optional expiry. Grants are listed and revoked by the granter (or an administrator).

Each change is in the audit trail, and takes effect on every process before it is
acknowledged: it notifies ``*sharing`` in its transaction, and every resolver process
drops its snapshot of readers and grants (resolver/sharing.py) before acknowledging, as
for any write (the write waits for the acknowledgements).
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Sequence
from typing import Any

import asyncpg

from registry import secrets
from registry.ownership import require
from registry.permissions import Principal
from registry.store import Db, audit, write_transaction
from resolver.core.channel import SHARING_MARK
from resolver.core.errors import BadRequest, InsufficientPermissions, PartyExists, PartyNotFound
from resolver.core.identifier import Identifier, parse, parse_prefix
from resolver.core.sharing import Grant, View

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
PARTY = re.compile(r"(reader|operator|group):([A-Za-z0-9][A-Za-z0-9_.-]{0,63})\Z")
MAX_TYPES = 255
MAX_GRANTS_PER_PARTY = 10_000   # what one read may have to consider, at most


def _iso(t: Any) -> str | None:
    return None if t is None else t.strftime("%Y-%m-%dT%H:%M:%SZ")


def expiry(text: object) -> dt.datetime | None:
    """An RFC 3339 expiry in the future, or None.

    :raises BadRequest:"""
    if text is None:
        return None
    try:
        when = dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"expires must be an RFC 3339 date-time, not {str(text)[:60]!r}") from None
    if when.tzinfo is None:
        raise BadRequest("expires needs its offset (2027-01-01T00:00:00Z)")
    if when <= dt.datetime.now(dt.timezone.utc):
        raise BadRequest("expires is in the past")
    return when


def _name(text: object, what: str) -> str:
    if not isinstance(text, str) or not NAME.match(text):
        raise BadRequest(f"a {what} name is 1-64 letters, digits, '_', '.' or '-', "
                         "starting with a letter or digit")
    return text


# --- readers --------------------------------------------------------------------------


async def create_reader(db: Db, actor: Principal, name: object, description: str = "",
                        expires: object = None) -> tuple[dict[str, Any], str]:
    """A new application identity owned by ``actor``: (its description, its token, which
    exists only in this return value)."""
    name = _name(name, "reader")
    when = expiry(expires)
    token = secrets.new_token()
    async with write_transaction(db) as tx:
        try:
            await tx.conn.execute(
                "INSERT INTO readers (name, owner_id, token_hash, description, expires_at) "
                "VALUES ($1, $2, $3, $4, $5)", name, actor.operator_id,
                secrets.hash_token(token), description[:500], when)
        except asyncpg.UniqueViolationError:
            raise PartyExists(f"a reader named {name} exists") from None
        await tx.notify([SHARING_MARK])
        await audit(tx.conn, actor, "reader_create",
                    after={"reader": name, "expires": _iso(when)})
    return {"name": name, "owner": actor.name, "expires": _iso(when)}, token


async def list_readers(conn: asyncpg.Connection, actor: Principal) -> list[dict[str, Any]]:
    """The readers ``actor`` owns (an administrator: all of them)."""
    rows = await conn.fetch(
        """SELECT r.name, o.name AS owner, r.description, r.expires_at, r.revoked_at,
                  r.created_at FROM readers r JOIN operators o ON o.id = r.owner_id
           WHERE r.owner_id = $1 OR $2 ORDER BY r.name""", actor.operator_id, actor.is_admin)
    return [{"name": r["name"], "owner": r["owner"], "description": r["description"],
             "created": _iso(r["created_at"]), "expires": _iso(r["expires_at"]),
             "revoked": _iso(r["revoked_at"])} for r in rows]


async def _owned(conn: asyncpg.Connection, actor: Principal, table: str, name: str,
                 what: str) -> int:
    """The id of ``actor``'s reader or group ``name`` (an administrator's: anyone's).

    :raises PartyNotFound: none, or another operator's (whose existence is not revealed)."""
    row = await conn.fetchrow(f"SELECT id, owner_id FROM {table} WHERE name = $1 FOR UPDATE",  # noqa: S608 - table is ours
                              name)
    if row is None or not (actor.is_admin or row["owner_id"] == actor.operator_id):
        raise PartyNotFound(f"no {what} named {name} of yours")
    found: int = row["id"]
    return found


async def revoke_reader(db: Db, actor: Principal, name: str) -> dict[str, Any]:
    """Revoke a reader's token (for good: a new reader gets a new name and token)."""
    async with write_transaction(db) as tx:
        reader_id = await _owned(tx.conn, actor, "readers", name, "reader")
        await tx.conn.execute("UPDATE readers SET revoked_at = coalesce(revoked_at, now()) "
                              "WHERE id = $1", reader_id)
        await tx.notify([SHARING_MARK])
        await audit(tx.conn, actor, "reader_revoke", after={"reader": name})
    return {"name": name, "revoked": True}


# --- groups --------------------------------------------------------------------------


async def _party_exists(conn: asyncpg.Connection, party: str) -> None:
    """:raises BadRequest: not ``kind:NAME``; :raises PartyNotFound: no such party."""
    m = PARTY.match(party) if isinstance(party, str) else None
    if m is None:
        raise BadRequest("a party is reader:NAME, operator:NAME or group:NAME")
    kind, name = m.groups()
    table = {"reader": "readers", "operator": "operators", "group": "reader_groups"}[kind]
    if not await conn.fetchval(f"SELECT true FROM {table} WHERE name = $1", name):  # noqa: S608
        raise PartyNotFound(f"there is no {kind} named {name}")


async def create_group(db: Db, actor: Principal, name: object, description: str = "",
                       members: list[str] | None = None) -> dict[str, Any]:
    name = _name(name, "group")
    async with write_transaction(db) as tx:
        try:
            group_id = await tx.conn.fetchval(
                "INSERT INTO reader_groups (name, owner_id, description) VALUES ($1, $2, $3) "
                "RETURNING id", name, actor.operator_id, description[:500])
        except asyncpg.UniqueViolationError:
            raise PartyExists(f"a group named {name} exists") from None
        for member in members or []:
            await _add(tx.conn, group_id, member)
        await tx.notify([SHARING_MARK])
        await audit(tx.conn, actor, "group_create", after={"group": name,
                                                           "members": members or []})
    return {"name": name, "owner": actor.name, "members": sorted(members or [])}


async def _add(conn: asyncpg.Connection, group_id: int, member: str) -> None:
    if not isinstance(member, str) or member.startswith("group:"):
        raise BadRequest("a member is reader:NAME or operator:NAME (groups do not nest)")
    await _party_exists(conn, member)
    await conn.execute("INSERT INTO reader_group_members (group_id, member) VALUES ($1, $2) "
                       "ON CONFLICT DO NOTHING", group_id, member)


async def change_members(db: Db, actor: Principal, name: str, add: list[str],
                         remove: list[str]) -> dict[str, Any]:
    async with write_transaction(db) as tx:
        group_id = await _owned(tx.conn, actor, "reader_groups", name, "group")
        for member in add:
            await _add(tx.conn, group_id, member)
        await tx.conn.execute("DELETE FROM reader_group_members WHERE group_id = $1 "
                              "AND member = ANY($2::text[])", group_id, remove)
        await tx.notify([SHARING_MARK])
        await audit(tx.conn, actor, "group_members", after={"group": name, "added": add,
                                                            "removed": remove})
        members = await tx.conn.fetch("SELECT member FROM reader_group_members "
                                      "WHERE group_id = $1 ORDER BY member", group_id)
    return {"name": name, "members": [r["member"] for r in members]}


async def list_groups(conn: asyncpg.Connection, actor: Principal) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT g.name, o.name AS owner, g.description,
                  coalesce(array_agg(m.member ORDER BY m.member)
                           FILTER (WHERE m.member IS NOT NULL), '{}') AS members
           FROM reader_groups g JOIN operators o ON o.id = g.owner_id
           LEFT JOIN reader_group_members m ON m.group_id = g.id
           WHERE g.owner_id = $1 OR $2 GROUP BY g.id, o.name ORDER BY g.name""",
        actor.operator_id, actor.is_admin)
    return [{"name": r["name"], "owner": r["owner"], "description": r["description"],
             "members": list(r["members"])} for r in rows]


# --- grants --------------------------------------------------------------------------


def _scope(text: object) -> tuple[str, Identifier | None, Any]:
    """(scope as stored, the identifier or None, the prefix) of a grant's scope."""
    if not isinstance(text, str) or not text:
        raise BadRequest("a grant needs its scope: a prefix (88.100.7) or an identifier")
    if "/" in text:
        ident = parse(text)
        return ident.key, ident, ident.prefix
    prefix = parse_prefix(text)
    return prefix.text, None, prefix


async def grant(db: Db, actor: Principal, grantee: object, scope: object, types: object = "*",
                template: object = None, expires: object = None) -> dict[str, Any]:
    """Let ``grantee`` read the shared values of ``scope`` whose type matches ``types``.

    :raises InsufficientPermissions: the granter does not administer the scope.
    :raises PartyNotFound: no such grantee; :raises BadRequest: a malformed field."""
    stored, _, prefix = _scope(scope)
    if not isinstance(types, str) or not types or len(types) > MAX_TYPES:
        raise BadRequest(f"types is a value-type pattern of 1-{MAX_TYPES} characters "
                         "('order.*', 'order.quantity', '*')")
    template_key = None
    if template is not None:
        if not isinstance(template, str):
            raise BadRequest("template must be an identifier")
        template_key = parse(template).key
    when = expiry(expires)
    async with write_transaction(db) as tx:
        conn = tx.conn
        await require(conn, actor, [prefix], "grant reading under")
        await _party_exists(conn, grantee)  # type: ignore[arg-type]
        if template_key is not None and not await conn.fetchval(
                "SELECT true FROM templates WHERE handle = $1 AND state = 'published' LIMIT 1",
                template_key):
            raise BadRequest(f"there is no published template {template}")
        grant_id = await conn.fetchval(
            "INSERT INTO grants (granter_id, grantee, scope, types, template, expires_at) "
            "VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            actor.operator_id, grantee, stored, types, template_key, when)
        body = {"id": grant_id, "grantee": grantee, "scope": stored, "types": types,
                "template": template_key, "expires": _iso(when)}
        await tx.notify([SHARING_MARK])
        await audit(conn, actor, "grant", prefix=prefix.text, after=body)
    return body


async def list_grants(conn: asyncpg.Connection, actor: Principal,
                      scope: str | None = None) -> list[dict[str, Any]]:
    """The grants ``actor`` made (an administrator: all), live ones, optionally of one
    scope."""
    rows = await conn.fetch(
        """SELECT g.id, g.grantee, g.scope, g.types, g.template, g.expires_at, g.created_at,
                  o.name AS granter FROM grants g JOIN operators o ON o.id = g.granter_id
           WHERE g.revoked_at IS NULL AND (g.granter_id = $1 OR $2)
             AND ($3::text IS NULL OR g.scope = $3) ORDER BY g.id""",
        actor.operator_id, actor.is_admin, scope)
    return [{"id": r["id"], "grantee": r["grantee"], "scope": r["scope"], "types": r["types"],
             "template": r["template"], "granter": r["granter"],
             "created": _iso(r["created_at"]), "expires": _iso(r["expires_at"])} for r in rows]


async def revoke_grant(db: Db, actor: Principal, grant_id: int) -> dict[str, Any]:
    async with write_transaction(db) as tx:
        row = await tx.conn.fetchrow("SELECT granter_id, scope FROM grants WHERE id = $1 "
                                     "AND revoked_at IS NULL FOR UPDATE", grant_id)
        if row is None or not (actor.is_admin or row["granter_id"] == actor.operator_id):
            raise PartyNotFound(f"no live grant {grant_id} of yours")
        await tx.conn.execute("UPDATE grants SET revoked_at = now() WHERE id = $1", grant_id)
        await tx.notify([SHARING_MARK])
        await audit(tx.conn, actor, "grant_revoke", after={"id": grant_id, "scope": row["scope"]})
    return {"id": grant_id, "revoked": True}


# --- reading -------------------------------------------------------------------------

GRANTS_OF = """WITH me AS (
                 SELECT unnest($1::text[]) AS party
                 UNION SELECT 'group:' || g.name FROM reader_group_members m
                       JOIN reader_groups g ON g.id = m.group_id
                       WHERE m.member = ANY($1::text[]))
               SELECT id, scope, types, template, extract(epoch FROM expires_at) AS expires
               FROM grants WHERE revoked_at IS NULL AND grantee IN (SELECT party FROM me)
                 AND (expires_at IS NULL OR expires_at > now())
               ORDER BY id LIMIT $2"""


async def view_of(conn: asyncpg.Connection, party: str,
                  operator: Principal | None = None) -> View:
    """What ``party`` may read: everything readable under the prefixes it owns (an
    operator; an administrator: everywhere), and elsewhere the public values and the
    shared values its live grants (its own and its groups') cover."""
    if operator is not None and operator.is_admin:
        return View(party, admin=True)
    owns: frozenset[str] = frozenset()
    if operator is not None:
        owns = frozenset(r["prefix"] for r in await conn.fetch(
            "SELECT prefix FROM prefixes WHERE owner_id = $1", operator.operator_id))
    rows = await conn.fetch(GRANTS_OF, [party], MAX_GRANTS_PER_PARTY)  # network op
    return View(party, grants=tuple(
        Grant(r["id"], r["scope"], r["types"], r["template"],
              None if r["expires"] is None else float(r["expires"])) for r in rows), owns=owns)


async def seen_by(conn: asyncpg.Connection, view: View,
                  found: Sequence[str]) -> list[tuple[str, list[dict[str, Any]]]]:
    """(identifier as spelled, the string values ``view`` sees of it) for the active
    records among ``found`` (identifiers a search or a lookup found over every readable
    value), in key order: what their callers check again, so that a reader finds no
    identifier by a value it may not read."""
    rows = await conn.fetch('SELECT handle, coalesce(spelling, handle) AS spelled, "values", '
                            "template FROM handles WHERE handle = ANY($1::text[]) "
                            "AND state = 'active' ORDER BY handle",
                            [parse(h).key for h in found])  # network op
    now = time.time()
    return [(r["spelled"], [v for v in view.visible(r["values"], parse(r["spelled"]),
                                                    r["template"], now)
                            if v["data"]["format"] == "string"]) for r in rows]


class ReaderToken(InsufficientPermissions):
    """A reader's token where an operator's is needed (403)."""


def refuse_reader(name: str) -> ReaderToken:
    return ReaderToken(f"this is the token of reader {name}: readers read identifiers, they "
                       "cannot write or manage anything")
