"""Operators (administrators only), tokens (any operator, its own; administrators, anyone's),
the audit trail."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from registry import accounts, tokens
from registry.api.common import context, json_body, ok, principal
from registry.store.queries import AUDIT_COLUMNS
from registry.ownership import require
from registry.permissions import Principal, unreadable_hidden
from registry.api.bodies import NewOperator, NewToken, decode
from resolver.core import params
from resolver.core.described import takes
from resolver.core.errors import BadRequest, InsufficientPermissions
from resolver.core.identifier import parse, parse_prefix

NO_STORE = {"Cache-Control": "no-store"}
_AUDIT = "SELECT " + AUDIT_COLUMNS + """ FROM audit a WHERE {} AND a.id < $2
            ORDER BY a.id DESC LIMIT $3"""
AUDIT_QUERY = {
    "handle": _AUDIT.format("a.handle = $1"),
    # identifiers under P lie in ['P/', 'P0') (column COLLATE "C"); events on P itself
    # have no handle
    "prefix": _AUDIT.format("((a.handle >= $1 || '/' AND a.handle < $1 || '0') "
                            "OR (a.handle IS NULL AND a.prefix = $1))"),
}


@takes(body=NewOperator, auth="required")
async def post_operator(request: web.Request) -> web.Response:
    """Create ``{"name", "identity"?, "admin"?}``; answers the secret and token once."""
    ctx = context(request)
    who = await principal(request)
    if not who.is_admin:
        raise InsufficientPermissions("only an administrator may create operators")
    body: NewOperator = decode(await json_body(request, ctx.max_body_bytes), NewOperator)
    new = await accounts.create_operator(ctx.db, who, body.name, body.identity,
                                         is_admin=body.admin)
    response = ok(201, None, name=new.principal.name, identity=new.principal.identity,
                      admin=new.principal.is_admin, secret=new.secret, token=new.token)
    response.headers.update(NO_STORE)
    return response


async def get_operators(request: web.Request) -> web.Response:
    who = await principal(request)
    if not who.is_admin:
        raise InsufficientPermissions("only an administrator may list operators")
    async with context(request).pool.acquire() as conn:
        return ok(200, None, operators=await accounts.list_operators(conn))


async def post_secret(request: web.Request) -> web.Response:
    """``POST /api/operators/{name}/secret``: a new secret (yourself, or an administrator
    for anyone); the old one stops working at once; answered once."""
    ctx = context(request)
    who = await principal(request)
    owner = await _owner(ctx.pool, who, request.match_info["name"])
    secret = await accounts.reset_secret(ctx.db, who, owner)
    response = ok(200, None, name=owner.name, identity=owner.identity, secret=secret)
    response.headers.update(NO_STORE)
    return response


async def _owner(conn: Any, who: Principal, name: str | None) -> Principal:
    """The operator a token or secret request is about: ``name`` (by name or identity),
    or the caller."""
    return who if name is None or name in (who.name, who.identity) else \
        await accounts.find_operator(conn, name)


@takes(body=NewToken, auth="required")
async def post_token(request: web.Request) -> web.Response:
    """A new bearer token: ``{"label"?, "operator"?}`` (another operator: administrators)."""
    ctx = context(request)
    who = await principal(request)
    body = NewToken()
    if request.can_read_body:
        body = decode(await json_body(request, ctx.max_body_bytes), NewToken)
    owner = await _owner(ctx.pool, who, body.operator)
    token_id, token = await tokens.create_token(ctx.db, who, owner, body.label,
                                                tokens.expiry(body.expires, body.expires_in))
    response = ok(201, None, operator=owner.name, id=token_id, token=token)
    response.headers.update(NO_STORE)
    return response


async def post_operator_state(request: web.Request) -> web.Response:
    """``POST /api/operators/{name}/disable`` or ``/enable`` (administrators)."""
    ctx, who = context(request), await principal(request)
    disabled = request.match_info["state"] == "disable"
    return ok(200, None, **await accounts.set_disabled(ctx.db, who, request.match_info["name"],
                                                       disabled))


async def get_tokens(request: web.Request) -> web.Response:
    """The caller's tokens (``?operator=NAME``: another's, for administrators); never
    the tokens themselves, which idres does not have."""
    ctx = context(request)
    who = await principal(request)
    async with ctx.pool.acquire() as conn:
        owner = await _owner(conn, who, request.rel_url.query.get("operator"))
        listed = await tokens.list_tokens(conn, who, owner)
    return ok(200, None, operator=owner.name, tokens=listed)


async def delete_token(request: web.Request) -> web.Response:
    """Revoke a token by its id; it stops working at once."""
    ctx = context(request)
    who = await principal(request)
    raw = request.match_info["token_id"]
    if not raw.isdigit() or len(raw) > 18:
        raise BadRequest(f"a token id is a number, not {raw[:40]!r}")
    revoked = await tokens.revoke_token(ctx.db, who, int(raw))
    return ok(200, None, token=revoked)


@takes(auth="required", query={"handle": ({"type": "string"}, False), "prefix": ({"type": "string"}, False),
                                   "limit": ({"type": "integer"}, False), "before": ({"type": "integer"}, False)})
async def get_audit(request: web.Request) -> web.Response:
    """``GET /api/audit?handle=H`` or ``?prefix=P`` [``&limit=&before=<id>``], newest first.

    Needs credentials that administer the identifier's or the prefix's lineage."""
    ctx = context(request)
    who = await principal(request)
    q = request.rel_url.query
    limit = params.integer("limit", q.getall("limit", []), 100, 1, 1000)
    before = params.integer("before", q.getall("before", []), 2**62, 1, 2**62)
    if "handle" in q:
        ident = parse(q["handle"])
        prefix, column, key = ident.prefix, "handle", ident.key
    elif "prefix" in q:
        prefix = parse_prefix(q["prefix"])
        column, key = "prefix", prefix.text
    else:
        raise BadRequest("give ?handle=PREFIX/SUFFIX or ?prefix=PREFIX")
    async with ctx.pool.acquire() as conn:
        await require(conn, who, [prefix], "read the audit trail of")
        rows = await conn.fetch(AUDIT_QUERY[column], key, before, limit)
    entries = [{**dict(r), "at": r["at"].strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "before": unreadable_hidden(r["before"]),
                "after": unreadable_hidden(r["after"])} for r in rows]
    return ok(200, None, entries=entries)
