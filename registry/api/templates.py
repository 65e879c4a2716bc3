"""Templates over HTTP (docs/records.md):

* ``POST /api/templates`` ``{"handle", "description"?, "items": [...], "publish"?}``: a
  new draft version (the owner of the handle's prefix), published at once with
  ``"publish": true`` (refused, and nothing made, if records would fail it);
* ``POST /api/templates/publish`` ``{"handle", "version", "force"?}``: publish a draft,
  after checking the records that follow the template (409 with the report when some
  would fail and not ``force``); ``GET /api/templates/check?handle=&version=``: the
  report alone;
* ``POST /api/templates/retire`` ``{"handle", "version"}``;
* ``GET /api/templates?prefix=P``: the templates under P; ``GET /api/templates/{handle}``
  (``?version=``, ``?versions=true``): one; ``GET /api/schemas/{handle}`` (``?version=``):
  its JSON Schema (2020-12), for integrators to validate and generate forms from.

Anyone reads published versions; drafts only who administers the prefix.
"""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from registry import template_model as tm
from registry import templates
from registry.api.bodies import decode as _decode
from registry.api.common import context, json_body, ok, principal
from registry.ownership import administers, require
from registry.permissions import Principal
from registry.template_schema import json_schema
from resolver.core import params
from resolver.core.errors import BadRequest
from resolver.core.described import takes
from resolver.core.identifier import Identifier, parse, parse_prefix, parse_raw

SCHEMA_TYPE = "application/schema+json"


class Create(msgspec.Struct, forbid_unknown_fields=True):
    handle: str
    items: list[tm.Item]
    description: str = ""
    publish: bool = False


class Publish(msgspec.Struct, forbid_unknown_fields=True):
    handle: str
    version: int
    force: bool = False


class Retire(msgspec.Struct, forbid_unknown_fields=True):
    handle: str
    version: int


async def _reader(request: web.Request, ident: Identifier) -> Principal | None:
    """The caller if it administers the template's prefix (it sees drafts), else None."""
    if "Authorization" not in request.headers:
        return None
    who = await principal(request)
    async with context(request).pool.acquire() as conn:
        return who if await administers(conn, who, ident.prefix) else None


@takes(body=Create, auth="required")
async def post_template(request: web.Request) -> web.Response:
    ctx = context(request)
    who = await principal(request)
    body: Create = _decode(await json_body(request, ctx.max_body_bytes), Create)
    ident = parse(body.handle)
    version, report = await templates.create_version(
        ctx.db, who, ident, {"description": body.description,
                             "items": msgspec.to_builtins(body.items)}, body.publish)
    extra = {} if report is None else {"report": report}
    return ok(201, ident.spelling, version=version.version, state=version.state, **extra)


@takes(body=Publish, auth="required")
async def post_publish(request: web.Request) -> web.Response:
    ctx = context(request)
    who = await principal(request)
    body: Publish = _decode(await json_body(request, ctx.max_body_bytes), Publish)
    ident = parse(body.handle)
    report = await templates.publish(ctx.db, who, ident, body.version, body.force)
    return ok(200, ident.spelling, version=body.version, state="published", report=report)


@takes(body=Retire, auth="required")
async def post_retire(request: web.Request) -> web.Response:
    ctx = context(request)
    who = await principal(request)
    body: Retire = _decode(await json_body(request, ctx.max_body_bytes), Retire)
    ident = parse(body.handle)
    await templates.retire(ctx.db, who, ident, body.version)
    return ok(200, ident.spelling, version=body.version, state="retired")


async def get_check(request: web.Request) -> web.Response:
    """What publishing a version would say of the records that follow the template."""
    ctx = context(request)
    who = await principal(request)
    q = request.rel_url.query
    ident = parse(q.get("handle", ""))
    version = params.integer("version", q.getall("version", []), 0, 1, 2**31 - 1)
    async with ctx.pool.acquire() as conn:
        await require(conn, who, [ident.prefix], "check the templates of")
        found = await templates.get(conn, ident, version, drafts=True)
        report = await templates.check_existing(conn, ident.key, found.definition)
    return ok(200, ident.spelling, version=found.version, report=report)


def _handle(request: web.Request, strip: str) -> Identifier:
    text, ident = parse_raw(request.rel_url.raw_path[len(strip):])
    request["handle"] = text
    return ident


async def get_template(request: web.Request) -> web.Response:
    ctx = context(request)
    ident = _handle(request, "/api/templates/")
    q = request.rel_url.query
    reader = await _reader(request, ident)
    async with ctx.pool.acquire() as conn:
        if params.flag("versions", q.getall("versions", []), False):
            found = await templates.versions(conn, ident, drafts=reader is not None)
            return ok(200, ident.spelling, versions=[v.to_json() for v in found])
        version = params.integer("version", q.getall("version", []), 0, 0, 2**31 - 1) or None
        one = await templates.get(conn, ident, version, drafts=reader is not None)
    return ok(200, ident.spelling, template=one.to_json())


async def get_schema(request: web.Request) -> web.Response:
    ctx = context(request)
    ident = _handle(request, "/api/schemas/")
    q = request.rel_url.query
    reader = await _reader(request, ident)
    version = params.integer("version", q.getall("version", []), 0, 0, 2**31 - 1) or None
    async with ctx.pool.acquire() as conn:
        one = await templates.get(conn, ident, version, drafts=reader is not None)
    schema = json_schema(ident.spelling, one.version, one.definition)
    return web.Response(body=msgspec.json.encode(schema), content_type=SCHEMA_TYPE,
                        charset="utf-8")


async def get_templates(request: web.Request) -> web.Response:
    ctx = context(request)
    q = request.rel_url.query
    if "prefix" not in q:
        raise BadRequest("give ?prefix=PREFIX")
    prefix = parse_prefix(q["prefix"])
    drafts = False
    if "Authorization" in request.headers:
        who = await principal(request)
        async with ctx.pool.acquire() as conn:
            drafts = await administers(conn, who, prefix)
    async with ctx.pool.acquire() as conn:
        found = await templates.under(conn, prefix.text, drafts)
    return ok(200, None, prefix=prefix.text, templates=[
        {"handle": v.handle, "version": v.version, "state": v.state,
         "description": v.definition.description} for v in found])
