"""What the HTTP fast path and the binary protocol share about a client connection: it
is registered in a set (for shutdown and metrics), and it is read only while the client
keeps up.

Reading stops (TCP back-pressure reaches the client) while either

* the transport's unsent output is over its high-water mark (``pause_writing``: the
  client does not read its answers), or
* the connection has ``MAX_PENDING`` requests in progress (answers not yet ready);

and resumes when both are below (``resume_writing``, or a pending answer done). So
what a connection holds is bounded: the transport buffer, at most ``MAX_PENDING``
answers, and one read of unparsed input (a client that pipelines 300,000 requests
without reading costs a few MB, not gigabytes).
"""

from __future__ import annotations

import asyncio
from typing import Any

MAX_PENDING = 128  # requests in progress per connection before reading pauses


class TrackedProtocol(asyncio.Protocol):
    def __init__(self, connections: set[Any]) -> None:
        self.connections = connections
        self.transport: Any = None
        self.paused = False          # the transport asked us to stop writing
        self._reading = True

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.connections.add(self)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.connections.discard(self)
        self.transport = None

    def pause_writing(self) -> None:
        self.paused = True
        self.sync_reading()

    def resume_writing(self) -> None:
        self.paused = False
        self.on_writable()
        self.sync_reading()

    # -- for subclasses --------------------------------------------------------------------

    def busy(self) -> bool:
        """True while this many requests are in progress that no more should be read."""
        return False

    def may_read(self) -> bool:
        """False while the connection must not be read for its own reasons (a hand-off)."""
        return True

    def can_work(self) -> bool:
        """May buffered requests be processed now?"""
        return not self.paused and not self.busy()

    def on_writable(self) -> None:
        """Called when writing may go on: process what was buffered meanwhile."""

    def sync_reading(self) -> None:
        """Pause or resume reading the socket to match the state above."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        want = self.may_read() and self.can_work()
        if want != self._reading:
            self._reading = want
            if want:
                transport.resume_reading()
            else:
                transport.pause_reading()
