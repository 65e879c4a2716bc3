"""Handle protocol messages (RFC 3652 §2), sans-I/O: envelope, header, body, credential.

A message is a 20-byte envelope, then ``messageLength`` bytes: a 24-byte header, the body
(``bodyLength`` bytes) and the credential (an int4 length, 0 when unsigned). Every integer
is big-endian; a string is an int4 byte length and UTF-8 bytes. Over TCP messages follow
each other on the stream; over UDP a message larger than one packet is cut into several,
each with its own envelope (the ``truncated`` flag set, ``messageId`` the packet's number,
``messageLength`` the whole message's length) and put together again by the receiver.

This module turns bytes into :class:`Message` objects and back, and nothing else: no
asyncio, no storage. Limits are the Handle.Net server's (handle-facts §1.1, §1.4).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from resolver.core.errors import ProtocolError

ENVELOPE = struct.Struct(">BBBBIIII")     # major, minor, flags, suggested minor, session,
HEADER = struct.Struct(">iiIHBBii")       # request, message id, message length / opCode,
ENVELOPE_SIZE = ENVELOPE.size             # responseCode, opFlags, siteInfoSerial,
HEADER_SIZE = HEADER.size                 # recursionCount, reserved, expiration, bodyLength
MAX_MESSAGE = 262144                      # Common.MAX_MESSAGE_LENGTH
MAX_UDP_PACKET = 512                      # Common.MAX_UDP_PACKET_SIZE, envelope included
MAX_UDP_DATA = MAX_UDP_PACKET - ENVELOPE_SIZE
MAX_ARRAY = 1 << 20

MAJOR, MINOR = 2, 11                      # Handle.Net 9.x (Common.MAJOR/MINOR_VERSION)
COMPAT_MINOR = 1                          # the oldest 2.x message this server reads

# envelope flags
ENV_COMPRESSED = 0x80
ENV_ENCRYPTED = 0x40
ENV_TRUNCATED = 0x20

# header opFlags
AT = 0x80000000    # authoritative
CT = 0x40000000    # certify: the server signs the response
ENC = 0x20000000   # encrypt the response (sessions)
REC = 0x10000000   # recursive
CA = 0x08000000    # cache certify
CN = 0x04000000    # continuous: more parts follow
KA = 0x02000000    # keep-alive
PO = 0x01000000    # public only
RD = 0x00800000    # return the request's digest in the response
OVRW = 0x00400000  # overwrite (create)
MINT = 0x00200000  # mint a new suffix (create)
DNRF = 0x00100000  # do not refer

# opCodes
OC_RESOLUTION = 1
OC_GET_SITE_INFO = 2
OC_CREATE_HANDLE = 100
OC_DELETE_HANDLE = 101
OC_ADD_VALUE = 102
OC_REMOVE_VALUE = 103
OC_MODIFY_VALUE = 104
OC_LIST_HANDLES = 105
OC_RESPONSE_TO_CHALLENGE = 200
OC_VERIFY_CHALLENGE = 201
OC_SESSION_SETUP = 400
OC_SESSION_TERMINATE = 401

# responseCodes
RC_SUCCESS = 1
RC_ERROR = 2
RC_SERVER_TOO_BUSY = 3
RC_PROTOCOL_ERROR = 4
RC_OPERATION_NOT_SUPPORTED = 5
RC_HANDLE_NOT_FOUND = 100
RC_HANDLE_ALREADY_EXISTS = 101
RC_INVALID_HANDLE = 102
RC_VALUES_NOT_FOUND = 200
RC_VALUE_ALREADY_EXISTS = 201
RC_INVALID_VALUE = 202
RC_SERVER_NOT_RESP = 301
RC_PREFIX_REFERRAL = 303
RC_INVALID_ADMIN = 400
RC_INSUFFICIENT_PERMISSIONS = 401
RC_AUTHENTICATION_NEEDED = 402
RC_AUTHENTICATION_FAILED = 403
RC_INVALID_CREDENTIAL = 404
RC_AUTHEN_TIMEOUT = 405
RC_AUTHEN_ERROR = 406
RC_SESSION_TIMEOUT = 500
RC_SESSION_FAILED = 501

# hash codes of a request digest (RD) and of a challenge's digest
HASH_MD5, HASH_SHA1, HASH_SHA256 = 1, 2, 3
HASH_SIZES = {HASH_MD5: 16, HASH_SHA1: 20, HASH_SHA256: 32}


@dataclass(slots=True)
class Message:
    """One decoded message. ``body`` is the raw body; ``credential`` the raw credential,
    empty when unsigned; ``raw`` the header, body and credential as read; ``suggested``
    the highest version the sender speaks, (major, minor)."""

    major: int
    minor: int
    suggested: tuple[int, int]
    session_id: int
    request_id: int
    op: int
    code: int
    flags: int
    serial: int
    recursion: int
    expiration: int
    body: bytes
    credential: bytes = b""
    raw: bytes = field(default=b"", repr=False)   # header + body + credential, as read

    def digest_input(self) -> bytes:
        """What a request digest covers: the header and the body as sent."""
        return self.raw[:HEADER_SIZE + len(self.body)]

    def answer_version(self) -> tuple[int, int]:
        """The version of the response: the highest both sides speak."""
        return min(self.suggested, (MAJOR, MINOR))

    def digest(self) -> bytes:
        """The request digest as a response carries it (RD, challenges): a hash code byte
        and the raw digest, SHA-256 from version 2.7 on, else SHA-1."""
        if self.answer_version() >= (2, 7):
            return bytes([HASH_SHA256]) + hashlib.sha256(self.digest_input()).digest()
        return bytes([HASH_SHA1]) + hashlib.sha1(self.digest_input()).digest()


class Reader:
    """A cursor over a body: every read checks that the bytes are there.

    :raises ProtocolError: a read past the end, or a length over the limits."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos

    def int4(self) -> int:
        end = self.pos + 4
        if end > len(self.data):
            raise ProtocolError("the message ends inside an integer")
        value = int.from_bytes(self.data[self.pos:end], "big", signed=True)
        self.pos = end
        return value

    def int2(self) -> int:
        end = self.pos + 2
        if end > len(self.data):
            raise ProtocolError("the message ends inside an integer")
        value = int.from_bytes(self.data[self.pos:end], "big")
        self.pos = end
        return value

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise ProtocolError("the message ends early")
        self.pos += 1
        return self.data[self.pos - 1]

    def raw(self, size: int) -> bytes:
        end = self.pos + size
        if size < 0 or end > len(self.data):
            raise ProtocolError("the message ends inside a field")
        out = self.data[self.pos:end]
        self.pos = end
        return out

    def bytes(self) -> bytes:
        """An int4 length and that many bytes."""
        return self.raw(self.int4())

    def text(self) -> str:
        raw = self.bytes()
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError("a string of the message is not UTF-8") from None

    def count(self) -> int:
        n = self.int4()
        if not 0 <= n <= MAX_ARRAY or n > len(self.data) - self.pos:
            raise ProtocolError(f"an array of {n} entries does not fit the message")
        return n

    def done(self) -> bool:
        return self.pos >= len(self.data)


