"""``GET /hrls/handles``: reverse lookup, as the B2HANDLE-HRLS servlet answers it for
pyhandle's ``search_handle`` (see registry/search.py)."""

from __future__ import annotations

import orjson
from aiohttp import web

from registry import search
from registry.api.common import context, principal, read_view
from registry.ownership import require
from registry.sharing import ReaderToken
from resolver.core import params
from resolver.core.described import takes
from resolver.core.errors import NotSupported
from resolver.core.identifier import parse_prefix

# parameters that are not search terms
RESERVED = {"limit", "page", "prefix", "enforcesql", "retrieverecords"}


@takes(auth="required", answer={"type": "array", "items": {"type": "string"}}, query={"URL": ({"type": "string"}, False), "prefix": ({"type": "string"}, False),
                                   "limit": ({"type": "integer"}, False), "page": ({"type": "integer"}, False)})
async def hrls_search(request: web.Request) -> web.Response:
    """``?TYPE=pattern[&TYPE=pattern...][&prefix=P][&limit=1000][&page=0]`` → a JSON
    array of identifiers (``limit`` up to 100,000, ``page`` counted from 0)."""
    ctx = context(request)
    try:
        who = await principal(request)
    except ReaderToken:                      # a reader: only what it may read
        who = None
    q = request.rel_url.query
    limit = params.integer("limit", q.getall("limit", []), 1000, 1, 100_000)
    page = params.integer("page", q.getall("page", []), 0, 0, 10**6)
    if params.flag("retrieverecords", q.getall("retrieverecords", []), False):
        raise NotSupported("retrieverecords=true is not supported: resolve the identifiers "
                           "found, many at once with POST /api/resolve")
    terms = [(k, v) for k, v in q.items() if k not in RESERVED]
    search.check_terms(terms)  # before any query: a bad search costs nothing
    prefix = parse_prefix(q["prefix"]) if "prefix" in q else None
    if who is None:
        view = await read_view(request, None)
        async with ctx.pool.acquire() as conn:
            found = await search.search_as_reader(conn, view, prefix, terms, limit,
                                                  page * limit)
        return web.Response(body=orjson.dumps(found), content_type="application/json",
                            charset="utf-8")
    async with ctx.pool.acquire() as conn:
        if prefix is not None:
            await require(conn, who, [prefix], "search")
            scopes: list[str] | None = [prefix.text]
        elif who.is_admin:
            scopes = None
        else:
            owned = await conn.fetch("SELECT prefix FROM prefixes WHERE owner_id = $1",
                                     who.operator_id)
            scopes = search.outermost(r["prefix"] for r in owned)
        found = await search.search(conn, scopes, terms, limit, page * limit) if scopes != [] \
            else []
    return web.Response(body=orjson.dumps(found), content_type="application/json",
                        charset="utf-8")
