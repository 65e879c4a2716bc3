"""The cache-coherence protocol between writers (the registry) and resolver processes.
Pure: the channels, the payloads, the SQL text and the rules; resolver/invalidate.py
and registry/store.py do the I/O.

**Invalidations.** Every committed write sends ``NOTIFY idres_invalidate,
'<key>\\n<key>...'`` from its own transaction, so PostgreSQL delivers it only after the
commit, to every listening session, in commit order. A payload stays under PostgreSQL's
8000-byte limit: keys are packed into chunks; the last chunk ends with ``#<token>``
naming the write.

**Leases.** A resolver process may answer from its cache only while it holds a lease,
i.e. while it can prove it receives invalidations. Every ``heartbeat`` seconds its
listener runs :data:`HEARTBEAT` on its LISTEN connection: one statement that renews the
process's row in ``listener_leases`` to ``clock_timestamp() + lease`` and notifies
``*hb:<listener>:<seq>`` on the invalidation channel, in one commit. When the process
receives its own heartbeat back, every notification committed before the heartbeat was
sent has been delivered before it (commit order) and applied; so the process may serve
from its cache until ``sent + lease``, by its own clock. It never extends the lease
otherwise; a lost or silent connection simply lets it run out.

**Acknowledgements.** After applying a payload with a token, a process sends
``NOTIFY idres_ack, '<token> <listener>'``.

**The writer's rule.** After its commit, a writer reads the leases that are still valid
(:data:`LEASES`, by the database's clock) and answers its client only when every one of
those listeners has either acknowledged the write or seen its lease run out. Any lease
renewed after that read was renewed by a heartbeat committed after the write, so it
covers the write. So once a write is acknowledged, no process serves the old record
from its cache: not one that applied it, not one whose lease the writer outwaited, not
one whose lease is renewed later. If the leases cannot be read, the writer waits a full
lease. The proof does not need NOTIFY delivery to be fast, only ordered; it needs one
clock (the database's) for the lease rows, and processes' clocks to run at its rate.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

INVALIDATE_CHANNEL = "idres_invalidate"
ACK_CHANNEL = "idres_ack"
LISTENER_NAME = "idres-listener"  # application_name of the LISTEN connections
MAX_PAYLOAD_BYTES = 7900
DEFAULT_LEASE = 2.0               # seconds a heartbeat's proof is good for
# Sent instead of the keys by a bulk registration that only creates: new identifiers
# can only be cached as "not found", so resolvers drop their negative entries (and do
# not cache reads in flight). No identifier key lacks a "/", so it cannot clash.
CREATED_MARK = "*created"
# Sent when prefixes or delegations change, as "*zone:PREFIX" (the prefix that changed):
# resolvers reload the zone they answer for and forget what they cached under PREFIX
# (its identifiers and its descendants'); a bare "*zone" means "anything": clear all.
ZONE_MARK = "*zone"
HEARTBEAT_MARK = "*hb"
# Sent when readers, groups, grants or read logs change: resolvers drop their snapshot of
# them (resolver/sharing.py) before acknowledging, so that no answer after the change's
# acknowledgement is derived from the old grants.
SHARING_MARK = "*sharing"

# $1 listener id, $2 lease seconds, $3 the payload (heartbeat_key): one commit renews the
# lease row and sends the heartbeat through the invalidation channel
HEARTBEAT = f"""WITH lease AS (
    INSERT INTO listener_leases (listener, expires)
    VALUES ($1, clock_timestamp() + make_interval(secs => $2))
    ON CONFLICT (listener) DO UPDATE SET expires = EXCLUDED.expires)
  SELECT pg_notify('{INVALIDATE_CHANNEL}', $3)"""
# the leases valid now, and the seconds each has left, by the database's clock
LEASES = """SELECT listener, extract(epoch FROM expires - clock_timestamp())::float8 AS left_s
            FROM listener_leases WHERE expires > clock_timestamp()"""
# rows of listeners long gone
PRUNE_LEASES = "DELETE FROM listener_leases WHERE expires < clock_timestamp() - interval '1 hour'"


def zone_key(prefix: str) -> str:
    """The notification key for a change of the zone at ``prefix``."""
    return f"{ZONE_MARK}:{prefix}"


def heartbeat_key(listener: str, seq: int) -> str:
    return f"{HEARTBEAT_MARK}:{listener}:{seq}"


def split_keys(keys: Iterable[str]) -> tuple[list[str], list[str], bool, list[tuple[str, int]]]:
    """(identifier keys, changed prefixes, whether a bare zone mark asks to clear
    everything, heartbeats as (listener, seq))."""
    plain: list[str] = []
    prefixes: list[str] = []
    beats: list[tuple[str, int]] = []
    everything = False
    for key in keys:
        if key == ZONE_MARK:
            everything = True
        elif key.startswith(ZONE_MARK + ":"):
            prefixes.append(key[len(ZONE_MARK) + 1:])
        elif key.startswith(HEARTBEAT_MARK + ":"):
            listener, _, seq = key[len(HEARTBEAT_MARK) + 1:].rpartition(":")
            if seq.isdigit():
                beats.append((listener, int(seq)))
        else:
            plain.append(key)
    return plain, prefixes, everything, beats


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


def ack_payload(token: str, listener: str) -> str:
    return f"{token} {listener}"


def parse_ack(payload: str) -> tuple[str, str]:
    """(token, listener) of an acknowledgement."""
    token, _, listener = payload.partition(" ")
    return token, listener


class Waiter(Protocol):
    token: str | None

    async def wait(self, leases: dict[str, float] | None) -> None: ...

    def cancel(self) -> None: ...


class CommitSync(Protocol):
    """How a writer waits until no resolver process may serve what its write changed.

    ``expect()`` is called before the write transaction starts and gives the token to
    send with the keys; after the commit the writer awaits ``wait(leases)`` with the
    leases valid then (listener → seconds left; None when they could not be read: wait
    a whole lease), or calls ``cancel()`` if the transaction failed.
    """

    def expect(self) -> Waiter: ...


class NothingToWait:
    """A write with nobody to wait for: no token, and ``wait`` returns at once."""

    token: str | None = None

    async def wait(self, leases: dict[str, float] | None) -> None:
        return None

    def cancel(self) -> None:
        return None


class NoSync:
    """Nothing to wait for: the writer does not need read-your-writes (resolvers still
    invalidate). The server uses its Invalidator, the CLI an AckListener."""

    def expect(self) -> Waiter:
        return NothingToWait()
