"""The HTTP fast path: cached resolutions answered on the bare event loop.

Every connection on the HTTP port starts with :class:`FastHTTP`. It reads request
heads itself and answers ``GET``/``HEAD /api/handles/{id}`` (no query string but the
value filters ``?index=&type=``, whose replies are kept by their whole target; no
credentials, no body) directly: a cache hit is one dict lookup and one write of
bytes prepared when the entry was filled; a miss goes through the same
``Resolver`` as everything else. Answers leave in request order (pipelining).

It also answers anonymous lookups by code (``GET /api/lookup?prefix=&type=&value=``,
``resolver/codes.py``: batched, never cached). Resolutions are counted (resolver/usage.py).

Anything else (another route, another query string, credentials it does not read, a
body) is lent to aiohttp one request at a time when its end can be seen
(``resolver/http/loan.py``): aiohttp answers it and the connection comes back. What
cannot be lent (a chunked or large body, an ``Upgrade``, an ``Expect``, a request line
or header this sniffer does not like) hands the connection over to aiohttp for good:
the bytes not yet answered are fed to an aiohttp ``RequestHandler``, which takes over
the transport. aiohttp's full parser then answers malformed input (400) exactly as it
would without the fast path.

HTTP/1.1 rules kept here: keep-alive by default (HTTP/1.0 only with ``Connection:
keep-alive``), ``Connection: close``, HEAD without a body, ``Date``, 431 for a head over
``max_head``, an idle timeout and a deadline for each head (swept every second). A
connection is read only while its client keeps up (``resolver/connections.py``). Every
answer is counted and, with ``--access-log``, logged (``resolver/traffic.py``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from time import perf_counter
from typing import Any

from resolver import reply
from resolver.authorized import resolve_as
from resolver.codes import lookup_query
from resolver.connections import MAX_PENDING, TrackedProtocol
from resolver.core.errors import HeadersTooLarge, IdresError
from resolver.core.identifier import Identifier, parse_raw
from resolver.core.params import Selection, selection
from resolver.core.sharing import View
from resolver.http.fast_context import FastContext
from resolver.http.loan import MAX_BODY, Lending, LentTransport, well_framed
from resolver.reply import Form
from resolver.traffic import Meta, Route, request_id

log = logging.getLogger("idres.fast")

PREFIX = b"/api/handles/"
_REFUSE = (b"transfer-encoding", b"upgrade", b"expect")   # never lent: handed over
_TOO_LARGE = reply.error(HeadersTooLarge())
TOO_LARGE = reply.http_head(_TOO_LARGE) + b"Connection: close\r\n\r\n" + _TOO_LARGE.body


class FastHTTP(Lending, TrackedProtocol):
    """One client connection on the HTTP port (see module docstring)."""

    def __init__(self, ctx: FastContext) -> None:
        super().__init__(ctx.connections)
        self.ctx = ctx
        self.buf = b""
        self.pending: deque[list[Any]] = deque()  # [answer bytes | None, keep_alive]
        self.closing = False
        self.handing_off = False
        self.lending: tuple[bytes, bool] | None = None   # a request to lend, its keep-alive
        self.loan: Any = None          # the aiohttp handler answering a lent request
        self.lent: LentTransport | None = None
        self.last = ctx.now
        self.head_started = ctx.now  # when the first byte of the head in ``buf`` came
        self._processing = False
        self.meta: Meta = (0.0, None, b"", b"GET")  # the request being read (traffic.py)

    # -- asyncio.Protocol ------------------------------------------------------------------

    def may_read(self) -> bool:
        return not self.handing_off and self.lending is None

    def busy(self) -> bool:
        return len(self.pending) >= MAX_PENDING

    def on_writable(self) -> None:
        self._process()

    def data_received(self, data: bytes) -> None:
        had = bool(self.buf)
        self.buf = self.buf + data if had else data
        self.last = self.ctx.now
        if not self.handing_off and self.lending is None:
            self._process()
        if self.buf and not had:
            self.head_started = time.monotonic()  # a head begun in this read, not complete
        if self.paused or self.handing_off or not self._reading or \
                len(self.pending) >= MAX_PENDING:
            self.sync_reading()  # (the common case, reading and keeping up, needs nothing)

    # -- request heads ------------------------------------------------------------------------

    def _process(self) -> None:
        if self._processing:
            return  # re-entered from a write inside the loop below
        self._processing = True
        try:
            self._heads()
        finally:
            self._processing = False

    def _heads(self) -> None:
        ctx = self.ctx
        # (can_work(), inlined: this loop runs once per request)
        while self.buf and not self.closing and not self.handing_off and not self.paused \
                and self.lending is None and len(self.pending) < MAX_PENDING:
            buf = self.buf
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > ctx.max_head:
                    self._queue(TOO_LARGE, False)
                elif b"\n\n" in buf:
                    self._hand_off()  # bare-LF heads: let the full parser judge them
                return
            if end > ctx.max_head:
                self._queue(TOO_LARGE, False)
                return
            t0 = perf_counter()
            lines = buf[:end].split(b"\r\n")
            parts = lines[0].split(b" ")
            if len(parts) != 3 or parts[2] not in (b"HTTP/1.1", b"HTTP/1.0"):
                self._hand_off()
                return
            code: tuple[str, str, str] | None = None
            select: Selection | None = None
            slow = False      # not for the fast path: lent to aiohttp, or handed over
            if parts[0] not in (b"GET", b"HEAD") or not parts[1].startswith(PREFIX):
                code = lookup_query(parts[1]) if parts[0] == b"GET" else None
                slow = code is None
            elif b"?" in parts[1]:
                select = selection(parts[1])   # ?index=&type= only: the value filters
                slow = select is None
            keep_alive = parts[2] == b"HTTP/1.1"
            token: bytes | None = None
            rid: bytes | None = None
            length: int | None = None
            for line in lines[1:]:
                name, colon, value = line.partition(b":")
                if not colon or not name or name[-1:] in b" \t" or line[0] in b" \t":
                    self._hand_off()
                    return
                lname = name.lower()
                if lname in _REFUSE:
                    self._hand_off()
                    return
                if lname == b"content-length":
                    length = well_framed(value, length)
                    if length is None or length > MAX_BODY:
                        self._hand_off()     # twice, malformed or large: aiohttp's
                        return
                    slow = True
                elif lname == b"authorization":
                    if token is not None:   # twice: let the full parser judge which counts
                        slow = True
                        continue
                    scheme, _, token = value.strip().partition(b" ")
                    if code is not None or select is not None or scheme.lower() != b"bearer" \
                            or not token:
                        slow = True       # lookups or filters with credentials, Basic
                elif lname == b"x-request-id":
                    rid = value
                elif lname == b"connection":
                    tokens = value.strip().lower()
                    if b"close" in tokens:
                        keep_alive = False
                    elif b"keep-alive" in tokens:
                        keep_alive = True
            view = None
            if token is not None and not slow:
                view = self._reader(token)
                slow = view is None   # not a reader's (an operator's, revoked...): aiohttp
            if slow:
                self._lend(end + 4 + (length or 0), keep_alive)
                return
            self.buf = buf[end + 4:]
            if self.buf:
                self.head_started = time.monotonic()  # what is left came with this head
            ctx.requests += 1
            self.meta = (t0, rid, parts[1], parts[0])
            if code is not None:
                self._find_code(code, keep_alive)
            elif view is not None:
                self._request_as(parts[1], parts[0] == b"HEAD", keep_alive, view)
            else:
                self._request(parts[1], parts[0] == b"HEAD", keep_alive, select)
            if not keep_alive:
                self.closing = True

    def _request(self, target: bytes, head_only: bool, keep_alive: bool,
                 select: Selection | None = None) -> None:
        hit = self.ctx.lookup(Form.HTTP, target)   # (a filtered reply is kept by its target)
        if hit is not None:
            self.ctx.usage.fast(target, hit[0])
            self._queue(self._wire(hit, head_only, keep_alive), keep_alive)
            return
        slot: list[Any] = [None, keep_alive, self.meta]
        self.pending.append(slot)
        asyncio.get_running_loop().create_task(self._miss(target, head_only, slot, select))

    def _wire(self, encoded: tuple[bytes, bytes], head_only: bool, keep_alive: bool,
              meta: Meta | None = None, route: Route | None = None) -> bytes:
        # the answer's bytes (the client's request id echoed), counted and logged
        head, body = encoded
        ctx = self.ctx
        t0, given, target, method = meta or self.meta
        echo = None
        if given is not None or ctx.access is not None:
            echo, rid = request_id(given)
        end = ctx.date + (b"X-Request-ID: " + echo + b"\r\n" if echo else b"") + (
            b"\r\n" if keep_alive else b"Connection: close\r\n\r\n")
        seconds = perf_counter() - t0
        (route or (ctx.handles_head if head_only else ctx.handles_get)).observe(head[9:12], seconds)
        if ctx.access is not None:
            ctx.access.line(self._peer(), method.decode(), target.decode("latin-1"),
                            int(head[9:12]), 0 if head_only else len(body), seconds, rid)
        return head + end if head_only else head + end + body

    async def _miss(self, target: bytes, head_only: bool, slot: list[Any],
                    select: Selection | None) -> None:
        resolver = self.ctx.resolver
        path = target if select is None else select[0]
        shown = path[len(PREFIX):].decode("utf-8", "replace")
        ident: Identifier | None = None
        try:
            shown, ident = parse_raw(path[len(PREFIX):].decode("utf-8", "surrogateescape"))
            resolution = await resolver.resolve(ident)  # network op
            encoded = resolver.encoded(resolution, Form.HTTP, shown, target,
                                       None if select is None else select[1:])
        except IdresError as exc:
            rep = resolver.reply_for(shown, exc, ident.key if ident else None)
            encoded = reply.http_head(rep), rep.body
        slot[0] = self._wire(encoded, head_only, slot[1], slot[2])
        self._flush()

    # -- readers (resolver/sharing.py): authorized answers from the cache ----------------------

    def _reader(self, token: bytes) -> tuple[View, int] | None:
        try:
            text = token.strip().decode("ascii")
        except UnicodeDecodeError:
            return None
        return self.ctx.resolver.sharing.reader(text) if text.isprintable() else None

    def _request_as(self, target: bytes, head_only: bool, keep_alive: bool,
                    reader: tuple[View, int]) -> None:
        """A reader's resolution: what its grants show of the cached record (kept for
        its next request spelled the same); the public reply when they show nothing
        more; a task on a miss."""
        view, generation = reader
        kept = self.ctx.lookup(Form.HTTP, (target, view.party, generation))
        if kept is not None and not (kept[1] and self._any_read_log()):
            self.ctx.authorized += 1
            self.ctx.usage.fast(target, kept[0][0])
            self._queue(self._wire(kept[0], head_only, keep_alive), keep_alive)
            return
        try:
            shown, ident = parse_raw(target[len(PREFIX):].decode("utf-8", "surrogateescape"))
        except IdresError:
            self._request(target, head_only, keep_alive)   # the anonymous error reply
            return
        if not view.may_cover(ident):
            self._request(target, head_only, keep_alive)
            return
        self.ctx.authorized += 1
        resolver = self.ctx.resolver
        entry = resolver.coalescer.fresh(ident.key)
        if entry is not None:
            out = resolver.derived_encoded(Form.HTTP, shown, target, ident, entry, view,
                                           generation)
            if out is None:
                self._request(target, head_only, keep_alive)
                return
            if not self._logged(ident, entry.template):
                self._queue(self._wire(out[0], head_only, keep_alive), keep_alive)
                return
        slot: list[Any] = [None, keep_alive, self.meta]
        self.pending.append(slot)
        asyncio.get_running_loop().create_task(
            self._miss_as(target, shown, ident, head_only, slot, view, generation))

    def _any_read_log(self) -> bool:
        """Whether some read log is on (a kept answer showing shared values is checked)."""
        snap = self.ctx.resolver.sharing.current()
        return bool(snap is not None and snap.logged and self.ctx.read_log is not None)

    def _logged(self, ident: Identifier, template: str | None) -> bool:
        snap = self.ctx.resolver.sharing.current()
        logged = snap.logged if snap is not None else frozenset()
        return bool(logged) and self.ctx.read_log is not None and (
            template in logged or any(p.text in logged for p in ident.prefix.lineage()))

    async def _miss_as(self, target: bytes, shown: str, ident: Identifier, head_only: bool,
                       slot: list[Any], view: View, generation: int) -> None:
        resolver = self.ctx.resolver
        try:
            encoded, types, template = await resolve_as(
                resolver, ident, shown, target, Form.HTTP, view, generation)  # network op
            if types and self._logged(ident, template) and self.ctx.read_log is not None:
                await self.ctx.read_log(view.party, [(ident.key, types)])  # network op
        except IdresError as exc:
            rep = resolver.reply_for(shown, exc, ident.key)
            encoded = reply.http_head(rep), rep.body
        slot[0] = self._wire(encoded, head_only, slot[1], slot[2])
        self._flush()

    def _find_code(self, code: tuple[str, str, str], keep_alive: bool) -> None:
        self.pending.append(slot := [None, keep_alive, self.meta])
        asyncio.get_running_loop().create_task(self._code(code, slot))

    async def _code(self, code: tuple[str, str, str], slot: list[Any]) -> None:
        try:
            rep = await self.ctx.resolver.find_code(*code)  # network op
        except IdresError as exc:
            rep = reply.error(exc)
        slot[0] = self._wire((reply.http_head(rep), rep.body), False, slot[1], slot[2],
                             self.ctx.lookup_route)
        self._flush()

    # -- replies, in order -----------------------------------------------------------------------

    def _queue(self, data: bytes, keep_alive: bool) -> None:
        if not keep_alive:
            self.closing = True
        if not self.pending and self.transport is not None:
            self.transport.write(data)
            self.last = self.ctx.now
            if self.closing:
                self.transport.close()
            return
        self.pending.append([data, keep_alive])
        self._flush()

    def _flush(self) -> None:
        out = []
        while self.pending and self.pending[0][0] is not None:
            out.append(self.pending.popleft()[0])
        if out and self.transport is not None:
            self.transport.write(b"".join(out))
            self.last = self.ctx.now
        if not self.pending:
            if self.closing and self.transport is not None:
                self.transport.close()
            elif self.handing_off:
                self._complete_hand_off()
                return
            elif self.lending is not None and self.loan is None:
                self._start_loan()
                return
        if self.buf and not self.handing_off:
            self._process()  # room again: the requests read meanwhile
        self.sync_reading()

    def _hand_off(self) -> None:
        self.handing_off = True
        self.sync_reading()
        if not self.pending:
            self._complete_hand_off()

    def _complete_hand_off(self) -> None:
        transport, rest = self.transport, self.buf
        if transport is None or transport.is_closing():
            return
        self.ctx.handoffs += 1
        self.ctx.connections.discard(self)
        self.transport, self.buf = None, b""
        proto = self.ctx.fallback()
        transport.set_protocol(proto)
        proto.connection_made(transport)
        # our pause ends BEFORE the new protocol sees the bytes read so far: a pause they
        # cause (aiohttp bounds pipelined requests) must stand, or its parser fills unbounded
        transport.resume_reading()
        if rest:
            proto.data_received(rest)

    def check_deadline(self, now: float) -> None:
        """A head's deadline: ``head_timeout`` after its first byte; idle: ``keepalive``."""
        if self.transport is None or self.pending or self.handing_off or self.lending:
            return
        if self.buf:
            if time.monotonic() - self.head_started > self.ctx.head_timeout:
                self.ctx.bad_input.note(self._peer(), "request head not complete within "
                                        f"{self.ctx.head_timeout:g} s")
                self.transport.close()
        elif now - self.last > self.ctx.keepalive:
            self.transport.close()

    def _peer(self) -> str:
        peer = self.transport.get_extra_info("peername") if self.transport else None
        return str(peer[0]) if peer else "unknown"

