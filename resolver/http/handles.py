"""HTTP resolution, compatible with the Handle.Net REST API (handle-facts §2, §6).

* ``GET|HEAD /api/handles/{prefix}/{suffix}`` → Handle JSON; ``?index=``/``?type=``
  filters (repeatable, OR-ed); 404 + responseCode 100 when unknown; 200 +
  responseCode 200 when the filter leaves nothing.
* ``GET|HEAD /{prefix}/{suffix}`` (proxy style) → 302 to the first URL value;
  ``?noredirect`` answers the record as JSON instead; an ``HS_ALIAS`` (a replaced
  identifier) → 301 to the identifier the alias chain ends at (``?ignore_aliases``: the
  record); a retired identifier → 410 with its tombstone.

Plain resolutions come here only when the fast path handed the connection over; the
reply is the same either way (``resolver/reply.py`` shapes both).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import orjson
from aiohttp import web

from resolver import page, reply
from resolver.core import codec, lifecycle, params, signing
from resolver.core.described import takes
from resolver.core.errors import (
    IdentifierNotFound,
    IdresError,
    NoSuchEndpoint,
    RecursionLimit,
    Referral,
)
from resolver.core.identifier import Identifier, parse, parse_raw
from resolver.core.sharing import View, shared_types
from resolver.http.keys import READ_AUTH, READ_LOG, RESOLVER, SETTINGS, SIGNER
from resolver.http.respond import respond
from resolver.lookup import Resolution, first_url

API_PREFIX = "/api/handles/"



@dataclass(frozen=True, slots=True)
class Query:
    """One resolution request. ``requested`` is the identifier exactly as the client
    wrote it (echoed back, as Handle clients compare it byte for byte)."""

    ident: Identifier
    requested: str
    indexes: frozenset[int] = frozenset()
    types: tuple[str, ...] = ()
    view: View | None = None  # credentials came, and may see more than the public values

    @property
    def plain(self) -> bool:
        """No filter and no credentials that see more: the reply comes from the cache as
        bytes."""
        return not (self.indexes or self.types or self.view)


def requested_identifier(request: web.Request, strip: str) -> tuple[str, Identifier]:
    """(identifier as the client wrote it, parsed identifier) from the raw path.

    The raw path is decoded here, strictly, so that a malformed escape is an error
    rather than a silent replacement character. ``request["handle"]`` is set for
    error replies, which must echo the handle (pyhandle reads it even from a 404).
    """
    text, ident = parse_raw(request.rel_url.raw_path[len(strip):])
    request["handle"] = text
    return text, ident


async def _query(request: web.Request, strip: str) -> Query:
    text, ident = requested_identifier(request, strip)
    q = request.rel_url.query
    view = None
    if "Authorization" in request.headers:
        view = await request.app[READ_AUTH](request, ident)
        if not view.may_cover(ident):
            view = None           # no grant reaches it: the public values, from the cache
    return Query(
        ident, text, params.indexes(q.getall("index", [])), tuple(q.getall("type", [])), view
    )


def _flag(request: web.Request, name: str) -> bool | None:
    q = request.rel_url.query
    return params.flag(name, q.getall(name, []), False) if name in q else None


async def _values(request: web.Request, query: Query,
                  ) -> tuple[list[dict[str, Any]] | None, Resolution | None]:
    """The values the query may see after its filter (None: no such identifier), and
    the resolution they come from (None for an authenticated read)."""
    resolver = request.app[RESOLVER]
    if query.view is not None:
        values = await resolver.read_restricted(query.ident, query.view)  # network op
        resolution = None
    else:
        resolution = await resolver.resolve(query.ident, _flag(request, "recursive"),
                                            bool(_flag(request, "trace")))  # network op
        values = None if resolution.public is None else orjson.loads(resolution.public)
    if values is not None:
        values = codec.select(values, query.indexes, query.types)
    if query.view is not None and not query.view.administers(query.ident):
        shown = shared_types(values)
        if shown and not request.app[RESOLVER].sharing.no_read_logs():
            # the read log, where one is on, before the answer leaves
            await request.app[READ_LOG](query.view.party,
                                        [(query.ident.key, shown)])  # network op
    return values, resolution


def _homed(request: web.Request, query: Query, resolution: Resolution | None) -> bool:
    if resolution is not None:
        return resolution.homed
    return request.app[RESOLVER].zone.classify(query.ident.prefix)[0] == "local"


@takes(query={"index": ({"type": "array", "items": {"type": "integer"}}, False),
               "type": ({"type": "array", "items": {"type": "string"}}, False)})
async def get_handle(request: web.Request) -> web.Response:
    """Resolve one identifier to its Handle JSON record.

    Beyond the Handle API: ``?cert=true`` signs the answer (Ed25519, docs/trust.md),
    ``?recursive=true|false`` overrides the node's recursion default, ``?trace=true``
    adds the hops of a recursive resolution. A delegated prefix answers a referral
    (HTTP 300, responseCode 303) when the request is not recursive.
    """
    query = await _query(request, API_PREFIX)
    resolver = request.app[RESOLVER]
    cert, trace = bool(_flag(request, "cert")), bool(_flag(request, "trace"))
    try:
        values, resolution = await _values(request, query)  # network op on a miss
    except Referral as exc:
        return respond(resolver.reply_for(query.requested, exc, query.ident.key))
    stale = resolution is not None and resolution.stale
    homed = _homed(request, query, resolution)
    if query.plain and resolution is not None and not (cert or trace):
        return respond(reply.record(query.requested, resolution.public, stale=stale,
                                    homed=homed))
    extra: dict[str, Any] = {}
    if trace and resolution is not None:
        extra["trace"] = resolution.trace
    if cert:
        ttl = min((v["ttl"] for v in values or ()), default=request.app[SETTINGS].negative_ttl)
        extra["signature"] = signing.signed(request.app[SIGNER], {
            "kind": "answer", "handle": query.ident.key, "values": values}, ttl, int(time.time()))
    return respond(reply.selected(query.requested, values, stale=stale, homed=homed, **extra))


async def proxy(request: web.Request) -> web.StreamResponse:
    """Proxy-style resolution: redirect to the record's first URL value; a page for a
    browser where a client gets JSON, a linkset for one that asks (resolver/page.py)."""
    if request.path.startswith("/api/"):
        raise NoSuchEndpoint("no such endpoint")  # an unknown API endpoint, not an identifier
    want = page.preferred(request.headers.get("Accept"), request.rel_url.query.get("linkType"))
    query = await _query(request, "/")
    values, resolution = await _values(request, query)  # network op on a miss
    if values is None:
        if not _homed(request, query, resolution):
            raise reply.not_homed(query.requested)
        if want == page.HTML:
            return _page(page.missing_page(query.requested), 404)
        raise IdentifierNotFound(f"handle {query.requested} not found")
    stale = resolution is not None and resolution.stale
    said = lifecycle.tombstone(values)
    if said is not None:
        if want == page.HTML:
            return _page(page.gone_page(query.requested, said), 410)
        return _varied(respond(reply.gone(query.requested, values, said)))
    template = resolution.entry.template if resolution is not None and \
        resolution.entry is not None else None
    if want == page.LINKSET:
        return web.Response(body=page.linkset(str(request.url.origin()), query.requested,
                                              values, template),
                            headers=(*reply.CORS, *page.LINKSET_HEADERS))
    show = _flag(request, "noredirect")
    if not show and not _flag(request, "ignore_aliases") and lifecycle.alias(values):
        final = await _follow_aliases(request, query, values)  # network op
        return _varied(respond(reply.redirect("/" + quote(final, safe="/"),
                                              min(v["ttl"] for v in values), stale=stale,
                                              status=301)))
    url = None if show else first_url(values)
    if url is None:
        if want == page.HTML:
            labels = await _labels(request, template)  # network op on a miss
            return _page(page.record_page(query.requested, values, labels, template), 200)
        return _varied(respond(reply.selected(query.requested, values, stale=stale)))
    return _varied(respond(reply.redirect(url, min(v["ttl"] for v in values), stale=stale)))


def _page(body: bytes, status: int) -> web.Response:
    return web.Response(body=body, status=status, headers=(*reply.CORS, *page.PAGE_HEADERS))


def _varied(response: web.Response) -> web.Response:
    """A proxy answer depends on Accept (a page, a linkset): shared caches must know."""
    response.headers["Vary"] = "Accept"
    return response


async def _labels(request: web.Request, template: str | None) -> dict[str, str]:
    """The descriptions of a template's items, from its own (public, cached) record."""
    if template is None:
        return {}
    try:
        found = await request.app[RESOLVER].resolve(parse(template))  # network op on a miss
    except IdresError:
        return {}
    return page.template_labels(orjson.loads(found.public)) if found.public else {}


