"""The Handle native protocol's listeners: TCP and UDP on ``--handle-port``.

Both take the resolution path every front end takes (``resolver/lookup.py``), with the
native answer kept in the cache entry beside the others (``reply.Form.HDL``): a
resolution of a cached identifier, asked as before, costs a dict lookup and the 44 bytes
of envelope and header; everything else runs as a task. So a native answer after an
acknowledged write is never stale, by the same rule as HTTP (docs/architecture.md).

TCP: messages are read while the client keeps up (``resolver/connections.py``);
answers carry the request's id and may come in any order. A message whose envelope
declares more than 256 KiB gets an error answer and the connection is closed (the stream
cannot be trusted after it); any other malformed message gets an error answer and the
connection stays. Administration (``admin.py``) runs only over TCP, as the Handle.Net
client sends it.

UDP: an answer larger than one 512-byte packet leaves as several (``wire.datagrams``);
multi-packet requests are put together (``wire.Assembler``, bounded). At most
``MAX_UDP_TASKS`` misses are in progress; a datagram beyond that is answered "server too
busy" (3) at once, as the Handle.Net server answers when its queue is full.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import struct
import time
from collections import deque
from typing import Any, Protocol

from resolver.connections import MAX_PENDING, TrackedProtocol
from resolver.core.errors import IdresError, InvalidIdentifier, ProtocolError
from resolver.core.identifier import parse
from resolver.lookup import Resolver
from resolver.native import wire
from resolver.native.sessions import SessionError, Sessions
from resolver.native.values import from_reply
from resolver.native.wire import Message, Reader, string
from resolver.reply import Form
from resolver.usage import cached

log = logging.getLogger("idres.native")

MAX_UDP_TASKS = 1024
EXPIRATION = 43200          # seconds an answer's header says it is good for
# an answer kept whole (UDP) is sent as long as its cache entry is fresh, at most
# --cache-max-ttl: it says it is good for a week, so that it is never sent expired
KEPT_EXPIRATION = 7 * 86400
_ADMIN_OPS = frozenset({wire.OC_CREATE_HANDLE, wire.OC_DELETE_HANDLE, wire.OC_ADD_VALUE,
                        wire.OC_REMOVE_VALUE, wire.OC_MODIFY_VALUE,
                        wire.OC_RESPONSE_TO_CHALLENGE, wire.OC_LIST_HANDLES,
                        wire.OC_SESSION_SETUP, 2001})   # (2001: the IDIS login)
_ANY_TRANSPORT = frozenset({wire.OC_RESPONSE_TO_CHALLENGE, wire.OC_SESSION_SETUP})


class Administration(Protocol):
    """The native protocol's writes (resolver/native/admin.py)."""

    async def handle(self, msg: Message, conn: Any = None) -> bytes: ...


class NativeContext:
    def __init__(self, resolver: Resolver, site: bytes, serial: int = 1,
                 admin: Administration | None = None, signer: wire.Signer | None = None
                 ) -> None:
        self.resolver = resolver
        self.site = site              # the HS_SITE data this node answers GET_SITE_INFO with
        self.serial = serial
        self.admin = admin
        self.signer = signer          # certifies answers (CT) with the key HS_SITE names
        self.connections: set[Any] = set()
        self.requests = 0
        self.errors = 0
        self.busy = 0                 # datagrams answered "server too busy"


_HEADS = struct.Struct(">BBBBIIII" + "iiIHBBii")    # envelope and header together
_Z4, _Z8, _Z12 = bytes(4), bytes(8), bytes(12)


def _kept_size(kept: tuple[int, bytes, Any]) -> int:
    return len(kept[1])


def shape(datagram: bytes) -> bytes:
    """A request but for what changes between repetitions of it (its session and request
    ids, its expiration): the spelling under which its whole answer is kept."""
    return datagram[:4] + datagram[12:36] + datagram[40:]
# request flags a response carries over (handle-facts, the Handle.Net AbstractResponse)
_COPIED = wire.CT | wire.CA | wire.ENC | wire.PO | wire.DNRF | wire.RD


