"""HTTP resolution, compatible with the Handle.Net REST API (handle-facts §2, §6).

* ``GET|HEAD /api/handles/{prefix}/{suffix}`` → Handle JSON; ``?index=``/``?type=``
  filters (repeatable, OR-ed); 404 + responseCode 100 when unknown; 200 +
  responseCode 200 when the filter leaves nothing.
* ``GET|HEAD /{prefix}/{suffix}`` (proxy style) → 302 to the first URL value;
  ``?noredirect`` answers the record as JSON instead.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

from resolver.core import codec, params, signing
from resolver.core.errors import IdentifierNotFound, Referral
from resolver.core.identifier import Identifier, parse_raw
from resolver.http.keys import READ_AUTH, RESOLVER, SETTINGS, SIGNER
from resolver.lookup import Query, first_url, signed_referral

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
    """Resolve one identifier to its Handle JSON record.

    Beyond the Handle API: ``?cert=true`` signs the answer (Ed25519, docs/trust.md),
    ``?recursive=true|false`` overrides the node's recursion default, ``?trace=true``
    adds the hops of a recursive resolution. A delegated prefix answers a referral
    (HTTP 300, responseCode 303) when the request is not recursive.
    """
    query = await _query(request, API_PREFIX)
    resolver = request.app[RESOLVER]
    q = request.rel_url.query
    if query.admin:
        admin_values = await resolver.lookup(query)  # network op
        return json_response(codec.encode_values(query.requested, admin_values))
    cert = params.flag("cert", q.getall("cert", []), False)
    trace = params.flag("trace", q.getall("trace", []), False)
    recursive = params.flag("recursive", q.getall("recursive", []), False) \
        if "recursive" in q else None
    try:
        result = await resolver.resolve(query.ident, recursive, trace)  # network op on a miss
    except Referral as exc:
        return referral_response(request, query, exc)
    if query.plain and not (cert or trace or result.stale):
        if result.public is None:
            raise IdentifierNotFound(f"handle {query.requested} not found")
        return json_response(resolver.json_answer(query.requested, result.public, result.entry))
    if result.public is None:
        body = codec.answer(100, query.requested, message=f"handle {query.requested} not found")
        values = None
    else:
        values = codec.select(orjson.loads(result.public), query.indexes, query.types)
        body = codec.answer(1 if values else 200, query.requested, values=values)
    headers = {}
    if result.stale:
        body["stale"] = True
        headers["Warning"] = '110 - "Response is Stale"'
    if trace:
        body["trace"] = result.trace
    if cert:
        ttl = min((v["ttl"] for v in values or ()), default=request.app[SETTINGS].negative_ttl)
        body["signature"] = signing.signed(request.app[SIGNER], {
            "kind": "answer", "handle": query.ident.key, "values": values}, ttl, int(time.time()))
    response = json_response(orjson.dumps(body), 404 if values is None else 200)
    response.headers.update(headers)
    return response


def referral_response(request: web.Request, query: Query, exc: Referral) -> web.Response:
    """HTTP 300 naming the delegated servers, signed by this node."""
    body = signed_referral(request.app[SIGNER], query.requested, query.ident.key, exc)
    return json_response(orjson.dumps(body), 300)


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
