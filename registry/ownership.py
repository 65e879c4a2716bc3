"""Who owns what: the facts ``registry/permissions.py`` decides on, read in one query.

Every check that a caller administers a prefix (to write under it, list it, read its
audit trail, delegate it, search it) goes through :func:`administers` or
:func:`require`, so the rule and its error message are written once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import asyncpg

from registry.permissions import Principal, may_administer
from resolver.core.delegation import Delegation, Server, Zone
from resolver.core.errors import IdresError, InsufficientPermissions, PrefixNotHomed
from resolver.core.identifier import Identifier, Prefix

OWNERS = "SELECT prefix, owner_id FROM prefixes WHERE prefix = ANY($1::text[])"
# the registered prefixes of some lineages, their owners and delegations: one query
LINEAGE = """SELECT p.prefix, p.owner_id, d.servers, d.ttl FROM prefixes p
             LEFT JOIN delegations d USING (prefix) WHERE p.prefix = ANY($1::text[])"""
# the operators (other than the caller) whose identity handles are among $1
IDENTITY_OWNERS = """
    SELECT name, substr(identity, strpos(identity, ':') + 1) AS handle FROM operators
    WHERE substr(identity, strpos(identity, ':') + 1) = ANY($1::text[]) AND id <> $2
    ORDER BY handle"""


async def owners_of(conn: asyncpg.Connection, prefixes: Iterable[Prefix]) -> dict[str, int]:
    """Owner ids of every registered prefix in the lineages of ``prefixes`` (one query)."""
    names = sorted({p.text for prefix in prefixes for p in prefix.lineage()})
    rows = await conn.fetch(OWNERS, names)  # network op
    return {r["prefix"]: r["owner_id"] for r in rows}


async def administers(conn: asyncpg.Connection, principal: Principal, prefix: Prefix) -> bool:
    """Is ``principal`` an administrator, or the owner of ``prefix`` or an ancestor?"""
    if principal.is_admin:
        return True
    return may_administer(principal, prefix, await owners_of(conn, [prefix]))  # network op


def _denied(principal: Principal, prefixes: list[str], doing: str) -> InsufficientPermissions:
    return InsufficientPermissions(
        f"operator {principal.name!r} may not {doing} prefix {', '.join(prefixes[:10])}: "
        "it owns neither that prefix nor one of its ancestors")


async def require(conn: asyncpg.Connection, principal: Principal, prefixes: Iterable[Prefix],
                  doing: str, owners: dict[str, int] | None = None) -> None:
    """:raises InsufficientPermissions: unless ``principal`` administers every prefix;
    the message says what it may not be ``doing`` (e.g. "write under") and where.
    ``owners`` (of the prefixes' lineages) when the caller read them already."""
    if principal.is_admin:
        return
    wanted = sorted(set(prefixes), key=lambda p: p.text)
    if owners is None:
        owners = await owners_of(conn, wanted)  # network op
    denied = [p.text for p in wanted if not may_administer(principal, p, owners)]
    if denied:
        raise _denied(principal, denied, doing)


async def identity_holders(conn: asyncpg.Connection, principal: Principal,
                           keys: list[str]) -> dict[str, InsufficientPermissions]:
    """An operator's identity handle holds its secret's hash: only that operator or an
    administrator may change it, even when someone else owns the prefix it lives under.
    Returns, for each of ``keys`` that is another operator's identity handle, why the
    caller may not write it."""
    if principal.is_admin:
        return {}
    rows = await conn.fetch(IDENTITY_OWNERS, keys, principal.operator_id)  # network op
    return {r["handle"]: InsufficientPermissions(
        f"{r['handle']} is the identity handle of operator {r['name']!r}; only that "
        "operator or an administrator may change it") for r in rows}


async def check_identities(conn: asyncpg.Connection, principal: Principal, keys: list[str]) -> None:
    """:raises InsufficientPermissions: naming the identity handle and its operator
    (:func:`identity_holders`)."""
    held = await identity_holders(conn, principal, keys)  # network op
    if held:
        raise next(iter(held.values()))


async def homing(conn: asyncpg.Connection, prefixes: Iterable[Prefix]
                 ) -> tuple[dict[str, int], dict[str, PrefixNotHomed]]:
    """Identifiers are written only under prefixes this node serves: allocated here (the
    prefix or an ancestor) and not delegated to another node (longest prefix wins, as
    resolution decides: core/delegation.py). Returns the owners of the lineages, and
    why each prefix that is not served here is refused (naming it and what to do)."""
    wanted = set(prefixes)
    names = sorted({p.text for prefix in wanted for p in prefix.lineage()})
    rows = await conn.fetch(LINEAGE, names)  # network op
    zone = Zone({r["prefix"] for r in rows}, {
        r["prefix"]: Delegation(r["prefix"], tuple(Server.from_json(s) for s in r["servers"]),
                                r["ttl"]) for r in rows if r["servers"] is not None})
    refused: dict[str, PrefixNotHomed] = {}
    for prefix in sorted(wanted, key=lambda p: p.text):
        kind, delegation = zone.classify(prefix)
        if kind == "foreign":
            refused[prefix.text] = PrefixNotHomed(
                f"That prefix doesn't live here: {prefix.text} is not allocated on this node; "
                "allocate it (or an ancestor) first with POST /api/prefixes")
        elif delegation is not None:
            refused[prefix.text] = PrefixNotHomed(
                f"That prefix doesn't live here: {prefix.text} is delegated to "
                f"{delegation.servers[0].url}; write there")
    return {r["prefix"]: r["owner_id"] for r in rows}, refused


async def check_homed(conn: asyncpg.Connection, prefixes: Iterable[Prefix]) -> dict[str, int]:
    """:func:`homing`; returns the owners of the lineages.

    :raises PrefixNotHomed: for the first prefix (in order) not served here.
    """
    owners, refused = await homing(conn, prefixes)  # network op
    if refused:
        raise refused[min(refused)]
    return owners


async def check_write(conn: asyncpg.Connection, principal: Principal, keys: list[str],
                      prefixes: Iterable[Prefix]) -> None:
    """The rule of every write of identifiers: their prefixes are served here, the caller
    administers them, and none is another operator's identity handle.

    :raises PrefixNotHomed, InsufficientPermissions:
    """
    prefixes = list(prefixes)
    owners = await check_homed(conn, prefixes)
    await require(conn, principal, prefixes, "write under", owners)
    await check_identities(conn, principal, keys)


async def write_refusals(conn: asyncpg.Connection,
                         writes: Sequence[tuple[Principal, Identifier]]) -> dict[int, IdresError]:
    """:func:`check_write` for many single writes at once (by several callers): for each
    refused write (by its position), why; the same rule, in the same order (served here,
    administered, not another operator's identity handle). One query, and one more per
    caller that is not an administrator."""
    owners, refused = await homing(conn, [ident.prefix for _, ident in writes])  # network op
    out: dict[int, IdresError] = {}
    pending: dict[Principal, list[tuple[int, str]]] = {}
    for n, (principal, ident) in enumerate(writes):
        if ident.prefix.text in refused:
            out[n] = refused[ident.prefix.text]
        elif not may_administer(principal, ident.prefix, owners):
            out[n] = _denied(principal, [ident.prefix.text], "write under")
        elif not principal.is_admin:
            pending.setdefault(principal, []).append((n, ident.key))
    for principal, items in pending.items():
        held = await identity_holders(conn, principal, [k for _, k in items])  # network op
        for n, key in items:
            if key in held:
                out[n] = held[key]
    return out
