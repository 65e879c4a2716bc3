"""The resolution path: identifier → stored values → what the client may see."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from resolver.core import codec
from resolver.core.errors import IdentifierNotFound
from resolver.core.identifier import Identifier
from resolver.store import fetch_record


@dataclass(frozen=True, slots=True)
class Query:
    """One resolution request. ``requested`` is the identifier exactly as the client
    wrote it (echoed back, as Handle clients compare it byte for byte)."""

    ident: Identifier
    requested: str
    indexes: frozenset[int] = frozenset()
    types: tuple[str, ...] = ()
    admin: bool = False


async def lookup(pool: asyncpg.Pool, query: Query) -> list[dict[str, Any]]:
    """The visible stored values of the identifier, after the index/type filter.

    :raises IdentifierNotFound: no such identifier.
    """
    values = await fetch_record(pool, query.ident.key)  # network op
    if values is None:
        raise IdentifierNotFound(f"handle {query.requested} not found")
    return codec.select(codec.visible(values, query.admin), query.indexes, query.types)


def first_url(values: list[dict[str, Any]]) -> str | None:
    """The redirect target of the proxy: the first URL value holding a string."""
    for v in values:
        if v["type"].upper() == "URL" and v["data"]["format"] == "string":
            url: str = v["data"]["value"]
            return url
    return None
