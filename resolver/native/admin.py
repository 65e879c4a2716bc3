"""Administration over the native protocol: create, delete, add, modify and remove
values, each after the protocol's challenge-response (docs/handle-protocol.md).

1. A request (TCP only) is checked, then kept in the database with a fresh nonce
   (``registry/challenges.py``: the Handle.Net client answers on a new connection, which
   another worker may take) and answered 402 with the request's digest and the nonce,
   under a new session id.
2. The client answers (``RESPONSE_TO_CHALLENGE``, that session id): the identity it
   names must be an operator's, proven by a signature (HS_PUBKEY) over ``nonce ‖ digest``.
3. The request then runs as that operator, through the registry's own writes: the same
   ownership rules, templates, audit trail and acknowledgement as the REST API. Its answer
   carries the original operation and the answer's request id.

Error codes are the Handle.Net server's: 405 when the challenge is unknown or older than
20 s, 403 when the proof fails, 400 when the operator may not write there, and the codes
of the write itself (100, 101, 200, 201, 202...).
"""

from __future__ import annotations

import secrets
import time
import uuid
from typing import Any, Protocol

from resolver.core.errors import (
    AuthenticationFailed,
    IdresError,
    InsufficientPermissions,
    ProtocolError,
)
from resolver.core.hauth import NONCE_SIZE
from resolver.core.identifier import parse
from resolver.native import wire
from resolver.native.server import answer
from resolver.native.sessions import Session, Sessions
from resolver.native.values import decode_values
from resolver.native.wire import Message, Reader, int4, string

OC_LOGIN = 2001   # the IDIS SDK's OC_LOGIN_ID_SYSTEM (docs/handle-protocol.md)
WRITES = frozenset({wire.OC_CREATE_HANDLE, wire.OC_DELETE_HANDLE, wire.OC_ADD_VALUE,
                    wire.OC_REMOVE_VALUE, wire.OC_MODIFY_VALUE, wire.OC_LIST_HANDLES})
LIST_CHUNK = 50   # names per message of a LIST_HANDLES answer, as the Handle.Net server sends


class Registry(Protocol):
    """The registry's operations the native protocol needs (resolver/node.py)."""

    async def check(self, op: int, text: str, indexes: frozenset[int],
                    overwrite: bool) -> None: ...
    async def hold(self, nonce: bytes, request: bytes) -> int: ...
    async def take(self, session_id: int) -> tuple[bytes, bytes] | None: ...
    async def prove(self, handle: str, index: int, kind: str, proof: bytes,
                    data: bytes) -> Any: ...
    async def create(self, who: Any, text: str, values: list[dict[str, Any]],
                     overwrite: bool) -> bool: ...
    async def put_values(self, who: Any, text: str, values: list[dict[str, Any]],
                         overwrite: bool, existing: bool) -> None: ...
    async def remove(self, who: Any, text: str, indexes: frozenset[int]) -> None: ...
    async def list(self, who: Any, prefix_handle: str) -> list[str]: ...
    async def delete(self, who: Any, text: str) -> None: ...


def parse_write(msg: Message) -> tuple[str, Any]:
    """(handle, what the operation takes: values or indexes) of a write's body, checked
    before the challenge so that a malformed request fails at once.

    :raises ProtocolError, InvalidValue, InvalidIdentifier:"""
    r = Reader(msg.body)
    text = r.text()
    if msg.op == wire.OC_LIST_HANDLES:   # a prefix handle (0.NA/ added when left out)
        return (text if "/" in text else "0.NA/" + text), None
    parse(text + "X" if msg.flags & wire.MINT and msg.op == wire.OC_CREATE_HANDLE else text)
    if msg.op in (wire.OC_CREATE_HANDLE, wire.OC_ADD_VALUE, wire.OC_MODIFY_VALUE):
        values = decode_values(r, int(time.time()))
        if msg.op != wire.OC_CREATE_HANDLE and not values:
            raise ProtocolError("Value list was empty")
        return text, values
    if msg.op == wire.OC_REMOVE_VALUE:
        return text, frozenset(r.int4() for _ in range(r.count()))
    return text, None


def envelope_and(msg: Message) -> bytes:
    """``msg`` as it arrived (envelope and message), to be read again after the answer."""
    suggested_major, suggested_minor = msg.suggested
    return wire.ENVELOPE.pack(msg.major, msg.minor, suggested_major, suggested_minor,
                              msg.session_id, msg.request_id, 0, len(msg.raw)) + msg.raw


def reread(request: bytes) -> Message:
    return wire.parse_message(wire.parse_envelope(request), request[wire.ENVELOPE_SIZE:])


