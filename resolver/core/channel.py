"""The cache-invalidation channels shared by the registry (writer) and resolvers (readers).

Every committed write sends ``NOTIFY idres_invalidate, '<key>\\n<key>...'`` from its
own transaction, so PostgreSQL delivers it only after the commit. A payload must stay
under PostgreSQL's 8000-byte limit, so keys are packed into chunks; the last chunk
ends with a line ``#<token>`` naming the write.

Read-your-writes across processes: every resolver process listens under the
application name ``idres-listener``; after applying a payload that carries a token it
sends ``NOTIFY idres_ack, '<token>'``. The writer counts the listeners inside its
transaction and, after the commit, waits (bounded) until that many acknowledgements
came back before it answers its client. So once a write is acknowledged, no process
can still serve the old record from its cache.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

INVALIDATE_CHANNEL = "idres_invalidate"
ACK_CHANNEL = "idres_ack"
LISTENER_NAME = "idres-listener"
# NOTIFY reaches the listeners of the writer's database only
COUNT_LISTENERS = """SELECT count(*) FROM pg_stat_activity
                     WHERE application_name = 'idres-listener' AND datname = current_database()"""
MAX_PAYLOAD_BYTES = 7900
# Sent instead of the keys by a bulk registration that only creates: new identifiers
# can only be cached as "not found", so resolvers drop their negative entries (and do
# not cache reads in flight). No identifier key lacks a "/", so it cannot clash.
CREATED_MARK = "*created"
# Sent when prefixes or delegations change, as "*zone:PREFIX" (the prefix that changed):
# resolvers reload the zone they answer for and forget what they cached under PREFIX
# (its identifiers and its descendants'); a bare "*zone" means "anything": clear all.
ZONE_MARK = "*zone"


def zone_key(prefix: str) -> str:
    """The notification key for a change of the zone at ``prefix``."""
    return f"{ZONE_MARK}:{prefix}"


def zone_changes(keys: Iterable[str]) -> tuple[list[str], list[str], bool]:
    """(identifier keys, changed prefixes, whether a bare mark asks to clear everything)."""
    plain: list[str] = []
    prefixes: list[str] = []
    everything = False
    for key in keys:
        if key == ZONE_MARK:
            everything = True
        elif key.startswith(ZONE_MARK + ":"):
            prefixes.append(key[len(ZONE_MARK) + 1:])
        else:
            plain.append(key)
    return plain, prefixes, everything


def payloads(keys: Iterable[str], token: str | None = None) -> list[str]:
    """Pack identifier keys, newline-separated, into payloads under the size limit; the
    last one ends with the write's ``#token`` line when there is a token."""
    out: list[str] = []
    chunk: list[str] = []
    size = 0
    for key in [*keys, *([f"#{token}"] if token else [])]:
        n = len(key.encode("utf-8")) + 1
        if chunk and size + n > MAX_PAYLOAD_BYTES:
            out.append("\n".join(chunk))
            chunk, size = [], 0
        chunk.append(key)
        size += n
    if chunk:
        out.append("\n".join(chunk))
    return out


def parse_payload(payload: str) -> tuple[list[str], str | None]:
    """(keys, token) of a payload."""
    keys = payload.split("\n") if payload else []
    if keys and keys[-1].startswith("#"):
        return keys[:-1], keys[-1][1:]
    return keys, None


class Waiter(Protocol):
    token: str | None

    async def wait(self, listeners: int) -> None: ...

    def cancel(self) -> None: ...


class CommitSync(Protocol):
    """How a writer waits until every resolver process has applied its invalidation.

    ``expect()`` is called before the write transaction starts and gives the token to
    send with the keys; after the commit the writer awaits ``wait(listeners)`` (bounded),
    or calls ``cancel()`` if the transaction failed.
    """

    def expect(self) -> Waiter: ...


class NothingToWait:
    """A write with nobody to wait for: no token, and ``wait`` returns at once."""

    token: str | None = None

    async def wait(self, listeners: int) -> None:
        return None

    def cancel(self) -> None:
        return None


class NoSync:
    """Nothing to wait for: the writer does not need read-your-writes (resolvers still
    invalidate). The server uses its Invalidator, the CLI an AckListener."""

    def expect(self) -> Waiter:
        return NothingToWait()
