"""Which values of a record a request gets: the Handle API's filters by index and type,
and what a client may see. Pure; ``codec.select`` and ``codec.visible`` are these."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

Stored = dict[str, Any]


def select(
    values: Sequence[Stored], indexes: frozenset[int] = frozenset(), types: Sequence[str] = ()
) -> list[Stored]:
    """Stored values matching any requested index or type (Handle ORs them; TM §14.5.1).

    A type ending in ``.`` also matches its subtypes (``order.`` matches
    ``order.status``). Types compare ASCII case-insensitively. No filter → all.
    """
    if not indexes and not types:
        return list(values)
    wanted = [t.upper() for t in types]
    out = []
    for v in values:
        if v["index"] in indexes:
            out.append(v)
            continue
        vt = v["type"].upper()
        if any(vt == t or (t.endswith(".") and vt.startswith(t)) for t in wanted):
            out.append(v)
    return out


def visible(values: Sequence[Stored], admin: bool = False) -> list[Stored]:
    """The values a client may see: public-read ones, plus admin-read ones for an
    operator who administers the identifier. A value with neither bit (an
    ``HS_SECKEY`` holding a secret's hash) is never shown."""
    if admin:
        return [v for v in values if v["permissions"][2] == "1" or v["permissions"][0] == "1"]
    return [v for v in values if v["permissions"][2] == "1"]