def answer(msg: Message, code: int, body: bytes, now: float | None = None,
           serial: int = 0, op: int | None = None, request_id: int | None = None,
           session_id: int | None = None, digest: bool = False,
           signer: wire.Signer | None = None, also: int = 0) -> bytes:
    """The response to ``msg``, as the Handle.Net server builds one: the version both
    speak, the request's session, id, operation and flags (``_COPIED``), authoritative
    (this node is its prefixes' primary) and recursive set, an expiration 12 hours on
    (clients refuse expired answers) and, with RD (or ``digest``: a challenge), the body
    after the request's digest; with CT and a ``signer``, signed. ``also``: flags the
    answer adds (OVRW: an overwrite replaced a handle)."""
    flags = (msg.flags & _COPIED) | wire.AT | wire.REC | also
    if msg.flags & wire.RD or digest:
        body = msg.digest() + body
        flags |= wire.RD
    major, minor = msg.answer_version()
    expiration = int(time.time() if now is None else now) + EXPIRATION
    return wire.encode(major, minor, msg.session_id if session_id is None else session_id,
                       msg.request_id if request_id is None else request_id,
                       msg.op if op is None else op, code, flags, body,
                       expiration=expiration, serial=serial, recursion=msg.recursion,
                       signer=signer if msg.flags & wire.CT else None)


def error(msg: Message, code: int, text: str, **kw: Any) -> bytes:
    return answer(msg, code, string(text), **kw)


def parse_resolution(body: bytes) -> tuple[str, tuple[int, ...], tuple[str, ...]]:
    """(handle, indexes, types) of a resolution request body.

    :raises ProtocolError: not a resolution request."""
    r = Reader(body)   # (the IDIS SDK adds authentication bytes after the types: ignored)
    raw = r.bytes()
    indexes = tuple(r.int4() for _ in range(r.count()))
    types = tuple(r.text() for _ in range(r.count()))
    try:
        return raw.decode("utf-8"), indexes, types
    except UnicodeDecodeError:
        raise InvalidIdentifier("the handle is not UTF-8") from None


