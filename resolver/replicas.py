"""Resolution misses answered by streaming replicas, never older than a write this process
has heard of (docs/architecture.md, "Replicas").

PostgreSQL sends ``NOTIFY`` on the primary only, and a replica lags. The rule, all of it
here and in :class:`Gate`:

* a replica answers only while this process holds its cache lease: it provably hears
  every invalidation (otherwise the primary answers);
* an invalidation is *held* from the moment the listener receives it, before it is
  acknowledged, until the listener has read the primary's WAL insert position in the
  statement that acknowledges it. That position is at or after the write's commit record
  (the notification is sent after the commit). While a key is held, its misses go to the
  primary;
* a settled key then *needs* that position. A creation of identifiers nobody named, a zone
  change, and the listener's (re)connection need it for every key (the *floor*);
* a replica answers a miss only when the replay position it last reported is at or past
  what the keys need. Positions are polled (:data:`POLL`) on a connection of their own: a
  query sent after a poll answered takes a snapshot holding everything replayed by then;
* a replica that fails a poll or a read is *down* until a poll succeeds again; a read that
  fails on a replica is asked of the primary, within the same deadline.

So an acknowledged write (every listener acknowledged it, or its lease ran out: then this
process has no lease and reads the primary) is never answered older by any replica.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from functools import partial
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import asyncpg

from resolver.coalesce import within
from resolver.core.channel import CREATED_MARK
from resolver.store import DATABASE_DOWN, Fetched, fetch_public, fetch_publics, find_codes

log = logging.getLogger("idres.replicas")
T = TypeVar("T")

POLL = 0.05          # seconds between two reads of a replica's replay position
MAX_NEEDS = 100_000  # keys remembered with their own position; beyond, the floor rises
# positions as byte offsets (pg_lsn minus 0/0): plain integers to compare; timelines as
# the primary's WAL file names and the replica's WAL receiver say (a replica left on the
# old timeline by a failover may report positions the new primary has not reached)
INSERTED = "(pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint"
WHERE_PRIMARY = f"""SELECT {INSERTED} AS position,
    ('x' || substr(pg_walfile_name(pg_current_wal_insert_lsn()), 1, 8))::bit(32)::int
    AS timeline"""
POSITION = """SELECT CASE WHEN pg_is_in_recovery()
                           THEN (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint END
                      AS replayed,
                      (SELECT received_tli FROM pg_stat_wal_receiver) AS timeline"""


class Ticket:
    """One invalidation, held until the primary's position after it is known."""

    __slots__ = ("keys", "everything", "seq")

    def __init__(self, keys: tuple[str, ...], everything: bool, seq: int) -> None:
        self.keys = keys
        self.everything = everything
        self.seq = seq


class Gate:
    """What a replica must have replayed before it may answer for a key (sans I/O)."""

    def __init__(self) -> None:
        self.floor = 0                    # every key needs this much
        self.latest = 0                   # the highest position any invalidation needs
        self.need: dict[str, int] = {}    # keys that need more than the floor
        self._open: dict[Ticket, None] = {}
        self._held: dict[str, int] = {}   # key -> open tickets naming it
        self._held_all = 0                # open tickets that concern every key
        self._seq = itertools.count(1)
        self.connected = False            # a reset happened since the last drop
        self.timeline: int | None = None  # the primary's, at the last reset

    def hold(self, keys: Iterable[str], everything: bool = False) -> Ticket:
        """An invalidation arrived (before it is acknowledged)."""
        keys = tuple(keys)
        named = tuple(k for k in keys if k != CREATED_MARK)
        ticket = Ticket(named, everything or CREATED_MARK in keys, next(self._seq))
        self._open[ticket] = None
        if ticket.everything:
            self._held_all += 1
        for key in named:
            self._held[key] = self._held.get(key, 0) + 1
        return ticket

    def _release(self, ticket: Ticket) -> bool:
        if ticket not in self._open:
            return False
        del self._open[ticket]
        if ticket.everything:
            self._held_all -= 1
        for key in ticket.keys:
            left = self._held[key] - 1
            if left:
                self._held[key] = left
            else:
                del self._held[key]
        return True

    def settle(self, tickets: Iterable[Ticket], position: int) -> None:
        """The primary was at ``position`` after these invalidations were received."""
        for ticket in tickets:
            if not self._release(ticket):
                continue            # dropped by a reset meanwhile: the floor covers it
            self.latest = max(self.latest, position)
            if ticket.everything:
                self.floor = max(self.floor, position)
            for key in ticket.keys:
                if self.need.get(key, 0) < position:
                    self.need[key] = position
        if len(self.need) > MAX_NEEDS:
            self.floor = max(self.floor, self.latest)
            self.need.clear()

    def mark(self) -> int:
        """The ticket number before a reset's position is read."""
        return next(self._seq)

    def reset(self, position: int, mark: int, timeline: int | None = None) -> None:
        """The listener (re)connected and the primary was at ``position`` after it
        listened (taken after :meth:`mark`): every key needs that, and what was held
        before the mark is covered by it. Replaces, never raises: after a failover the new
        primary's positions may be lower than the old one's."""
        for ticket in [t for t in self._open if t.seq < mark]:
            self._release(ticket)
        self.floor = self.latest = position
        self.timeline = timeline
        self.need.clear()
        self.connected = True

    def drop(self) -> None:
        """The listener lost its connection: no replica answers until a reset."""
        self.connected = False

    def needed(self, keys: Iterable[str]) -> int | None:
        """The position a replica must have replayed to answer for ``keys``; None: only the
        primary may (held, or not connected)."""
        if self._held_all or not self.connected:
            return None
        need = self.floor
        for key in keys:
            if key in self._held:
                return None
            got = self.need.get(key)
            if got is not None and got > need:
                need = got
        return need

    def needed_any(self) -> int | None:
        """The position for a read that may concern any key (lookups by code)."""
        if self._open or not self.connected:
            return None
        return max(self.floor, self.latest)

    def prune(self, replayed: int) -> None:
        """Every replica that is up has replayed ``replayed``: forget the keys it covers
        (the floor rises to it, so a replica coming back must be as far)."""
        if replayed <= self.floor:
            return
        self.floor = replayed
        if self.need:
            self.need = {k: p for k, p in self.need.items() if p > replayed}


class Replica:
    """One replica's pool and what its polls told."""

    def __init__(self, name: str, dsn: str) -> None:
        self.name = name
        self.dsn = dsn
        self.pool: asyncpg.Pool | None = None
        self.replayed = -1      # the position last reported; -1: unknown
        self.up = False
        self.reads = 0          # misses it answered
        self.failures = 0       # polls and reads that failed
        self.polled = 0.0       # monotonic time of the last poll that answered
        self.why = ""           # why it is down
        self.primary = False    # it answered, as a primary (promoted): down, not broken
        self.conn: asyncpg.Connection | None = None      # the polls'
        self.opening: asyncio.Future[asyncpg.Pool] | None = None

    def down(self, why: str) -> None:
        if self.up or why != self.why:   # (said once, not at every poll)
            log.warning("replica %s is down: %s; its reads go to the primary", self.name, why)
        self.up = False
        self.why = why
        self.failures += 1


class Primary:
    """The reads of resolution, all on the primary (a node without replicas)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.fetch_public = partial(fetch_public, pool)
        self.fetch_publics = partial(fetch_publics, pool)
        self.find_codes = partial(find_codes, pool)


class Replicas:
    """The replicas of one process, and the choice between them and the primary for each
    miss (see module docstring). Front ends reach it through the coalescer's reads."""

    def __init__(self, primary: asyncpg.Pool, dsns: Iterable[str], leased: Callable[[], bool],
                 make_pool: Callable[[str], Awaitable[asyncpg.Pool]], timeout: float = 1.0,
                 poll: float = POLL, names: Iterable[str] | None = None) -> None:
        dsns = list(dsns)
        self.primary = primary
        self.replicas = [Replica(name, dsn) for name, dsn in
                         zip(names if names is not None else dsns, dsns)]
        self.gate = Gate()
        self.leased = leased        # this process holds its cache lease now
        self.make_pool = make_pool
        self.timeout = timeout      # a replica's read or poll waits no longer
        self.poll = poll
        # misses answered by the primary, by why no replica could
        self.to_primary = {"held": 0, "lease": 0, "behind": 0, "down": 0, "failed": 0}
        self._next = 0
        self._poller: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Poll every replica once, then keep polling (a replica down now is retried)."""
        await self._poll_all()
        self._poller = asyncio.get_running_loop().create_task(self._poll_forever())

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
        for replica in self.replicas:
            if replica.opening is not None:
                replica.opening.cancel()
            if replica.conn is not None:
                replica.conn.terminate()
            if replica.pool is not None:
                replica.pool.terminate()

    # -- the reads resolution makes -----------------------------------------------------------

    async def fetch_public(self, key: str) -> Fetched | None:
        return await self._read(self.gate.needed((key,)),
                                lambda pool: fetch_public(pool, key), 1)  # network op

    async def fetch_publics(self, keys: list[str]) -> dict[str, Fetched]:
        return await self._read(self.gate.needed(keys),
                                lambda pool: fetch_publics(pool, keys), len(keys))  # network op

    async def find_codes(self, wanted: list[tuple[str, str, str]],
                         limit: int) -> list[list[str]]:
        return await self._read(self.gate.needed_any(),
                                lambda pool: find_codes(pool, wanted, limit),
                                len(wanted))  # network op

    def pick(self, need: int | None, count: int = 1) -> Replica | None:
        """A replica that may answer for what needs ``need`` (round robin), or None
        (``count`` reads go to the primary, counted by why)."""
        if need is None:
            self.to_primary["held"] += count
            return None
        if not self.leased():
            self.to_primary["lease"] += count
            return None
        many = len(self.replicas)
        for step in range(many):
            replica = self.replicas[(self._next + step) % many]
            if replica.up and replica.replayed >= need:
                self._next = (self._next + step + 1) % many
                return replica
        self.to_primary["behind" if any(r.up for r in self.replicas) else "down"] += count
        return None

    async def _read(self, need: int | None, query: Callable[[asyncpg.Pool], Awaitable[T]],
                    count: int) -> T:
        """``query`` on a replica that may answer, else (or if it fails) on the primary;
        ``count``: the reads (misses, lookups) it makes."""
        replica = self.pick(need, count)
        if replica is not None and replica.pool is not None:
            try:
                result: T = await within(query(replica.pool), self.timeout)  # network op
            except DATABASE_DOWN as exc:
                replica.down(f"{type(exc).__name__}: {exc}")
                self.to_primary["failed"] += count
            except asyncpg.PostgresError as exc:   # e.g. a conflict with recovery
                log.info("replica %s could not answer (%s): asking the primary",
                         replica.name, exc)
                self.to_primary["failed"] += count
            else:
                replica.reads += count
                return result
        return await query(self.primary)  # network op

    # -- positions ------------------------------------------------------------------------------

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self.poll)
            await self._poll_all()

    async def _poll_all(self) -> None:
        await asyncio.gather(*(self._poll(r) for r in self.replicas))
        up = [r.replayed for r in self.replicas if r.up]
        if up:
            self.gate.prune(min(up))

    async def _poll(self, replica: Replica) -> None:
        """Where the replica is, on its own connection (terminated when it does not answer
        in time, so a silent server costs one connection); its pool is made on the way,
        one attempt at a time. Any failure: down, with why."""
        now = time.monotonic()
        if not replica.up and now < replica.polled + 1.0:
            return                       # a replica that is down is tried once a second
        replica.polled = now
        try:
            if replica.pool is None:
                await self._open(replica)
            if replica.conn is None or replica.conn.is_closed():
                replica.conn = await asyncio.wait_for(asyncpg.connect(
                    replica.dsn, timeout=self.timeout,
                    server_settings={"application_name": "idres-replica-poll"}), self.timeout)
            conn: asyncpg.Connection = replica.conn
            row = await within(conn.fetchrow(POSITION), self.timeout)  # network op
        except Exception as exc:  # noqa: BLE001 - whatever it is, the replica is not usable
            if replica.conn is not None:
                replica.conn.terminate()
                replica.conn = None
            replica.primary = False
            replica.down(f"{type(exc).__name__}: {exc}")
            return
        replica.primary = row["replayed"] is None
        if replica.primary:   # promoted, or a primary named by mistake
            replica.down("it is not a standby (it replays no WAL): a primary now")
            return
        timeline, wanted = row["timeline"], self.gate.timeline
        if timeline is None:
            replica.down("it streams from no primary now, or this role may not read "
                         "pg_stat_wal_receiver (GRANT pg_read_all_stats)")
            return
        if wanted is not None and timeline != wanted:
            replica.down(f"it is on timeline {timeline}, the primary on {wanted}")
            return
        if not replica.up:
            log.info("replica %s is up, at %d", replica.name, row["replayed"])
        replica.up, replica.why = True, ""
        replica.replayed = row["replayed"]

    async def _open(self, replica: Replica) -> None:
        """The replica's pool: one attempt in flight at most, adopted when it lands (a slow
        one is waited for again at the next poll, never started twice nor leaked)."""
        if replica.opening is None:
            replica.opening = asyncio.ensure_future(self.make_pool(replica.dsn))
        await asyncio.wait({replica.opening}, timeout=self.timeout)
        if not replica.opening.done():
            raise TimeoutError("no connection within the timeout")
        task, replica.opening = replica.opening, None
        replica.pool = task.result()

    def describe(self) -> list[dict[str, Any]]:
        """What ``/api/health`` and the metrics say of each replica."""
        return [{"name": r.name, "up": r.up, "primary": r.primary, "replayed": r.replayed,
                 "reads": r.reads, "failures": r.failures,
                 **({"reason": r.why} if r.why else {})} for r in self.replicas]
