"""The one owner of the answer cache: in-flight sharing, do-not-cache marks, the miss
queue, and every write to the cache (``resolver/cache.py`` is only the structure).

The coherence rule, all of it in this module:

* a read of the database (or a walk down the node hierarchy) is a *flight*,
  registered before its query is sent; concurrent readers of one key share it while
  it is not tainted and the lease holds (a reader that comes after an invalidation,
  or after the lease ran out, starts a read of its own: the other may predate a write);
* every invalidation (a committed write's notification, a zone change, a lost
  listener) marks the flights it concerns *tainted* in the same step as it evicts;
* a flight's result is handed to its waiters, and written to the cache only if the
  flight is not tainted (:meth:`Coalescer._fill`, the only ``cache.put``), so a read
  that may predate a committed write never becomes a cache entry;
* encoded replies are kept only for entries the cache still holds (:meth:`encode`);
* nothing is served fresh outside the lease that the invalidation listener keeps
  (:meth:`set_lease`; ``resolver/invalidate.py`` says how it is earned).

Misses of one event-loop turn go to the database together, in one query (one
primary-key lookup for one key, one ``= ANY(...)`` scan for many), so that under load
the database and the pool see one round trip per turn instead of one per request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Iterable, Sequence
from typing import Any

from resolver.cache import AnswerCache, Entry
from resolver.core.channel import CREATED_MARK
from resolver.core.codec import min_ttl
from resolver.core.identifier import key_starts
from resolver.core.waiters import fail_waiters

Found = tuple[bytes | None, Entry | None]   # (public values or None: not found, entry)
# (public values, shared values or None, template or None) of a record
Fetched = tuple[bytes, bytes | None, str | None]
FetchOne = Callable[[str], Awaitable[Fetched | None]]
FetchMany = Callable[[list[str]], Awaitable[dict[str, Fetched]]]
MAX_KEYS_PER_QUERY = 500  # misses of one loop turn asked for in one query, at most


def _ignore(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: an abandoned query's outcome is nobody's business


async def within(query: Awaitable[Any], timeout: float) -> Any:
    """Await a database query for at most ``timeout`` seconds (one deadline per batched
    query, shared by every waiter: a deadline per request would cost a task each). The
    query is not cancelled when it passes: cancelling asyncpg on a silent connection can
    hang on the cancel request; the query ends by itself (command timeout), ignored.

    :raises TimeoutError:"""
    task = asyncio.ensure_future(query)
    try:
        return await asyncio.wait_for(asyncio.shield(task), timeout)  # network op
    except TimeoutError:
        task.add_done_callback(_ignore)
        raise


class _Flight:
    __slots__ = ("future", "key", "tainted")

    def __init__(self, key: str) -> None:
        self.key = key
        self.future: asyncio.Future[Found] = asyncio.get_running_loop().create_future()
        self.tainted = False


class Coalescer:
    """Shared reads and every write of one process's answer cache (see module docstring)."""

    def __init__(self, cache: AnswerCache, fetch_one: FetchOne, fetch_many: FetchMany,
                 timeout: float = 2.0) -> None:
        self.cache = cache
        self.timeout = timeout  # one database query waits no longer (TimeoutError)
        self._fetch_one = fetch_one
        self._fetch_many = fetch_many
        self._local: dict[str, _Flight] = {}     # reads of this node's database
        self._walks: dict[str, _Flight] = {}     # shared walks of the hierarchy
        self._private: set[_Flight] = set()      # traced walks (not shared)
        self._queued: list[_Flight] = []         # misses of this loop turn, not yet sent
        self._tasks: set[asyncio.Task[None]] = set()  # (a task needs a strong reference)
        self.queries = 0  # database round trips made for resolution
        # the hit path of every front end: the encoded reply kept for a request spelling,
        # if its entry is fresh (bound here: one call, no indirection)
        self.lookup = cache.lookup
        self.held = cache.held   # (a text that may not be a key: misses are not counted)

    # -- reads ---------------------------------------------------------------------------

    def fresh(self, key: str) -> Entry | None:
        """The fresh cache entry for ``key`` (a hit), or None."""
        return self.cache.get(key)

    def stale(self, key: str) -> Entry | None:
        """What the cache still keeps of ``key`` for a stale answer, or None."""
        return self.cache.stale(key)

    async def local(self, key: str) -> Found:
        """``key`` from this node's database: shares a read in flight, or queues one that
        leaves at the end of this loop turn with the turn's other misses."""
        flight = self._local.get(key)
        if flight is None or not self._joinable(flight):
            flight = self._local[key] = _Flight(key)
            if not self._queued:
                asyncio.get_running_loop().call_soon(self._send_queued)
            self._queued.append(flight)
        return await asyncio.shield(flight.future)

    async def local_many(self, keys: Sequence[str]) -> dict[str, Found]:
        """:meth:`local` for many keys: hits from the cache, every other miss in ONE query."""
        out: dict[str, Found] = {}
        todo: list[_Flight] = []
        waits: list[str] = []
        for key in keys:
            if key in out:
                continue
            entry = self.cache.get(key)
            if entry is not None:
                out[key] = (entry.public, entry)
            elif key in self._local and self._joinable(self._local[key]):
                waits.append(key)
            else:
                out[key] = (None, None)  # placeholder, replaced below
                flight = self._local[key] = _Flight(key)
                todo.append(flight)
        if todo:
            out.update(await self._read(todo, self._many))  # network op
        for key in waits:
            waiting = self._local.get(key)
            out[key] = (await asyncio.shield(waiting.future)
                        if waiting is not None and self._joinable(waiting)
                        else await self.local(key))
        return out

    async def walk(self, key: str, start: Callable[[], Awaitable[bytes | None]],
                   shared: bool = True) -> Found:
        """``key`` from another node: ``start()`` walks the hierarchy and returns the public
        values (None: not found). Shared walks of one key run once; a private one (traced)
        runs alone. Either is cached unless tainted meanwhile."""
        if shared:
            flight = self._walks.get(key)
            if flight is not None and self._joinable(flight):
                return await asyncio.shield(flight.future)
            flight = self._walks[key] = _Flight(key)
        else:
            flight = _Flight(key)
            self._private.add(flight)
        try:
            public = await start()  # network op
        except BaseException as exc:
            flight.future.set_exception(exc)
            flight.future.exception()  # retrieved: no "never retrieved" warning without waiters
            raise
        finally:
            if shared and self._walks.get(key) is flight:
                del self._walks[key]
            else:
                self._private.discard(flight)
        found = (public, self._fill(flight, None if public is None else (public, None, None)))
        flight.future.set_result(found)
        return found

    # -- encoded replies -------------------------------------------------------------------

    def encode(self, entry: Entry | None, form: Hashable, spelling: Any,
               make: Callable[[], Any], size: Callable[[Any], int],
               from_second: bool = False) -> Any:
        """The encoded reply of ``entry`` in ``form`` for ``spelling``: the kept one, or
        ``make()``, kept with the entry while the cache holds it (``size`` of it counts in
        the byte bound). Without an entry (not cached), ``make()``. With ``from_second``,
        a reply is kept only once its entry was asked for before: an identifier cached and
        asked for once holds its values once (a reply is another copy of them), one asked
        for again is answered from a kept reply."""
        if entry is not None:
            kept = self.cache.encodings(form).get(spelling)
            if kept is not None and kept[0] is entry:
                return kept[1]
        value = make()
        if entry is not None:
            if from_second and not entry.asked:
                entry.asked = True
            else:
                self.cache.keep(entry, form, spelling, value, size(value))
        return value

    # -- forgetting ------------------------------------------------------------------------

    def invalidate(self, keys: Iterable[str]) -> None:
        """A write committed for ``keys``: forget them, and cache no read of them in flight.
        ``CREATED_MARK`` stands for "some unknown identifiers now exist"."""
        for key in keys:
            if key == CREATED_MARK:
                self.cache.evict_negative()
                self._taint(lambda k: True)
                continue
            self.cache.evict(key)
            for table in (self._local, self._walks):
                flight = table.get(key)
                if flight is not None:
                    flight.tainted = True
            for flight in self._private:
                if flight.key == key:
                    flight.tainted = True

    def forget_all(self) -> None:
        """Anything may have changed: serve nothing cached so far as fresh (it stays as the
        stale reserve), and cache no read in flight."""
        self._taint(lambda k: True)
        self.cache.retire()

    def forget_under(self, prefixes: Sequence[str], keys: Iterable[str] | None = None) -> int:
        """The zone changed at ``prefixes``: forget the cached answers of identifiers under
        them (among ``keys``, a slice of a snapshot of the cache's keys, or all), and cache
        no read in flight there. Returns how many entries went."""
        starts = key_starts(prefixes)
        self._taint(lambda k: k.startswith(starts))
        return self.cache.evict_under(prefixes, keys)

    def set_lease(self, until: float) -> None:
        """Fresh answers may be served until ``until`` (monotonic seconds), the lease
        the invalidation listener holds; never extends past what it proved."""
        self.cache.lease_until = until

    def sweep(self) -> int:
        """Reclaim expired entries (called every second)."""
        return self.cache.sweep()

    # -- internals ---------------------------------------------------------------------------

    def _joinable(self, flight: _Flight) -> bool:
        """A read in flight may be shared only if no invalidation tainted it and the lease
        holds: without the lease, a write may have been acknowledged (its writer outwaited
        this process) that no notification reached us for, so the read may predate it."""
        return not flight.tainted and self.cache.clock() < self.cache.lease_until

    def _taint(self, matches: Callable[[str], bool]) -> None:
        for flight in (*self._local.values(), *self._walks.values(), *self._private):
            if matches(flight.key):
                flight.tainted = True

    def _fill(self, flight: _Flight, got: Fetched | None) -> Entry | None:
        """THE write of an entry: only from an untainted flight."""
        if flight.tainted:
            return None
        if got is None:
            return self.cache.put(flight.key, None, None)
        public, shared, template = got
        return self.cache.put(flight.key, public, min_ttl(public), shared, template)

    def _send_queued(self) -> None:
        flights, self._queued = self._queued, []
        for start in range(0, len(flights), MAX_KEYS_PER_QUERY):
            part = flights[start:start + MAX_KEYS_PER_QUERY]
            task = asyncio.get_running_loop().create_task(
                self._read_quietly(part, self._one if len(part) == 1 else self._many))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _one(self, keys: list[str]) -> dict[str, Fetched]:
        got = await self._fetch_one(keys[0])  # network op
        return {} if got is None else {keys[0]: got}

    async def _many(self, keys: list[str]) -> dict[str, Fetched]:
        return await self._fetch_many(keys)  # network op

    async def _read_quietly(self, flights: list[_Flight],
                            query: Callable[[list[str]], Awaitable[dict[str, Fetched]]]) -> None:
        try:
            await self._read(flights, query)  # network op
        except Exception:  # noqa: S110 - every waiter received it through its future
            pass

    async def _read(self, flights: list[_Flight],
                    query: Callable[[list[str]], Awaitable[dict[str, Fetched]]],
                    ) -> dict[str, Found]:
        """Ask the database for the flights' keys, fill the cache and hand out the
        results; the futures carry the query's exception, if any."""
        keys = [f.key for f in flights]
        try:
            self.queries += 1
            found = await within(query(keys), self.timeout)  # network op
        except BaseException as exc:
            fail_waiters((flight.future for flight in flights), exc)
            raise
        finally:
            for flight in flights:
                if self._local.get(flight.key) is flight:
                    del self._local[flight.key]
        out: dict[str, Found] = {}
        for flight in flights:
            got = found.get(flight.key)
            out[flight.key] = (None if got is None else got[0], self._fill(flight, got))
            flight.future.set_result(out[flight.key])
        return out
