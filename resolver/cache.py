"""AnswerCache: what a process remembers of recent resolutions. Sans-I/O.

An :class:`Entry` holds, for one identifier (normalised key), the values an
anonymous client may see (``None`` for "not found") and the encoded answers
already sent for it, one per representation (Handle JSON for a given spelling of
the identifier, the HTTP response of the fast path, msgpack for the binary
protocol). A hit is a dict lookup and a write of bytes.

Policy (after CoreDNS's cache plugin and the Handle client cache, handle-facts §1.7):

* positive entries live for the smallest TTL of their values, capped by ``max_ttl``;
  a record with a zero TTL is not cached;
* "not found" lives for ``negative_ttl`` (0 turns negative caching off);
* the cache is bounded by entries and by bytes; the least recently used entries go
  first;
* only public data enters: callers hand in values already filtered for anonymous
  clients, and authenticated reads never use the cache;
* :meth:`evict` is called for every committed write (via LISTEN/NOTIFY), and
  :meth:`clear` when invalidations may have been missed.

Counters are plain integers (read by the metrics collector at scrape time), so a
hit costs no lock.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from resolver.core.identifier import key_starts

ENTRY_OVERHEAD = 400  # bytes: the Entry, its dict slots and the key, roughly


@dataclass(slots=True, eq=False)
class Entry:
    key: str
    public: bytes | None  # the public values, output-form JSON; None: does not exist
    expires: float
    size: int
    renders: dict[Any, bytes] = field(default_factory=dict)
    aliases: list[Any] = field(default_factory=list)


class AnswerCache:
    """Bounded TTL + LRU cache of resolution answers (see module docstring)."""

    def __init__(self, max_entries: int = 1_000_000, max_bytes: int = 1 << 30,
                 max_ttl: float = 3600.0, negative_ttl: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if max_entries < 0 or max_bytes < 0 or max_ttl < 0 or negative_ttl < 0:
            raise ValueError("cache limits must not be negative")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.max_ttl = max_ttl
        self.negative_ttl = negative_ttl
        self.clock = clock
        self.enabled = max_entries > 0 and max_bytes > 0
        self._by_key: OrderedDict[str, Entry] = OrderedDict()
        self._negative: set[str] = set()
        # a spelling of a request (e.g. the raw HTTP path) → (entry, encoded answer)
        self.by_alias: dict[Any, tuple[Entry, Any]] = {}
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self.evictions = 0      # for room (size or count)
        self.expirations = 0
        self.invalidations = 0  # by a write

    def __len__(self) -> int:
        return len(self._by_key)

    def get(self, key: str) -> Entry | None:
        """The live entry for ``key``, counted as a hit, or None (a miss)."""
        entry = self._by_key.get(key)
        if entry is not None:
            if entry.expires > self.clock():
                self._by_key.move_to_end(key)
                self.hits += 1
                return entry
            self._drop(entry)
            self.expirations += 1
        self.misses += 1
        return None

    def answer(self, spelling: Any) -> Any:
        """The encoded answer kept for a request spelling, if its entry is live (a hit)."""
        hit = self.by_alias.get(spelling)
        if hit is None:
            return None
        entry, data = hit
        if entry.expires > self.clock():
            self._by_key.move_to_end(entry.key)
            self.hits += 1
            return data
        self._drop(entry)
        self.expirations += 1
        return None

    def put(self, key: str, public: bytes | None, ttl: float | None) -> Entry | None:
        """Remember what anonymous clients see of ``key`` (None: it does not exist) for
        ``ttl`` seconds (capped by ``max_ttl``; None: no value has a TTL); returns the
        entry, or None when not cacheable."""
        if not self.enabled:
            return None
        if public is None:
            ttl = self.negative_ttl
        else:
            ttl = self.max_ttl if ttl is None else min(self.max_ttl, ttl)
        if ttl <= 0:
            return None
        old = self._by_key.get(key)
        if old is not None:
            self._drop(old)
        size = len(key) + (len(public) if public else 0) + ENTRY_OVERHEAD
        entry = Entry(key, public, self.clock() + ttl, size)
        self._by_key[key] = entry
        if public is None:
            self._negative.add(key)
        self.bytes += entry.size
        self._make_room()
        return entry if entry.key in self._by_key else None

    def render(self, entry: Entry, kind: Any, data: bytes) -> bytes:
        """Keep an encoded answer of ``entry`` (counted in the byte bound)."""
        if entry.key in self._by_key and kind not in entry.renders:
            entry.renders[kind] = data
            entry.size += len(data)
            self.bytes += len(data)
            self._make_room()
        return data

    def alias(self, spelling: Any, entry: Entry, answer: Any, size: int) -> None:
        """Map a request spelling straight to an encoded answer of ``entry``
        (``size``: its bytes, for the byte bound)."""
        if entry.key not in self._by_key or spelling in self.by_alias:
            return
        self.by_alias[spelling] = (entry, answer)
        entry.aliases.append(spelling)
        added = size + 100
        entry.size += added
        self.bytes += added
        self._make_room()

    def evict(self, key: str) -> bool:
        """Forget ``key`` because it changed. True if it was cached."""
        entry = self._by_key.get(key)
        if entry is None:
            return False
        self._drop(entry)
        self.invalidations += 1
        return True

    def evict_under(self, prefixes: Iterable[str], keys: Iterable[str] | None = None) -> int:
        """Forget the identifiers under ``prefixes`` (descendant prefixes included), among
        ``keys`` (a slice of a snapshot of the keys, so a caller can pause between slices)
        or all. Returns how many were cached."""
        starts = key_starts(prefixes)
        doomed = [k for k in (self._by_key if keys is None else keys) if k.startswith(starts)]
        return sum(self.evict(k) for k in doomed)

    def keys(self) -> list[str]:
        """A snapshot of the cached keys."""
        return list(self._by_key)

    def evict_negative(self) -> int:
        """Forget every "not found" (identifiers were created in bulk)."""
        keys = list(self._negative)
        for key in keys:
            self.evict(key)
        return len(keys)

    def clear(self) -> None:
        self.invalidations += len(self._by_key)
        self._by_key.clear()
        self.by_alias.clear()
        self._negative.clear()
        self.bytes = 0

    def _drop(self, entry: Entry) -> None:
        del self._by_key[entry.key]
        if entry.public is None:
            self._negative.discard(entry.key)
        for spelling in entry.aliases:
            self.by_alias.pop(spelling, None)
        self.bytes -= entry.size

    def _make_room(self) -> None:
        while self._by_key and (len(self._by_key) > self.max_entries
                                or self.bytes > self.max_bytes):
            _, oldest = next(iter(self._by_key.items()))
            self._drop(oldest)
            self.evictions += 1
