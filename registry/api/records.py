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

import msgspec
from aiohttp import web

from registry.api.common import context, json_body, ok, principal
from registry.api.templates import _decode
from registry.ownership import administers, require
from registry.store import audit, write_transaction
from registry.store.codes import lookup, lookup_start
from registry.store.records import move
from registry.store.rows import REQUIRING
from registry.templates import for_write
from resolver.core import params
from resolver.core.channel import zone_key
from resolver.core.errors import BadRequest, PrefixNotFound, StateConflict
from resolver.core.identifier import parse, parse_prefix, parse_raw


class Move(msgspec.Struct, forbid_unknown_fields=True):
    state: str
    reason: str = ""
    successor: str | None = None


class PrefixSettings(msgspec.Struct, forbid_unknown_fields=True):
    template: str | None
    force: bool = False


async def post_lifecycle(request: web.Request) -> web.Response:
    ctx = context(request)
    text, ident = parse_raw(request.rel_url.raw_path[len("/api/lifecycle/"):])
    request["handle"] = text
    who = await principal(request)
    body: Move = _decode(await json_body(request, ctx.max_body_bytes), Move)
    info = await move(ctx.db, who, ident, body.state, body.reason, body.successor)
    return ok(200, text, **{k: v for k, v in info.items() if k != "epoch"})


async def get_lookup(request: web.Request) -> web.Response:
    ctx = context(request)
    q = request.rel_url.query
    if "prefix" not in q or "type" not in q or not ("value" in q or "start" in q):
        raise BadRequest("give ?prefix=PREFIX&type=TYPE&value=VALUE (or &start=BEGINNING)")
    prefix = parse_prefix(q["prefix"])
    limit = params.integer("limit", q.getall("limit", []), 100, 1, 10_000)
    restricted = False
    if "Authorization" in request.headers:
        who = await principal(request)
        async with ctx.pool.acquire() as conn:
            restricted = await administers(conn, who, prefix)
    async with ctx.pool.acquire() as conn:
        if "value" in q:
            keys = await lookup(conn, prefix.text, q["type"], q["value"], restricted, limit)
        else:
            if not q["start"]:
                raise BadRequest("start must not be empty")
            keys = await lookup_start(conn, prefix.text, q["type"], q["start"], restricted,
                                      limit)
        spelled = await conn.fetch("SELECT coalesce(spelling, handle) AS h FROM handles "
                                   "WHERE handle = ANY($1::text[]) AND (state <> 'draft' OR $2) "
                                   "ORDER BY handle", keys, restricted)
    return ok(200, None, prefix=prefix.text, type=q["type"], handles=[r["h"] for r in spelled])


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


async def put_prefix(request: web.Request) -> web.Response:
    """Require (or stop requiring) a template for every record under the prefix."""
    ctx = context(request)
    who = await principal(request)
    prefix = parse_prefix(request.match_info["prefix"])
    body: PrefixSettings = _decode(await json_body(request, ctx.max_body_bytes), PrefixSettings)
    async with write_transaction(ctx.db) as tx:
        conn = tx.conn
        await require(conn, who, [prefix], "set the template of")
        key = None
        if body.template is not None:
            key = (await for_write(conn, body.template, None)).handle
        before = await conn.fetchval("SELECT template FROM prefixes WHERE prefix = $1 FOR UPDATE",
                                     prefix.text)
        others: list[str] = []
        if key is not None:
            # the records under it (descendant prefixes too) that do not follow it; writes
            # there wait for this lock (REQUIRING), so none slips in before the commit
            await conn.execute(REQUIRING, prefix.text)
            others = [r["h"] for r in await conn.fetch(
                "SELECT coalesce(spelling, handle) AS h FROM handles WHERE handle >= $1 "
                "AND handle < $2 AND template IS DISTINCT FROM $3 AND NOT EXISTS "
                "(SELECT 1 FROM templates t WHERE t.handle = handles.handle) "  # templates'
                "ORDER BY handle LIMIT 11",
                prefix.text + ".", prefix.text + "0", key)]
            if others and not body.force:
                refused = StateConflict(
                    f"records under {prefix.text} do not follow template {key} (give them "
                    'the template first, or send "force": true to require it of new writes '
                    "only)")
                refused.details = {"records": others[:10], "more": len(others) > 10}
                raise refused
        found = await conn.fetchval(
            "UPDATE prefixes SET template = $2, template_complete = $3 WHERE prefix = $1 "
            "RETURNING true", prefix.text, key, key is not None and not others)
        if not found:
            raise PrefixNotFound(f"prefix {prefix.text} is not allocated here")
        await audit(conn, who, "prefix_template", prefix=prefix.text,
                    before={"template": before}, after={"template": key, "forced": bool(others)})
        await tx.notify([zone_key(prefix.text)])
    return ok(200, None, prefix=prefix.text, template=key, complete=key is not None and not others)
