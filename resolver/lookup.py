"""The resolution path: cache → coalesce → store → cache.put.

:class:`Resolver` is one per process. ``public(key)`` answers what an anonymous
client may see of a normalised identifier key, as the output-form JSON bytes
stored with the record (``handles.public_json``), or None when it does not exist:

1. a live cache entry answers at once (no I/O);
2. otherwise, if a query for the same key is already in flight, wait for it
   (concurrent misses coalesce into one database query);
3. otherwise queue the key: the misses of one event-loop turn go to the database
   together, in one query (one primary-key lookup when there is one key, one
   ``= ANY(...)`` index scan for many), so that under load the database and the
   connection pool see one round trip per turn instead of one per request;
4. cache each result, unless its key was invalidated while the query was in flight:
   then the result is returned to its waiters but not kept, so a write that committed
   during the query can never be hidden by a stale entry.

Nothing on this path decodes JSON: answers are spliced from the stored bytes.
Filtered or authenticated reads (rare) decode.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import msgpack
import orjson

from resolver.cache import AnswerCache, Entry
from resolver.core import codec, signing
from resolver.core.channel import CREATED_MARK
from resolver.core.delegation import Zone
from resolver.core.errors import IdentifierNotFound, IdresError, Referral
from resolver.core.identifier import Identifier, key_starts, parse
from resolver.recursion.recursor import Recursor, Result
from resolver.store import fetch_public, fetch_publics, fetch_record

Found = tuple[bytes | None, Entry | None]
MAX_KEYS_PER_QUERY = 500  # misses of one loop turn asked for in one query, at most


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

    def __init__(self, pool: asyncpg.Pool, cache: AnswerCache, zone: Zone | None = None,
                 recursor: Recursor | None = None, recursive: bool = False) -> None:
        self.pool = pool
        self.cache = cache
        self.zone = zone or Zone()
        self.recursor = recursor
        self.recursive = recursive  # the node's default for requests that do not say
        self._flights: dict[str, asyncio.Future[Found]] = {}
        self._tainted: set[str] = set()
        self._queued: list[str] = []  # misses of this loop turn, not yet asked for
        self._queries: set[asyncio.Task[None]] = set()  # (a task needs a strong reference)
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

    def forget_all(self) -> None:
        """Anything may have changed: forget every cached answer, and cache no read in
        flight (it may have read what a missed notification was about)."""
        self._tainted.update(self._flights)
        self.cache.clear()

    def forget_under(self, prefixes: Sequence[str], keys: Iterable[str] | None = None) -> int:
        """The zone changed at ``prefixes``: forget the cached answers of identifiers under
        them (among ``keys``, a slice of a snapshot of the cache's keys, or all), and cache
        no read in flight there. Returns how many entries went."""
        starts = key_starts(prefixes)
        self._tainted.update(k for k in self._flights if k.startswith(starts))
        return self.cache.evict_under(prefixes, keys)

    async def resolve(self, ident: Identifier, recursive: bool | None = None,
                      trace: bool = False) -> Result:
        """Everything a resolution may lead to: the cache, the local database, a referral
        (the prefix is delegated) or, for a recursive request, the walk down the hierarchy.

        :raises Referral: delegated elsewhere and the request is not recursive.
        :raises UpstreamUnavailable, RecursionLimit, BadSignature: from recursion.
        """
        key = ident.key
        entry = self.cache.get(key)
        if entry is not None:
            return Result(entry.public, entry, trace=[{"cache": "hit"}] if trace else [])
        kind, delegation = self.zone.classify(ident.prefix)
        wanted = self.recursive if recursive is None else recursive
        if kind != "local" and wanted and self.recursor is not None:
            result = await self.recursor.resolve(key, trace)  # network op
            result.trace.insert(0, {"cache": "miss"})
            return result
        if delegation is not None:
            raise Referral(f"prefix {delegation.prefix} is delegated: ask {delegation.servers[0].url}",
                           delegation)
        public, entry = await self._local(key)  # network op
        return Result(public, entry)

    async def public(self, key: str) -> Found:
        """(public JSON bytes or None if not found, the cache entry holding them if any),
        from this node's own database."""
        entry = self.cache.get(key)
        if entry is not None:
            return entry.public, entry
        return await self._local(key)

    async def _local(self, key: str) -> Found:
        flight = self._flights.get(key)
        if flight is None:
            flight = self._flights[key] = asyncio.get_running_loop().create_future()
            if not self._queued:
                asyncio.get_running_loop().call_soon(self._send_queued)
            self._queued.append(key)
        return await asyncio.shield(flight)

    def _send_queued(self) -> None:
        keys, self._queued = self._queued, []
        for start in range(0, len(keys), MAX_KEYS_PER_QUERY):
            part = keys[start:start + MAX_KEYS_PER_QUERY]
            task = asyncio.get_running_loop().create_task(
                self._query(part, self._one if len(part) == 1 else fetch_publics))
            self._queries.add(task)
            task.add_done_callback(self._queries.discard)

    async def _query(self, keys: list[str],
                     query: Callable[[asyncpg.Pool, list[str]], Awaitable[dict[str, bytes]]],
                     ) -> None:
        try:
            await self._answer(keys, query)  # network op
        except Exception:  # noqa: S110 - every waiter received it through its future
            pass

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
            loop = asyncio.get_running_loop()
            self._flights.update((k, loop.create_future()) for k in todo)
            out.update(await self._answer(todo, fetch_publics))
        for key in waits:
            flight = self._flights.get(key)
            out[key] = await asyncio.shield(flight) if flight else await self.public(key)
        return out

    async def _one(self, pool: asyncpg.Pool, keys: list[str]) -> dict[str, bytes]:
        public = await fetch_public(pool, keys[0])  # network op
        return {} if public is None else {keys[0]: public}

    async def _answer(self, keys: list[str],
                      query: Callable[[asyncpg.Pool, list[str]], Awaitable[dict[str, bytes]]],
                      ) -> dict[str, Found]:
        """Ask the database for ``keys`` (each has a future in ``_flights``), cache and
        hand out the results; the futures carry the query's exception, if any."""
        flights = {k: self._flights[k] for k in keys}
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
            out[key] = (public, entry)
            flights[key].set_result(out[key])
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
            result = await self.resolve(query.ident)  # network op on a miss
            values = None if result.public is None else orjson.loads(result.public)
        if values is None:
            raise IdentifierNotFound(f"handle {query.requested} not found")
        return codec.select(values, query.indexes, query.types)

    async def answers(self, handles: Sequence[str], use_msgpack: bool) -> list[bytes]:
        """One encoded answer per identifier text, in order: the single-GET body of each
        (a malformed identifier gets its 102 answer, a delegated one its referral). All
        local misses in ONE query; identifiers of other nodes resolved concurrently."""
        encode = _packb if use_msgpack else orjson.dumps
        form = "msgpack" if use_msgpack else "json"
        cached = self.cache.answer
        parsed: list[tuple[str, str | None, bytes]] = []  # (text, key or None: answered)
        remote: dict[str, Identifier] = {}
        for h in handles:
            body = cached((form, h))  # this spelling answered before: no parsing
            if body is not None:
                parsed.append((h, None, body))
                continue
            try:
                ident = parse(h)
            except IdresError as exc:
                parsed.append((h, None, encode(codec.answer(exc.response_code, h,
                                                            message=exc.message))))
                continue
            kind, delegation = self.zone.classify(ident.prefix)
            if kind != "local" and (self.recursive or delegation is not None):
                remote[ident.key] = ident
            parsed.append((h, ident.key, b""))
        found = await self.many([k for _, k, _ in parsed
                                 if k is not None and k not in remote])  # network op
        failed: dict[str, IdresError] = {}
        outcomes = await asyncio.gather(*(self.resolve(i) for i in remote.values()),
                                        return_exceptions=True)  # network op
        for rkey, outcome in zip(remote, outcomes):
            if isinstance(outcome, IdresError):
                failed[rkey] = outcome
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                found[rkey] = (outcome.public, outcome.entry)
        answer = self.msgpack_answer if use_msgpack else self.json_answer
        out: list[bytes] = []
        for h, key, ready in parsed:
            if key is None:
                out.append(ready)
            elif key in failed:
                out.append(encode(referral_answer(h, failed[key])))
            else:
                public, entry = found[key]
                body = answer(h, public, entry)
                if entry is not None:
                    self.cache.alias((form, h), entry, body, 0)  # bytes counted by render
                out.append(body)
        return out

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


def referral_answer(handle: str, exc: IdresError) -> dict[str, Any]:
    """The answer for an identifier that is not resolved here: a referral (responseCode
    303 with the delegation) or the error of the recursive walk."""
    body = codec.answer(exc.response_code, handle, message=exc.message)
    if isinstance(exc, Referral) and exc.delegation is not None:
        body["referral"] = exc.delegation.to_json()  # type: ignore[attr-defined]
    return body


def signed_referral(key: Any, requested: str, normalised: str, exc: Referral) -> dict[str, Any]:
    """The referral answer, signed by this node: it vouches for the child's servers and
    key (the chain of trust)."""
    body = referral_answer(requested, exc)
    body["signature"] = signing.signed(key, {"kind": "referral", "handle": normalised,
                                             **body["referral"]}, body["referral"]["ttl"],
                                       int(time.time()))
    return body


def first_url(values: list[dict[str, Any]]) -> str | None:
    """The redirect target of the proxy: the first URL value holding a string."""
    for v in values:
        if v["type"].upper() == "URL" and v["data"]["format"] == "string":
            url: str = v["data"]["value"]
            return url
    return None
