"""The LISTEN side of the coherence protocol (resolver/core/channel.py says why it holds).

:class:`Invalidator`, one per server process, keeps one LISTEN connection:

* every notification is applied through the coalescer (evictions at once, zone reloads
  as tasks), then its token is acknowledged on ``idres_ack``;
* every ``heartbeat`` seconds it renews the process's lease; the lease is granted when
  the heartbeat comes back and every invalidation received before it is applied (a
  zone reload under way delays it), and it is what the cache checks on every hit;
* any failure of the connection (lost, silent, slow, any exception) ends its lease at
  once; a supervisor reconnects with backoff (at most ``max_backoff`` seconds between
  tries, so within about a second of the database accepting connections again), and a
  new connection starts by forgetting everything cached (it stays as the stale reserve:
  invalidations may have been missed).

:class:`AckBook` (``resolver/acks.py``) is the writer's half. With replicas, the listener
also keeps their :class:`~resolver.replicas.Gate`: each invalidation is held from its
arrival until the primary's WAL position, read in the statement that acknowledges it,
says how far a replica must have replayed to answer for its keys."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable

import asyncpg

from resolver.core.channel import (
    ACK_CHANNEL,
    DEFAULT_LEASE,
    HEARTBEAT,
    INVALIDATE_CHANNEL,
    LISTENER_NAME,
    PRUNE_LEASES,
    ack_payload,
    heartbeat_key,
    parse_payload,
    split_keys,
)
from resolver.acks import AckBook
from resolver.lookup import Resolver
from resolver.replicas import INSERTED, WHERE_PRIMARY, Gate, Ticket
from resolver.store import fetch_zone

log = logging.getLogger("idres.invalidate")
FORGET_SLICE = 50_000  # cache keys examined between two turns of the event loop
# acknowledgements of invalidations, and where the primary is after them (replicas.py)
ACKNOWLEDGE = (f"SELECT {INSERTED} FROM (SELECT count(pg_notify($1, t)) "
               "FROM unnest($2::text[]) AS t) AS acked")


class Invalidator(AckBook):
    """The LISTEN connection of one process (see module docstring)."""

    def __init__(self, dsn: str, resolver: Resolver, lease: float = DEFAULT_LEASE,
                 heartbeat: float | None = None, max_backoff: float = 0.5) -> None:
        super().__init__(lease)
        self.dsn = dsn
        self.resolver = resolver
        self.heartbeat = heartbeat if heartbeat is not None else lease / 4
        self.max_backoff = max_backoff
        self.connected = False
        self.state = "disconnected"      # or "listening", "lapsed"
        self.notifications = 0
        self.reconnects = 0
        # called with the keys of each notification, before it is acknowledged: the
        # snapshot of readers and grants, the cache of published templates
        self.hooks: list[Callable[[list[str]], None]] = []
        self.listener = ""
        self._conn: asyncpg.Connection | None = None
        self._closing = False
        self._lost = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        # (token to acknowledge, invalidation held for the replicas): either may be None
        self._outbox: asyncio.Queue[tuple[str | None, Ticket | None]] = asyncio.Queue()
        self.gate: Gate | None = None       # the replicas' (resolver/replicas.py), if any
        self._sender: asyncio.Task[None] | None = None
        self._applying: set[asyncio.Task[None]] = set()   # zone reloads under way
        self._beat: tuple[int, asyncio.Future[None]] | None = None
        # one query at a time on the LISTEN connection (asyncpg's rule): heartbeats and
        # acknowledgements take turns
        self._talk = asyncio.Lock()
        self._seq = 0
        self.resolver.coalescer.set_lease(0.0)            # nothing is proven yet

    @property
    def lease_left(self) -> float:
        return max(0.0, self.resolver.cache.lease_until - time.monotonic())

    async def start(self) -> None:
        """Connect and earn a first lease, then keep it (if the first try fails, the
        process starts with its cache off and the supervisor keeps trying)."""
        try:
            await self._connect()
            await self._renew()
        except Exception as exc:  # noqa: BLE001 - retried by the supervisor
            self._drop(f"{type(exc).__name__}: {exc}")
        self._sender = asyncio.get_running_loop().create_task(self._send_acks())
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise())

    # -- the connection ---------------------------------------------------------------------

    async def _connect(self) -> None:
        self._lost.clear()
        self.listener = uuid.uuid4().hex
        conn = await asyncpg.connect(self.dsn, timeout=5,
                                     server_settings={"application_name": LISTENER_NAME})
        self._conn = conn
        try:
            conn.add_termination_listener(self._on_terminated)
            async with self._talk:
                await conn.add_listener(INVALIDATE_CHANNEL, self._on_notify)  # network op
                await conn.add_listener(ACK_CHANNEL, self._on_ack)  # network op
            # anything could have changed while we were not listening: from here on every
            # write is heard, and what came before is forgotten
            self.resolver.zone = await fetch_zone(self.resolver.pool)  # network op
            if self.gate is not None:   # where the primary is, now that we listen
                mark = self.gate.mark()
                async with self._talk:
                    row = await conn.fetchrow(WHERE_PRIMARY)  # network op
                self.gate.reset(row["position"], mark, row["timeline"])
        except BaseException:
            self._conn = None
            conn.terminate()
            raise
        self.resolver.coalescer.forget_all()
        self.connected = True
        self.state = "lapsed"

    def _on_terminated(self, conn: object) -> None:
        if conn is self._conn:
            self._drop("the connection was closed")

    def _drop(self, why: str) -> None:
        """The connection can no longer prove anything: end the lease now."""
        if not self.connected:
            self.state = "disconnected"
            return
        self.connected = False
        self.state = "disconnected"
        self.resolver.coalescer.set_lease(0.0)
        self.resolver.coalescer.forget_all()  # reads in flight may predate a missed write
        if self.gate is not None:
            self.gate.drop()
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            conn.terminate()
        self._lost.set()
        if not self._closing:
            log.warning("invalidation listener: %s; no fresh answers from the cache until "
                        "it is back", why)

    async def _supervise(self) -> None:
        """Heartbeats while connected; reconnection, with backoff, after any failure."""
        delay = 0.05
        while not self._closing:
            if self.connected:
                try:
                    await self._heartbeats()
                except Exception as exc:  # noqa: BLE001 - every failure ends the lease
                    self._drop(f"{type(exc).__name__}: {exc}")
                continue
            try:
                await self._connect()
                await self._renew()
                self.reconnects += 1
                log.info("invalidation listener reconnected: cache on")
                delay = 0.05
            except Exception as exc:  # noqa: BLE001 - retry whatever went wrong
                self._drop(f"{type(exc).__name__}: {exc}")
                log.debug("listener reconnect failed: %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_backoff)

    async def _heartbeats(self) -> None:
        beats = 0
        while self.connected and not self._closing:
            try:
                await asyncio.wait_for(self._lost.wait(), self.heartbeat)
                return
            except TimeoutError:
                pass
            await self._renew()
            beats += 1
            if beats % 1000 == 0 and self._conn is not None:
                async with self._talk:
                    await self._conn.execute(PRUNE_LEASES)  # network op

    async def _renew(self) -> None:
        """One heartbeat: renew the lease row and send the beat; when it comes back (and
        what came before it is applied), fresh answers may be served until ``sent +
        lease``. A slow beat only lets the lease run out meanwhile (``state`` "lapsed");
        one that has not come back after two leases means the connection is gone.

        :raises TimeoutError: no answer within two leases.
        """
        conn = self._conn
        if conn is None:
            raise ConnectionError("not connected")
        self._seq += 1
        seq = self._seq
        back: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._beat = (seq, back)
        sent = time.monotonic()
        async with asyncio.timeout(2 * self.lease):
            async with self._talk:
                await conn.execute(HEARTBEAT, self.listener, self.lease,
                                   heartbeat_key(self.listener, seq))  # network op
            await back
        if self.connected and conn is self._conn:
            self.resolver.coalescer.set_lease(sent + self.lease)
            self.state = "listening"

    def lapsed(self) -> bool:
        """True while connected but without a valid lease (a slow or silent connection)."""
        if self.connected and self.lease_left == 0:
            self.state = "lapsed"
        return self.state == "lapsed"

    def _beat_back(self, seq: int) -> None:
        beat = self._beat
        if beat is None or beat[0] != seq or beat[1].done():
            return
        pending = [t for t in self._applying if not t.done()]
        if not pending:
            beat[1].set_result(None)
            return
        # zone reloads begun before the beat must land before the lease covers them
        gathered = asyncio.gather(*pending, return_exceptions=True)
        def landed(_: object) -> None:
            if not beat[1].done():
                beat[1].set_result(None)

        gathered.add_done_callback(landed)

    # -- notifications ----------------------------------------------------------------------

    def _on_notify(self, conn: object, pid: int, channel: str, payload: str) -> None:
        if conn is not self._conn:
            return
        self.notifications += 1
        keys, token = parse_payload(payload)
        keys, zone_prefixes, everything, beats = split_keys(keys)
        for hook in self.hooks:         # before this notification is acknowledged
            hook(keys)
        self.resolver.coalescer.invalidate(keys)
        ticket = None
        if self.gate is not None and (keys or zone_prefixes or everything):
            ticket = self.gate.hold(keys, bool(zone_prefixes) or everything)
        for listener, seq in beats:
            if listener == self.listener:
                self._beat_back(seq)
        if zone_prefixes or everything:  # acknowledge once the new zone is in place
            task = asyncio.get_running_loop().create_task(
                self._reload_zone(token, ticket, None if everything else zone_prefixes))
            self._applying.add(task)
            task.add_done_callback(self._applying.discard)
            return
        if token is not None or ticket is not None:
            self._outbox.put_nowait((token, ticket))

    async def _reload_zone(self, token: str | None, ticket: Ticket | None,
                           prefixes: list[str] | None) -> None:
        """Swap in the new zone, then forget what was cached under the changed prefixes
        (a slice of the keys at a time, so resolution goes on meanwhile), then acknowledge.
        Without prefixes, or when the zone cannot be read, everything is forgotten."""
        resolver = self.resolver
        try:
            resolver.zone = await fetch_zone(resolver.pool)  # network op
        except Exception as exc:  # noqa: BLE001 - whatever it was, forget all and go on
            log.warning("could not reload the zone: %r", exc)
            prefixes = None
        if prefixes is None:
            resolver.coalescer.forget_all()
        else:
            await self._forget_under(prefixes)
        if token is not None or ticket is not None:
            self._outbox.put_nowait((token, ticket))

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
        """One sender, so the listening connection never runs two queries at once. The
        statement that acknowledges also reads the primary's WAL position, which settles
        the invalidations held for the replicas. Without a working connection nothing is
        acknowledged (writers outwait our lease instead) and held keys wait for the next
        try (a reconnection's reset releases those it covers, the others settle after)."""
        while True:
            items = [await self._outbox.get()]
            while not self._outbox.empty():
                items.append(self._outbox.get_nowait())
            tickets = [k for _, k in items if k is not None]
            payloads = [ack_payload(t, self.listener) for t, _ in items if t is not None]
            conn = self._conn
            try:
                if conn is None or conn.is_closed() or not self.connected:
                    raise ConnectionError("not connected")
                async with self._talk:
                    position = await conn.fetchval(ACKNOWLEDGE, ACK_CHANNEL,  # network op
                                                   payloads)
                if self.gate is not None:
                    self.gate.settle(tickets, position)
            except Exception as exc:  # noqa: BLE001 - dead, it would keep the lease, ack nothing
                log.debug("could not acknowledge invalidations: %r", exc)
                if tickets:
                    await asyncio.sleep(0.05)
                    for ticket in tickets:
                        self._outbox.put_nowait((None, ticket))

    async def close(self) -> None:
        """Stop; the lease ends first here, then in the database (so that writers need
        not outwait a process that has stopped)."""
        self._closing = True
        self.resolver.coalescer.set_lease(0.0)
        for task in (self._supervisor, self._sender, *self._applying):
            if task is not None:
                task.cancel()
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            try:
                async with self._talk, asyncio.timeout(1):
                    await conn.execute("DELETE FROM listener_leases WHERE listener = $1",
                                       self.listener)  # network op
            except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                pass  # the row runs out by itself
            await conn.close()

