"""A reader's view of a record, as pure functions of what was read: from the database
row (``visible``) or from the cached record (``derived``). The rule they keep is in
docs/architecture.md ("No reader sees what it was not granted")."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import asyncpg
import orjson

from resolver import reply
from resolver.cache import Entry
from resolver.core import codec
from resolver.core.identifier import Identifier
from resolver.core.sharing import View, granted, shared_types
from resolver.reply import Reply

if TYPE_CHECKING:
    from resolver.lookup import Resolver


def visible(ident: Identifier, row: asyncpg.Record | None,
            view: View) -> list[dict[str, Any]] | None:
    """What ``view`` sees of a stored row (``fetch_record``), output form."""
    owner = view.administers(ident)
    if row is None or (row["state"] == "draft" and not owner):
        return None
    if row["state"] != "active" and not owner and row["public_json"] is not None:
        # retired or replaced: what everyone sees (a tombstone, an alias), no more
        values: list[dict[str, Any]] = orjson.loads(row["public_json"])
        return values
    shown = view.visible(row["values"], ident, row["template"], time.time())
    return [codec.to_output(v) for v in shown]


def derived(requested: str, ident: Identifier, entry: Entry,
            view: View) -> tuple[Reply, list[str]] | None:
    """What ``view`` (a reader's) sees of a cached record, without the database: its
    public values and the cached shared values its grants cover, in index order, as
    the database path answers them; with the shared types shown (for the read log).
    None when that is what anyone sees (the anonymous reply serves)."""
    if entry.public is None or entry.shared is None:
        return None
    shown = granted(orjson.loads(entry.shared), ident, entry.template, view.grants,
                    time.time())
    if not shown:
        return None
    values = sorted([*orjson.loads(entry.public), *shown], key=lambda v: v["index"])
    return reply.selected(requested, values), [v["type"] for v in shown]


async def resolve_as(resolver: Resolver, ident: Identifier, requested: str, spelling: Any,
                     form: str, view: View, generation: int | None
                     ) -> tuple[Any, list[str], str | None]:
    """A reader's resolution of one identifier, in ``form``: (the encoded reply, the
    shared types it shows, the record's template). Derived from the cached record
    (``derived``, kept for the reader's next request under ``spelling``) or, when the
    record is not cached or only stale, from the database; the anonymous reply when
    the reader sees no more than anyone.

    :raises IdresError: as a resolution does (referral, unavailable...)."""
    resolution = await resolver.resolve(ident)  # network op
    entry = resolution.entry
    if resolution.public is None:
        return resolver.encoded(resolution, form, requested, spelling), [], None
    if entry is not None and not resolution.stale:
        out = resolver.derived_encoded(form, requested, spelling, ident, entry, view,
                                       generation)
        if out is None:                 # it sees what anyone sees
            return resolver.encoded(resolution, form, requested, spelling), [], entry.template
        return out[0], out[1], entry.template
    values = await resolver.read_restricted(ident, view)  # network op (not cached, stale)
    return reply.RENDER[form][0](reply.selected(requested, values)), shared_types(values), None
