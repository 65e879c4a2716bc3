"""Signed answers: Ed25519 over a canonical encoding. Pure (no I/O).

What is signed (docs/trust.md describes it for other implementers):

* an answer: ``{"kind": "answer", "handle": <normalised key>, "values": <public values in
  the Handle output form, or null when the identifier does not exist>, "iat": <issued,
  epoch s>, "exp": <expires, epoch s>}``;
* a referral: ``{"kind": "referral", "handle": <normalised key asked>, "prefix": <delegated
  prefix>, "servers": [{"url", "key", "binary"?}], "ttl": <s>, "iat", "exp"}``.

Canonical encoding: JSON, UTF-8, object keys sorted, no whitespace, no escaping of
non-ASCII (the same text ``json.dumps(obj, sort_keys=True, separators=(",", ":"),
ensure_ascii=False)`` gives). The signature is Ed25519 (RFC 8032) over
``b"idres-v1\\n" + canonical``, sent as unpadded base64url. A public key travels as the
unpadded base64url of its 32 raw bytes.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from resolver.core.errors import BadSignature

__all__ = ["BadSignature", "canonical", "load_public_key", "public_key_text", "sign", "signed",
           "verify"]

DOMAIN = b"idres-v1\n"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError, TypeError):
        raise BadSignature("not valid base64url") from None


def canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def public_key_text(key: Ed25519PrivateKey) -> str:
    return b64(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))


def load_public_key(text: str) -> Ed25519PublicKey:
    """:raises BadSignature: not a 32-byte Ed25519 key in base64url."""
    raw = unb64(text)
    if len(raw) != 32:
        raise BadSignature(f"an Ed25519 public key has 32 bytes, got {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


def sign(key: Ed25519PrivateKey, statement: dict[str, Any]) -> str:
    return b64(key.sign(DOMAIN + canonical(statement)))


def verify(public_key: str, statement: dict[str, Any], signature: str, now: int) -> None:
    """Check ``signature`` over ``statement`` with ``public_key`` and its validity window.

    :raises BadSignature: wrong key, altered content, malformed signature, or expired.
    """
    try:
        load_public_key(public_key).verify(unb64(signature), DOMAIN + canonical(statement))
    except InvalidSignature:
        raise BadSignature(
            f"signature over the {statement.get('kind', 'answer')} for "
            f"{statement.get('handle')} does not verify with key {public_key[:12]}…"
        ) from None
    if not isinstance(statement.get("exp"), int) or statement["exp"] < now:
        raise BadSignature(f"signed {statement.get('kind')} for {statement.get('handle')} expired")


def signed(key: Ed25519PrivateKey, statement: dict[str, Any], ttl: int, now: int) -> dict[str, Any]:
    """The ``signature`` member of an answer: ``statement`` signed for ``ttl`` seconds
    (at least 1, at most an hour) from ``now``."""
    exp = now + max(1, min(ttl, 3600))
    return {"alg": "Ed25519", "key": public_key_text(key), "iat": now, "exp": exp,
            "sig": sign(key, {**statement, "iat": now, "exp": exp})}


def derived_key(key: Ed25519PrivateKey, purpose: bytes) -> bytes:
    """A 32-byte secret for ``purpose``, derived from the node's key (HKDF-SHA256): every
    process of the node derives the same, nobody without the key can."""
    raw = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(raw)
