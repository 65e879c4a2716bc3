"""Handle protocol sessions (SESSION_SETUP, opcode 400), as the Handle.Net 9 client sets
one up before every administrative request and will not write without one.

Key exchange mode 4 (Diffie-Hellman; the only one a 9.x client completes): the client
sends its DH public key (``DH_PUB_KEY``: y, p, g), the server answers with its own under
the same group, signed with the server's key, and both take the session key K from the
shared secret (its first 32 bytes after leading zero bytes). Within the session a request
carries an ``HS_MAC`` credential: HMAC-SHA256 under K of the version bytes, the session
and request ids, a counter, then the header and body. The first write of a session is
challenged as any other; once the answer proves the identity the session was set up for,
the session is authenticated and its later writes need only a valid MAC (a counter seen
before is refused: replay). Requests the client encrypts (envelope flag 0x40: AES-128-CBC
under K[:16], the IV first) are decrypted here.

Sessions live in the process (bounded; an idle one ends after its timeout): with
``--workers`` above 1, a client whose session setup and writes reach different workers
is told "session timed out" (500) and sets up another.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from resolver.core import hsdata
from resolver.core.errors import IdresError
from resolver.native import wire
from resolver.native.wire import Message, Reader, int4, string

MAX_SESSIONS = 10_000
AES = 3                          # the session cipher's code (Handle.Net encryption_alg "aes")


class SessionError(IdresError):
    """A session request that cannot be served; ``code`` is the Handle response code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.response_code = code


@dataclass
class Session:
    sid: int
    key: bytes                   # K, 32 bytes: the MAC key; K[:16] the AES key
    identity: tuple[str, int]    # who the client set the session up for
    timeout: float
    used: float
    who: Any = None              # the operator, once the identity is proven
    pending: tuple[bytes, Message, float] | None = None   # (nonce, request, when)
    seen: set[int] = field(default_factory=set)
    floor: int = 0


def _dh_key(y: int, p: int, g: int) -> bytes:
    return hsdata.blob("DH_PUB_KEY") + bytes(2) + b"".join(
        hsdata.blob(n.to_bytes(n.bit_length() // 8 + 1, "big")) for n in (y, p, g))


def session_key(shared: int, p: int) -> bytes:
    """K from the DH shared secret: written at the length of p, leading zero bytes
    skipped while more than 32 would remain, then 32 bytes."""
    raw = shared.to_bytes((p.bit_length() + 7) // 8, "big")
    i = 0
    while i + 32 < len(raw) and raw[i] == 0:
        i += 1
    return raw[i:i + 32]


def mac(key: bytes, msg: Message, counter: int) -> bytes:
    data = wire.signed_data(msg.major, msg.minor, msg.session_id, msg.request_id,
                            msg.raw[:wire.HEADER_SIZE + len(msg.body)], counter)
    return hmac.new(key, data, hashlib.sha256).digest()


class Sessions:
    def __init__(self) -> None:
        self.live: dict[int, Session] = {}

    def get(self, sid: int) -> Session | None:
        s = self.live.get(sid)
        now = time.monotonic()
        if s is None or now - s.used > s.timeout:
            self.live.pop(sid, None)
            return None
        s.used = now
        return s

    def setup(self, msg: Message) -> tuple[int, bytes]:
        """(new session id, reply body) for a SESSION_SETUP.

        :raises SessionError: 501 for another mode or a malformed key."""
        r = Reader(msg.body)
        mode, timeout = r.int2(), r.int4()
        handle, index = r.text(), r.int4()
        if mode != 4:
            raise SessionError(wire.RC_SESSION_FAILED, "Unrecognized key exchange mode: "
                               "only Diffie-Hellman (4) is offered")
        try:
            c = hsdata.Cursor(r.bytes())
            if c.text() != "DH_PUB_KEY":
                raise ValueError("not a DH key")
            c.num(2)
            y, p, g = (int.from_bytes(c.blob(), "big") for _ in range(3))
        except (ValueError, UnicodeDecodeError):
            raise SessionError(wire.RC_SESSION_FAILED, "Error encoding public session key") \
                from None
        if not 512 <= p.bit_length() <= 8192 or not 2 <= y <= p - 2 or not 1 < g < p:
            raise SessionError(wire.RC_SESSION_FAILED, "Error encoding public session key")
        x = secrets.randbelow(p - 3) + 2
        key = session_key(pow(y, x, p), p)
        self._expire()
        sid = secrets.randbelow(2**31 - 1) + 1
        while sid in self.live:
            sid = secrets.randbelow(2**31 - 1) + 1
        now = time.monotonic()
        self.live[sid] = Session(sid, key, (handle, index), timeout if timeout > 0 else 86400,
                                 now)
        body = (4).to_bytes(2, "big") + string(int4(AES) + _dh_key(pow(g, x, p), p, g)) + bytes(2)
        return sid, body

    def check_mac(self, s: Session, msg: Message) -> None:
        """:raises SessionError: no MAC (404), a wrong one (502), a counter seen (505)."""
        if not msg.credential:
            raise SessionError(wire.RC_INVALID_CREDENTIAL, "Session request missing MAC code.")
        c = hsdata.Cursor(msg.credential)
        try:
            c.take(4)
            c.blob()
            counter = c.num()
            kind, _section, alg, sent = c.text(), c.num(), c.text(), c.blob()
        except (ValueError, UnicodeDecodeError):
            raise SessionError(502, "Session authentication failed.") from None
        if kind != "HS_MAC" or alg.upper() != "HMAC-SHA256" or \
                not hmac.compare_digest(sent, mac(s.key, msg, counter)):
            raise SessionError(502, "Session authentication failed.")
        if counter:
            if counter <= s.floor or counter in s.seen:
                raise SessionError(505, f"Duplicate session counter {counter} in session {s.sid}")
            s.seen.add(counter)
            if len(s.seen) >= 200:
                s.floor = min(s.seen)
                s.seen.discard(s.floor)

    def decrypt(self, raw: bytes) -> bytes:
        """The plaintext message of an encrypted one (envelope flag 0x40).

        :raises SessionError: no such session (500), or it does not decrypt (501)."""
        env = wire.ENVELOPE.unpack_from(raw)
        s = self.get(env[4]) if env[4] else None
        if s is None:
            raise SessionError(500, "Session information not available or time out. "
                               "Unable to decrypt request message.")
        try:
            body = raw[wire.ENVELOPE_SIZE:]
            d = Cipher(algorithms.AES(s.key[:16]), modes.CBC(body[:16])).decryptor()
            u = padding.PKCS7(128).unpadder()
            plain = u.update(d.update(body[16:]) + d.finalize()) + u.finalize()
        except ValueError:
            raise SessionError(wire.RC_SESSION_FAILED, "Exception decrypting request with "
                               "session key") from None
        head = bytearray(raw[:wire.ENVELOPE_SIZE])
        head[2] &= ~wire.ENV_ENCRYPTED & 0xff
        head[16:20] = len(plain).to_bytes(4, "big")
        return bytes(head) + plain

    def _expire(self) -> None:
        if len(self.live) >= MAX_SESSIONS:
            now = time.monotonic()
            for sid in [k for k, s in self.live.items() if now - s.used > s.timeout]:
                del self.live[sid]
            while len(self.live) >= MAX_SESSIONS:   # the least recently used
                del self.live[min(self.live, key=lambda k: self.live[k].used)]
