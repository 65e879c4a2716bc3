"""Secrets and tokens: generated here, shown once, stored as hashes.

Both are 256-bit random strings, so a brute-force search of the hash is out of
reach and a fast hash (SHA-256) is enough; a slow password KDF would only make
every authenticated request (pyhandle sends Basic credentials on each one) slower.
Comparisons are constant-time. A secret made where the node's key is at hand is also
kept sealed (:func:`seal`), for Handle secret-key challenge-response; never in the clear.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from resolver.core.sharing import token_hash

TOKEN_PREFIX = "idr_"
_SCHEME = "idres-sha256"


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str, seal_key: bytes = b"", identity: str = "") -> str:
    """``idres-sha256$<salt b64>$<digest hex>``: the text kept in the HS_SECKEY value; with
    a ``seal_key``, followed by ``$<the secret sealed, b64>`` (:func:`seal`)."""
    salt = secrets.token_bytes(16)
    digest = hashlib.sha256(salt + secret.encode()).hexdigest()
    text = f"{_SCHEME}${base64.b64encode(salt).decode()}${digest}"
    return f"{text}${seal(secret, seal_key, identity)}" if seal_key else text


def seal(secret: str, key: bytes, identity: str) -> str:
    """The secret encrypted (AES-256-GCM) under ``key``, bound to ``identity``: what a
    Handle challenge answered with a secret key is checked against (the answer is a MAC
    keyed by the secret, so the secret must be readable to the server: docs/
    handle-protocol.md). The key is derived from the node's key and never stored in the
    database, so the database alone reveals no secret."""
    nonce = secrets.token_bytes(12)
    sealed = AESGCM(key).encrypt(nonce, secret.encode(), identity.encode())
    return base64.b64encode(nonce + sealed).decode()


def unseal(stored: str, key: bytes, identity: str) -> bytes | None:
    """The secret sealed in a stored HS_SECKEY text, None when it has none (stored before
    sealing, or by a command without the node's key) or ``key`` does not open it."""
    parts = stored.split("$")
    if len(parts) != 4 or not key:
        return None
    try:
        raw = base64.b64decode(parts[3], validate=True)
        return AESGCM(key).decrypt(raw[:12], raw[12:], identity.encode())
    except (ValueError, InvalidTag):
        return None


def verify_secret(secret: str, stored: str) -> bool:
    try:
        scheme, salt_b64, digest = stored.split("$")[:3]
        salt = base64.b64decode(salt_b64, validate=True)
    except ValueError:
        return False
    if scheme != _SCHEME:
        return False
    candidate = hashlib.sha256(salt + secret.encode()).hexdigest()
    return hmac.compare_digest(candidate, digest)


def hash_token(token: str) -> bytes:
    return token_hash(token)
