"""AnswerCache: what a process remembers of recent resolutions. Sans-I/O.

This is the structure; ``resolver/coalesce.py`` is its only writer and decides when
to write (the coherence rules live there). An :class:`Entry` holds, for one
identifier (its normalised key), the values an anonymous client may see (``None``
for "not found"). Each front end keeps its encoded reply for an entry under the
request as it read it (its *spelling*: the raw path bytes of the HTTP fast path, the
identifier text of a batch element or a binary-protocol request), in one dict per
reply form, so that a hit is one dict lookup and a write of bytes.

Policy (after CoreDNS's cache plugin and the Handle client cache, handle-facts §1.7):

* positive entries are fresh for the smallest TTL of their values, capped by
  ``max_ttl``; a record with a zero TTL is not cached; past that they are kept for
  ``stale_window`` more seconds, served only marked stale when the authority (this
  node's database, or the node a recursive walk asks) cannot be reached (RFC 8767);
* "not found" lives for ``negative_ttl`` (0 turns negative caching off), in its own,
  smaller LRU (``max_negative``), reclaimed as soon as it expires, so a flood of
  unknown identifiers cannot crowd out the records;
* positives are bounded by entries and by bytes (encodings included); the least
  recently used go first, as CLOCK (second chance) approximates it: a hit marks its
  entry, and the oldest entry goes unless marked, when it is unmarked and moved to the
  back. The order is a deque of keys beside a plain dict (an ``OrderedDict`` node and
  its ``move_to_end`` on every hit cost about 60 bytes a key and a call a hit);
* nothing is served fresh outside the *lease* (``lease_until``, kept by the owner
  while this process provably receives invalidations) nor from an older *epoch*
  (:meth:`retire` starts a new one when invalidations may have been missed: older
  entries stay only as the stale reserve);
* only public data enters: callers hand in values already filtered for anonymous
  clients.

Counters are plain integers (read by the metrics collector at scrape time), so a
hit costs no lock.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, defaultdict, deque
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any

from resolver.core.identifier import key_starts

ENTRY_OVERHEAD = 400  # bytes: the Entry, its dict slots and the key, roughly
ENCODING_OVERHEAD = 100  # bytes: one kept encoding's dict slot and tuple
MAX_REPLIES = 16         # replies kept for one entry (its spellings, forms and filters)


@dataclass(slots=True, eq=False)
class Entry:
    key: str
    public: bytes | None  # the public values, output-form JSON; None: does not exist
    expires: float        # fresh until (kept for stale answers ``stale_window`` longer)
    epoch: int
    # the replies kept for it: (form, spelling, bytes counted), made on the first one
    spellings: list[tuple[Hashable, Any, int]] | None = None
    shared: bytes | None = None   # the shared values (output-form JSON), for authorized reads
    template: str | None = None   # the template the record follows
    asked: bool = False           # answered once already (replies kept from the second: coalesce.py)
    recent: bool = False          # hit since it last came to the front of the order (CLOCK)


def _size(entry: Entry) -> int:
    """The bytes ``entry`` counts in the byte bound: its key and values, roughly its
    objects, and the replies kept for it."""
    return (len(entry.key) + (len(entry.public) if entry.public else 0)
            + (len(entry.shared) if entry.shared else 0) + ENTRY_OVERHEAD
            + sum(added for _, _, added in entry.spellings or ()))


class AnswerCache:
    """Bounded TTL + LRU cache of resolutions (see module docstring)."""

    def _until(self, entry: Entry) -> float:
        """When ``entry`` goes: after its TTL, and the stale window for values."""
        return entry.expires + (self.stale_window if entry.public is not None else 0.0)

    def __init__(self, max_entries: int = 1_000_000, max_bytes: int = 1 << 30,
                 max_ttl: float = 3600.0, negative_ttl: float = 5.0,
                 clock: Callable[[], float] = time.monotonic, stale_window: float = 0.0,
                 max_negative: int | None = None) -> None:
        if min(max_entries, max_bytes, max_ttl, negative_ttl, stale_window) < 0:
            raise ValueError("cache limits must not be negative")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.max_ttl = max_ttl
        self.negative_ttl = negative_ttl
        self.stale_window = stale_window
        self.max_negative = max(1, max_entries // 16) if max_negative is None else max_negative
        self.clock = clock
        self.enabled = max_entries > 0 and max_bytes > 0
        self.lease_until = math.inf  # the owner narrows it to what it can prove
        self.epoch = 0
        self._pos: dict[str, Entry] = {}
        # the positives' keys, oldest first (a key dropped or put again is skipped or
        # found twice; rebuilt from the dict when mostly such: _compact)
        self._order: deque[str] = deque()
        self._neg: OrderedDict[str, Entry] = OrderedDict()  # insertion order = expiry order
        self._encodings: defaultdict[Hashable, dict[Any, tuple[Entry, Any]]] = defaultdict(dict)
        self._wheel: defaultdict[int, list[Entry]] = defaultdict(list)  # second -> positives
        self._swept = int(clock())
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self.evictions = 0      # for room (size or count)
        self.expirations = 0
        self.invalidations = 0  # by a write

    def __len__(self) -> int:
        return len(self._pos) + len(self._neg)

    @property
    def negative_entries(self) -> int:
        return len(self._neg)

    def usable(self) -> bool:
        """May anything be served fresh now (enabled, and inside the lease)?"""
        return self.enabled and self.clock() < self.lease_until

    # -- reads ----------------------------------------------------------------------------

    def get(self, key: str) -> Entry | None:
        """The fresh entry for ``key``, counted as a hit, or None (a miss). An entry past
        any use (its TTL and the stale window over) goes now."""
        entry = self._pos.get(key)
        now = self.clock()
        if entry is None:
            entry = self._neg.get(key)
            if entry is None:
                self.misses += 1
                return None
        elif entry.expires > now and entry.epoch == self.epoch and now < self.lease_until:
            entry.recent = True
            self.hits += 1
            return entry
        if entry.public is None and entry.expires > now and entry.epoch == self.epoch \
                and now < self.lease_until:
            self.hits += 1
            return entry
        if self._until(entry) <= now:
            self._drop(entry)
            self.expirations += 1
        self.misses += 1
        return None

    def stale(self, key: str) -> Entry | None:
        """What is still kept of ``key`` for a stale answer (any epoch, past its TTL but
        within the stale window), or None."""
        entry = self._pos.get(key) or self._neg.get(key)
        if entry is not None and self.clock() < self._until(entry):
            return entry
        return None

    def encodings(self, form: Hashable) -> dict[Any, tuple[Entry, Any]]:
        """The spelling → (entry, encoded reply) map of one reply form (read-only use;
        :meth:`lookup` is the hit path)."""
        return self._encodings[form]

    def lookup(self, form: Hashable, spelling: Any) -> Any:
        """The encoded reply kept for a request spelling, if its entry is fresh (a hit)."""
        kept = self._encodings[form].get(spelling)
        if kept is None:
            return None
        entry, value = kept
        now = self.clock()
        if entry.expires > now and entry.epoch == self.epoch and now < self.lease_until:
            entry.recent = True
            self.hits += 1
            return value
        return None

    def held(self, key: str) -> Entry | None:
        """The fresh entry holding values for ``key`` (a hit), or None, not counted as a
        miss: for a text that may not be a key at all (a batch tries each identifier as
        written before parsing it)."""
        entry = self._pos.get(key)
        if entry is None:
            return None
        now = self.clock()
        if entry.expires > now and entry.epoch == self.epoch and now < self.lease_until:
            entry.recent = True
            self.hits += 1
            return entry
        return None

    def keys(self) -> list[str]:
        """A snapshot of the cached keys."""
        return [*self._pos, *self._neg]

    # -- writes (resolver/coalesce.py only) ------------------------------------------------

    def put(self, key: str, public: bytes | None, ttl: float | None,
            shared: bytes | None = None, template: str | None = None) -> Entry | None:
        """Remember what anonymous clients see of ``key`` (None: it does not exist) for
        ``ttl`` seconds (capped by ``max_ttl``; None: no value has a TTL); returns the
        entry, or None when not cacheable (or not now: outside the lease)."""
        if not self.usable():
            return None
        now = self.clock()
        if public is None:
            ttl = self.negative_ttl
        else:
            ttl = self.max_ttl if ttl is None else min(self.max_ttl, ttl)
        if ttl <= 0:
            return None
        self._drop_key(key)
        if public is None:
            entry = Entry(key, None, now + ttl, self.epoch)
            self._neg[key] = entry
        else:
            entry = Entry(key, public, now + ttl, self.epoch,
                          shared=shared, template=template)
            self._pos[key] = entry
            self._order.append(key)
            if len(self._order) > 2 * len(self._pos) + 1024:
                self._compact()
            self._wheel[int(self._until(entry)) + 1].append(entry)
        self.bytes += _size(entry)
        self._make_room(now)
        return entry if self._holds(entry) else None

    def keep(self, entry: Entry, form: Hashable, spelling: Any, value: Any, size: int) -> None:
        """Keep an encoded reply of ``entry`` for ``spelling`` (``size`` bytes, counted in
        the byte bound)."""
        table = self._encodings[form]
        if not self._holds(entry) or spelling in table or \
                len(entry.spellings or ()) >= MAX_REPLIES:
            return   # (past MAX_REPLIES, further spellings and filters are made each time)
        table[spelling] = (entry, value)
        added = size + ENCODING_OVERHEAD
        if entry.spellings is None:
            entry.spellings = []
        entry.spellings.append((form, spelling, added))
        self.bytes += added
        self._make_room(self.clock())

    def evict(self, key: str) -> bool:
        """Forget ``key`` because it changed. True if it was cached."""
        if self._drop_key(key):
            self.invalidations += 1
            return True
        return False

    def evict_under(self, prefixes: Iterable[str], keys: Iterable[str] | None = None) -> int:
        """Forget the identifiers under ``prefixes`` (descendant prefixes included), among
        ``keys`` (a slice of a snapshot of the keys, so a caller can pause between slices)
        or all. Returns how many were cached."""
        starts = key_starts(prefixes)
        doomed = [k for k in (self.keys() if keys is None else keys) if k.startswith(starts)]
        return sum(self.evict(k) for k in doomed)

    def evict_negative(self) -> int:
        """Forget every "not found" (identifiers were created in bulk)."""
        keys = list(self._neg)
        for key in keys:
            self.evict(key)
        return len(keys)

    def retire(self) -> None:
        """Serve nothing cached so far as fresh again: invalidations may have been missed.
        What is kept stays as the stale reserve until refreshed or reclaimed."""
        self.epoch += 1
        self.invalidations += len(self._pos)
        for key in list(self._neg):
            self._drop_key(key)

    def clear(self) -> None:
        self.invalidations += len(self)
        self._pos.clear()
        self._order.clear()
        self._neg.clear()
        self._encodings.clear()
        self._wheel.clear()
        self.bytes = 0

    def sweep(self) -> int:
        """Reclaim what expired: negatives past their TTL, positives past the stale
        window. Cheap enough to call every second. Returns how many went."""
        now = self.clock()
        gone = self._expire_negatives(now)
        second = int(now)
        while self._swept <= second:
            for entry in self._wheel.pop(self._swept, ()):
                if self._pos.get(entry.key) is entry and self._until(entry) <= now:
                    self._drop(entry)
                    self.expirations += 1
                    gone += 1
            self._swept += 1
        return gone

    # -- internals ------------------------------------------------------------------------

    def _holds(self, entry: Entry) -> bool:
        table = self._neg if entry.public is None else self._pos
        return table.get(entry.key) is entry

    def _drop_key(self, key: str) -> bool:
        entry = self._pos.get(key) or self._neg.get(key)
        if entry is None:
            return False
        self._drop(entry)
        return True

    def _drop(self, entry: Entry) -> None:
        if entry.public is None:
            del self._neg[entry.key]
        else:
            del self._pos[entry.key]
        for form, spelling, _ in entry.spellings or ():
            table = self._encodings[form]
            kept = table.get(spelling)
            if kept is not None and kept[0] is entry:
                del table[spelling]
        self.bytes -= _size(entry)

    def _expire_negatives(self, now: float) -> int:
        gone = 0
        while self._neg:
            oldest = next(iter(self._neg.values()))
            if oldest.expires > now:
                break
            self._drop(oldest)
            self.expirations += 1
            gone += 1
        return gone

    def _make_room(self, now: float) -> None:
        self._expire_negatives(now)
        while len(self._neg) > self.max_negative:
            self._drop(next(iter(self._neg.values())))
            self.evictions += 1
        while (len(self._pos) > self.max_entries or self.bytes > self.max_bytes) and \
                (self._pos or self._neg):
            if not self._pos:
                self._drop(next(iter(self._neg.values())))
                self.evictions += 1
                continue
            key = self._order.popleft()   # (every key of _pos is in the order)
            oldest = self._pos.get(key)
            if oldest is None:
                continue                  # dropped since, or found twice: put again
            if oldest.recent:             # a second chance: to the back, unmarked
                oldest.recent = False
                self._order.append(key)
                continue
            self._drop(oldest)
            self.evictions += 1

    def _compact(self) -> None:
        """The order rebuilt from the dict (its insertion order: each key once, by when it
        was last put), when most of it is keys dropped or put again since."""
        self._order = deque(self._pos)