class Native:
    """What both transports share: a message in, an answer out."""

    def __init__(self, ctx: NativeContext) -> None:
        self.ctx = ctx
        self.coalescer = ctx.resolver.coalescer
        self.lookup = self.coalescer.lookup
        self.encodings = self.coalescer.cache.encodings(Form.HDL)
        self.usage = ctx.resolver.usage

    def fast_raw(self, data: bytes) -> bytes | None:
        """The answer to a resolution of an identifier kept in the cache, asked as before
        (no filter, not certified), straight from the message's bytes (a datagram, or one
        message of a TCP stream: envelope included), else None (:meth:`slow`). The answer
        is also kept for the request's shape (:func:`shape`), which the transports look up
        first: a request asked again then costs a dict lookup and two slices.
        """
        if len(data) < 56:
            return None
        (major, minor, eflags, sminor, session, request, _m, length, op, code, flags, _s,
         recursion, _r, _e, body_len) = _HEADS.unpack_from(data)
        if op != 1 or major != 2 or code or eflags & 0xe0 or flags & wire.CT \
                or length != len(data) - 20 or body_len > length - 24:
            return None
        end = 48 + int.from_bytes(data[44:48], "big")
        rest, credential = data[end:44 + body_len], data[44 + body_len:]
        if rest != _Z8 and rest != _Z12 or credential != _Z4 and credential:
            return None   # (filters, or a credential: the whole reading)
        try:
            text = data[48:end].decode("utf-8")
        except UnicodeDecodeError:
            return None
        hit = self.lookup(Form.HDL, text)
        if hit is None:
            return None
        self.usage.count(text, "native", cached(hit))
        major, minor = min((eflags & 3, sminor) if eflags & 3 else (major, minor),
                           (wire.MAJOR, wire.MINOR))
        body = hit[1]
        if flags & wire.RD:
            digest = hashlib.sha256 if (major, minor) >= (2, 7) else hashlib.sha1
            body = bytes([wire.HASH_SHA256 if (major, minor) >= (2, 7) else wire.HASH_SHA1]) \
                + digest(data[20:44 + body_len]).digest() + body
        out: bytes = _HEADS.pack(major, minor, wire.MAJOR, wire.MINOR, session, request, 0,
                                 len(body) + 28, 1, hit[0],
                                 (flags & _COPIED) | wire.AT | wire.REC, self.ctx.serial,
                                 recursion, 0, int(time.time()) + KEPT_EXPIRATION,
                                 len(body)) + body + _Z4
        held = self.encodings.get(text) if not flags & wire.RD else None
        if held is not None:   # (its entry: the answer is kept for the shape too; not with
            # RD: the digest covers the request's expiration, which the shape leaves out)
            tally = (text, "native", cached(hit))
            self.coalescer.encode(held[0], Form.HDL, shape(data), lambda: (hit[0], out, tally),
                                  _kept_size)
        return out

    def reply(self, msg: Message, code: int, body: bytes) -> bytes:
        return answer(msg, code, body, serial=self.ctx.serial, signer=self.ctx.signer)

    async def slow(self, msg: Message, conn: Any = None) -> bytes:
        """Any message: resolution through the resolver, site information, or (over TCP,
        ``conn`` given) administration."""
        ctx = self.ctx
        try:
            if msg.op == wire.OC_RESOLUTION:
                return await self._resolve(msg)  # network op
            if msg.op == wire.OC_GET_SITE_INFO:
                return self.reply(msg, wire.RC_SUCCESS, ctx.site)
            if msg.op in _ADMIN_OPS and ctx.admin is not None:
                if conn is None and msg.op not in _ANY_TRANSPORT:  # (UDP is query-only)
                    return self.reply(msg, wire.RC_PROTOCOL_ERROR, string(
                        "Received admin request on non-admin interface: use TCP"))
                return await ctx.admin.handle(msg, conn)  # network op
            return self.reply(msg, wire.RC_OPERATION_NOT_SUPPORTED,
                              string(f"operation {msg.op} is not supported by this server"))
        except IdresError as exc:
            ctx.errors += 1
            return self.reply(msg, exc.response_code, string(exc.message))
        except Exception:   # a defect: answered (the client must not hang), and logged
            ctx.errors += 1
            log.exception("native request (operation %d) failed", msg.op)
            return self.reply(msg, wire.RC_ERROR,
                              string("Server error processing request, see server logs"))

    async def _resolve(self, msg: Message) -> bytes:
        resolver = self.ctx.resolver
        text, indexes, types = parse_resolution(msg.body)
        select = (frozenset(indexes), types) if indexes or types else None
        spelling = text if select is None else (text, indexes, types)
        key = None
        try:
            # a handle without a slash is a prefix: its prefix handle (the Handle.Net
            # server's rule), answered under the handle as asked
            ident = parse(text if "/" in text else "0.NA/" + text)
            key = ident.key
            resolution = await resolver.resolve(ident, via="native")  # network op
            code, body = resolver.encoded(resolution, Form.HDL, text, spelling, select)
        except IdresError as exc:
            rep = resolver.reply_for(text, exc, key)
            code, body = from_reply(rep.code, rep.body)
        return self.reply(msg, code, body)


class NativeTCP(TrackedProtocol):
    def __init__(self, native: Native) -> None:
        super().__init__(native.ctx.connections)
        self.native = native
        self.reader = wire.StreamReader()
        self.backlog: deque[bytes] = deque()   # messages read, not yet handled
        self.lookup = native.lookup
        self.tally = native.usage.tally
        self.fatal: ProtocolError | None = None
        self.inflight = 0
        self.state: dict[str, Any] = {}   # per connection: pending challenges (admin.py)

    def busy(self) -> bool:
        return self.inflight >= MAX_PENDING

    def on_writable(self) -> None:
        self._run()

    def data_received(self, data: bytes) -> None:
        if self.fatal is not None:
            return
        messages, self.fatal = self.reader.feed(data)
        self.backlog.extend(messages)
        self._run()
        self.sync_reading()

    def _run(self) -> None:
        out = []
        ctx = self.native.ctx
        lookup, fast = self.lookup, self.native.fast_raw
        while self.backlog and self.can_work():
            raw = self.backlog.popleft()
            ctx.requests += 1
            kept = lookup(Form.HDL, raw[:4] + raw[12:36] + raw[40:])   # (its shape)
            if kept is not None:
                self.tally(kept[2])
                out.append(kept[1][:4] + raw[4:12] + kept[1][12:])
                continue
            hit = fast(raw)
            if hit is not None:
                out.append(hit)
                continue
            try:
                raw = opened(ctx, raw)
                env = wire.parse_envelope(raw)
                msg = wire.parse_message(env, raw[wire.ENVELOPE_SIZE:])
            except (ProtocolError, SessionError) as exc:
                ctx.errors += 1
                out.append(bare_error(raw, exc.message, exc.response_code))
                continue
            self.inflight += 1
            asyncio.get_running_loop().create_task(self._slow(msg))
        fatal = self.fatal if not self.backlog else None
        if fatal is not None:
            out.append(bare_error(b"", fatal.message))
        if out and self.transport is not None:
            self.transport.write(b"".join(out))
        if fatal is not None and self.transport is not None:
            ctx.errors += 1
            self.transport.close()

    async def _slow(self, msg: Message) -> None:
        data = await self.native.slow(msg, self)  # network op
        self.inflight -= 1
        if self.transport is not None:
            self.transport.write(data)
            self._run()
            self.sync_reading()


