"""Resolutions counted per identifier and per prefix, for the prefixes' owners (issue 12:
statistics, as IDIS nodes and PID services report them).

Counting costs the hot path one dictionary increment: :meth:`Usage.count` keys what was
resolved as the front end has it (the fast path's raw target bytes, a batch's text, a
resolver's key), by protocol (``http``, ``batch``, ``binary``) and outcome (``hit``:
answered from the cache; ``miss``: read from the database; ``not_found``). Every
``IDRES_STATS_FLUSH`` seconds (10; and when a process stops) :func:`flush` parses names once
and adds the counts to PostgreSQL in one statement (migration 0013):

* ``prefix_resolutions``: per hour, prefix, protocol and outcome (every outcome);
* ``handle_resolutions``: per day, identifier, protocol and outcome, for identifiers that
  exist (``not_found`` is counted per prefix only: unknown names cannot grow the table).

Only prefixes homed here are counted. A process holds at most ``MAX_NAMES`` distinct
names between flushes; resolutions of further new names until the next flush are only
counted as dropped (``idres_usage_dropped_total``): memory stays bounded under a flood of
distinct identifiers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import asyncpg

from resolver.core.errors import IdresError
from resolver.core.identifier import Identifier, parse, parse_raw

log = logging.getLogger("idres.usage")
MAX_NAMES = 100_000
HIT, MISS, NOT_FOUND = "hit", "miss", "not_found"
_API = b"/api/handles/"

ADD = """
WITH p AS (
    INSERT INTO prefix_resolutions AS t (hour, prefix, protocol, outcome, n)
    SELECT * FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::bigint[])
    ON CONFLICT (prefix, hour, protocol, outcome, source)
    DO UPDATE SET n = t.n + EXCLUDED.n RETURNING 1)
INSERT INTO handle_resolutions AS t (day, handle, protocol, outcome, n)
SELECT * FROM unnest($6::date[], $7::text[], $8::text[], $9::text[], $10::bigint[])
ON CONFLICT (handle, day, protocol, outcome) DO UPDATE SET n = t.n + EXCLUDED.n"""


class Usage:
    """The counts of one process since its last flush."""

    def __init__(self) -> None:
        self.counts: dict[tuple[Any, str, str], int] = {}
        # the fast path's cache hits, by raw target: a dict each, no key to build
        self.http_hits: dict[bytes, int] = {}
        self.http_not_found: dict[bytes, int] = {}
        self.held = 0        # distinct names held, all tables
        self.dropped = 0     # resolutions of names past MAX_NAMES (idres_usage_dropped_total)
        self.flushed = 0

    def count(self, name: str | bytes, protocol: str, outcome: str) -> None:
        """One resolution of ``name``: a key, an identifier text, or a raw target."""
        self.tally((name, protocol, outcome))

    def tally(self, key: tuple[Any, str, str]) -> None:
        """:meth:`count` with its key built already (a kept answer keeps its key)."""
        counts = self.counts
        if key in counts:
            counts[key] += 1
        elif self.held < MAX_NAMES:
            counts[key] = 1
            self.held += 1
        else:
            self.dropped += 1

    def fast(self, target: bytes, head: bytes) -> None:
        """A cache hit of the fast path: its raw target and the head it answered with."""
        table = self.http_not_found if head[9] == 52 else self.http_hits   # 4xx: not found
        n = table.get(target)
        if n is not None:
            table[target] = n + 1
        elif self.held < MAX_NAMES:
            table[target] = 1
            self.held += 1
        else:
            self.dropped += 1

    def take(self) -> dict[tuple[Any, str, str], int]:
        taken = self.counts
        for table, outcome in ((self.http_hits, HIT), (self.http_not_found, NOT_FOUND)):
            for target, n in table.items():
                key = (target, "http", outcome)
                taken[key] = taken.get(key, 0) + n
        self.counts, self.http_hits, self.http_not_found, self.held = {}, {}, {}, 0
        return taken


def cached(kept: Any) -> str:
    """The outcome of an answer kept encoded in the cache: JSON bytes, or a binary
    (wire status, bytes) pair, or the fast path's (head, body)."""
    if isinstance(kept, tuple):
        first = kept[0]
        if isinstance(first, int):
            return NOT_FOUND if first == 100 else HIT
        return NOT_FOUND if first[9:12] == b"404" else HIT
    return NOT_FOUND if kept[:19] == b'{"responseCode":100' else HIT


def _identifier(name: str | bytes) -> Identifier | None:
    try:
        if isinstance(name, bytes):
            raw = name[len(_API):] if name.startswith(_API) else name
            return parse_raw(raw.split(b"?", 1)[0].decode("utf-8", "surrogateescape"))[1]
        return parse(name)
    except (IdresError, UnicodeError):
        return None


def rows(taken: dict[tuple[Any, str, str], int], homed: Callable[[Identifier], bool],
         now: float) -> tuple[list[Any], list[Any]]:
    """(per prefix and hour, per identifier and day) rows of what was counted."""
    hour = time.gmtime(now - now % 3600)
    stamp = time.strftime("%Y-%m-%dT%H:00:00+00:00", hour)
    day = time.strftime("%Y-%m-%d", hour)
    per_prefix: dict[tuple[str, str, str], int] = {}
    per_handle: dict[tuple[str, str, str], int] = {}
    idents: dict[Any, Identifier | None] = {}
    for (name, protocol, outcome), n in taken.items():
        ident = idents.get(name, ...)
        if ident is ...:
            ident = idents[name] = _identifier(name)
        if ident is None or not homed(ident):
            continue
        k = (ident.prefix.text, protocol, outcome)
        per_prefix[k] = per_prefix.get(k, 0) + n
        if outcome != NOT_FOUND:
            h = (ident.key, protocol, outcome)
            per_handle[h] = per_handle.get(h, 0) + n
    return ([(stamp, *k, n) for k, n in per_prefix.items()],
            [(day, *k, n) for k, n in per_handle.items()])


async def flush(usage: Usage, pool: asyncpg.Pool, homed: Callable[[Identifier], bool]) -> None:
    """Add what was counted to the database (lost, and logged, if the database is away:
    statistics never hold up resolution)."""
    from datetime import date, datetime

    taken = usage.take()
    if not taken:
        return
    per_prefix, per_handle = rows(taken, homed, time.time())
    if not per_prefix:
        return
    cols_p = list(zip(*per_prefix))
    cols_h = list(zip(*per_handle)) if per_handle else [(), (), (), (), ()]
    try:
        await pool.execute(ADD, [datetime.fromisoformat(s) for s in cols_p[0]], list(cols_p[1]),
                           list(cols_p[2]), list(cols_p[3]), list(cols_p[4]),
                           [date.fromisoformat(d) for d in cols_h[0]], list(cols_h[1]),
                           list(cols_h[2]), list(cols_h[3]), list(cols_h[4]))  # network op
        usage.flushed += 1
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        log.warning("resolution counts since the last flush not saved: %s", exc)
