"""Writes on identifiers, as the Handle.Net REST API takes them (handle-facts §2.4, §4.4).

* ``PUT /api/handles/{id}``: body = an array of values, ``{"values": [...]}`` or one
  value. Without ``?index=`` it creates the record (``overwrite=false``: 201, or 409
  + responseCode 101 if it exists) or replaces it whole (``overwrite=true``, the
  default). With ``?index=N`` (repeatable; must equal the body's indexes) or
  ``?index=various`` it adds/replaces those values of an existing record.
  ``?mintNewSuffix=true`` appends a random UUID to the path's identifier.
* ``DELETE /api/handles/{id}[?index=N...]``: the record, or those values.
* ``GET /api/handles?prefix=P&page=&pageSize=``: list a prefix's identifiers.
"""

from __future__ import annotations

import uuid

from aiohttp import web

from registry.api.bodies import ValuesIn
from registry.api.common import context, identifier, json_body, ok, principal
from registry.ownership import require
from registry.records_input import requested_template
from registry.store import queries, records
from resolver.core import codec, params
from resolver.core.errors import MismatchedIndexes
from resolver.core.described import takes
from resolver.core.identifier import parse, parse_prefix


@takes(body=ValuesIn, auth="required", query={
    "index": ({"type": "string"}, False), "overwrite": ({"type": "boolean"}, False),
    "mintNewSuffix": ({"type": "boolean"}, False), "template": ({"type": "string"}, False)})
async def put_handle(request: web.Request) -> web.Response:
    """Create, replace or add values; see the module docstring."""
    ctx = context(request)
    text, ident = identifier(request)
    who = await principal(request)
    q = request.rel_url.query
    overwrite = params.flag("overwrite", q.getall("overwrite", []), True)
    if params.flag("mintNewSuffix", q.getall("mintNewSuffix", []), False):
        text = text + str(uuid.uuid4()).upper()
        ident = parse(text)
        request["handle"] = text
    body = await json_body(request, ctx.max_body_bytes)
    raw = codec.values_from_body(body, text)
    values = codec.parse_values(raw)
    requested = requested_template(body, q, raw)
    state = q.get("state") or (body.get("state") if isinstance(body, dict) else None) or "active"
    index_params = q.getall("index", [])
    if index_params:
        if [i.lower() for i in index_params] != ["various"]:
            wanted = params.indexes(index_params)
            got = frozenset(v["index"] for v in values)
            if wanted != got:
                raise MismatchedIndexes(
                    f"mismatched indexes: the query names {sorted(wanted)}, "
                    f"the body holds {sorted(got)}"
                )
        await records.put_values(ctx.db, who, ident, values, overwrite=overwrite,
                                 requested=requested)
        return ok(200, text)
    created = await records.put_record(ctx.db, who, ident, values, overwrite=overwrite,
                                       requested=requested, state=str(state))
    return ok(201 if created else 200, text)


async def delete_handle(request: web.Request) -> web.Response:
    """Delete an identifier, or only the values named by ``?index=``."""
    ctx = context(request)
    text, ident = identifier(request)
    who = await principal(request)
    indexes = params.indexes(request.rel_url.query.getall("index", []))
    await records.delete(ctx.db, who, ident, indexes)
    return ok(200, text)


@takes(auth="required", query={"prefix": ({"type": "string"}, True), "page": ({"type": "integer"}, False),
                                   "pageSize": ({"type": "integer"}, False)})
async def list_prefix_handles(request: web.Request) -> web.Response:
    """``GET /api/handles?prefix=P``: identifiers under P, paged (``totalCount`` is a string,
    as the Handle.Net server sends it). Needs credentials that administer P."""
    ctx = context(request)
    q = request.rel_url.query
    if "prefix" not in q:
        raise web.HTTPNotFound()
    prefix_text = q["prefix"].removeprefix("0.NA/")
    prefix = parse_prefix(prefix_text)
    who = await principal(request)
    page = params.integer("page", q.getall("page", []), 0, 0, 10**9)
    size = params.integer("pageSize", q.getall("pageSize", []), 1000, 0, 100_000)
    async with ctx.pool.acquire() as conn:
        await require(conn, who, [prefix], "list")
        total, names = await queries.list_handles(conn, prefix, page, size)
    return ok(200, None, prefix=prefix_text, totalCount=str(total), page=page,
                  pageSize=size, handles=names)