def bare_error(raw: bytes, text: str, code: int = wire.RC_PROTOCOL_ERROR) -> bytes:
    """An error answer to a message that could not be read past its envelope (its session
    and request ids, when there is an envelope)."""
    ids = wire.ENVELOPE.unpack_from(raw)[4:6] if len(raw) >= wire.ENVELOPE_SIZE else (0, 0)
    return wire.encode(wire.MAJOR, wire.MINOR, ids[0], ids[1], 0, code, 0, string(text))


def opened(ctx: NativeContext, raw: bytes) -> bytes:
    """``raw``, decrypted when a session encrypted it (sessions.py).

    :raises SessionError: no such session, or it does not decrypt."""
    if not raw[2] & wire.ENV_ENCRYPTED or ctx.admin is None:
        return raw
    sessions: Sessions = getattr(ctx.admin, "sessions")
    return sessions.decrypt(raw)


class NativeUDP(asyncio.DatagramProtocol):
    def __init__(self, native: Native) -> None:
        self.native = native
        self.lookup = native.lookup
        self.tally = native.usage.tally
        self.transport: asyncio.DatagramTransport | None = None
        self.assembler = wire.Assembler()
        self.tasks = 0

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        ctx = self.native.ctx
        ctx.requests += 1
        # the hot path, written out: this request's shape answered before (fast_datagram)
        kept = self.lookup(Form.HDL, data[:4] + data[12:36] + data[40:])
        if kept is not None and self.transport is not None:
            self.tally(kept[2])
            out = kept[1]
            if len(out) <= wire.MAX_UDP_PACKET:
                self.transport.sendto(out[:4] + data[4:12] + out[12:], addr)
            else:
                self._send(out[:4] + data[4:12] + out[12:], addr)
            return
        hit = self.native.fast_raw(data)
        if hit is not None and self.transport is not None:
            if len(hit) <= wire.MAX_UDP_PACKET:
                self.transport.sendto(hit, addr)
            else:
                self._send(hit, addr)
            return
        try:
            env = wire.parse_envelope(data)
            payload = data[wire.ENVELOPE_SIZE:]
            if env[2] & wire.ENV_TRUNCATED:
                whole = self.assembler.add(addr, env, payload, time.monotonic())
                if whole is None:
                    return
                payload = whole
            elif len(payload) != env[6]:
                raise ProtocolError("the datagram's length is not its message's length")
            raw = opened(ctx, data[:wire.ENVELOPE_SIZE] + payload)
            msg = wire.parse_message(wire.parse_envelope(raw), raw[wire.ENVELOPE_SIZE:])
        except (ProtocolError, SessionError) as exc:
            ctx.errors += 1
            if len(data) >= wire.ENVELOPE_SIZE:
                self._send(bare_error(data, exc.message, exc.response_code), addr)
            return
        if self.tasks >= MAX_UDP_TASKS:
            ctx.busy += 1
            self._send(error(msg, wire.RC_SERVER_TOO_BUSY, "server too busy"), addr)
            return
        self.tasks += 1
        asyncio.get_running_loop().create_task(self._slow(msg, addr))

    async def _slow(self, msg: Message, addr: Any) -> None:
        try:
            self._send(await self.native.slow(msg), addr)  # network op
        finally:
            self.tasks -= 1

    def _send(self, message: bytes, addr: Any) -> None:
        if self.transport is None:
            return
        for packet in wire.datagrams(message):
            self.transport.sendto(packet, addr)

    def error_received(self, exc: Exception) -> None:  # (ICMP: the client went away)
        log.debug("UDP error: %s", exc)
