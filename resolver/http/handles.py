"""HTTP resolution, compatible with the Handle.Net REST API (handle-facts §2, §6).

* ``GET|HEAD /api/handles/{prefix}/{suffix}`` → Handle JSON; ``?index=``/``?type=``
  filters (repeatable, OR-ed); 404 + responseCode 100 when unknown; 200 +
  responseCode 200 when the filter leaves nothing.
* ``GET|HEAD /{prefix}/{suffix}`` (proxy style) → 302 to the first URL value;
  ``?noredirect`` answers the record as JSON instead.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from resolver.core import codec, params
from resolver.core.errors import IdentifierNotFound
from resolver.core.identifier import Identifier, parse_raw
from resolver.http.keys import READ_AUTH, RESOLVER
from resolver.lookup import Query, first_url

API_PREFIX = "/api/handles/"
JSON = "application/json"

ReadAuth = Callable[[web.Request, Identifier], Awaitable[bool]]


def json_response(body: bytes, status: int = 200) -> web.Response:
    return web.Response(body=body, status=status, content_type=JSON, charset="utf-8")


def requested_identifier(request: web.Request, strip: str) -> tuple[str, Identifier]:
    """(identifier as the client wrote it, parsed identifier) from the raw path.

    The raw path is decoded here, strictly, so that a malformed escape is an error
    rather than a silent replacement character. ``request["handle"]`` is set for
    error answers, which must echo the handle (pyhandle reads it even from a 404).
    """
    text, ident = parse_raw(request.rel_url.raw_path[len(strip):])
    request["handle"] = text
    return text, ident


async def _query(request: web.Request, strip: str) -> Query:
    text, ident = requested_identifier(request, strip)
    q = request.rel_url.query
    admin = False
    if "Authorization" in request.headers:
        admin = await request.app[READ_AUTH](request, ident)
    return Query(
        ident, text, params.indexes(q.getall("index", [])), tuple(q.getall("type", [])), admin
    )


async def get_handle(request: web.Request) -> web.Response:
    """Resolve one identifier to its Handle JSON record."""
    query = await _query(request, API_PREFIX)
    resolver = request.app[RESOLVER]
    if query.plain:
        public, entry = await resolver.public(query.ident.key)  # network op on a miss
        if public is None:
            raise IdentifierNotFound(f"handle {query.requested} not found")
        return json_response(resolver.json_answer(query.requested, public, entry))
    values = await resolver.lookup(query)  # network op on a miss
    return json_response(codec.encode_values(query.requested, values))


async def proxy(request: web.Request) -> web.StreamResponse:
    """Proxy-style resolution: redirect to the record's first URL value."""
    if request.path.startswith("/api/"):
        raise web.HTTPNotFound()  # an unknown API endpoint, not an identifier
    query = await _query(request, "/")
    values = await request.app[RESOLVER].lookup(query)  # network op on a miss
    noredirect = params.flag("noredirect", request.rel_url.query.getall("noredirect", []), False)
    url = None if noredirect else first_url(values)
    if url is None:
        return json_response(codec.encode_values(query.requested, values))
    ttl = min(v["ttl"] for v in values)  # url is not None: there is a value
    return web.Response(
        status=302, headers={"Location": url, "Cache-Control": f"max-age={ttl}"}
    )


async def anonymous_reads_only(request: web.Request, ident: Identifier) -> bool:
    """The read-auth hook when no registry is mounted: credentials grant nothing."""
    return False
