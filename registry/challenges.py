"""Handle challenge-response for operators (docs/handle-protocol.md): who holds an
identity ``INDEX:HANDLE``, native challenges waiting for their answer, and HTTP sessions
(``POST /api/sessions``, ``Authorization: Handle``).

An operator proves its identity with a value of its identity handle: an ``HS_PUBKEY``
(a signature, checked against the public key) or its ``HS_SECKEY`` (a MAC keyed by the
secret, which needs the secret itself: idres keeps only a hash of operators' secrets, so
this answers "use a public key" for them, see :func:`prove`). An operator adds public keys
with :func:`add_public_key` (``idres operator key``, ``POST /api/operators/{name}/keys``).

HTTP challenges are stateless: the session id carries its nonce, its expiry and an HMAC
of both under the node's key, so a 401 writes nothing; a session is stored (by the hash
of its id) only once a client has proved an identity.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
import time
from typing import Any

import asyncpg
from cryptography.hazmat.primitives.asymmetric import dsa, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from registry import secrets as secrets_
from registry.accounts import parse_identity
from registry.permissions import Principal, unreadable_hidden
from registry.store import Db, audit, write_transaction
from registry.store import identity as identities
from resolver.core import codec, hauth, hsdata
from resolver.core.errors import AuthenticationFailed, BadRequest, InsufficientPermissions
from resolver.core.record import HandleValue

CHALLENGE_SECONDS = 20       # the Handle.Net server's max_auth_time
SESSION_SECONDS = 3600       # an authenticated HTTP session, from its last proof
PUBKEY_PERMISSIONS = "1110"  # public keys are public: anyone may check a signature

OPERATOR_BY_HANDLE = """
    SELECT o.id, o.name, o.identity, o.is_admin, o.disabled_at, h."values"
    FROM operators o JOIN handles h ON h.handle = $1
    WHERE substr(o.identity, strpos(o.identity, ':') + 1) = $1"""


async def prove(pool: asyncpg.Pool, handle: str, index: int, kind: str, answer: bytes,
                data: bytes, seal_key: bytes = b"") -> Principal:
    """The operator whose identity handle is ``handle``, if ``answer`` proves that the
    client holds the value at ``index`` (0: any value of the kind) over ``data``.
    ``kind`` is HS_PUBKEY (``answer``: the algorithm name and the signature, as the native
    protocol encodes them) or HS_SECKEY (a MAC: code byte and what follows).

    :raises AuthenticationFailed: no such operator, a disabled one, or no proof."""
    _, key = parse_identity(f"{index or 1}:{handle}")
    row = await pool.fetchrow(OPERATOR_BY_HANDLE, key)  # network op
    if row is None:
        raise AuthenticationFailed(f"{index}:{handle} is not the identity of an operator here")
    if row["disabled_at"] is not None:
        raise AuthenticationFailed(f"operator {row['name']} is disabled")
    values = [v for v in row["values"] if v["type"] == kind and index in (0, v["index"])]
    if kind == "HS_PUBKEY":
        c = hsdata.Cursor(answer)
        try:
            alg, signature = c.text(), c.blob()
        except (ValueError, UnicodeDecodeError):
            raise AuthenticationFailed("the answer to the challenge is not a signature") from None
        if any(hauth.verify_signature(hauth.public_key(v["data"]), alg, signature, data)
               for v in sorted(values, key=lambda v: v["index"])):
            return Principal(row["id"], row["name"], row["identity"], row["is_admin"])
    elif kind == "HS_SECKEY":
        opened = [(v["index"], secrets_.unseal(v["data"]["value"], seal_key,
                                             f"{v['index']}:{key}"))
                  for v in values if isinstance(v["data"]["value"], str)]
        if any(k is not None and hauth.verify_mac(k, answer, data) for _, k in opened):
            return Principal(row["id"], row["name"], row["identity"], row["is_admin"])
        if values and all(k is None for _, k in opened):
            raise AuthenticationFailed(
                f"{index}:{handle} keeps only a hash of its secret, which a challenge cannot "
                "be checked against: reset the secret on the node (idres operator "
                "reset-secret) to keep it sealed, or prove the identity with a public key "
                "(idres operator key)")
    else:
        raise AuthenticationFailed(f"unknown authentication type {kind!r}")
    raise AuthenticationFailed(f"the answer does not prove identity {index}:{handle}")


# --- native challenges: held in the database until answered ------------------------------


async def hold(pool: asyncpg.Pool, nonce: bytes, request: bytes) -> int:
    """Keep ``request`` (a whole message) until its challenge is answered; returns the
    challenge's session id (positive, 31 bits, unused)."""
    while True:
        sid = secrets.randbelow(2**31 - 1) + 1
        done = await pool.fetchval(  # network op
            """WITH gone AS (DELETE FROM native_challenges WHERE expires_at < now())
               INSERT INTO native_challenges (session_id, nonce, request, expires_at)
               VALUES ($1, $2, $3, now() + make_interval(secs => $4))
               ON CONFLICT DO NOTHING RETURNING true""", sid, nonce, request, CHALLENGE_SECONDS)
        if done:
            return sid


async def take(pool: asyncpg.Pool, session_id: int) -> tuple[bytes, bytes] | None:
    """(nonce, request) of the challenge ``session_id``, once: None when there is none or
    it has expired."""
    row = await pool.fetchrow(  # network op
        "DELETE FROM native_challenges WHERE session_id = $1 RETURNING nonce, request, "
        "expires_at > now() AS fresh", session_id)
    if row is None or not row["fresh"]:
        return None
    return bytes(row["nonce"]), bytes(row["request"])


