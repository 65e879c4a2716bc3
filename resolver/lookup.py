"""The resolution path: cache → coalesce → store → cache.put.

:class:`Resolver` is one per process. ``public(key)`` answers the values an
anonymous client may see (or None: not found) for a normalised identifier key:

1. a live cache entry answers at once (no I/O);
2. otherwise, if a query for the same key is already in flight, wait for it
   (concurrent misses coalesce into one database query);
3. otherwise query the database (one primary-key lookup) and cache the result,
   unless the key was invalidated while the query was in flight: then the result
   is returned to its waiters but not kept, so a write that committed during the
   query can never be hidden by a stale entry.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import msgpack
import orjson

from resolver.cache import AnswerCache, Entry
from resolver.core import codec
from resolver.core.errors import IdentifierNotFound, IdresError
from resolver.core.identifier import Identifier, parse
from resolver.store import Values, fetch_record, fetch_records


@dataclass(frozen=True, slots=True)
class Query:
    """One resolution request. ``requested`` is the identifier exactly as the client
    wrote it (echoed back, as Handle clients compare it byte for byte)."""

    ident: Identifier
    requested: str
    indexes: frozenset[int] = frozenset()
    types: tuple[str, ...] = ()
    admin: bool = False

    @property
    def plain(self) -> bool:
        """No filter and no credentials: the answer can come from the cache as bytes."""
        return not (self.indexes or self.types or self.admin)


def _packb(obj: Any) -> bytes:
    data: bytes = msgpack.packb(obj, use_bin_type=True)
    return data


def _size(values: Values | None) -> int:
    if not values:
        return 64
    return sum(96 + len(str(v["data"]["value"])) + len(v["type"]) for v in values)


class Resolver:
    """Cached, coalesced resolution for one process (see module docstring)."""

    def __init__(self, pool: asyncpg.Pool, cache: AnswerCache) -> None:
        self.pool = pool
        self.cache = cache
        self._flights: dict[str, asyncio.Future[Values | None]] = {}
        self._tainted: set[str] = set()
        self.queries = 0  # database round trips made for resolution

    def invalidate(self, keys: Iterable[str]) -> None:
        """A write committed for ``keys``: forget them, and do not cache in-flight reads."""
        for key in keys:
            self.cache.evict(key)
            if key in self._flights:
                self._tainted.add(key)

    async def public(self, key: str) -> tuple[Values | None, Entry | None]:
        """(public values or None if not found, the cache entry if one holds them)."""
        entry = self.cache.get(key)
        if entry is not None:
            return entry.values, entry
        flight = self._flights.get(key)
        if flight is not None:
            values = await asyncio.shield(flight)
            return values, None
        found = await self._fetch([key], lambda: self._one(key))
        return found[key]

    async def many(self, keys: Sequence[str]) -> dict[str, tuple[Values | None, Entry | None]]:
        """``public`` for many keys: hits from the cache, every miss in ONE query."""
        out: dict[str, tuple[Values | None, Entry | None]] = {}
        todo: list[str] = []
        waits: list[str] = []
        for key in keys:
            if key in out:
                continue
            entry = self.cache.get(key)
            if entry is not None:
                out[key] = (entry.values, entry)
            elif key in self._flights:
                waits.append(key)
            else:
                out[key] = (None, None)  # placeholder, replaced below
                todo.append(key)
        if todo:
            out.update(await self._fetch(todo, lambda: fetch_records(self.pool, todo)))
        for key in waits:
            out[key] = (await asyncio.shield(self._flights[key]), None) \
                if key in self._flights else await self.public(key)
        return out

    async def _one(self, key: str) -> dict[str, Values]:
        stored = await fetch_record(self.pool, key)  # network op
        return {} if stored is None else {key: stored}

    async def _fetch(self, keys: list[str], query: Any) -> dict[str, tuple[Values | None, Entry | None]]:
        loop = asyncio.get_running_loop()
        flights = {k: loop.create_future() for k in keys}
        self._flights.update(flights)
        try:
            self.queries += 1
            stored: dict[str, Values] = await query()  # network op
        except BaseException as exc:
            for fut in flights.values():
                fut.set_exception(exc)
                fut.exception()  # retrieved: no "never retrieved" warning without waiters
            raise
        finally:
            for k in keys:
                del self._flights[k]
            tainted = self._tainted.intersection(keys)
            self._tainted.difference_update(tainted)
        out: dict[str, tuple[Values | None, Entry | None]] = {}
        for key in keys:
            raw = stored.get(key)
            values = None if raw is None else codec.visible(raw)
            entry = None if key in tainted else self.cache.put(key, values, _size(values))
            flights[key].set_result(values)
            out[key] = (values, entry)
        return out

    async def lookup(self, query: Query) -> Values:
        """The visible values for a query, after its index/type filter.

        Authenticated reads (which may include admin-readable values) bypass the
        cache in both directions.

        :raises IdentifierNotFound: no such identifier.
        """
        if query.admin:
            stored = await fetch_record(self.pool, query.ident.key)  # network op
            values = None if stored is None else codec.visible(stored, admin=True)
        else:
            values, _ = await self.public(query.ident.key)
        if values is None:
            raise IdentifierNotFound(f"handle {query.requested} not found")
        return codec.select(values, query.indexes, query.types)

    async def answers(self, handles: Sequence[str], use_msgpack: bool) -> list[bytes]:
        """One encoded answer per identifier text, in order: the single-GET body of each
        (a malformed identifier gets its 102 answer). All misses in ONE query."""
        parsed: list[tuple[str, str | None, bytes | None]] = []
        encode = _packb if use_msgpack else orjson.dumps
        for h in handles:
            try:
                parsed.append((h, parse(h).key, None))
            except IdresError as exc:
                parsed.append((h, None, encode(codec.answer(exc.response_code, h,
                                                            message=exc.message))))
        found = await self.many([k for _, k, _ in parsed if k is not None])  # network op
        answer = self.msgpack_answer if use_msgpack else self.json_answer
        return [err if key is None else answer(h, *found[key])  # type: ignore[misc]
                for h, key, err in parsed]

    def json_answer(self, requested: str, values: Values | None, entry: Entry | None) -> bytes:
        """The Handle JSON answer for an unfiltered query, kept with the entry."""
        return self._answer(requested, values, entry, "json", orjson.dumps)

    def msgpack_answer(self, requested: str, values: Values | None,
                       entry: Entry | None) -> bytes:
        """The same answer as msgpack (binary protocol, msgpack batch), kept with the entry."""
        return self._answer(requested, values, entry, "msgpack", _packb)

    def _answer(self, requested: str, values: Values | None, entry: Entry | None, fmt: str,
                encode: Callable[[Any], bytes]) -> bytes:
        kind = (fmt, requested)
        if entry is not None:
            kept = entry.renders.get(kind)
            if kept is not None:
                return kept
        body = encode(codec.record_answer(requested, values))
        return body if entry is None else self.cache.render(entry, kind, body)


def first_url(values: Values) -> str | None:
    """The redirect target of the proxy: the first URL value holding a string."""
    for v in values:
        if v["type"].upper() == "URL" and v["data"]["format"] == "string":
            url: str = v["data"]["value"]
            return url
    return None