def int4(n: int) -> bytes:
    return n.to_bytes(4, "big", signed=n < 0)


def string(data: bytes | str) -> bytes:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return len(raw).to_bytes(4, "big") + raw


def parse_envelope(data: bytes) -> tuple[int, int, int, int, int, int, int, int]:
    """(major, minor, flags, session id, request id, message id, message length,
    suggested minor); the suggested major is in the flags' low two bits."""
    if len(data) < ENVELOPE_SIZE:
        raise ProtocolError("a message starts with a 20-byte envelope")
    major, minor, flags, suggested, session, request, msg_id, length = \
        ENVELOPE.unpack_from(data)
    if length > MAX_MESSAGE:
        raise ProtocolError(f"a message of {length} bytes is over the limit of {MAX_MESSAGE}")
    return major, minor, flags, session, request, msg_id, length, suggested


def parse_message(envelope: tuple[int, ...], payload: bytes) -> Message:
    """A message from its envelope fields and its ``messageLength`` bytes.

    :raises ProtocolError: an unknown major version, compressed or encrypted messages
        (sessions are not offered), lengths that disagree."""
    major, minor, flags, session, request = envelope[:5]
    if major != MAJOR:
        raise ProtocolError(f"protocol version {major}.{minor} is not spoken here (2.x)")
    if flags & (ENV_COMPRESSED | ENV_ENCRYPTED):
        raise ProtocolError("compressed or encrypted messages need a session, not offered")
    if len(payload) < HEADER_SIZE:
        raise ProtocolError("Invalid message length: a message holds a 24-byte header")
    op, code, op_flags, serial, recursion, _r, expiration, body_len = HEADER.unpack_from(payload)
    end = HEADER_SIZE + body_len
    if body_len < 0 or end > len(payload):
        raise ProtocolError(f"a body of {body_len} bytes does not fit a message of "
                            f"{len(payload)} bytes")
    credential = b""
    if end + 4 <= len(payload):   # (the IDIS SDK's login is sent without a credential)
        cred_len = int.from_bytes(payload[end:end + 4], "big", signed=True)
        if cred_len < 0 or end + 4 + cred_len > len(payload):
            raise ProtocolError("the credential's length does not fit the message")
        credential = payload[end + 4:end + 4 + cred_len]
    suggested = (flags & 3, envelope[7]) if flags & 3 else (major, minor)
    return Message(major, minor, suggested, session, request, op, code, op_flags, serial,
                   recursion, expiration, payload[HEADER_SIZE:end], credential, payload)


Signer = Callable[[bytes], tuple[str, bytes]]   # data -> (digest algorithm, signature)


