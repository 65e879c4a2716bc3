"""What a write names, as clients send it: the template of a record, and the records of
a bulk registration or a file import (the formats are in registry/api/bulk.py). Pure."""

from __future__ import annotations

import time
from typing import Any

from registry.conformance import Requested
from registry.store.bulk import Entry
from resolver.core import codec
from resolver.core.errors import BadRequest, IdresError, InvalidValue
from resolver.core.identifier import parse
from resolver.core.record import check_record


def requested_template(body: Any, q: Any, raw: list[object]) -> Requested:
    """The template a write names: ``?template=`` and ``?templateVersion=``, or the body's
    ``"template"`` and ``"templateVersion"`` (``{"template", "values": [...]}``).

    :raises BadRequest: a version that is not a positive integer."""
    fields = body if isinstance(body, dict) else {}
    template = q.get("template", fields.get("template"))
    version = q.get("templateVersion", fields.get("templateVersion"))
    if template is not None and not isinstance(template, str):
        raise BadRequest("template must be an identifier string")
    if version is not None:
        if isinstance(version, str) and version.isdigit():
            version = int(version)
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise BadRequest("templateVersion must be a positive integer")
    return Requested(template, version, raw)



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
            # (the entries as sent go with it: a template's defaults fill in only what
            # an entry left out)
            named = fields.get("template")
            if "templateVersion" in fields or not (named is None or named.__class__ is str):
                requested = requested_template(fields, {}, values)
            else:
                requested = Requested(named, None, values)     # the usual: a name or none
        except IdresError as exc:
            exc.message = f"record {n} ({str(handle)[:100]!s}): {exc.message}"
            raise
        if ident.key in seen:
            raise BadRequest(f"record {n}: {ident.key} appears twice in the request")
        seen.add(ident.key)
        out.append(Entry(ident, parsed, requested))
    return out


