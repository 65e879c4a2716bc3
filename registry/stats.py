"""Counts over what a caller may see (docs/sharing.md, "Sharing upward"): identifiers
per template under a prefix, and per value of one enumeration item of a template, for
a city platform that must know how many smoke detectors are out of service across its
communities without reading any private value.

Who may count under a prefix: who administers it, and parties with a grant whose scope
is the prefix or one of its ancestors. Counts per value of an item count only values the
caller could read: public ones, shared ones its grants cover (by type and template),
and for an owner every readable one; an item whose values are private is refused.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from registry import templates
from resolver.core.errors import BadRequest, InsufficientPermissions
from resolver.core.identifier import Prefix
from resolver.core.sharing import View, type_matches

_UNDER = "(h.prefix = $1 OR starts_with(h.prefix, $1 || '.'))"
PER_TEMPLATE = f"""SELECT h.template, count(*) AS n FROM handles h
                   WHERE {_UNDER} AND h.state <> 'draft' AND h.template IS NOT NULL
                   GROUP BY h.template ORDER BY h.template"""
PER_VALUE = f"""SELECT v -> 'data' ->> 'value' AS value, count(DISTINCT h.handle) AS n
                FROM handles h CROSS JOIN LATERAL json_array_elements(h."values") v
                WHERE {_UNDER} AND h.template = $2 AND h.state = 'active'
                  AND upper(v ->> 'type') = upper($3)
                  AND (substr(v ->> 'permissions', 3, 1) = '1'
                       OR (v ->> 'classification' = 'shared' AND $4)
                       OR (substr(v ->> 'permissions', 1, 1) = '1' AND $5))
                GROUP BY 1 ORDER BY 1"""


def _may_count(view: View, prefix: Prefix) -> list[Any]:
    """The caller's grants that reach the whole prefix (empty for an owner).

    :raises InsufficientPermissions: neither an owner nor granted anything there."""
    if view.owner_of(prefix):
        return []
    lineage = {p.text for p in prefix.lineage()}
    reaching = [g for g in view.grants if g.scope in lineage]
    if not reaching:
        raise InsufficientPermissions(f"nothing under {prefix.text} is shared with you")
    return reaching


async def counts(conn: asyncpg.Connection, view: View, prefix: Prefix,
                 template: str | None = None, item: str | None = None) -> dict[str, Any]:
    """``{"prefix", "templates": [{"template", "count"}]}``, or with ``template`` and
    ``item`` (an enumeration item of it) ``{"prefix", "template", "item", "values":
    [{"value", "count"}]}``.

    :raises BadRequest: an item without its template, or not an enumeration item.
    :raises InsufficientPermissions: see :func:`_may_count`; the item's values are
    private."""
    reaching = _may_count(view, prefix)
    owner = not reaching
    if item is None:
        rows = await conn.fetch(PER_TEMPLATE, prefix.text)  # network op
        return {"prefix": prefix.text, "templates": [
            {"template": r["template"], "count": r["n"]} for r in rows]}
    if template is None:
        raise BadRequest("counting the values of an item needs its template (&template=)")
    found = await templates.for_write(conn, template, None)  # the newest published version
    match = [i for i in found.definition.items if i.type.upper() == item.upper()]
    if not match or match[0].datatype != "enum":
        raise BadRequest(f"{item} is not an enumeration item of {found.handle}")
    kind = match[0].classification
    shared = owner or any(type_matches(g.types, match[0].type)
                          and g.template in (None, found.handle) for g in reaching)
    if kind == "private" and not owner:
        raise InsufficientPermissions(f"the values of {item} are private")
    if kind == "shared" and not shared:
        raise InsufficientPermissions(f"the values of {item} are not shared with you")
    rows = await conn.fetch(PER_VALUE, prefix.text, found.handle, match[0].type, shared,
                            owner)  # network op
    return {"prefix": prefix.text, "template": found.handle, "item": match[0].type,
            "values": [{"value": r["value"], "count": r["n"]} for r in rows]}
