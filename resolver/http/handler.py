"""aiohttp's connection handler as idres runs it, once the fast path hands a connection
over: a deadline on every request head, and malformed input logged as one line.

* **Head deadline.** A request head must arrive whole within ``head_timeout`` seconds of
  its first byte (default 15), however slowly it trickles in; the fast path applies the
  same deadline to the heads it reads. aiohttp alone only has a keep-alive timeout,
  reset by every request.
* **Back-pressure.** While the transport's unsent output is over its high-water mark,
  the connection is not read (as on the fast path and the binary protocol,
  ``resolver/connections.py``).
* **Malformed input** (a bad request line, header or chunk) is a client's mistake or an
  attack, not our bug: one WARNING line with the client's address and aiohttp's reason,
  at most a few per second (:class:`BadInputLog`), no traceback. Tracebacks stay for
  real errors.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

log = logging.getLogger("idres.http")


class BadInputLog:
    """At most ``per_second`` lines a second about malformed requests; what is held back
    is counted and said in the next line that gets through."""

    def __init__(self, per_second: float = 5.0, clock: Any = time.monotonic) -> None:
        self.per_second = per_second
        self.clock = clock
        self._allowance = per_second
        self._last = clock()
        self.suppressed = 0
        self.seen = 0

    def note(self, peer: str, reason: str) -> bool:
        """Log one malformed request from ``peer`` unless over the rate; True if logged."""
        self.seen += 1
        now = self.clock()
        self._allowance = min(self.per_second,
                              self._allowance + (now - self._last) * self.per_second)
        self._last = now
        if self._allowance < 1:
            self.suppressed += 1
            return False
        self._allowance -= 1
        held, self.suppressed = self.suppressed, 0
        more = f" ({held} more not logged)" if held else ""
        log.warning("malformed request from %s: %s%s", peer, reason[:200], more)
        return True


class RequestHandler(web.RequestHandler):
    """One handed-over connection (see module docstring)."""

    def __init__(self, manager: web.Server, *, head_timeout: float, bad_input: BadInputLog,
                 **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._head_timeout = head_timeout
        self._bad_input = bad_input
        self._head_timer: asyncio.TimerHandle | None = None

    def data_received(self, data: bytes) -> None:
        if data and self._head_timer is None and not self._messages:
            self._head_timer = self._loop.call_later(self._head_timeout, self._head_expired)
        super().data_received(data)
        if self._head_timer is not None and (self._messages or self._payload_parser is not None):
            self._head_timer.cancel()  # the head is complete
            self._head_timer = None

    def pause_writing(self) -> None:
        # the client does not read its answers: read no more of its requests, or they
        # would pile up as answers in the transport (aiohttp bounds only its own queue)
        super().pause_writing()
        self.pause_reading()

    def resume_writing(self) -> None:
        super().resume_writing()
        self.resume_reading()

    def _head_expired(self) -> None:
        self._head_timer = None
        if not self._messages and self._payload_parser is None:
            self._bad_input.note(self._peer(), "request head not complete within "
                                 f"{self._head_timeout:g} s")
            self.force_close()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().connection_lost(exc)

    def log_exception(self, *args: Any, **kw: Any) -> None:
        exc = kw.get("exc_info")
        if isinstance(exc, HttpProcessingError):
            peer = str(args[1]) if len(args) > 1 else self._peer()
            self._bad_input.note(peer, f"{type(exc).__name__}: {exc.message}")
            return
        super().log_exception(*args, **kw)

    def _peer(self) -> str:
        peer = self.transport.get_extra_info("peername") if self.transport else None
        return str(peer[0]) if peer else "unknown"
