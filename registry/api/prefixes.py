"""``GET /api/prefixes`` and ``POST /api/prefixes`` (allocate a child prefix)."""

from __future__ import annotations

from aiohttp import web

from registry.api.bodies import NewPrefix, PrefixOwner, decode
from registry.api.common import context, json_body, ok, principal
from registry import sitehandles
from registry.prefixes import create_prefix, list_prefixes, transfer_prefix
from resolver.core.described import takes
from resolver.core.identifier import parse_prefix


async def get_prefixes(request: web.Request) -> web.Response:
    """Every allocated prefix (Handle shape: ``{"prefixes": [...]}``); with
    credentials, also ``details`` (parent and owner of each)."""
    ctx = context(request)
    async with ctx.pool.acquire() as conn:
        rows = await list_prefixes(conn)
    fields: dict[str, object] = {"prefixes": [r["prefix"] for r in rows]}
    if "Authorization" in request.headers:
        await principal(request)
        fields["details"] = rows
    return ok(200, None, **fields)


@takes(body=NewPrefix, auth="required")
async def post_prefix(request: web.Request) -> web.Response:
    """Allocate ``{"prefix": "88.100.7", "owner": "<operator name or identity>"}``."""
    ctx = context(request)
    who = await principal(request)
    body: NewPrefix = decode(await json_body(request, ctx.max_body_bytes), NewPrefix)
    prefix = parse_prefix(body.prefix)
    owner = await create_prefix(ctx.db, who, prefix, body.owner or who.name)
    await sitehandles.sync(ctx.db, ctx.site, [prefix.text])  # its 0.NA/ handle
    return ok(201, None, prefix=prefix.text, owner=owner.name)


@takes(body=PrefixOwner, auth="required")
async def post_prefix_owner(request: web.Request) -> web.Response:
    """Give a prefix to another owner (``{"owner": "<operator>"}``); audited."""
    ctx = context(request)
    who = await principal(request)
    body: PrefixOwner = decode(await json_body(request, ctx.max_body_bytes), PrefixOwner)
    prefix = parse_prefix(request.match_info["prefix"])
    before, after = await transfer_prefix(ctx.db, who, prefix, body.owner)
    await sitehandles.sync(ctx.db, ctx.site, [prefix.text])  # its HS_ADMIN
    return ok(200, None, prefix=prefix.text, before=before, owner=after)
