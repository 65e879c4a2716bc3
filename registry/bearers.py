"""Bearer tokens looked up together: the tokens presented in one event-loop turn are
read in one query, as resolutions' misses and lookups by code are.

Each request still reads the database (nothing is cached: a token revoked is refused
by the next turn's query, as before), but shares one round trip with the requests of
its turn. Measured: authenticating was a quarter of the server's CPU per single write
at 64 connections, one query per request (benchmarks/run.py, registry/store/group.py).
"""

from __future__ import annotations

import asyncio
import time

import asyncpg

from registry.permissions import Principal
from resolver.core.waiters import fail_waiters

FIND = """SELECT t.token_hash, t.id AS token_id, o.id, o.name, o.identity, o.is_admin
          FROM tokens t JOIN operators o ON o.id = t.operator_id
          WHERE t.token_hash = ANY($1::bytea[]) AND t.revoked_at IS NULL
            AND (t.expires_at IS NULL OR t.expires_at > now()) AND o.disabled_at IS NULL"""
USED = "UPDATE tokens SET last_used_at = now() WHERE id = ANY($1::bigint[])"
MAX_PER_QUERY = 500
USED_EVERY = 60.0      # seconds: a token's last use is written at most this often


class Bearers:
    """The operators whose (hashed) tokens the requests of one loop turn carry."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._queued: dict[bytes, asyncio.Future[Principal | None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._written: dict[int, float] = {}    # token id -> when its last use was written
        self.queries = 0

    def find(self, token_hash: bytes) -> asyncio.Future[Principal | None]:
        """The operator holding the valid token ``token_hash``, or None."""
        future = self._queued.get(token_hash)
        if future is None:
            loop = asyncio.get_running_loop()
            if not self._queued:
                loop.call_soon(self._send)
            future = self._queued[token_hash] = loop.create_future()
        return future

    def _send(self) -> None:
        queued, self._queued = list(self._queued.items()), {}
        for start in range(0, len(queued), MAX_PER_QUERY):
            task = asyncio.get_running_loop().create_task(
                self._run(queued[start:start + MAX_PER_QUERY]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, part: list[tuple[bytes, asyncio.Future[Principal | None]]]) -> None:
        self.queries += 1
        try:
            rows = await self._pool.fetch(FIND, [h for h, _ in part])  # network op
        except BaseException as exc:
            fail_waiters((future for _, future in part), exc)
            if not isinstance(exc, Exception):
                raise
            return
        found = {r["token_hash"]: Principal(r["id"], r["name"], r["identity"], r["is_admin"])
                 for r in rows}
        for token_hash, future in part:
            if not future.done():
                future.set_result(found.get(token_hash))
        await self._used([r["token_id"] for r in rows])

    async def _used(self, ids: list[int]) -> None:
        """Write the tokens' last use, at most once a minute each (never failing a request)."""
        now = time.monotonic()
        due = [i for i in ids if now - self._written.get(i, -USED_EVERY) >= USED_EVERY]
        if not due:
            return
        if len(self._written) > 100_000:
            self._written.clear()
        for i in due:
            self._written[i] = now
        try:
            await self._pool.execute(USED, due)  # network op
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            pass   # (a last use not written: the next one writes it)
