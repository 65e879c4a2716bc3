"""Readers' tokens and grants as one snapshot per process, for authorized answers
derived from the answer cache without a database round trip (docs/sharing.md).

The coherence rule, the same as the cache's (resolver/coalesce.py):

* every change to readers, groups, grants or read logs notifies ``*sharing`` in its
  transaction; this process drops its snapshot on that notification, before it
  acknowledges it, and the change is acknowledged to its writer only after every
  process acknowledged (resolver/core/channel.py);
* a snapshot whose load began before a drop is never installed (the *generation*);
* a snapshot is used only while the answer cache may be used (inside the listener's
  lease, and in the cache's epoch it was loaded in: a lost listener retires both).

So no answer sent after a revocation's acknowledgement is derived from grants older
than the revocation. Without a usable snapshot, authorized reads take the registry's
path (credentials and grants from the database on each request).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg

from resolver.cache import AnswerCache
from resolver.core.channel import SHARING_MARK
from resolver.core.sharing import Grant, View, token_hash
from resolver.store import DATABASE_DOWN, fetch_sharing

log = logging.getLogger("idres.sharing")
# the read log's hook (registry/readlog.py): (party, [(identifier key, shared types shown)])
ReadLog = Callable[[str, list[tuple[str, list[str]]]], Awaitable[None]]
MAX_ROWS = 200_000   # readers + grants + memberships a snapshot holds, at most


@dataclass(frozen=True, slots=True)
class Snapshot:
    readers: dict[bytes, tuple[str, float | None, bool]]   # token hash → (name, expires, revoked)
    views: dict[str, View]                                 # reader name → what it sees
    logged: frozenset[str]                                 # read-log scopes
    generation: int
    epoch: int


def build(readers: list[Any], grants: list[Any], members: list[Any], logs: list[Any],
          generation: int, epoch: int) -> Snapshot:
    """A snapshot from the sharing tables' rows (``store.fetch_sharing``)."""
    groups: dict[str, list[str]] = {}
    for m in members:
        groups.setdefault(m["member"], []).append(f"group:{m['name']}")
    by_party: dict[str, list[Grant]] = {}
    for g in grants:
        by_party.setdefault(g["grantee"], []).append(Grant(
            g["id"], g["scope"], g["types"], g["template"],
            None if g["expires"] is None else float(g["expires"])))
    views = {}
    for r in readers:
        party = f"reader:{r['name']}"
        mine = [*by_party.get(party, ()), *(x for grp in groups.get(party, ())
                                           for x in by_party.get(grp, ()))]
        views[r["name"]] = View(party, grants=tuple(sorted(mine, key=lambda x: x.id)))
    return Snapshot({bytes(r["token_hash"]): (r["name"], None if r["expires"] is None
                                              else float(r["expires"]), r["revoked"])
                     for r in readers}, views, frozenset(r["scope"] for r in logs),
                    generation, epoch)


class Sharing:
    """This process's snapshot of readers and grants (see the module docstring)."""

    def __init__(self, pool: asyncpg.Pool, cache: AnswerCache, timeout: float = 2.0) -> None:
        self.pool = pool
        self.cache = cache
        self.timeout = timeout
        self.generation = 0
        self.loads = 0
        self._snap: Snapshot | None = None
        self._loading: asyncio.Task[Snapshot | None] | None = None
        self._too_big = False

    def current(self) -> Snapshot | None:
        """The snapshot, if it may be used now."""
        snap = self._snap
        if snap is None or snap.generation != self.generation or snap.epoch != self.cache.epoch \
                or not self.cache.usable():
            return None
        return snap

    def forget(self) -> None:
        """Readers or grants changed (the ``*sharing`` notification): drop the snapshot
        now, load the next one soon."""
        self.generation += 1
        self._snap = None
        self.load_soon()

    def on_keys(self, keys: list[str]) -> None:
        """The invalidation listener's hook: readers or grants changed when ``*sharing``
        is among a notification's keys."""
        if SHARING_MARK in keys:
            self.forget()

    def load_soon(self) -> None:
        if self._loading is None and not self._too_big:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            self._loading = loop.create_task(self._load())

    async def _load(self) -> Snapshot | None:
        try:
            while True:
                generation, epoch = self.generation, self.cache.epoch
                try:
                    rows = await asyncio.wait_for(fetch_sharing(self.pool),
                                                  self.timeout)  # network op
                except (*DATABASE_DOWN, asyncpg.PostgresError) as exc:
                    log.warning("could not read readers and grants: %s", exc)
                    return None
                if sum(len(r) for r in rows) > MAX_ROWS:
                    log.warning("more than %d readers, grants and members: authorized reads "
                                "take the database path", MAX_ROWS)
                    self._too_big = True
                    return None
                if generation == self.generation:
                    self.loads += 1
                    readers, grants, members, logs = rows
                    self._snap = build(readers, grants, members, logs, generation, epoch)
                    return self._snap
                # changed while loading: load again
        finally:
            self._loading = None

    async def ready(self) -> Snapshot | None:
        """A usable snapshot, loaded now if need be (None: it cannot be had: the
        database is away, or the tables are too big for one)."""
        snap = self.current()
        if snap is None:
            self.load_soon()
            task = self._loading
            if task is not None:
                await asyncio.shield(task)  # network op
            snap = self.current()
        return snap

    def no_read_logs(self) -> bool:
        """Whether the snapshot knows that no read log is on (then no read needs a row)."""
        snap = self.current()
        return snap is not None and not snap.logged

    def reader(self, token: str) -> tuple[View, int] | None:
        """The view of the reader whose bearer token this is, and the generation of the
        snapshot it comes from, from a usable snapshot; None when there is no usable
        snapshot (one is asked for), or the token is no valid reader's (an operator's,
        revoked, expired, forged: the registry answers)."""
        snap = self.current()
        if snap is None:
            self.load_soon()
            return None
        found = snap.readers.get(token_hash(token))
        if found is None or found[2] or (found[1] is not None and found[1] <= time.time()):
            return None
        view = snap.views.get(found[0])
        return None if view is None else (view, snap.generation)
