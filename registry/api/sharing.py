"""Readers, groups and grants over HTTP (registry/sharing.py; docs/sharing.md). Every
route needs an operator's credentials: a reader's token reads identifiers, nothing else.

* ``POST /api/readers`` ``{"name", "description"?, "expires"?}`` → 201 with the token
  (shown once); ``GET /api/readers``; ``DELETE /api/readers/{name}`` revokes it.
* ``POST /api/groups`` ``{"name", "description"?, "members"?: ["reader:X",
  "operator:Y"]}``; ``GET /api/groups``; ``PATCH /api/groups/{name}`` ``{"add"?,
  "remove"?}``.
* ``POST /api/grants`` ``{"grantee": "reader:X"|"operator:Y"|"group:Z", "scope": PREFIX
  or IDENTIFIER, "types"?: "order.*", "template"?, "expires"?}``; ``GET /api/grants``
  (``?scope=``); ``DELETE /api/grants/{id}``.
* ``PUT /api/readlogs/{prefix or template}`` ``{"enabled": true|false}``; ``GET
  /api/reads?handle=H`` or ``?prefix=P`` (``limit``, ``before``): the read log
  (registry/readlog.py).
* ``GET /api/stats?prefix=P[&template=H&item=T]``: identifiers per template under P, or
  per value of an enumeration item, over what the caller may see (registry/stats.py).
"""

from __future__ import annotations

import time
from urllib.parse import unquote

import msgspec
from aiohttp import web

from registry import readlog, sharing, stats, usage
from registry.api.common import context, json_body, ok, principal, read_view
from registry.api.bodies import decode as _decode
from resolver.core import params
from resolver.core.errors import AuthenticationNeeded, BadRequest
from resolver.core.described import takes
from resolver.core.identifier import parse, parse_prefix