async def _follow_aliases(request: web.Request, query: Query,
                          values: list[dict[str, Any]]) -> str:
    """The identifier an alias chain ends at (HS_ALIAS, as the Handle.Net proxy follows
    it, at most MAX_ALIAS_HOPS).

    :raises RecursionLimit: a loop, or a chain longer than that."""
    resolver = request.app[RESOLVER]
    seen = {query.ident.key}
    target = lifecycle.alias(values)
    while target is not None:
        if len(seen) > lifecycle.MAX_ALIAS_HOPS:
            raise RecursionLimit(f"aliases of {query.requested} go further than "
                                 f"{lifecycle.MAX_ALIAS_HOPS} hops")
        ident = parse(target)
        if ident.key in seen:
            raise RecursionLimit(f"aliases of {query.requested} go round in a loop at {target}")
        seen.add(ident.key)
        resolution = await resolver.resolve(ident)  # network op on a miss
        nxt = None if resolution.public is None else lifecycle.alias(
            orjson.loads(resolution.public))
        if nxt is None:
            return target
        target = nxt
    return query.requested


async def no_read_log(party: str, reads: list[tuple[str, list[str]]]) -> None:
    """The read-log hook when no registry is mounted."""


async def anonymous_reads_only(request: web.Request, ident: Identifier | None) -> View:
    """The read-auth hook when no registry is mounted: credentials grant nothing."""
    return View("anonymous")
