"""The LISTEN loop that keeps this process's cache coherent with every write.

Writers send ``NOTIFY idres_invalidate`` from their transaction (registry/store.py),
so the notification arrives after the commit. Here each key is evicted from the
cache (and in-flight reads of it are not cached), then the write's token is
acknowledged on ``idres_ack`` so that the writer knows this process is up to date
(resolver/core/channel.py). If the listening connection drops, notifications may be
lost: the cache is cleared and disabled until the connection is back, then cleared
again.
"""

from __future__ import annotations

import asyncio
import logging
import math
import uuid

import asyncpg

from resolver.core.channel import (
    ACK_CHANNEL,
    INVALIDATE_CHANNEL,
    LISTENER_NAME,
    NothingToWait,
    Waiter,
    parse_payload,
    zone_changes,
)
from resolver.lookup import Resolver
from resolver.store import fetch_zone

log = logging.getLogger("idres.invalidate")
FORGET_SLICE = 50_000  # cache keys examined between two turns of the event loop


class _Acks:
    """A write's acknowledgements, counted until the number of listeners is reached."""

    def __init__(self, owner: AckBook, token: str) -> None:
        self.owner = owner
        self.token: str | None = token
        self.received = 0
        self.needed: int | None = None
        self.done = asyncio.get_running_loop().create_future()

    def add(self) -> None:
        self.received += 1
        self._check()

    def _check(self) -> None:
        if self.needed is not None and self.received >= self.needed and not self.done.done():
            self.done.set_result(None)

    async def wait(self, listeners: int) -> None:
        self.needed = listeners
        self._check()
        try:
            await asyncio.wait_for(asyncio.shield(self.done), self.owner.sync_timeout)
        except TimeoutError:
            log.warning("only %d of %d resolver processes confirmed an invalidation within "
                        "%.1fs", self.received, listeners, self.owner.sync_timeout)
        finally:
            self.cancel()

    def cancel(self) -> None:
        if self.token is not None:
            self.owner._acks.pop(self.token, None)
            self.token = None


class AckBook:
    """The acknowledgements this process's writes are waiting for (a CommitSync)."""

    def __init__(self, sync_timeout: float) -> None:
        self.sync_timeout = sync_timeout
        self._acks: dict[str, _Acks] = {}

    def _on_ack(self, conn: object, pid: int, channel: str, token: str) -> None:
        acks = self._acks.get(token)
        if acks is not None:
            acks.add()

    def _new_acks(self) -> Waiter:
        acks = _Acks(self, uuid.uuid4().hex)
        self._acks[acks.token] = acks  # type: ignore[index]
        return acks


class AckListener(AckBook):
    """The CommitSync of a process that caches nothing (the CLI): it listens for
    acknowledgements only, so that its writes return once every resolver process of the
    database applied them, as the server's own writes do."""

    def __init__(self, dsn: str, sync_timeout: float = 2.0) -> None:
        super().__init__(sync_timeout)
        self.dsn = dsn
        self._conn: asyncpg.Connection | None = None

    async def start(self) -> None:
        self._conn = await asyncpg.connect(self.dsn, timeout=10,
                                           server_settings={"application_name": "idres-writer"})
        await self._conn.add_listener(ACK_CHANNEL, self._on_ack)

    def expect(self) -> Waiter:
        if self._conn is None or self._conn.is_closed():
            return NothingToWait()
        return self._new_acks()

    async def close(self) -> None:
        if self._conn is not None and not self._conn.is_closed():
            await self._conn.close()


