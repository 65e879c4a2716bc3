"""AnswerCache policy, without I/O: TTLs, negative entries, bounds, invalidation."""

from __future__ import annotations

from typing import Any

import pytest

from resolver.cache import ENTRY_OVERHEAD, AnswerCache
from resolver.core import codec


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def values(ttl: int = 60, *more_ttls: int) -> bytes:
    return codec.public_json([
        {"index": i + 1, "type": "URL", "ttl": t, "data": {"format": "string", "value": "u"},
         "timestamp": 0, "permissions": "1110"} for i, t in enumerate((ttl, *more_ttls))])


def put(cache: AnswerCache, key: str, public: bytes | None) -> Any:
    return cache.put(key, public, None if public is None else codec.min_ttl(public))


def test_entry_lives_for_the_smallest_ttl_capped_by_max_ttl() -> None:
    clock = Clock()
    cache = AnswerCache(max_ttl=100, clock=clock)
    put(cache, "88.1/A", values(30, 10, 50))
    put(cache, "88.1/B", values(86400))
    clock.t += 9.9
    assert cache.get("88.1/A") is not None
    clock.t += 0.2
    assert cache.get("88.1/A") is None and cache.expirations == 1
    clock.t += 89
    assert cache.get("88.1/B") is not None      # 99 s: under the 100 s cap
    clock.t += 2
    assert cache.get("88.1/B") is None
    assert put(cache, "88.1/C", values(0)) is None   # ttl 0: not cached


def test_negative_entries_expire_after_negative_ttl() -> None:
    clock = Clock()
    cache = AnswerCache(negative_ttl=5, clock=clock)
    entry = put(cache, "88.1/NONE", None)
    assert entry is not None and entry.public is None
    clock.t += 4.9
    assert cache.get("88.1/NONE") is not None
    clock.t += 0.2
    assert cache.get("88.1/NONE") is None
    assert put(AnswerCache(negative_ttl=0), "88.1/NONE", None) is None


def test_bounded_by_entries_least_recently_used_first() -> None:
    cache = AnswerCache(max_entries=3)
    for k in "ABC":
        put(cache, f"88.1/{k}", values())
    assert cache.get("88.1/A") is not None       # A is now the most recent
    put(cache, "88.1/D", values())
    assert len(cache) == 3 and cache.evictions == 1
    assert cache.get("88.1/B") is None and cache.get("88.1/A") is not None


def test_the_eviction_order_stays_bounded_and_hot_entries_stay() -> None:
    """CLOCK over a deque of keys: keys invalidated and put again over and over do not
    grow the order past its bound (it is rebuilt), and under eviction the entries hit
    since they were put outlive those that were not."""
    cache = AnswerCache(max_entries=100)
    record = values()
    for n in range(20_000):
        key = f"88.1/K{n % 50}"
        cache.evict(key)
        put(cache, key, record)
    assert len(cache) == 50 and len(cache._order) <= 2 * 50 + 1024
    for n in range(100):
        put(cache, f"88.1/HOT{n}", record)
    for n in range(0, 100, 2):
        assert cache.get(f"88.1/HOT{n}") is not None          # every other one is hit
    for n in range(50):
        put(cache, f"88.1/NEW{n}", record)                    # 50 must go
    kept = [n for n in range(100) if cache.get(f"88.1/HOT{n}") is not None]
    assert kept == list(range(0, 100, 2)), kept
    assert len(cache) == 100 and cache.evictions >= 50


def test_bounded_by_bytes_including_renders_and_aliases() -> None:
    record = values()
    per = ENTRY_OVERHEAD + len("88.1/0") + len(record)
    cache = AnswerCache(max_bytes=3 * per + 500)
    for i in range(3):
        put(cache, f"88.1/{i}", record)
    assert len(cache) == 3 and cache.bytes <= cache.max_bytes
    entry = cache.get("88.1/0")
    assert entry is not None
    cache.keep(entry, "json", "88.1/0", b"x" * 900, 900)  # over by 500: the oldest (1) goes
    assert cache.get("88.1/1") is None and cache.bytes <= cache.max_bytes
    cache.keep(entry, "http", b"/api/handles/88.1/0", (b"h", b"b"), 5000)   # over the bound
    assert cache.bytes <= cache.max_bytes


def test_evict_drops_the_entry_and_every_alias() -> None:
    cache = AnswerCache()
    entry = put(cache, "88.1/A", values())
    assert entry is not None
    cache.keep(entry, "http", b"/api/handles/88.1/A", (b"head", b"body"), 8)
    cache.keep(entry, "http", b"/api/handles/88.1/a", (b"head", b"body"), 8)  # prefix case differs
    assert cache.lookup("http", b"/api/handles/88.1/A") == (b"head", b"body") and cache.hits == 1
    assert cache.evict("88.1/A") and cache.invalidations == 1
    assert cache.lookup("http", b"/api/handles/88.1/A") is None
    assert cache.lookup("http", b"/api/handles/88.1/a") is None
    assert cache.bytes == 0 and not cache.evict("88.1/A")


def test_disabled_cache_keeps_nothing() -> None:
    cache = AnswerCache(max_entries=0)
    assert put(cache, "88.1/A", values()) is None and len(cache) == 0
    with pytest.raises(ValueError):
        AnswerCache(max_bytes=-1)
