"""Typed records over HTTP, beyond the Handle API (docs/records.md):

* ``POST /api/lifecycle/{handle}`` ``{"state", "reason"?, "successor"?}``: draft →
  active, active → retired or replaced, replaced → active or retired (retired is final);
* ``GET /api/lookup?prefix=P&type=T&value=V`` (or ``&start=``): the identifiers of P
  whose unique or searchable item T has that value (or begins so): one index lookup;
  without credentials only public values are found;
* ``GET /api/records?template=H[&version=N][&limit=&after=]``: the records that follow a
  template (who administers the template's prefix);
* ``PUT /api/prefixes/{prefix}`` ``{"template": H | null, "force"?}``: every record under
  the prefix must follow H (refused, naming them, while records there do not, unless
  ``force``: then of new writes only).
"""

from __future__ import annotations

import asyncpg
import msgspec
from aiohttp import web

from registry.api.common import context, json_body, ok, principal, read_view
from registry.api.bodies import decode as _decode
from registry.ownership import require
from registry.prefixes import require_template
from registry.sharing import seen_by
from registry.store.codes import lookup
from registry.store.records import move
from resolver.core import params
from resolver.core.errors import BadRequest
from resolver.core.identifier import parse, parse_prefix, parse_raw
from resolver.core.described import takes
from resolver.core.sharing import View


class Move(msgspec.Struct, forbid_unknown_fields=True):
    state: str
    reason: str = ""
    successor: str | None = None


class PrefixSettings(msgspec.Struct, forbid_unknown_fields=True):
    template: str | None
    force: bool = False


@takes(body=Move, auth="required")
async def post_lifecycle(request: web.Request) -> web.Response:
    ctx = context(request)
    text, ident = parse_raw(request.rel_url.raw_path[len("/api/lifecycle/"):])
    request["handle"] = text
    who = await principal(request)
    body: Move = _decode(await json_body(request, ctx.max_body_bytes), Move)
    info = await move(ctx.db, who, ident, body.state, body.reason, body.successor)
    return ok(200, text, **{k: v for k, v in info.items() if k != "epoch"})


@takes(query={"prefix": ({"type": "string"}, True), "type": ({"type": "string"}, True), "value": ({"type": "string"}, False),
               "start": ({"type": "string"}, False), "limit": ({"type": "integer"}, False)})
async def get_lookup(request: web.Request) -> web.Response:
    ctx = context(request)
    q = request.rel_url.query
    if "prefix" not in q or "type" not in q or not ("value" in q or "start" in q):
        raise BadRequest("give ?prefix=PREFIX&type=TYPE&value=VALUE (or &start=BEGINNING)")
    prefix = parse_prefix(q["prefix"])
    limit = params.integer("limit", q.getall("limit", []), 100, 1, 10_000)
    start = "value" not in q
    if start and not q["start"]:
        raise BadRequest("start must not be empty")
    wanted = q["start" if start else "value"]
    view = await read_view(request, None) if "Authorization" in request.headers else None
    owner = view is not None and view.owner_of(prefix)
    async with ctx.pool.acquire() as conn:
        found = await lookup(conn, prefix.text, q["type"], wanted, owner or bool(
            view and view.grants), limit, start)
        if view is not None and not owner and found:
            found = await _readable(conn, view, found, q["type"], wanted, start)
    return ok(200, None, prefix=prefix.text, type=q["type"], handles=found)


async def _readable(conn: asyncpg.Connection, view: View, found: list[str], type_: str,
                    wanted: str, start: bool) -> list[str]:
    """The identifiers among ``found`` where the caller may read the value that matched:
    nobody finds an identifier by a value it may not read."""
    return [spelled for spelled, seen in await seen_by(conn, view, found)  # network op
            if any(v["type"] == type_ and (v["data"]["value"].startswith(wanted) if start
                                           else v["data"]["value"] == wanted) for v in seen)]


@takes(auth="required", query={"template": ({"type": "string"}, True), "version": ({"type": "integer"}, False)})
async def get_records(request: web.Request) -> web.Response:
    ctx = context(request)
    who = await principal(request)
    q = request.rel_url.query
    template = parse(q.get("template", ""))
    version = params.integer("version", q.getall("version", []), 0, 0, 2**31 - 1) or None
    limit = params.integer("limit", q.getall("limit", []), 1000, 1, 100_000)
    after = q.get("after", "")
    async with ctx.pool.acquire() as conn:
        await require(conn, who, [template.prefix], "list the records of templates under")
        rows = await conn.fetch(
            """SELECT coalesce(spelling, handle) AS h, handle, template_version, state
               FROM handles WHERE template = $1 AND ($2::int IS NULL OR template_version = $2)
               AND handle > $3 ORDER BY handle LIMIT $4""",
            template.key, version, after, limit)
        total = await conn.fetchval(
            "SELECT count(*) FROM handles WHERE template = $1 AND "
            "($2::int IS NULL OR template_version = $2)", template.key, version)
    return ok(200, None, template=template.spelling, totalCount=str(total), records=[
        {"handle": r["h"], "version": r["template_version"], "state": r["state"]} for r in rows],
        next=rows[-1]["handle"] if len(rows) == limit else None)


@takes(body=PrefixSettings, auth="required")
async def put_prefix(request: web.Request) -> web.Response:
    """Require (or stop requiring) a template for every record under the prefix."""
    ctx = context(request)
    who = await principal(request)
    prefix = parse_prefix(request.match_info["prefix"])
    body: PrefixSettings = _decode(await json_body(request, ctx.max_body_bytes), PrefixSettings)
    key, complete = await require_template(ctx.db, who, prefix, body.template, body.force)
    return ok(200, None, prefix=prefix.text, template=key, complete=complete)
