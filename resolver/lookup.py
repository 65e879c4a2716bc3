"""The resolution path: cache → coalesce → store → cache.put.

:class:`Resolver` is one per process. ``public(key)`` answers what an anonymous
client may see of a normalised identifier key, as the output-form JSON bytes
stored with the record (``handles.public_json``), or None when it does not exist:

1. a live cache entry answers at once (no I/O);
2. otherwise, if a query for the same key is already in flight, wait for it
   (concurrent misses coalesce into one database query);
3. otherwise query the database (one primary-key lookup) and cache the result,
   unless the key was invalidated while the query was in flight: then the result
   is returned to its waiters but not kept, so a write that committed during the
   query can never be hidden by a stale entry.

Nothing on this path decodes JSON: answers are spliced from the stored bytes.
Filtered or authenticated reads (rare) decode.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import msgpack
import orjson

from resolver.cache import AnswerCache, Entry
from resolver.core import codec
from resolver.core.channel import CREATED_MARK
from resolver.core.errors import IdentifierNotFound, IdresError
from resolver.core.identifier import Identifier, parse
from resolver.store import fetch_public, fetch_publics, fetch_record

Found = tuple[bytes | None, Entry | None]


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


class Resolver:
    """Cached, coalesced resolution for one process (see module docstring)."""

    def __init__(self, pool: asyncpg.Pool, cache: AnswerCache) -> None:
        self.pool = pool
        self.cache = cache
        self._flights: dict[str, asyncio.Future[bytes | None]] = {}
        self._tainted: set[str] = set()
        self.queries = 0  # database round trips made for resolution

    def invalidate(self, keys: Iterable[str]) -> None:
        """A write committed for ``keys``: forget them, and do not cache in-flight reads.
        ``CREATED_MARK`` stands for "some unknown identifiers now exist"."""
        for key in keys:
            if key == CREATED_MARK:
                self.cache.evict_negative()
                self._tainted.update(self._flights)
                continue
            self.cache.evict(key)
            if key in self._flights:
                self._tainted.add(key)

    async def public(self, key: str) -> Found:
        """(public JSON bytes or None if not found, the cache entry holding them if any)."""
        entry = self.cache.get(key)
        if entry is not None:
            return entry.public, entry
        flight = self._flights.get(key)
        if flight is not None:
            return await asyncio.shield(flight), None
        found = await self._fetch([key], self._one)
        return found[key]

    async def many(self, keys: Sequence[str]) -> dict[str, Found]:
        """``public`` for many keys: hits from the cache, every miss in ONE query."""
        out: dict[str, Found] = {}
        todo: list[str] = []
        waits: list[str] = []
        for key in keys:
            if key in out:
                continue
            entry = self.cache.get(key)
            if entry is not None:
                out[key] = (entry.public, entry)
            elif key in self._flights:
                waits.append(key)
            else:
                out[key] = (None, None)  # placeholder, replaced below
                todo.append(key)
        if todo:
            out.update(await self._fetch(todo, fetch_publics))
        for key in waits:
            flight = self._flights.get(key)
            out[key] = (await asyncio.shield(flight), None) if flight else await self.public(key)
        return out

    async def _one(self, pool: asyncpg.Pool, keys: list[str]) -> dict[str, bytes]:
        public = await fetch_public(pool, keys[0])  # network op
        return {} if public is None else {keys[0]: public}

    async def _fetch(self, keys: list[str],
                     query: Callable[[asyncpg.Pool, list[str]], Awaitable[dict[str, bytes]]],
                     ) -> dict[str, Found]:
        loop = asyncio.get_running_loop()
        flights = {k: loop.create_future() for k in keys}
        self._flights.update(flights)
        try:
            self.queries += 1
            found = await query(self.pool, keys)  # network op
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
        out: dict[str, Found] = {}
        for key in keys:
            public = found.get(key)
            entry = None
            if key not in tainted:
                ttl = None if public is None else codec.min_ttl(public)
                entry = self.cache.put(key, public, ttl)
            flights[key].set_result(public)
            out[key] = (public, entry)
        return out

    async def lookup(self, query: Query) -> list[dict[str, Any]]:
        """The visible values (output form) for a query, after its index/type filter.

        Authenticated reads (which may include admin-readable values) bypass the
        cache in both directions.

        :raises IdentifierNotFound: no such identifier.
        """
        if query.admin:
            stored = await fetch_record(self.pool, query.ident.key)  # network op
            values = None if stored is None else [
                codec.to_output(v) for v in codec.visible(stored, admin=True)]
        else:
            public, _ = await self.public(query.ident.key)
            values = None if public is None else orjson.loads(public)
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

    def json_answer(self, requested: str, public: bytes | None, entry: Entry | None) -> bytes:
        """The Handle JSON answer for an unfiltered query, kept with the entry."""
        return self._keep(entry, ("json", requested),
                          lambda: codec.splice_answer(requested, public))

    def msgpack_answer(self, requested: str, public: bytes | None, entry: Entry | None) -> bytes:
        """The same answer as msgpack (binary protocol, msgpack batch), kept with the entry."""
        return self._keep(entry, ("msgpack", requested),
                          lambda: _packb(codec.answer_from_public(requested, public)))

    def _keep(self, entry: Entry | None, kind: Any, make: Callable[[], bytes]) -> bytes:
        if entry is not None:
            kept = entry.renders.get(kind)
            if kept is not None:
                return kept
        body = make()
        return body if entry is None else self.cache.render(entry, kind, body)


def first_url(values: list[dict[str, Any]]) -> str | None:
    """The redirect target of the proxy: the first URL value holding a string."""
    for v in values:
        if v["type"].upper() == "URL" and v["data"]["format"] == "string":
            url: str = v["data"]["value"]
            return url
    return None
