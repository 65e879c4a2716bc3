"""The node's Ed25519 key pair: made on first start, kept with mode 0600."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

log = logging.getLogger("idres.keys")


def load_or_create(path: Path) -> Ed25519PrivateKey:
    """The key in ``path``, or a new one written there (0600) if there is none.

    :raises ValueError: the file holds something else than an Ed25519 private key.
    """
    if path.exists():
        key = load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} does not hold an Ed25519 private key")
        if path.stat().st_mode & 0o077:
            log.warning("%s is readable by others: chmod 600 it", path)
        return key
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    try:
        os.link(tmp, path)          # another process may have made one meanwhile: keep it
    except FileExistsError:
        os.unlink(tmp)
        return load_or_create(path)
    os.unlink(tmp)
    log.info("new node key in %s", path)
    return key