class NewReader(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    description: str = ""
    expires: str | None = None


class NewGroup(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    description: str = ""
    members: list[str] = []


class Members(msgspec.Struct, forbid_unknown_fields=True):
    add: list[str] = []
    remove: list[str] = []


class NewGrant(msgspec.Struct, forbid_unknown_fields=True):
    grantee: str
    scope: str
    types: str = "*"
    template: str | None = None
    expires: str | None = None


@takes(body=NewReader, auth="required")
async def post_reader(request: web.Request) -> web.Response:
    ctx, who = context(request), await principal(request)
    body: NewReader = _decode(await json_body(request, ctx.max_body_bytes), NewReader)
    made, token = await sharing.create_reader(ctx.db, who, body.name, body.description,
                                              body.expires)
    return ok(201, None, **made, token=token)


async def get_readers(request: web.Request) -> web.Response:
    ctx, who = context(request), await principal(request)
    async with ctx.pool.acquire() as conn:
        return ok(200, None, readers=await sharing.list_readers(conn, who))


async def delete_reader(request: web.Request) -> web.Response:
    ctx, who = context(request), await principal(request)
    return ok(200, None, **await sharing.revoke_reader(ctx.db, who, request.match_info["name"]))


@takes(body=NewGroup, auth="required")
async def post_group(request: web.Request) -> web.Response:
    ctx, who = context(request), await principal(request)
    body: NewGroup = _decode(await json_body(request, ctx.max_body_bytes), NewGroup)
    return ok(201, None, **await sharing.create_group(ctx.db, who, body.name, body.description,
                                                      body.members))


async def get_groups(request: web.Request) -> web.Response:
    ctx, who = context(request), await principal(request)
    async with ctx.pool.acquire() as conn:
        return ok(200, None, groups=await sharing.list_groups(conn, who))


@takes(body=Members, auth="required")
async def patch_group(request: web.Request) -> web.Response:
    ctx, who = context(request), await principal(request)
    body: Members = _decode(await json_body(request, ctx.max_body_bytes), Members)
    return ok(200, None, **await sharing.change_members(ctx.db, who, request.match_info["name"],
                                                        body.add, body.remove))


@takes(body=NewGrant, auth="required")
async def post_grant(request: web.Request) -> web.Response:
    ctx, who = context(request), await principal(request)
    body: NewGrant = _decode(await json_body(request, ctx.max_body_bytes), NewGrant)
    return ok(201, None, **await sharing.grant(ctx.db, who, body.grantee, body.scope,
                                               body.types, body.template, body.expires))


async def get_grants(request: web.Request) -> web.Response:
    ctx, who = context(request), await principal(request)
    async with ctx.pool.acquire() as conn:
        return ok(200, None, grants=await sharing.list_grants(conn, who,
                                                              request.rel_url.query.get("scope")))


async def delete_grant(request: web.Request) -> web.Response:
    ctx, who = context(request), await principal(request)
    grant_id = params.integer("id", [request.match_info["grant_id"]], 0, 1, 2**62)
    return ok(200, None, **await sharing.revoke_grant(ctx.db, who, grant_id))


async def get_stats(request: web.Request) -> web.Response:
    ctx, q = context(request), request.rel_url.query
    if "prefix" not in q:
        raise BadRequest("give ?prefix=PREFIX (and &template=H&item=T for one item's values)")
    prefix = parse_prefix(q["prefix"])
    if "Authorization" not in request.headers:
        raise AuthenticationNeeded("counts need credentials: an operator's, or a reader's")
    view = await read_view(request, None)
    async with ctx.pool.acquire() as conn:
        return ok(200, None, **await stats.counts(conn, view, prefix, q.get("template"),
                                                  q.get("item")))


@takes(auth="required", query={
    "prefix": ({"type": "string"}, False), "handle": ({"type": "string"}, False), "from": ({"type": "string"}, False),
    "to": ({"type": "string"}, False), "by": ({"enum": ["hour", "day"]}, False)})
async def get_resolution_stats(request: web.Request) -> web.Response:
    """``GET /api/stats/resolutions?prefix=P[&handle=H][&from=&to=][&by=hour|day]``: how
    often the identifiers under P were resolved, and registered (registry/usage.py)."""
    ctx, who, q = context(request), await principal(request), request.rel_url.query
    if "prefix" not in q and "handle" not in q:
        raise BadRequest("give ?prefix=PREFIX or ?handle=PREFIX/SUFFIX (and &from=&to=&by=)")
    ident = parse(q["handle"]) if "handle" in q else None
    prefix = ident.prefix if ident is not None else parse_prefix(q["prefix"])
    async with ctx.pool.acquire() as conn:
        return ok(200, None, **await usage.resolutions(conn, who, prefix, ident, q.get("from"),
                                                       q.get("to"), q.get("by", "hour")))


async def post_usage_report(request: web.Request) -> web.Response:
    """``POST /api/stats/reports``: a child node's totals for a prefix delegated to it,
    signed with its node key (the signature is the credential; registry/usage.py)."""
    ctx = context(request)
    body = await json_body(request, ctx.max_bulk_bytes)
    async with ctx.pool.acquire() as conn:
        return ok(200, None, **await usage.accept_report(conn, body, int(time.time())))


class ReadLogSetting(msgspec.Struct, forbid_unknown_fields=True):
    enabled: bool


@takes(body=ReadLogSetting, auth="required")
async def put_readlog(request: web.Request) -> web.Response:
    ctx, who = context(request), await principal(request)
    body: ReadLogSetting = _decode(await json_body(request, ctx.max_body_bytes), ReadLogSetting)
    scope = request.rel_url.raw_path[len("/api/readlogs/"):]
    return ok(200, None, **await readlog.set_log(ctx.db, who, unquote(scope), body.enabled))


async def get_reads(request: web.Request) -> web.Response:
    ctx, who, q = context(request), await principal(request), request.rel_url.query
    limit = params.integer("limit", q.getall("limit", []), 100, 1, 1000)
    before = params.integer("before", q.getall("before", []), 2**62, 1, 2**62)
    async with ctx.pool.acquire() as conn:
        return ok(200, None, entries=await readlog.entries(conn, who, q.get("handle"),
                                                           q.get("prefix"), limit, before))