class Administration:
    def __init__(self, registry: Registry, serial: int = 1,
                 signer: wire.Signer | None = None) -> None:
        self.registry = registry
        self.sessions = Sessions()
        self.serial = serial
        self.signer = signer      # (set by the listener: certified answers, CT)

    def _reply(self, msg: Message, code: int, body: bytes, **kw: Any) -> bytes:
        return answer(msg, code, body, serial=self.serial, signer=self.signer, **kw)

    async def handle(self, msg: Message, conn: Any = None) -> bytes:
        """The answer to a write (a challenge) or to the answer of a challenge; a session
        set up, or a request in one (sessions.py); on a TCP connection (``conn``), also the
        IDIS SDK's login and writes in its session."""
        state = getattr(conn, "state", None)
        try:
            if msg.op == wire.OC_SESSION_SETUP:
                sid, body = self.sessions.setup(msg)
                return self._reply(msg, wire.RC_SUCCESS, body, session_id=sid)
            session = self.sessions.get(msg.session_id) if msg.session_id else None
            if session is not None and (msg.op in WRITES or session.pending is not None
                                        and msg.op == wire.OC_RESPONSE_TO_CHALLENGE):
                return await self._in_session(msg, session)
            if msg.op == OC_LOGIN and state is not None:
                return self._login(msg, state)
            if msg.op in WRITES and state is not None and \
                    msg.session_id in state.get("sessions", {}):
                return await self._run(state["sessions"][msg.session_id], msg, msg)
            if msg.op == wire.OC_RESPONSE_TO_CHALLENGE and state is not None and \
                    state.get("login", (None,))[0] == msg.session_id:
                return await self._logged_in(msg, state)
            if msg.op in WRITES:
                await self._precheck(msg)  # network op
                nonce = secrets.token_bytes(NONCE_SIZE)
                sid = await self.registry.hold(nonce, envelope_and(msg))  # network op
                return self._reply(msg, wire.RC_AUTHENTICATION_NEEDED, string(nonce),
                                   session_id=sid, digest=True)
            if msg.op == wire.OC_RESPONSE_TO_CHALLENGE:
                return await self._answered(msg)  # network op
        except IdresError as exc:
            return self._reply(msg, exc.response_code, string(exc.message))
        return self._reply(msg, wire.RC_OPERATION_NOT_SUPPORTED, string(f"operation {msg.op}"))

    async def _precheck(self, msg: Message) -> None:
        """What needs no identity is answered before any challenge, as the Handle.Net
        server answers it: not served here (301), exists (101), values to modify missing
        (100, 200); a malformed request (4, 102, 202)."""
        text, taken = parse_write(msg)
        if not (msg.flags & wire.MINT and msg.op == wire.OC_CREATE_HANDLE):
            indexes = frozenset(v["index"] for v in taken or ()) \
                if msg.op != wire.OC_REMOVE_VALUE else taken
            await self.registry.check(msg.op, text, indexes,
                                      bool(msg.flags & wire.OVRW))  # network op

    async def _in_session(self, msg: Message, session: Session) -> bytes:
        """A write in a session: run on its MAC once the session is authenticated, else
        challenged under the session's id; or the answer to that challenge, which
        authenticates the session when it proves the identity the session was set up for
        (and the challenged request's MAC is right)."""
        if msg.op in WRITES:
            if session.who is not None:
                self.sessions.check_mac(session, msg)
                return await self._run(session.who, msg, msg)  # network op
            await self._precheck(msg)  # network op
            nonce = secrets.token_bytes(NONCE_SIZE)
            session.pending = (nonce, msg, time.monotonic())
            return self._reply(msg, wire.RC_AUTHENTICATION_NEEDED, string(nonce), digest=True)
        assert session.pending is not None
        nonce, original, when = session.pending
        session.pending = None
        if time.monotonic() - when > 20:
            return self._reply(msg, wire.RC_AUTHEN_TIMEOUT, string("the challenge is older "
                                                                    "than 20 s: ask again"))
        r = Reader(msg.body)
        kind, handle, index, proof = r.text(), r.text(), r.int4(), r.bytes()
        try:
            who = await self.registry.prove(handle, index, kind, proof,
                                            nonce + original.digest()[1:])  # network op
        except AuthenticationFailed as exc:
            return self._reply(original, wire.RC_AUTHENTICATION_FAILED, string(exc.message),
                               request_id=msg.request_id)
        if (handle, index) == session.identity:
            self.sessions.check_mac(session, original)
            session.who = who
        return await self._run(who, original, msg)  # network op

    async def _answered(self, msg: Message) -> bytes:
        held = await self.registry.take(msg.session_id)  # network op
        if held is None:
            return self._reply(msg, wire.RC_AUTHEN_TIMEOUT, string(
                "no challenge is waiting under this session id (unknown, answered, or older "
                "than 20 s): ask again"))
        nonce, request = held
        original = reread(request)
        r = Reader(msg.body)
        kind, handle, index, proof = r.text(), r.text(), r.int4(), r.bytes()
        digest = original.digest()[1:]
        try:
            who = await self.registry.prove(handle, index, kind, proof,
                                            nonce + digest)  # network op
        except AuthenticationFailed as exc:
            code = wire.RC_INVALID_CREDENTIAL if kind not in ("HS_PUBKEY", "HS_SECKEY") \
                else wire.RC_AUTHENTICATION_FAILED
            return self._reply(original, code, string(exc.message), request_id=msg.request_id)
        return await self._run(who, original, msg)

    async def _run(self, who: Any, original: Message, msg: Message) -> bytes:
        """``original`` done as ``who``, answered with ``msg``'s ids."""
        if original.op == wire.OC_LIST_HANDLES:
            try:
                names = await self.registry.list(who, parse_write(original)[0])  # network op
            except InsufficientPermissions as exc:
                return self._reply(original, wire.RC_INVALID_ADMIN, string(exc.message),
                                   request_id=msg.request_id)
            chunks = [names[i:i + LIST_CHUNK] for i in range(0, len(names), LIST_CHUNK)] or [[]]
            return b"".join(self._reply(
                original, wire.RC_SUCCESS, int4(len(c)) + b"".join(string(n) for n in c),
                request_id=msg.request_id, also=wire.CN if i < len(chunks) - 1 else 0)
                for i, c in enumerate(chunks))
        also = 0
        try:
            code, body, also = await self._write(who, original)  # network op
        except InsufficientPermissions as exc:
            code, body = wire.RC_INVALID_ADMIN, string(exc.message)
        except IdresError as exc:
            code, body = exc.response_code, string(exc.message)
        return self._reply(original, code, body, request_id=msg.request_id, also=also)

    def _login(self, msg: Message, state: dict[str, Any]) -> bytes:
        """The IDIS SDK's login on a pooled connection (opcode 2001, the identity in the
        body): challenged under the client's own session id, on this connection."""
        r = Reader(msg.body)
        r.text(), r.int4()
        nonce = secrets.token_bytes(NONCE_SIZE)
        state["login"] = (msg.session_id, nonce, msg, time.monotonic())
        return self._reply(msg, wire.RC_AUTHENTICATION_NEEDED, string(nonce), digest=True)

    async def _logged_in(self, msg: Message, state: dict[str, Any]) -> bytes:
        sid, nonce, login, started = state.pop("login")
        if time.monotonic() - started > 20:
            return self._reply(msg, wire.RC_AUTHEN_TIMEOUT, string("the login took over 20 s"))
        r = Reader(msg.body)
        kind, handle, index, proof = r.text(), r.text(), r.int4(), r.bytes()
        try:
            who = await self.registry.prove(handle, index, kind, proof,
                                            nonce + login.digest()[1:])  # network op
        except AuthenticationFailed as exc:
            return self._reply(msg, wire.RC_AUTHENTICATION_FAILED, string(exc.message))
        sessions = state.setdefault("sessions", {})
        if len(sessions) < 64:   # (a connection's sessions: bounded)
            sessions[sid] = who
        return self._reply(login, wire.RC_SUCCESS, b"", request_id=msg.request_id)

    async def _write(self, who: Any, msg: Message) -> tuple[int, bytes, int]:
        """(response code, body, flags the answer adds) of a write done as ``who``."""
        text, taken = parse_write(msg)
        reg = self.registry
        overwrite = bool(msg.flags & wire.OVRW)
        if msg.op == wire.OC_CREATE_HANDLE:
            if msg.flags & wire.MINT:   # a suffix of the server's choosing, as REST mints one
                text += str(uuid.uuid4()).upper()
            created = await reg.create(who, text, taken, overwrite)  # network op
            return wire.RC_SUCCESS, string(text), 0 if created else wire.OVRW
        if msg.op == wire.OC_DELETE_HANDLE:
            await reg.delete(who, text)  # network op
        elif msg.op == wire.OC_REMOVE_VALUE:
            await reg.remove(who, text, taken)  # network op
        else:
            await reg.put_values(who, text, taken, msg.op == wire.OC_MODIFY_VALUE or overwrite,
                                 existing=msg.op == wire.OC_MODIFY_VALUE)  # network op
        return wire.RC_SUCCESS, b"", 0
