"""One request lent to aiohttp: the fast path takes its connection back after the answer.

A request the fast path does not answer itself (a write, another route, credentials it
does not read) used to hand its connection to aiohttp for good, so that every later
resolution on it lost the fast path: a client that writes one record in twenty (an MES
updating an order's status between reads) was served at aiohttp's pace throughout.

Now a request whose end the fast path can see in its buffer (a well-formed head; no body,
or a ``Content-Length`` body of at most :data:`MAX_BODY` bytes; no ``Transfer-Encoding``,
``Upgrade`` or ``Expect``) is *lent*: a fresh aiohttp ``RequestHandler`` gets a
:class:`LentTransport` over the connection, the bytes of that one request, and then
``close()`` (aiohttp's own call: answer what was received, then close). Its answer goes
straight to the client; its closing the lent transport tells the fast path the answer
is complete, and the connection is the fast path's again, with what the client sent
meanwhile. Anything else (chunked or larger bodies, upgrades, heads the fast path finds
malformed) is still handed over for good.

The connection is closed instead of taken back when the answer told the client so
(``Connection: close``), when the request asked for it, or when aiohttp gave up on the
connection (no answer, or it closed it by force).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from resolver.http.fast_context import FastContext

MAX_BODY = 256 * 1024   # a lent request's body, at most; larger ones are handed over
_HEAD_LIMIT = 16384     # bytes of the answer's head looked at, at most


class LentTransport(asyncio.Transport):
    """The connection as the lent handler sees it: its writes go to the client; its
    ``close`` ends the loan (``on_done``). Reading is the fast path's business: aiohttp
    has its request already, so pausing or resuming reading does nothing here."""

    def __init__(self, real: asyncio.Transport, on_done: Any) -> None:
        super().__init__()
        self._real = real
        self._on_done = on_done
        self._closed = False
        self.head = b""          # the start of the answer, until its head is complete
        self.head_done = False

    def write(self, data: Any) -> None:
        if not self.head_done:
            self._note(data)
        self._real.write(data)

    def writelines(self, list_of_data: Any) -> None:
        chunks = list(list_of_data)
        if not self.head_done:
            for chunk in chunks:
                self._note(chunk)
        self._real.writelines(chunks)

    def _note(self, data: Any) -> None:
        self.head = (self.head + bytes(data))[:_HEAD_LIMIT]
        self.head_done = b"\r\n\r\n" in self.head

    def told_close(self) -> bool:
        """Whether the answer's head says ``Connection: close``."""
        for line in self.head.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"connection" and b"close" in value.lower():
                return True
        return False

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            asyncio.get_running_loop().call_soon(self._on_done)

    def abort(self) -> None:
        self._real.abort()
        self.close()

    def is_closing(self) -> bool:
        return self._closed or self._real.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._real.get_extra_info(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def is_reading(self) -> bool:
        return not self._closed

    def get_write_buffer_size(self) -> int:
        return self._real.get_write_buffer_size()

    def can_write_eof(self) -> bool:
        return False


class Lending:
    """What :class:`resolver.http.fast.FastHTTP` does to lend a request (its state and its
    other methods are the fast path's)."""

    transport: Any
    buf: bytes
    pending: deque[list[Any]]
    paused: bool
    closing: bool
    last: float
    head_started: float
    lending: tuple[bytes, bool] | None
    loan: Any
    lent: LentTransport | None

    if TYPE_CHECKING:       # (the fast path's own; not defined here, so not shadowed)
        ctx: FastContext

        def _process(self) -> None: ...
        def sync_reading(self) -> None: ...

    def pause_writing(self) -> None:
        super().pause_writing()  # type: ignore[misc]
        if self.loan is not None:
            self.loan.pause_writing()

    def resume_writing(self) -> None:
        super().resume_writing()  # type: ignore[misc]
        if self.loan is not None:
            self.loan.resume_writing()

    def connection_lost(self, exc: BaseException | None) -> None:
        super().connection_lost(exc)  # type: ignore[misc]
        loan, self.loan = self.loan, None
        if loan is not None:
            loan.connection_lost(exc)

    def _lend(self, total: int, keep_alive: bool) -> None:
        """Lend the request of ``total`` bytes at the start of the buffer to aiohttp, once
        the answers before it are out; until the body is all here, wait for it."""
        if len(self.buf) < total:
            return        # (the head's deadline runs on: the whole request must come)
        self.lending, self.buf = (self.buf[:total], keep_alive), self.buf[total:]
        self.sync_reading()
        if not self.pending:
            self._start_loan()

    def _start_loan(self) -> None:
        transport, lending = self.transport, self.lending
        if transport is None or transport.is_closing() or lending is None:
            return
        self.ctx.lent += 1
        proto: Any = self.ctx.fallback()
        self.loan = proto
        self.lent = LentTransport(transport, self._loan_done)
        proto.connection_made(self.lent)
        if self.paused:
            proto.pause_writing()
        proto.data_received(lending[0])
        proto.close()     # aiohttp: answer what it has, then close (the lent transport)

    def _loan_done(self) -> None:
        """The lent request is answered: the connection is the fast path's again, or
        closed when the answer, the request or aiohttp says so."""
        proto, lent, lending = self.loan, self.lent, self.lending
        self.loan = self.lent = self.lending = None
        # (read before connection_lost, which forces it: aiohttp gave the connection up)
        given_up = getattr(proto, "_force_close", True)
        if proto is not None:
            proto.connection_lost(None)
        transport = self.transport
        if transport is None or transport.is_closing() or lent is None or lending is None:
            return
        if not lending[1] or self.closing or not lent.head_done or lent.told_close() or \
                given_up:
            transport.close()
            return
        self.last = self.ctx.now
        if self.buf:
            self.head_started = time.monotonic()
            self._process()
        self.sync_reading()


def well_framed(value: bytes, length: int | None) -> int | None:
    """The body length a ``Content-Length`` header gives (``length``: one seen already),
    or None when the request cannot be lent for it (twice, not digits)."""
    text = value.strip()
    if length is not None or not text.isdigit() or len(text) > 18:
        return None
    return int(text)
