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

from aiohttp import web

from registry.api.bodies import BulkIn
from registry.api.common import context, json_body, ok, principal
from registry.records_input import parse_records
from registry.store import bulk
from resolver.core import params
from resolver.core.described import takes


@takes(body=BulkIn, auth="required", query={"overwrite": ({"type": "boolean"}, False)})
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
