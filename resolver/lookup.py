"""The resolution path: cache → coalesce → store, or the walk down the hierarchy.

:class:`Resolver` is one per process, with one entry point per kind of caller:

* :meth:`Resolver.resolve`: one identifier, for every front end (HTTP fast path,
  aiohttp, binary protocol): a :class:`Resolution`;
* :meth:`Resolver.resolve_batch`: many identifier texts, for the batch endpoint and
  the binary protocol's batch: one encoded reply per identifier, in order;
* :meth:`Resolver.read_restricted`: an authenticated read (admin-readable values
  too), which never touches the cache.

:meth:`Resolver.encoded` turns a resolution into a front end's encoded reply, kept
with the cache entry (``resolver/coalesce.py`` owns every cache write, and
``resolver/reply.py`` shapes every reply). Nothing on the hot path decodes JSON: the
public values are spliced from the stored bytes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import orjson

from resolver import reply
from resolver.authorized import derived, visible
from resolver.cache import AnswerCache, Entry
from resolver.coalesce import Coalescer, Found, within
from resolver.codes import CodeFinder
from resolver.core import codec
from resolver.core.delegation import Delegation, Zone
from resolver.core.errors import IdresError, Referral, ServiceUnavailable, UpstreamUnavailable
from resolver.core.identifier import Identifier, parse
from resolver.core.sharing import View, shared_types
from resolver.recursion.recursor import Recursor
from resolver.reply import RENDER, Form, Reply
from resolver.sharing import Sharing
from resolver.usage import HIT, MISS, NOT_FOUND, Usage, cached
from resolver.replicas import Primary
from resolver.store import DATABASE_DOWN, fetch_record, fetch_records

log = logging.getLogger("idres.lookup")


@dataclass(slots=True)
class Resolution:
    """What resolving one identifier led to. ``public`` is the JSON array of the values
    an anonymous client may see (output form), None when the identifier does not exist;
    ``entry`` the cache entry holding it, if cached; ``stale`` when it comes from the
    stale reserve because the authority could not be reached."""

    key: str
    public: bytes | None
    entry: Entry | None = None
    stale: bool = False
    trace: list[dict[str, Any]] = field(default_factory=list)
    homed: bool = True  # False: the prefix is neither allocated nor delegated here


class Resolver:
    """Cached, coalesced resolution for one process (see module docstring)."""

    def __init__(self, pool: asyncpg.Pool, cache: AnswerCache, zone: Zone | None = None,
                 recursor: Recursor | None = None, recursive: bool = False,
                 signer: Any = None, db_timeout: float = 2.0, replicas: Any = None) -> None:
        self.pool = pool
        # misses and lookups by code: the primary, or the replicas (resolver/replicas.py)
        reads = replicas or Primary(pool)
        self.replicas = replicas
        self.coalescer = Coalescer(cache, reads.fetch_public, reads.fetch_publics, db_timeout)
        self.codes = CodeFinder(reads.find_codes, db_timeout)
        self.sharing = Sharing(pool, cache, db_timeout)
        self.zone = zone or Zone()
        self.recursor = recursor
        self.recursive = recursive  # the node's default for requests that do not say
        self.signer = signer        # the node's key: signs referrals
        self.db_timeout = db_timeout  # a miss waits no longer for the database
        self.stale_answers = 0
        self.usage = Usage()        # resolutions counted for the prefixes' owners

    @property
    def cache(self) -> AnswerCache:
        """The answer cache, for reading (counters, keys); coalescer writes it."""
        return self.coalescer.cache

    async def resolve(self, ident: Identifier, recursive: bool | None = None,
                      trace: bool = False, via: str | None = "http") -> Resolution:
        """Everything one resolution may lead to: the cache, the local database, a
        referral (the prefix is delegated) or, for a recursive request, the walk down the
        hierarchy; a stale answer when the authority cannot be reached.

        :raises Referral: delegated elsewhere and the request is not recursive.
        :raises UpstreamUnavailable, RecursionLimit, BadSignature: from recursion.
        ``via``: the protocol it is counted under (resolver/usage.py; None: not counted).
        """
        key = ident.key
        kind, delegation = self.zone.classify(ident.prefix)
        wanted = self.recursive if recursive is None else recursive
        walks = kind != "local" and wanted and self.recursor is not None
        entry = self.coalescer.fresh(key)
        if entry is not None:
            if via:
                self.usage.count(key, via, HIT if entry.public is not None else NOT_FOUND)
            return Resolution(key, entry.public, entry, trace=[{"cache": "hit"}] if trace else [],
                              homed=kind == "local" or walks)
        if walks:
            return await self._walk(key, trace)  # network op
        if delegation is not None:
            raise Referral(f"prefix {delegation.prefix} is delegated: ask {delegation.servers[0].url}",
                           delegation)
        # a foreign prefix is still looked up: operators' identity handles may live under a
        # prefix allocated later (the README's acme), and a record there is served
        try:
            public, entry = await self.coalescer.local(key)  # network op (db_timeout bound)
        except DATABASE_DOWN as exc:
            return self._stale_or_unavailable(key, kind == "local", exc)
        if via:
            self.usage.count(key, via, MISS if public is not None else NOT_FOUND)
        return Resolution(key, public, entry, homed=kind == "local")

    def _stale_or_unavailable(self, key: str, homed: bool, exc: BaseException) -> Resolution:
        """The database cannot be reached: what the cache still keeps, marked stale (RFC
        8767), or 503 at once.

        :raises ServiceUnavailable:
        """
        kept = self.coalescer.stale(key)
        if kept is None:
            log.warning("database unavailable: %s: %s", type(exc).__name__, exc)
            raise ServiceUnavailable() from None
        self.stale_answers += 1
        return Resolution(key, kept.public, None, True, homed=homed)

    async def _walk(self, key: str, trace: bool) -> Resolution:
        assert self.recursor is not None
        recursor = self.recursor
        hops: list[dict[str, Any]] = [{"cache": "miss"}]
        try:
            public, entry = await self.coalescer.walk(
                key, lambda: recursor.walk(key, hops), shared=not trace)  # network op
        except UpstreamUnavailable:
            kept = self.coalescer.stale(key)
            if kept is None:
                raise
            self.stale_answers += 1
            hops.append({"stale": True,
                         "expired_s": round(time.monotonic() - kept.expires, 1)})
            return Resolution(key, kept.public, None, True, hops)
        return Resolution(key, public, entry, trace=hops if trace else [])

    async def read_restricted(self, ident: Identifier,
                              view: View) -> list[dict[str, Any]] | None:
        """The values ``view`` may see (output form), None when the identifier does not
        exist (or is a draft, to anyone but who administers it). Straight from the
        database: authenticated reads never use the cache, in either direction."""
        try:
            row = await within(fetch_record(self.pool, ident.key), self.db_timeout)  # network op
        except DATABASE_DOWN:
            raise ServiceUnavailable() from None
        return visible(ident, row, view)

    def derived_encoded(self, form: str, requested: str, spelling: Any, ident: Identifier,
                        entry: Entry, view: View, generation: int | None
                        ) -> tuple[Any, list[str], str] | None:
        """:meth:`derived`, encoded in ``form``, with the shared types shown and the
        identifier's key (for the read log). Kept with the
        cache entry under (``spelling``, the reader, the snapshot's ``generation``) when
        the view's grants do not expire, so that the reader's next request spelled the
        same is a dict lookup: a new entry (the record changed) or a new generation (the
        grants changed) is a new key."""
        render, size = RENDER[form]

        def make() -> tuple[Any, list[str], str] | None:
            out = derived(requested, ident, entry, view)
            return None if out is None else (render(out[0]), out[1], ident.key)
        if generation is None or not view.timeless:
            return make()
        key = (spelling, view.party, generation)
        kept = self.coalescer.cache.lookup(form, key)
        if kept is not None:
            return kept  # type: ignore[no-any-return]
        made = make()
        if made is not None:
            self.coalescer.encode(entry, form, key, lambda: made, lambda v: size(v[0]))
        return made

    async def resolve_batch_as(self, texts: Sequence[str], form: str, view: View,
                               generation: int | None
                               ) -> tuple[list[Any], list[tuple[str, list[str]]]]:
        """:meth:`resolve_batch` for a caller with credentials (:meth:`authorize_batch`);
        the answers kept for this reader are taken first, the rest resolved."""
        if generation is None or not view.timeless:
            return await self.authorize_batch(
                texts, await self.resolve_batch(texts, form), form, view)  # network op
        lookup = self.coalescer.cache.lookup
        out: list[Any] = [None] * len(texts)
        reads: list[tuple[str, list[str]]] = []
        rest: list[int] = []
        for n, text in enumerate(texts):
            kept = lookup(form, (text, view.party, generation))
            if kept is None:
                rest.append(n)
            else:
                out[n] = kept[0]
                reads.append((kept[2], kept[1]))
        if rest:
            some = [texts[n] for n in rest]
            parts, more = await self.authorize_batch(
                some, await self.resolve_batch(some, form), form, view, generation)  # network op
            for n, part in zip(rest, parts):
                out[n] = part
            reads += more
        return out, reads

    async def authorize_batch(self, texts: Sequence[str], parts: list[Any], form: str,
                              view: View, generation: int | None = None,
                              ) -> tuple[list[Any], list[tuple[str, list[str]]]]:
        """A batch's replies (``resolve_batch``) for a caller with credentials: each
        identifier ``view`` may see more of is answered with what it sees, derived from
        the cached record (its shared values are cached beside its public ones), or read
        again from the database (one query for all those not cached, and those the caller
        administers: private values are never cached); the others keep their public reply.
        Also (key, the shared types shown) of each identifier that showed some, for the
        read log."""
        wanted: list[tuple[int, Identifier]] = []
        render = RENDER[form][0]
        out, reads = list(parts), []
        for n, text in enumerate(texts):
            try:
                ident = parse(text)
            except IdresError:
                continue
            if not view.may_cover(ident):
                continue
            entry = self.coalescer.fresh(ident.key)
            if entry is None or view.administers(ident):
                wanted.append((n, ident))        # the database's path
                continue
            derived = self.derived_encoded(form, text, text, ident, entry, view, generation)
            if derived is not None:              # from the cached record
                out[n] = derived[0]
                reads.append((ident.key, derived[1]))
        if not wanted:
            return out, reads
        try:
            rows = await within(fetch_records(self.pool, [i.key for _, i in wanted]),
                                self.db_timeout)  # network op
        except DATABASE_DOWN:
            raise ServiceUnavailable() from None
        for n, ident in wanted:
            row = rows.get(ident.key)
            if row is not None:
                values = visible(ident, row, view)
                out[n] = render(reply.selected(texts[n], values))
                shown = shared_types(values)
                if shown and not view.administers(ident):
                    reads.append((ident.key, shown))
        return out, reads

    async def find_code(self, prefix: str, type_: str, value: str) -> Reply:
        """Anonymous lookup by code (``resolver/codes.py``): the reply naming the
        identifiers under ``prefix`` whose public ``type_`` value is ``value``.

        :raises ServiceUnavailable: the database did not answer within ``db_timeout``."""
        try:
            found = await self.codes.find(prefix, type_, value)  # network op (db_timeout bound)
        except DATABASE_DOWN:
            raise ServiceUnavailable() from None
        return reply.message(200, 1, prefix=prefix, type=type_, handles=found)

    def referral(self, requested: str, key: str, delegation: Delegation) -> Reply:
        """The signed referral reply for an identifier delegated elsewhere."""
        return reply.referral(requested, key, delegation, self.signer, int(time.time()))

    def reply_for(self, requested: str | None, exc: IdresError, key: str | None = None) -> Reply:
        """The reply for a resolution that raised: a signed referral or an error."""
        if isinstance(exc, Referral) and isinstance(exc.delegation, Delegation) and key \
                and requested is not None:
            return self.referral(requested, key, exc.delegation)
        return reply.error(exc, requested)

    def encoded(self, resolution: Resolution, form: str, requested: str,
                spelling: Any = None, select: tuple[frozenset[int], tuple[str, ...]] | None = None
                ) -> Any:
        """The reply of ``resolution`` for ``requested`` in ``form`` (see ``reply.RENDER``), kept
        with its cache entry under ``spelling`` (the request as the front end read it;
        default ``requested``) so that the next request spelled the same is a hit. With
        ``select`` (indexes, types: the Handle API's filters), only the values chosen."""
        render, size = RENDER[form]

        def make() -> Any:
            if select is None:
                return render(reply.record(requested, resolution.public,
                                           stale=resolution.stale, homed=resolution.homed))
            values = None if resolution.public is None else codec.select(
                orjson.loads(resolution.public), *select)
            return render(reply.selected(requested, values, stale=resolution.stale,
                                         homed=resolution.homed))
        # a reply is another copy of the values: kept from the entry's second answer on
        return self.coalescer.encode(
            resolution.entry, form, requested if spelling is None else spelling, make, size,
            from_second=True)

    async def resolve_batch(self, texts: Sequence[str], form: str) -> list[Any]:
        """One encoded reply per identifier text (``form`` JSON or MSGPACK), in order: the
        single resolution's reply for each (a malformed identifier gets its 102 reply, a
        delegated one its referral). Spellings answered before cost a dict lookup; all
        other local misses go in ONE query; other nodes' identifiers resolve concurrently."""
        render = RENDER[form][0]
        lookup = self.coalescer.lookup
        parsed: list[tuple[str, str | None, Any]] = []  # (text, key or None: answered)
        foreign: set[str] = set()
        remote: dict[str, Identifier] = {}
        # replies are kept from an entry's second answer (see encoded()): until then, a
        # text that is a cached key as written is answered from its entry without parsing
        held = self.coalescer.held if form == Form.JSON else None
        for text in texts:
            kept = lookup(form, text)  # this spelling answered before: no parsing
            if kept is not None:
                self.usage.count(text, "batch", cached(kept))
                parsed.append((text, None, kept))
                continue
            entry = held(text) if held is not None else None
            if entry is not None:   # fresh, so not stale
                self.usage.count(entry.key, "batch", HIT if entry.public is not None else NOT_FOUND)
                parsed.append((text, None, self.encoded(
                    Resolution(entry.key, entry.public, entry), form, text)))
                continue
            try:
                ident = parse(text)
            except IdresError as exc:
                parsed.append((text, None, render(reply.error(exc, text))))
                continue
            kind, delegation = self.zone.classify(ident.prefix)
            if kind != "local" and (self.recursive or delegation is not None):
                remote[ident.key] = ident
            elif kind != "local":
                foreign.add(ident.key)
            parsed.append((text, ident.key, None))
        local = [k for _, k, _ in parsed if k is not None and k not in remote]
        found: dict[str, Found] = {}
        down: BaseException | None = None
        if local:  # (a batch answered by spelling alone makes no task at all)
            try:
                found = await self.coalescer.local_many(local)  # network op (db_timeout bound)
            except DATABASE_DOWN as exc:
                down = exc
        remote_done: dict[str, Resolution | IdresError] = {}
        if remote:
            outcomes = await asyncio.gather(*(self.resolve(i) for i in remote.values()),
                                            return_exceptions=True)  # network op
            for rkey, outcome in zip(remote, outcomes):
                if isinstance(outcome, (IdresError, Resolution)):
                    remote_done[rkey] = outcome
                else:
                    raise outcome
        out: list[Any] = []
        for text, key, ready in parsed:
            if key is None:
                out.append(ready)
                continue
            done = remote_done.get(key)
            if isinstance(done, IdresError):
                out.append(render(self.reply_for(text, done, key)))
                continue
            if done is None and down is not None:
                try:
                    done = self._stale_or_unavailable(key, key not in foreign, down)
                except ServiceUnavailable as exc:
                    out.append(render(reply.error(exc, text)))
                    continue
            if done is None:
                public, entry = found[key]
                self.usage.count(key, "batch", MISS if public is not None else NOT_FOUND)
                done = Resolution(key, public, entry, homed=key not in foreign)
            out.append(self.encoded(done, form, text))
        return out


def first_url(values: list[dict[str, Any]]) -> str | None:
    """The redirect target of the proxy: the first URL value holding a string."""
    for v in values:
        if v["type"].upper() == "URL" and v["data"]["format"] == "string":
            url: str = v["data"]["value"]
            return url
    return None
