"""The node's key pairs, made on first start and kept with mode 0600: its Ed25519 key
(signed referrals, docs/trust.md) and, for the Handle native protocol, an RSA key
(certified answers: the Handle.Net software verifies only RSA and DSA signatures)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

log = logging.getLogger("idres.keys")


def load_or_create(path: Path, kind: type[Any] = Ed25519PrivateKey,
                   make: Callable[[], Any] = Ed25519PrivateKey.generate) -> Any:
    """The key in ``path``, or a new one (``make()``) written there (0600) if there is
    none.

    :raises ValueError: the file holds something else than a ``kind`` private key.
    """
    if path.exists():
        key = load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, kind):
            raise ValueError(f"{path} does not hold a {kind.__name__}")
        if path.stat().st_mode & 0o077:
            log.warning("%s is readable by others: chmod 600 it", path)
        return key
    path.parent.mkdir(parents=True, exist_ok=True)
    key = make()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    try:
        os.link(tmp, path)          # another process may have made one meanwhile: keep it
    except FileExistsError:
        os.unlink(tmp)
        return load_or_create(path, kind, make)
    os.unlink(tmp)
    log.info("new node key in %s", path)
    return key


def load_or_create_rsa(path: Path) -> rsa.RSAPrivateKey:
    key: rsa.RSAPrivateKey = load_or_create(
        path, rsa.RSAPrivateKey, lambda: rsa.generate_private_key(public_exponent=65537,
                                                                  key_size=2048))
    return key
