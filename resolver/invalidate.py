"""The LISTEN loop that keeps this process's cache coherent with every write.

Writers send ``NOTIFY idres_invalidate`` from their transaction (registry/store.py),
so the notification arrives after the commit. Here each key is evicted from the
cache (and in-flight reads of it are not cached). If the listening connection
drops, notifications may be lost: the cache is cleared and disabled until the
connection is back, then cleared again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

import asyncpg

from resolver.core.channel import INVALIDATE_CHANNEL, ZONE_MARK, Waiter, keys_of
from resolver.lookup import Resolver
from resolver.store import fetch_zone

log = logging.getLogger("idres.invalidate")


class _KeysWaiter:
    def __init__(self, owner: Invalidator, futures: dict[str, asyncio.Future[None]]) -> None:
        self.owner = owner
        self.futures = futures

    async def wait(self) -> None:
        if self.futures:
            try:
                await asyncio.wait_for(asyncio.gather(*self.futures.values()),
                                       self.owner.sync_timeout)
            except asyncio.TimeoutError:
                log.warning("invalidation of %d keys not seen within %.1fs",
                            len(self.futures), self.owner.sync_timeout)
        self.cancel()

    def cancel(self) -> None:
        for key, fut in self.futures.items():
            waiting = self.owner._waiters.get(key)
            if waiting is not None:
                waiting.discard(fut)
                if not waiting:
                    del self.owner._waiters[key]
            fut.cancel()
        self.futures = {}


class Invalidator:
    """Listens on the invalidation channel for one process (see module docstring)."""

    def __init__(self, dsn: str, resolver: Resolver, sync_timeout: float = 1.0) -> None:
        self.dsn = dsn
        self.resolver = resolver
        self.sync_timeout = sync_timeout
        self.connected = False
        self.notifications = 0
        self._conn: asyncpg.Connection | None = None
        self._closing = False
        self._reconnect: asyncio.Task[None] | None = None
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}

    async def start(self) -> None:
        await self._connect()

    async def _connect(self) -> None:
        conn = await asyncpg.connect(self.dsn, timeout=10)
        await conn.add_listener(INVALIDATE_CHANNEL, self._on_notify)
        conn.add_termination_listener(self._on_lost)
        self._conn = conn
        # anything could have changed while we were not listening
        self.resolver.zone = await fetch_zone(self.resolver.pool)
        self.resolver.cache.clear()
        self.resolver.cache.enabled = self._cache_wanted
        self.connected = True

    @property
    def _cache_wanted(self) -> bool:
        c = self.resolver.cache
        return c.max_entries > 0 and c.max_bytes > 0

    def _on_notify(self, conn: object, pid: int, channel: str, payload: str) -> None:
        self.notifications += 1
        keys = keys_of(payload)
        if ZONE_MARK in keys:  # answer its waiters once the new zone is in place
            keys.remove(ZONE_MARK)
            asyncio.get_running_loop().create_task(self._reload_zone())
        self.resolver.invalidate(keys)
        self._wake(keys)

    def _wake(self, keys: Iterable[str]) -> None:
        for key in keys:
            for fut in self._waiters.pop(key, ()):
                if not fut.done():
                    fut.set_result(None)

    async def _reload_zone(self) -> None:
        try:
            self.resolver.zone = await fetch_zone(self.resolver.pool)  # network op
        except (OSError, asyncpg.PostgresError, asyncio.TimeoutError) as exc:
            log.warning("could not reload the zone: %s", exc)
        self.resolver.cache.clear()
        self._wake([ZONE_MARK])

    def _on_lost(self, conn: object) -> None:
        self.connected = False
        self.resolver.cache.enabled = False
        self.resolver.cache.clear()
        self._release_waiters()
        if not self._closing:
            log.warning("invalidation listener lost its connection: cache off until it is back")
            self._reconnect = asyncio.get_running_loop().create_task(self._reconnect_loop())

    async def _reconnect_loop(self) -> None:
        delay = 0.1
        while not self._closing:
            try:
                await self._connect()
                log.info("invalidation listener reconnected: cache on")
                return
            except (OSError, asyncpg.PostgresError, asyncio.TimeoutError) as exc:
                log.debug("listener reconnect failed: %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _release_waiters(self) -> None:
        for futs in self._waiters.values():
            for fut in futs:
                if not fut.done():
                    fut.set_result(None)
        self._waiters.clear()

    def expect(self, keys: Iterable[str]) -> Waiter:
        """Register interest in the invalidation of ``keys`` (CommitSync)."""
        futures: dict[str, asyncio.Future[None]] = {}
        last = None
        for last in keys:
            pass
        if self.connected and last is not None:
            # one transaction's notifications arrive in order: seeing the last key
            # means every earlier one has been applied too
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            futures[last] = fut
            self._waiters.setdefault(last, set()).add(fut)
        return _KeysWaiter(self, futures)

    async def close(self) -> None:
        self._closing = True
        if self._reconnect is not None:
            self._reconnect.cancel()
        self._release_waiters()
        if self._conn is not None and not self._conn.is_closed():
            await self._conn.close()