# --- HTTP sessions ----------------------------------------------------------------------


def new_session(key: bytes, now: float | None = None) -> tuple[str, str]:
    """(session id, nonce) of a challenge: the id holds the nonce, its expiry and their
    HMAC under ``key``, so checking it needs no storage."""
    nonce = secrets.token_bytes(hauth.NONCE_SIZE)
    expiry = struct.pack(">Q", int((time.time() if now is None else now) + SESSION_SECONDS))
    mac = hmac.new(key, nonce + expiry, hashlib.sha256).digest()[:16]
    sid = base64.urlsafe_b64encode(nonce + expiry + mac).rstrip(b"=").decode()
    return sid, base64.b64encode(nonce).decode()


def session_nonce(key: bytes, sid: str) -> bytes | None:
    """The nonce of a session id this node made and that has not expired, else None."""
    try:
        raw = base64.urlsafe_b64decode(sid + "=" * (-len(sid) % 4))
    except ValueError:
        return None
    if len(raw) != 40:
        return None
    nonce, expiry, mac = raw[:16], raw[16:24], raw[24:]
    if not hmac.compare_digest(mac, hmac.new(key, nonce + expiry, hashlib.sha256).digest()[:16]):
        return None
    return nonce if struct.unpack(">Q", expiry)[0] > time.time() else None


def _hash(sid: str) -> bytes:
    return hashlib.sha256(sid.encode()).digest()


async def open_session(pool: asyncpg.Pool, sid: str, who: Principal, identity: str) -> None:
    await pool.execute(  # network op
        """WITH gone AS (DELETE FROM http_sessions WHERE expires_at < now())
           INSERT INTO http_sessions (id_hash, operator_id, identity, expires_at)
           VALUES ($1, $2, $3, now() + make_interval(secs => $4))
           ON CONFLICT (id_hash) DO UPDATE SET expires_at = excluded.expires_at""",
        _hash(sid), who.operator_id, identity, SESSION_SECONDS)


async def session_principal(pool: asyncpg.Pool, sid: str) -> Principal | None:
    """The operator of an authenticated session, None when there is none (or it expired,
    or its operator is disabled)."""
    row = await pool.fetchrow(  # network op
        """SELECT o.id, o.name, o.identity, o.is_admin FROM http_sessions s
           JOIN operators o ON o.id = s.operator_id
           WHERE s.id_hash = $1 AND s.expires_at > now() AND o.disabled_at IS NULL""",
        _hash(sid))
    return None if row is None else Principal(row["id"], row["name"], row["identity"],
                                              row["is_admin"])


async def close_session(pool: asyncpg.Pool, sid: str) -> bool:
    return bool(await pool.fetchval(  # network op
        "DELETE FROM http_sessions WHERE id_hash = $1 RETURNING true", _hash(sid)))


# --- public keys of operators -----------------------------------------------------------


def key_value(index: int, public_key: Any) -> dict[str, Any]:
    """An HS_PUBKEY value from a PEM public key (RSA or DSA) or a JWK.

    :raises BadRequest: neither, or another kind of key."""
    jwk = public_key
    if isinstance(public_key, str):
        try:
            key = load_pem_public_key(public_key.encode())
        except ValueError:
            raise BadRequest("publicKey must be a PEM public key (RSA or DSA) or a JWK") from None
        b = hsdata.b64u
        if isinstance(key, rsa.RSAPublicKey):
            n = key.public_numbers()
            jwk = {"kty": "RSA", "n": b(n.n), "e": b(n.e)}
        elif isinstance(key, dsa.DSAPublicKey):
            d = key.public_numbers()
            p = d.parameter_numbers
            jwk = {"kty": "DSA", "p": b(p.p), "q": b(p.q), "g": b(p.g), "y": b(d.y)}
        else:
            raise BadRequest("Handle clients sign with RSA or DSA keys; this is another kind")
    if not isinstance(jwk, dict) or hauth.public_key({"format": "key", "value": jwk}) is None:
        raise BadRequest("publicKey must be a PEM public key (RSA or DSA) or its JWK")
    value = HandleValue(index, "HS_PUBKEY", "key", jwk, timestamp=int(time.time()),
                        permissions=PUBKEY_PERMISSIONS)
    return codec.to_stored(value)


async def add_public_key(db: Db, actor: Principal, owner: Principal, index: int,
                         public_key: Any) -> str:
    """Put an HS_PUBKEY value at ``index`` of ``owner``'s identity handle (``actor`` is
    ``owner`` or an administrator); returns the identity it proves, ``INDEX:HANDLE``.

    :raises InsufficientPermissions, BadRequest: the index of the secret, or not a key."""
    if not (actor.is_admin or actor.operator_id == owner.operator_id):
        raise InsufficientPermissions(
            f"operator {actor.name!r} may not add keys to the identity of {owner.name!r}")
    secret_index, handle = parse_identity(owner.identity)
    if index in (secret_index, 100) or not 0 < index < 2**31:
        raise BadRequest(f"index {index} is taken by the identity's secret or its HS_ADMIN; "
                         "use another (e.g. 301)")
    value = key_value(index, public_key)
    async with write_transaction(db) as tx:
        before = unreadable_hidden(await identities.replace_identity_value(tx, handle, value))
        await audit(tx.conn, actor, "operator_key_add", handle=handle, before=before,
                    after={"name": owner.name, "identity": f"{index}:{handle}"})
    return f"{index}:{handle}"
