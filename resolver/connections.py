"""What the HTTP fast path and the binary protocol share about a client connection:
it is registered in a set (for shutdown and metrics), and reading pauses while the
client is not reading its answers (TCP back-pressure)."""

from __future__ import annotations

import asyncio
from typing import Any


class TrackedProtocol(asyncio.Protocol):
    def __init__(self, connections: set[Any]) -> None:
        self.connections = connections
        self.transport: Any = None
        self.paused = False

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.connections.add(self)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.connections.discard(self)
        self.transport = None

    def pause_writing(self) -> None:
        self.paused = True
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.paused = False
        if self.transport is not None and self.may_read():
            self.transport.resume_reading()
            self.on_writable()

    def may_read(self) -> bool:
        return True

    def on_writable(self) -> None:
        """Called when reading resumes: process what was buffered meanwhile."""
