"""The cache-invalidation channel shared by the registry (writer) and resolvers (readers).

Every committed write sends ``NOTIFY idres_invalidate, '<key>\\n<key>...'`` from
its own transaction, so PostgreSQL delivers it only after the commit. A payload
must stay under PostgreSQL's 8000-byte limit, so keys are packed into chunks.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

INVALIDATE_CHANNEL = "idres_invalidate"
MAX_PAYLOAD_BYTES = 7900
# Sent instead of the keys by a bulk registration that only creates: new identifiers
# can only be cached as "not found", so resolvers drop their negative entries (and do
# not cache reads in flight). No identifier key lacks a "/", so it cannot clash.
CREATED_MARK = "*created"
# Sent when prefixes or delegations change: resolvers reload the zone they answer for
# and clear their caches (rare; the registry's prefix and delegation writes).
ZONE_MARK = "*zone"


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


class Waiter(Protocol):
    async def wait(self) -> None: ...

    def cancel(self) -> None: ...


class CommitSync(Protocol):
    """How a writer learns that its invalidation reached this process's listener.

    ``expect(keys)`` is called before the write transaction starts; after the
    commit the writer awaits ``wait()`` (bounded), or calls ``cancel()`` if the
    transaction failed. Resolvers in other processes receive the same NOTIFY at
    the same moment, so an acknowledged write is not followed by a stale read.
    """

    def expect(self, keys: Iterable[str]) -> Waiter: ...


class _Done:
    async def wait(self) -> None:
        return None

    def cancel(self) -> None:
        return None


class NoSync:
    """No cache to keep coherent (CLI commands): nothing to wait for."""

    def expect(self, keys: Iterable[str]) -> Waiter:
        return _Done()
