"""Handle challenge-response, the checks (handle-facts §1.5, §2.5). Pure.

A client proves it holds an identity ``INDEX:HANDLE`` by signing bytes the server chose:

* over the native protocol, ``nonce ‖ digest``: the 16-byte nonce of the server's
  challenge (response code 402) and the digest of the request it answers;
* over HTTP (``Authorization: Handle``), ``nonce ‖ cnonce``: the server's nonce and one
  the client chose, both base64 in the header.

With an ``HS_PUBKEY`` value the proof is a signature (RSA PKCS#1 v1.5 or DSA, with SHA-256
or SHA-1); with an ``HS_SECKEY`` value a MAC keyed by the secret itself (the table of
:data:`MACS`; PBKDF2-HMAC-SHA1 by default, whose salt and iterations the client chooses
and sends), so the server must be able to read the secret (docs/handle-protocol.md says
how idres keeps it).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, padding, rsa

from resolver.core import hsdata

NONCE_SIZE = 16
MAX_ITERATIONS = 100_000   # a PBKDF2 answer costs the server what the client asks: bounded

_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    **dict.fromkeys(("SHA1", "SHA-1", "SHA"), hashes.SHA1),
    **dict.fromkeys(("SHA256", "SHA-256", "SHA2", "SHA-2"), hashes.SHA256),
}


def public_key(data: dict[str, Any]) -> rsa.RSAPublicKey | dsa.DSAPublicKey | None:
    """The key of a stored ``HS_PUBKEY`` value's data (``key`` JWK or the Handle bytes in
    ``base64``), or None when it is not an RSA or DSA key."""
    try:
        jwk = data["value"] if data["format"] == "key" else \
            hsdata.parse_key(hsdata.data_bytes("HS_PUBKEY", data))
        n = {k: hsdata.unb64u(v) for k, v in jwk.items() if k != "kty"}
        if jwk["kty"] == "RSA":
            return rsa.RSAPublicNumbers(n["e"], n["n"]).public_key()
        if jwk["kty"] == "DSA":
            params = dsa.DSAParameterNumbers(n["p"], n["q"], n["g"])
            return dsa.DSAPublicNumbers(n["y"], params).public_key()
    except (KeyError, TypeError, ValueError, AttributeError, UnicodeDecodeError):
        return None
    return None


def verify_signature(key: Any, alg: str, signature: bytes, data: bytes) -> bool:
    """Does ``signature`` (``alg``: SHA-256 or SHA1, any of their spellings) sign
    ``data`` with ``key``?"""
    algorithm = _HASHES.get(alg.upper())
    if algorithm is None or key is None:
        return False
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PKCS1v15(), algorithm())
        else:
            key.verify(signature, data, algorithm())
    except (InvalidSignature, ValueError):
        return False
    return True


def _pbkdf2(secret: bytes, rest: bytes, data: bytes) -> bytes | None:
    """The expected MAC of a PBKDF2-HMAC-SHA1 answer: ``rest`` holds the salt, the
    iterations and the key length in bits, then the MAC."""
    c = hsdata.Cursor(rest)
    try:
        salt, iterations, bits = c.blob(), c.num(), c.num()
    except ValueError:
        return None
    if not 0 < iterations <= MAX_ITERATIONS or bits <= 0 or bits % 8 or bits > 512:
        return None
    derived = hashlib.pbkdf2_hmac("sha1", secret, salt, iterations, bits // 8)
    return rest[:c.pos] + hsdata.blob(hmac.new(derived, data, hashlib.sha1).digest())


# code byte -> the expected answer (after the code byte) for the secret and the signed data
MACS: dict[int, Callable[[bytes, bytes, bytes], bytes | None]] = {
    0x01: lambda k, _r, d: hashlib.md5(k + d + k).digest(),
    0x02: lambda k, _r, d: hashlib.sha1(k + d + k).digest(),
    0x03: lambda k, _r, d: hashlib.sha256(k + d + k).digest(),
    0x12: lambda k, _r, d: hmac.new(k, d, hashlib.sha1).digest(),
    0x13: lambda k, _r, d: hmac.new(k, d, hashlib.sha256).digest(),
    0x22: _pbkdf2,
}
_HTTP_MACS = {"SHA1": 0x02, "SHA256": 0x03, "HMACSHA1": 0x12, "HMACSHA256": 0x13,
              "PBKDF2HMACSHA1": 0x22, "PBKDF2WITHHMACSHA1": 0x22}


def verify_mac(secret: bytes, answer: bytes, data: bytes) -> bool:
    """Is ``answer`` (a code byte and what follows it) the MAC of ``data`` keyed by
    ``secret``? Compared in constant time."""
    if len(answer) < 2 or answer[0] not in MACS:
        return False
    expected = MACS[answer[0]](secret, answer[1:], data)
    return expected is not None and hmac.compare_digest(expected, answer[1:])


def http_mac_answer(alg: str, signature: bytes, salt: bytes = b"", iterations: int = 0,
                    bits: int = 160) -> bytes | None:
    """An ``Authorization: Handle`` secret-key answer as the native answer it stands for
    (the code byte and what follows), None for an unknown ``alg``."""
    code = _HTTP_MACS.get("".join(ch for ch in alg.upper() if ch.isalnum()))
    if code is None:
        return None
    if code == 0x22:
        return bytes([code]) + hsdata.blob(salt) + iterations.to_bytes(4, "big") \
            + bits.to_bytes(4, "big") + hsdata.blob(signature)
    return bytes([code]) + signature
