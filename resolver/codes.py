"""Lookup by code for anonymous callers (``GET /api/lookup?prefix=&type=&value=`` on
the fast path; docs/records.md): which identifiers under a prefix hold a code in a
public value.

The lookups of one event-loop turn go to PostgreSQL together, in one query (the code
index's primary key, joined to the records), as the misses of resolutions do
(``resolver/coalesce.py``); equal lookups of one turn share their answer. At most
:data:`MAX_IN_FLIGHT` such queries run at once: lookups that arrive meanwhile wait for
one to finish and go together in the next, so under load the batches grow instead of
the queries multiplying (a query's fixed cost, on both sides, is most of a small
batch's: measured 25 µs of client CPU per lookup in batches of 17, 9 µs in batches of
100; at 64 connections the bound took lookups from ~7,500/s to ~9,300/s with p99 from
~17 to ~13 ms, benchmarks/records.py). Answers are
never cached: a code can move to another record by a write that no notification names,
so each lookup is as fresh as the database. Lookups with credentials (codes held in
values that are not public, drafts) and by the beginning of a code are the registry's
(``registry/api/records.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl

from resolver.coalesce import within
from resolver.core.errors import IdresError
from resolver.core.identifier import parse_prefix
from resolver.core.waiters import fail_waiters

LOOKUP = b"/api/lookup?"
Wanted = tuple[str, str, str]                      # (prefix, type, value)
FindMany = Callable[[list[Wanted], int], Awaitable[list[list[str]]]]
LIMIT = 100             # identifiers per lookup: the registry route's default
MAX_PER_QUERY = 500     # lookups of one loop turn asked for in one query, at most
MAX_IN_FLIGHT = 2       # lookup queries running at once, at most


class CodeFinder:
    """Batches anonymous exact lookups by code (see module docstring)."""

    def __init__(self, find_many: FindMany, timeout: float = 2.0) -> None:
        self._find_many = find_many
        self.timeout = timeout
        self._queued: dict[Wanted, asyncio.Future[list[str]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.queries = 0
        self.in_flight = 0

    def find(self, prefix: str, type_: str, value: str) -> asyncio.Future[list[str]]:
        """The identifiers (as spelled) under ``prefix`` whose public ``type_`` value is
        ``value``, at most :data:`LIMIT`, in key order."""
        wanted = (prefix, type_, value)
        future = self._queued.get(wanted)
        if future is None:
            loop = asyncio.get_running_loop()
            if not self._queued and self.in_flight < MAX_IN_FLIGHT:
                loop.call_soon(self._send)
            future = self._queued[wanted] = loop.create_future()
        return future

    def _send(self) -> None:
        """Send what is queued, :data:`MAX_PER_QUERY` lookups a query (the bound on
        queries in flight is for the next turns: this turn's lookups all go now)."""
        queued, self._queued = list(self._queued.items()), {}
        for start in range(0, len(queued), MAX_PER_QUERY):
            self.in_flight += 1
            task = asyncio.get_running_loop().create_task(
                self._run(queued[start:start + MAX_PER_QUERY]))
            self._tasks.add(task)
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self.in_flight -= 1
        if self._queued and self.in_flight < MAX_IN_FLIGHT:
            self._send()

    async def _run(self, part: list[tuple[Wanted, asyncio.Future[list[str]]]]) -> None:
        self.queries += 1
        try:
            found = await within(self._find_many([w for w, _ in part], LIMIT),
                                 self.timeout)  # network op
        except BaseException as exc:
            fail_waiters((future for _, future in part), exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, future), handles in zip(part, found):
            if not future.done():
                future.set_result(handles)


def lookup_query(target: bytes) -> tuple[str, str, str] | None:
    """(prefix, type, value) of ``/api/lookup?prefix=&type=&value=`` when the fast path
    can answer it as the registry's route would: those three parameters once each, a
    well-formed prefix, nothing to decode that is not UTF-8. Anything else (credentials
    are refused earlier, ``start``, ``limit``) is the registry's."""
    if not target.startswith(LOOKUP):
        return None
    try:
        text = target[len(LOOKUP):].decode("ascii")
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=True,
                          errors="strict", max_num_fields=3)
    except (UnicodeDecodeError, ValueError):
        return None
    got = dict(pairs)
    if len(pairs) != 3 or set(got) != {"prefix", "type", "value"}:
        return None
    try:
        prefix = parse_prefix(got["prefix"])
    except IdresError:
        return None
    return prefix.text, got["type"], got["value"]