class Invalidator(AckBook):
    """Listens on the invalidation channel for one process (see module docstring)."""

    def __init__(self, dsn: str, resolver: Resolver, sync_timeout: float = 1.0) -> None:
        super().__init__(sync_timeout)
        self.dsn = dsn
        self.resolver = resolver
        self.connected = False
        self.notifications = 0
        self._conn: asyncpg.Connection | None = None
        self._closing = False
        self._reconnect: asyncio.Task[None] | None = None
        self._outbox: asyncio.Queue[str] = asyncio.Queue()
        self._sender: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # zone reloads under way

    async def start(self) -> None:
        await self._connect()
        self._sender = asyncio.get_running_loop().create_task(self._send_acks())

    async def _connect(self) -> None:
        conn = await asyncpg.connect(self.dsn, timeout=10,
                                     server_settings={"application_name": LISTENER_NAME})
        await conn.add_listener(INVALIDATE_CHANNEL, self._on_notify)
        await conn.add_listener(ACK_CHANNEL, self._on_ack)
        conn.add_termination_listener(self._on_lost)
        self._conn = conn
        # anything could have changed while we were not listening
        self.resolver.zone = await fetch_zone(self.resolver.pool)
        self.resolver.coalescer.forget_all()
        self.resolver.coalescer.set_lease(math.inf)
        self.connected = True

    def _on_notify(self, conn: object, pid: int, channel: str, payload: str) -> None:
        self.notifications += 1
        keys, token = parse_payload(payload)
        keys, zone_prefixes, everything = zone_changes(keys)
        self.resolver.coalescer.invalidate(keys)
        if zone_prefixes or everything:  # acknowledge once the new zone is in place
            task = asyncio.get_running_loop().create_task(
                self._reload_zone(token, None if everything else zone_prefixes))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        if token is not None:
            self._outbox.put_nowait(token)

    async def _reload_zone(self, token: str | None, prefixes: list[str] | None) -> None:
        """Swap in the new zone, then forget what was cached under the changed prefixes
        (a slice of the keys at a time, so resolution goes on meanwhile), then acknowledge.
        Without prefixes, or when the zone cannot be read, everything is forgotten."""
        resolver = self.resolver
        try:
            resolver.zone = await fetch_zone(resolver.pool)  # network op
        except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
            log.warning("could not reload the zone: %s", exc)
            prefixes = None
        if prefixes is None:
            resolver.coalescer.forget_all()
        else:
            await self._forget_under(prefixes)
        if token is not None:
            self._outbox.put_nowait(token)

    async def _forget_under(self, prefixes: list[str]) -> None:
        """Coalescer.forget_under over the whole cache, a slice per loop turn. Reads and
        walks in flight there (begun under the old zone) are tainted at once."""
        coalescer = self.resolver.coalescer
        coalescer.forget_under(prefixes, ())
        snapshot = coalescer.cache.keys()
        for start in range(0, len(snapshot), FORGET_SLICE):
            coalescer.forget_under(prefixes, snapshot[start:start + FORGET_SLICE])
            await asyncio.sleep(0)

    async def _send_acks(self) -> None:
        """One sender, so the listening connection never runs two queries at once."""
        while True:
            tokens = [await self._outbox.get()]
            while not self._outbox.empty():
                tokens.append(self._outbox.get_nowait())
            conn = self._conn
            if conn is None or conn.is_closed():
                continue
            try:
                await conn.execute(  # network op
                    "SELECT pg_notify($1, t) FROM unnest($2::text[]) AS t", ACK_CHANNEL, tokens)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.debug("could not acknowledge invalidations: %s", exc)

    def _on_lost(self, conn: object) -> None:
        self.connected = False
        self.resolver.coalescer.set_lease(0.0)
        self.resolver.coalescer.forget_all()
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
            except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
                log.debug("listener reconnect failed: %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def expect(self) -> Waiter:
        """A token for one write, and the count of its acknowledgements (CommitSync)."""
        if not self.connected:
            return NothingToWait()   # our cache is off: nothing of ours to wait for
        return self._new_acks()

    async def close(self) -> None:
        self._closing = True
        for task in (self._reconnect, self._sender, *self._tasks):
            if task is not None:
                task.cancel()
        if self._conn is not None and not self._conn.is_closed():
            await self._conn.close()
