"""The cache-invalidation channel shared by the registry (writer) and resolvers (readers).

Every committed write sends ``NOTIFY idres_invalidate, '<key>\\n<key>...'`` from
its own transaction, so PostgreSQL delivers it only after the commit. A payload
must stay under PostgreSQL's 8000-byte limit, so keys are packed into chunks.
"""

from __future__ import annotations

from collections.abc import Iterable

INVALIDATE_CHANNEL = "idres_invalidate"
MAX_PAYLOAD_BYTES = 7900


def payloads(keys: Iterable[str]) -> list[str]:
    """Pack identifier keys, newline-separated, into payloads under the size limit."""
    out: list[str] = []
    chunk: list[str] = []
    size = 0
    for key in keys:
        n = len(key.encode("utf-8")) + 1
        if chunk and size + n > MAX_PAYLOAD_BYTES:
            out.append("\n".join(chunk))
            chunk, size = [], 0
        chunk.append(key)
        size += n
    if chunk:
        out.append("\n".join(chunk))
    return out


def keys_of(payload: str) -> list[str]:
    return payload.split("\n") if payload else []
