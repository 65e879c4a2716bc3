"""Bulk registration: ``POST /api/bulk?overwrite=false``.

Body, JSON, one of:

* ``[{"handle": "88.100.7/A", "values": [...]}, ...]`` (each record may name its
  ``"template"`` and ``"templateVersion"``)
* ``{"records": [ ...same... ]}``
* ``{"handleRecords": {"88.100.7/A": {"values": [...]}, ...}}`` (the input format of
  the Handle.Net ``LoadHandlesFromJson`` tool)

Every record is validated before anything is written; then all of them go in
one transaction with COPY (registry/store.py ``bulk_put``): all or nothing.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from registry.api.common import context, json_body, ok, principal
from registry.api.handles import requested_template
from registry.conformance import Requested
from registry.store import bulk
from registry.store.bulk import Entry
from resolver.core import codec, params
from resolver.core.errors import BadRequest, IdresError, InvalidValue
from resolver.core.identifier import parse
from resolver.core.record import check_record

NO_TEMPLATE = Requested()


def _entries(body: Any) -> list[tuple[object, object, dict[str, Any]]]:
    if isinstance(body, dict) and isinstance(body.get("handleRecords"), dict):
        return [(h, r.get("values") if isinstance(r, dict) else r,
                 r if isinstance(r, dict) else {}) for h, r in body["handleRecords"].items()]
    if isinstance(body, dict) and "records" in body:
        body = body["records"]
    if not isinstance(body, list):
        raise BadRequest('the body must be [{"handle", "values"}, ...], {"records": [...]} '
                         'or {"handleRecords": {...}}')
    out = []
    for n, rec in enumerate(body):
        if not isinstance(rec, dict) or "handle" not in rec or "values" not in rec:
            raise BadRequest(f"record {n}: each record needs 'handle' and 'values'")
        out.append((rec["handle"], rec["values"], rec))
    return out


def parse_records(body: Any, limit: int) -> list[Entry]:
    """Validate every record; the error names the first bad record.

    :raises BadRequest: a bad shape, too many records or a duplicate identifier.
    :raises InvalidIdentifier / InvalidValue: a bad record, by position and name.
    """
    entries = _entries(body)
    if not entries:
        raise BadRequest("no records to register")
    if len(entries) > limit:
        raise BadRequest(f"{len(entries)} records is over the limit of {limit} per request")
    now = int(time.time())
    seen: set[str] = set()
    out = []
    for n, (handle, values, fields) in enumerate(entries):
        try:
            if not isinstance(handle, str):
                raise BadRequest("'handle' must be a string")
            ident = parse(handle)
            if not isinstance(values, list):
                raise InvalidValue("'values' must be an array")
            parsed = codec.parse_values(values, now)
            check_record(parsed)
            requested = requested_template(fields, {}, values) if "template" in fields \
                else NO_TEMPLATE
        except IdresError as exc:
            exc.message = f"record {n} ({str(handle)[:100]!s}): {exc.message}"
            raise
        if ident.key in seen:
            raise BadRequest(f"record {n}: {ident.key} appears twice in the request")
        seen.add(ident.key)
        out.append(Entry(ident, parsed, requested))
    return out


async def bulk_register(request: web.Request) -> web.Response:
    """Register many identifiers at once, all or nothing (see module docstring)."""
    ctx = context(request)
    who = await principal(request)
    overwrite = params.flag("overwrite", request.rel_url.query.getall("overwrite", []), False)
    body = await json_body(request, ctx.max_bulk_bytes)
    records = parse_records(body, ctx.max_bulk_records)
    started = time.perf_counter()
    created, replaced = await bulk.bulk_put(ctx.db, who, records, overwrite=overwrite)
    elapsed = time.perf_counter() - started
    return ok(201 if created else 200, None, count=len(records), created=created,
                  replaced=replaced, seconds=round(elapsed, 3))
