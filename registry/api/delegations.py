"""``GET|POST /api/delegations``, ``DELETE /api/delegations/{prefix}``."""

from __future__ import annotations

from aiohttp import web

from registry import delegations
from registry.api.bodies import NewDelegation
from registry.api.common import context, json_body, ok, principal
from resolver.core.delegation import Delegation
from resolver.core.described import takes
from resolver.core.errors import BadRequest
from resolver.core.identifier import parse_prefix


async def get_delegations(request: web.Request) -> web.Response:
    """Every delegation recorded here (public, as DNS delegations are)."""
    async with context(request).pool.acquire() as conn:
        return ok(200, None, delegations=await delegations.list_delegations(conn))


@takes(body=NewDelegation, auth="required")
async def post_delegation(request: web.Request) -> web.Response:
    """Delegate ``{"prefix", "servers": [{"url", "key", "binary"?}], "ttl"?}``."""
    ctx = context(request)
    who = await principal(request)
    body = await json_body(request, ctx.max_body_bytes)
    if not isinstance(body, dict) or not isinstance(body.get("prefix"), str):
        raise BadRequest('send {"prefix": "88.100.7", "servers": [{"url", "key"}], "ttl": 86400}')
    ttl = body.get("ttl", 86400)
    if not isinstance(ttl, int) or isinstance(ttl, bool) or not 0 <= ttl <= 2**31 - 1:
        raise BadRequest("ttl must be an integer number of seconds")
    delegation = Delegation(parse_prefix(body["prefix"]).text,
                            delegations.parse_servers(body.get("servers")), ttl)
    await delegations.delegate(ctx.db, who, delegation)
    return ok(201, None, delegation=delegation.to_json())


async def delete_delegation(request: web.Request) -> web.Response:
    ctx = context(request)
    who = await principal(request)
    prefix = parse_prefix(request.match_info["prefix"])
    await delegations.undelegate(ctx.db, who, prefix)
    return ok(200, None, prefix=prefix.text)
