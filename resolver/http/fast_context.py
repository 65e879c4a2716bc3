"""What every fast-path connection of one process shares (resolver/http/fast.py): the
resolver, limits, the clock and Date header, the fallback to aiohttp, the counters."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from email.utils import formatdate
from typing import TYPE_CHECKING

from resolver.http.handler import BadInputLog
from resolver.lookup import Resolver
from resolver.sharing import ReadLog
from resolver.traffic import AccessLog, Traffic

if TYPE_CHECKING:
    from resolver.http.fast import FastHTTP



class FastContext:
    """What every fast connection shares: the resolver, limits, the clock, the fallback."""

    def __init__(self, resolver: Resolver, fallback: Callable[[], asyncio.Protocol],
                 max_head: int = 8190, keepalive: float = 75.0,
                 head_timeout: float = 15.0, bad_input: BadInputLog | None = None,
                 read_log: ReadLog | None = None, traffic: Traffic | None = None,
                 access: AccessLog | None = None) -> None:
        self.resolver = resolver
        self.traffic = traffic or Traffic()
        self.handles_get = self.traffic.route("/api/handles/{handle}", b"GET")
        self.handles_head = self.traffic.route("/api/handles/{handle}", b"HEAD")
        self.lookup_route = self.traffic.route("/api/lookup", b"GET")
        self.access = access          # --access-log: a line per request
        self.read_log = read_log      # (party, reads): the registry's read log, if mounted
        self.authorized = 0           # readers' resolutions answered here
        self.bad_input = bad_input or BadInputLog()
        self.lookup = resolver.coalescer.lookup
        self.usage = resolver.usage
        self.fallback = fallback
        self.max_head = max_head
        self.keepalive = keepalive
        self.head_timeout = head_timeout
        self.connections: set[FastHTTP] = set()
        self.requests = 0
        self.handoffs = 0             # connections handed to aiohttp for good
        self.lent = 0                 # requests lent to aiohttp, the connection kept
        self.now = time.monotonic()
        self.date = b""
        self._date_second = -1
        self.tick()

    def tick(self) -> None:
        """Refresh the clock and the Date header (once a second is enough)."""
        self.now = time.monotonic()
        second = int(time.time())
        if second != self._date_second:
            self._date_second = second
            self.date = b"Date: " + formatdate(second, usegmt=True).encode() + b"\r\n"

    def sweep(self) -> None:
        """Close connections idle past ``keepalive`` or stuck in a head past ``head_timeout``."""
        self.tick()
        for conn in list(self.connections):
            conn.check_deadline(self.now)

    async def drain(self, timeout: float) -> None:
        """Graceful stop: idle connections close now, busy ones after their answers."""
        for conn in list(self.connections):
            conn.closing = True
            if not conn.pending and conn.lending is None and conn.transport is not None:
                conn.transport.close()
        deadline = time.monotonic() + timeout
        while self.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.abort()