def encode(major: int, minor: int, session: int, request: int, op: int, code: int, flags: int,
           body: bytes, *, expiration: int = 0, serial: int = 0, recursion: int = 0,
           signer: Signer | None = None) -> bytes:
    """One message (envelope included), for TCP: header, body, credential; it suggests
    this server's version (2.11). With ``signer``, the credential is its signature of
    what the Handle.Net client checks (:func:`signed_data`)."""
    header_body = HEADER.pack(op, code, flags, serial, recursion, 0, expiration,
                              len(body)) + body
    credential = b""
    if signer is not None:
        alg, signature = signer(signed_data(major, minor, session, request, header_body))
        section = string(alg) + string(signature)
        credential = bytes(12) + string("HS_SIGNED") + int4(len(section)) + section
    length = len(header_body) + 4 + len(credential)
    return b"".join((ENVELOPE.pack(major, minor, MAJOR, MINOR, session, request, 0, length),
                     header_body, len(credential).to_bytes(4, "big"), credential))


def signed_data(major: int, minor: int, session: int, request: int, header_body: bytes,
                counter: int = 0) -> bytes:
    """What a certified message's signature covers: from 2.7 on, the version (and from
    2.8 the suggested version), the session and request ids and the session counter (0
    outside a session), then the header and body; before, the header and body alone."""
    if (major, minor) < (2, 7):
        return header_body
    version = bytes([major, minor, MAJOR, MINOR]) if (major, minor) >= (2, 8) \
        else bytes([major, minor])
    return version + struct.pack(">III", session, request, counter) + header_body


def datagrams(message: bytes) -> list[bytes]:
    """A message as UDP packets: itself if it fits one, else cut in pieces of at most
    ``MAX_UDP_DATA`` bytes after the envelope, each with the envelope copied, the
    ``truncated`` flag set and its number as ``messageId``."""
    if len(message) <= MAX_UDP_PACKET:
        return [message]
    env = bytearray(message[:ENVELOPE_SIZE])
    env[2] |= ENV_TRUNCATED
    payload = message[ENVELOPE_SIZE:]
    out = []
    for n, start in enumerate(range(0, len(payload), MAX_UDP_DATA)):
        env[12:16] = n.to_bytes(4, "big")
        out.append(bytes(env) + payload[start:start + MAX_UDP_DATA])
    return out


class StreamReader:
    """Splits a TCP byte stream into messages (envelope included, as read). A message that
    declares a length over the limit is a fatal error: nothing after it can be trusted."""

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> tuple[list[bytes], ProtocolError | None]:
        buf = self._buf + data if self._buf else data
        out: list[bytes] = []
        pos, end = 0, len(buf)
        while end - pos >= ENVELOPE_SIZE:
            length = int.from_bytes(buf[pos + 16:pos + 20], "big")
            if length > MAX_MESSAGE:
                self._buf = b""
                return out, ProtocolError(f"a message of {length} bytes is over the limit "
                                          f"of {MAX_MESSAGE}")
            stop = pos + ENVELOPE_SIZE + length
            if stop > end:
                break
            out.append(buf[pos:stop])
            pos = stop
        self._buf = buf[pos:] if pos < end else b""
        return out, None

    @property
    def pending(self) -> int:
        return len(self._buf)


class Assembler:
    """Puts multi-packet UDP requests together, per (address, request id), bounded: at
    most ``limit`` requests in assembly, each dropped ``timeout`` seconds after its first
    packet (the client then asks again)."""

    def __init__(self, limit: int = 1024, timeout: float = 10.0) -> None:
        self.limit = limit
        self.timeout = timeout
        self._parts: dict[tuple[object, int], tuple[float, int, dict[int, bytes]]] = {}

    def add(self, addr: object, env: tuple[int, ...], piece: bytes, now: float) -> bytes | None:
        """The whole payload once every piece is in, else None."""
        key = (addr, env[4])
        length, msg_id = env[6], env[5]
        if msg_id < 0 or msg_id * MAX_UDP_DATA >= length or len(piece) > MAX_UDP_DATA:
            raise ProtocolError("a UDP piece that does not fit its message")
        got = self._parts.get(key)
        if got is None or got[1] != length:
            self._expire(now)
            if len(self._parts) >= self.limit:
                raise ProtocolError("too many multi-packet requests in assembly")
            got = (now, length, {})
            self._parts[key] = got
        got[2][msg_id] = piece
        if sum(len(p) for p in got[2].values()) < length:
            return None
        del self._parts[key]
        whole = b"".join(got[2][i] for i in sorted(got[2]))
        if len(whole) != length:
            raise ProtocolError("the pieces of a UDP message do not add up to its length")
        return whole

    def _expire(self, now: float) -> None:
        for key in [k for k, v in self._parts.items() if now - v[0] > self.timeout]:
            del self._parts[key]

    def __len__(self) -> int:
        return len(self._parts)
