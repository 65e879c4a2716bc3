"""The writer's half of the coherence protocol (resolver/core/channel.py says why it
holds): :class:`AckBook` (a ``CommitSync``) keeps tokens and acknowledgements by
listener, and the wait that outlasts every lease not acknowledged; :class:`AckListener`
is the one of a process that caches nothing (the CLI). The listening half is
``resolver/invalidate.py``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid

import asyncpg

from resolver.core.channel import ACK_CHANNEL, DEFAULT_LEASE, Waiter, parse_ack

log = logging.getLogger("idres.invalidate")


class _Acks:
    """One write's acknowledgements, by listener."""

    def __init__(self, owner: AckBook, token: str) -> None:
        self.owner = owner
        self.token: str | None = token
        self.acked: set[str] = set()
        self.changed = asyncio.Event()

    def add(self, listener: str) -> None:
        self.acked.add(listener)
        self.changed.set()

    async def wait(self, leases: dict[str, float] | None) -> None:
        """Until every listener of ``leases`` acknowledged or its lease ran out (None:
        the leases are unknown, so wait one whole lease)."""
        try:
            if leases is None:
                log.warning("could not read the listeners' leases after a write: waiting a "
                            "whole lease (%.1f s)", self.owner.lease)
                self.owner.lease_waits += 1
                await asyncio.sleep(self.owner.lease)
                return
            now = time.monotonic()
            deadlines = {lid: now + left for lid, left in leases.items()}
            while True:
                now = time.monotonic()
                open_ = {lid: d for lid, d in deadlines.items()
                         if lid not in self.acked and d > now}
                if not open_:
                    break
                self.changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.changed.wait(), min(open_.values()) - now)
            silent = [lid for lid in deadlines if lid not in self.acked]
            if silent:
                self.owner.lease_waits += 1
                log.warning("%d of %d resolver processes did not confirm a write; waited for "
                            "their leases to run out", len(silent), len(deadlines))
        finally:
            self.cancel()

    def cancel(self) -> None:
        if self.token is not None:
            self.owner._acks.pop(self.token, None)
            self.token = None


class AckBook:
    """The acknowledgements this process's writes are waiting for (a CommitSync)."""

    def __init__(self, lease: float = DEFAULT_LEASE) -> None:
        self.lease = lease
        self._acks: dict[str, _Acks] = {}
        self.lease_waits = 0   # writes that waited for a listener's lease to run out

    def _on_ack(self, conn: object, pid: int, channel: str, payload: str) -> None:
        token, listener = parse_ack(payload)
        if (acks := self._acks.get(token)) is not None:
            acks.add(listener)

    def expect(self) -> Waiter:
        """A token for one write. Without a working connection of our own no
        acknowledgement can reach us: the wait then outlasts every lease."""
        acks = _Acks(self, uuid.uuid4().hex)
        self._acks[acks.token] = acks  # type: ignore[index]
        return acks


class AckListener(AckBook):
    """The CommitSync of a process that caches nothing (the CLI): it listens for
    acknowledgements only, so that its writes return once no resolver process of the
    database may serve what they changed, as the server's own writes do."""

    def __init__(self, dsn: str, lease: float = DEFAULT_LEASE) -> None:
        super().__init__(lease)
        self.dsn = dsn
        self._conn: asyncpg.Connection | None = None

    async def start(self) -> None:
        self._conn = await asyncpg.connect(self.dsn, timeout=10,
                                           server_settings={"application_name": "idres-writer"})
        await self._conn.add_listener(ACK_CHANNEL, self._on_ack)

    async def close(self) -> None:
        if self._conn is not None and not self._conn.is_closed():
            await self._conn.close()
