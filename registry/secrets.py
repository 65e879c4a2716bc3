"""Secrets and tokens: generated here, shown once, stored only as hashes.

Both are 256-bit random strings, so a brute-force search of the hash is out of
reach and a fast hash (SHA-256) is enough; a slow password KDF would only make
every authenticated request (pyhandle sends Basic credentials on each one) slower.
Comparisons are constant-time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from resolver.core.sharing import token_hash

TOKEN_PREFIX = "idr_"
_SCHEME = "idres-sha256"


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    """``idres-sha256$<salt b64>$<digest hex>``: the text kept in the HS_SECKEY value."""
    salt = secrets.token_bytes(16)
    digest = hashlib.sha256(salt + secret.encode()).hexdigest()
    return f"{_SCHEME}${base64.b64encode(salt).decode()}${digest}"


def verify_secret(secret: str, stored: str) -> bool:
    try:
        scheme, salt_b64, digest = stored.split("$")
        salt = base64.b64decode(salt_b64, validate=True)
    except ValueError:
        return False
    if scheme != _SCHEME:
        return False
    candidate = hashlib.sha256(salt + secret.encode()).hexdigest()
    return hmac.compare_digest(candidate, digest)


def hash_token(token: str) -> bytes:
    return token_hash(token)
