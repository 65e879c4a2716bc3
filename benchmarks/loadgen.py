"""Load generators written in Python, for what wrk cannot do: bulk loading, the raw
asyncpg reference, the pipelined binary protocol, the mixed read/write workload.

Each runs in its own process (``python -m benchmarks.loadgen KIND JSON-ARGS``) so
that run.py can pin it to a core, and prints one JSON line of results.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import sys
import time
from typing import Any

import aiohttp
import asyncpg
import orjson
import uvloop

from benchmarks import dataset
from resolver.pg.pool import release_reset
from resolver.protocol.frames import encode_request


def percentiles(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {"p50_ms": 0.0, "p99_ms": 0.0}
    s = sorted(samples)
    return {"p50_ms": s[len(s) // 2] * 1000, "p99_ms": s[min(len(s) - 1, int(len(s) * 0.99))] * 1000}


async def bulk(a: dict[str, Any]) -> dict[str, Any]:
    """Register identifiers 0..n through POST /api/bulk, ``concurrency`` requests at a time."""
    n, per, url = a["n"], a["batch"], a["url"] + "/api/bulk"
    headers = {"Authorization": f"Bearer {a['token']}", "Content-Type": "application/json"}
    made = time.perf_counter()
    bodies = []
    sizes: list[int] = []
    first = a.get("first", 0)
    for start in range(first, first + n, per):   # generated before the clock starts
        stop = min(first + n, start + per)
        recs = ([dataset.asset(i, a["prefix"], a.get("template")) for i in range(start, stop)]
                if a.get("assets") else list(dataset.records(start, stop)))
        sizes.extend(len(orjson.dumps(r["values"])) for r in recs[:50])
        bodies.append(orjson.dumps(recs))
    made = time.perf_counter() - made
    server_seconds = 0.0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal server_seconds
        while bodies:
            body = bodies.pop(0)
            async with session.post(url, data=body, headers=headers) as r:
                body = await r.json()
                if r.status != 201:
                    raise RuntimeError(f"bulk failed: {r.status} {body}")
                server_seconds += body["seconds"]

    started = time.perf_counter()
    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(worker(session) for _ in range(a["concurrency"])))
    elapsed = time.perf_counter() - started
    return {"identifiers": n, "seconds": elapsed, "per_second": n / elapsed,
            "generation_seconds": made,
            "server_transaction_seconds": server_seconds,
            "record_bytes_min": min(sizes), "record_bytes_max": max(sizes)}


async def writes(a: dict[str, Any]) -> dict[str, Any]:
    """Register assets first..first+n one PUT each, ``concurrency`` at a time (``auth``:
    the Authorization header, else a bearer ``token``; ``insecure``: a TLS peer with a
    self-signed certificate, as a Handle.Net server run by hand)."""
    url, headers = a["url"], {"Authorization": a.get("auth") or f"Bearer {a['token']}",
                              "Content-Type": "application/json"}
    todo = [dataset.asset(i, a["prefix"], a.get("template"))
            for i in range(a["first"], a["first"] + a["n"])]
    bodies = [(r["handle"], orjson.dumps({k: v for k, v in r.items() if k != "handle"}))
              for r in todo]
    bodies.reverse()
    lat: list[float] = []

    async def worker(session: aiohttp.ClientSession) -> None:
        while bodies:
            ident, body = bodies.pop()
            t = time.perf_counter()
            async with session.put(f"{url}/api/handles/{ident}", data=body,
                                   headers=headers) as r:
                if r.status not in (200, 201):
                    raise RuntimeError(f"PUT {ident}: {r.status} {await r.text()}")
                await r.read()
            lat.append(time.perf_counter() - t)

    started = time.perf_counter()
    connector = aiohttp.TCPConnector(limit=0, ssl=False if a.get("insecure") else None)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(a["concurrency"])))
    elapsed = time.perf_counter() - started
    return {"per_second": a["n"] / elapsed, **percentiles(lat)}


async def asyncpg_ref(a: dict[str, Any]) -> dict[str, Any]:
    """The reference for uncached resolution: raw primary-key lookups, random keys (or,
    with ``query`` and ``prefix``, that query on the code of asset i)."""
    # the same pool settings as idres (no reset round trip on release): raw, not handicapped
    pool = await asyncpg.create_pool(a["dsn"], min_size=a["pool"], max_size=a["pool"],
                                     reset=release_reset)
    n, deadline = a["n"], time.perf_counter() + a["duration"]
    count, lat = 0, []
    query = a.get("query") or 'SELECT "values" FROM handles WHERE handle = $1'

    def key_of(i: int) -> tuple[Any, ...]:
        if a.get("query"):
            return (a["prefix"], "asset.equipment_code", False, 100, f"EQ-{i:08d}")
        return (dataset.identifier(i),)

    async def worker() -> None:
        nonlocal count
        rnd = random.Random()
        while time.perf_counter() < deadline:
            key = key_of(rnd.randrange(n))
            t = time.perf_counter()
            row = await pool.fetchval(query, *key)
            lat.append(time.perf_counter() - t)
            if row is None:
                raise RuntimeError(f"{key} missing")
            count += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(a["concurrency"])))
    elapsed = time.perf_counter() - started
    await pool.close()
    return {"per_second": count / elapsed, **percentiles(lat)}


async def copy_ref(a: dict[str, Any]) -> dict[str, Any]:
    """The reference for bulk registration: what PostgreSQL itself does with the same rows,
    COPY of identifiers ``first``..``first + n`` (encoded as idres stores them, before the
    clock starts) into ``handles`` and ``audit`` in transactions of ``batch``, over
    ``concurrency`` connections: the ceiling for any bulk path on this database."""
    from registry.records_input import parse_records
    from resolver.core import codec

    batches = []
    for start in range(a["first"], a["first"] + a["n"], a["batch"]):
        recs = list(dataset.records(start, min(a["first"] + a["n"], start + a["batch"])))
        rows = []
        for e in parse_records(codec.parse_json(orjson.dumps(recs)), len(recs)):
            stored, public = codec.stored_columns(e.values)
            rows.append((e.ident.key, e.ident.prefix.text, stored, public))
        batches.append(rows)
    conns = [await asyncpg.connect(a["dsn"]) for _ in range(a["concurrency"])]

    async def worker(conn: asyncpg.Connection) -> None:
        await conn.set_type_codec("json", schema="pg_catalog", encoder=lambda b: b,
                                  decoder=orjson.loads, format="binary")
        while batches:
            rows = batches.pop()
            async with conn.transaction():
                await conn.copy_records_to_table(
                    "handles", records=rows, columns=["handle", "prefix", "values", "public_json"])
                await conn.copy_records_to_table(
                    "audit", records=[(None, "bench", "create", r[0], r[1]) for r in rows],
                    columns=["operator_id", "actor", "action", "handle", "prefix"])
                await conn.execute("SELECT pg_notify('idres_bench', 'created')")

    started = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in conns))
    elapsed = time.perf_counter() - started
    for c in conns:
        await c.close()
    return {"identifiers": a["n"], "seconds": elapsed, "per_second": a["n"] / elapsed}


class _Pipelined(asyncio.Protocol):
    """Keeps ``depth`` frames in flight; counts answers by their length prefix only."""

    def __init__(self, frames: list[bytes], depth: int) -> None:
        self.frames, self.depth, self.pos = frames, depth, 0
        self.buf = b""
        self.answers = 0
        self.errors = 0
        self.transport: Any = None
        self.stop = False

    def _send(self, k: int) -> None:
        out = []
        for _ in range(k):
            out.append(self.frames[self.pos])
            self.pos = (self.pos + 1) % len(self.frames)
        self.transport.write(b"".join(out))

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self._send(self.depth)

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        pos, got = 0, 0
        while len(buf) - pos >= 4:
            size = int.from_bytes(buf[pos:pos + 4], "big")
            if len(buf) - pos - 4 < size:
                break
            got += 1
            pos += 4 + size
        self.buf = buf[pos:]
        self.answers += got
        if got and not self.stop:
            self._send(got)


async def binary(a: dict[str, Any]) -> dict[str, Any]:
    """Resolutions/s over the binary protocol: ``conns`` connections, ``depth`` in flight."""
    ids = [dataset.identifier(i) for i in a["ids"]]
    if a.get("batch"):
        size = a["batch"]
        frames = [encode_request(i, 2, ids[j:j + size]) for i, j in
                  enumerate(range(0, len(ids) - size + 1, size))]
    else:
        frames = [encode_request(i, 1, h) for i, h in enumerate(ids)]
    loop = asyncio.get_running_loop()
    protos = []
    for _ in range(a["conns"]):
        _, p = await loop.create_connection(lambda: _Pipelined(frames, a["depth"]),
                                            a["host"], a["port"])
        protos.append(p)
    await asyncio.sleep(0.5)                          # warm-up
    before = sum(p.answers for p in protos)
    started = time.perf_counter()
    await asyncio.sleep(a["duration"])
    done = sum(p.answers for p in protos) - before
    elapsed = time.perf_counter() - started
    for p in protos:
        p.stop = True
        p.transport.close()
    per = a.get("batch") or 1
    return {"frames_per_second": done / elapsed, "per_second": done * per / elapsed}


async def mixed(a: dict[str, Any]) -> dict[str, Any]:
    """95% resolutions, 5% updates (``writes``: another share); a read is stale if it shows a version older than the
    newest one whose update was acknowledged before the read was sent. Writes to one
    identifier never overlap (a second writer reads instead), so versions commit in
    order and "newest acknowledged" is well defined."""
    url, hot = a["url"], [dataset.identifier(i) for i in range(a["hot"])]
    headers = {"Authorization": f"Bearer {a['token']}"}
    acked: dict[str, int] = {h: 0 for h in hot}
    counter = {h: 0 for h in hot}
    writing: set[str] = set()
    stats = {"reads": 0, "writes": 0, "stale": 0, "errors": 0}
    lat: list[float] = []
    deadline = math.inf  # set once every identifier holds version 0
    share = a.get("writes", 0.05)

    async def worker(session: aiohttp.ClientSession, rnd: random.Random) -> None:
        while time.perf_counter() < deadline:
            h = rnd.choice(hot)
            t = time.perf_counter()
            if rnd.random() < share and h not in writing:
                writing.add(h)
                counter[h] += 1
                version = counter[h]
                body = [{"index": 90, "type": "bench.version", "data": str(version)}]
                try:
                    async with session.put(f"{url}/api/handles/{h}?index=90", json=body,
                                           headers=headers) as r:
                        await r.read()
                        ok = r.status == 200
                finally:
                    writing.discard(h)
                if not ok:
                    stats["errors"] += 1
                    continue
                acked[h] = version
                stats["writes"] += 1
            else:
                floor = acked[h]
                async with session.get(f"{url}/api/handles/{h}?index=90") as r:
                    data = await r.json(content_type=None)
                if r.status != 200:
                    stats["errors"] += 1
                    continue
                seen = int(data["values"][0]["data"]["value"]) if data["values"] else 0
                if seen < floor:
                    stats["stale"] += 1
                stats["reads"] += 1
            lat.append(time.perf_counter() - t)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        for h in hot:   # version 0 everywhere first
            async with session.put(f"{url}/api/handles/{h}?index=90", headers=headers,
                                   json=[{"index": 90, "type": "bench.version", "data": "0"}]):
                pass
        started = time.perf_counter()
        deadline = started + a["duration"]  # the clock starts after the set-up writes
        await asyncio.gather(*(worker(session, random.Random(k))
                               for k in range(a["concurrency"])))
        elapsed = time.perf_counter() - started
    return {**stats, "per_second": (stats["reads"] + stats["writes"]) / elapsed,
            **percentiles(lat)}


KINDS = {"bulk": bulk, "writes": writes, "asyncpg": asyncpg_ref, "binary": binary, "mixed": mixed,
         "copy": copy_ref}

if __name__ == "__main__":
    kind, args = sys.argv[1], json.loads(sys.argv[2])
    print(json.dumps(uvloop.run(KINDS[kind](args))))
