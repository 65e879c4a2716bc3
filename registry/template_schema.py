"""A template version as JSON Schema 2020-12: the body ``PUT /api/handles/{id}`` takes for
a record of it, for integrators to validate before sending and to generate forms and
client types from. Pure."""

from __future__ import annotations

from typing import Any

from registry.template_model import DIGESTS, Definition, Item

_FORMATS = {"date": "date", "datetime": "date-time", "url": "uri", "email": "email"}
_PATTERNS = {"integer": r"^[-+]?[0-9]+$",
             "decimal": r"^[-+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?$",
             "boolean": r"^(true|false)$", "date": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"}


def _data_schema(item: Item) -> dict[str, Any]:
    text: dict[str, Any] = {"type": "string"}
    if item.datatype in _FORMATS:
        text["format"] = _FORMATS[item.datatype]
    if item.datatype == "enum":
        text["enum"] = list(item.values or ())
    if item.datatype == "digest":
        size = DIGESTS[item.digest or "sha256"]
        text["pattern"] = f"^[0-9a-fA-F]{{{size}}}$"
    patterns = [p for p in (_PATTERNS.get(item.datatype), item.pattern) if p]
    if item.pattern:
        patterns[-1] = f"^(?:{item.pattern})$"
    if len(patterns) == 1:
        text["pattern"] = patterns[0]
    elif patterns:
        text["allOf"] = [{"pattern": p} for p in patterns]
    if item.min_length is not None:
        text["minLength"] = item.min_length
    if item.max_length is not None:
        text["maxLength"] = item.max_length
    if item.description:
        text["description"] = item.description
    if item.datatype == "handle":
        return {"description": item.description or "any Handle data"}
    return {"anyOf": [text, {"type": "object", "required": ["value"],
                             "properties": {"format": {"const": "string"}, "value": text}}]}


def json_schema(handle: str, version: int, definition: Definition) -> dict[str, Any]:
    """The JSON Schema (2020-12) of the body ``PUT /api/handles/{id}`` takes for a record
    of this template version: ``{"values": [...]}`` (a bare array too), each value of a
    type the template has (or a Handle System type), required items present, single
    items once. Ranges and reference targets are checked by the server only."""
    per_type = []
    for item in definition.items:
        per_type.append({
            "properties": {"type": {"const": item.type}, "data": _data_schema(item)},
            "required": ["type", "data"],
        })
    value = {"type": "object", "required": ["index", "type", "data"],
             "properties": {"index": {"type": ["integer", "string"]}, "type": {"type": "string"},
                            "ttl": {"type": ["integer", "string"]},
                            "permissions": {"type": "string", "pattern": "^[01]{4}$"}},
             "anyOf": [*per_type, {"properties": {"type": {"pattern": "^HS_"}}}]}
    values: dict[str, Any] = {"type": "array", "items": value, "allOf": []}
    for item in definition.items:
        has = {"contains": {"properties": {"type": {"const": item.type}}, "required": ["type"]}}
        if item.required:
            values["allOf"].append(has)
        if not item.many:
            values["allOf"].append({**has, "minContains": 0, "maxContains": 1})
    if not values["allOf"]:
        del values["allOf"]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"/api/templates/{handle}/schema?version={version}",
        "title": f"{handle} version {version}",
        "description": definition.description or f"records of template {handle}",
        "anyOf": [values, {"type": "object", "required": ["values"],
                           "properties": {"values": values}}],
    }
