"""The structure's promises, checked on a running node: one owner writes the answer
cache, and one module shapes replies, so the fast path and aiohttp answer alike."""

from __future__ import annotations

import asyncio
import socket
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import orjson
import pytest
import requests

from resolver.cache import AnswerCache
from resolver.config import Settings
from resolver.node import Listeners, Node
from resolver.pg.pool import create_pool
from resolver.protocol.frames import FrameReader, encode_request
from tests.conftest import Server, Tenant
from tests.resolver.test_fast_path import read_responses

MUTATORS = ("put", "keep", "evict", "evict_under", "evict_negative", "retire", "clear", "sweep")


def test_every_cache_write_goes_through_the_coalescer(pg_dsn: str, tenant: Tenant,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Patch every method that changes the cache, drive every front end of an in-process
    node (fast path, aiohttp, JSON and msgpack batches, binary single and batch, writes
    and their invalidations) and look at who called."""
    callers: Counter[tuple[str, str]] = Counter()
    for name in MUTATORS:
        original = getattr(AnswerCache, name)

        def spy(self: AnswerCache, *args: Any, _name: str = name,
                _original: Callable[..., Any] = original, **kw: Any) -> Any:
            callers[(sys._getframe(1).f_globals["__name__"], _name)] += 1
            return _original(self, *args, **kw)

        monkeypatch.setattr(AnswerCache, name, spy)
    for i in range(3):
        r = requests.put(tenant.handle_url(f"OWN{i}"), headers=tenant.op.bearer,
                         json=[{"index": 1, "type": "URL", "data": f"https://example.org/{i}"}])
        assert r.status_code in (200, 201), r.text
    ids = [f"{tenant.prefix}/OWN{i}" for i in range(3)] + [f"{tenant.prefix}/NOPE"]

    async def go() -> None:
        import aiohttp

        pool = await create_pool(pg_dsn)
        keydir = Path(tempfile.mkdtemp(prefix="idres-key-"))
        node = Node(Settings(dsn=pg_dsn, port=0, data_dir=keydir, key_file=keydir / "k.pem"),
                    pg_dsn, pool)
        await node.start()
        listeners = Listeners(node)
        await listeners.open(binary_port=0)
        base = f"http://127.0.0.1:{listeners.port}"
        try:
            async with aiohttp.ClientSession() as http:
                for _ in range(2):                                    # miss, then hit
                    for h in ids:
                        async with http.get(f"{base}/api/handles/{h}") as resp:   # fast path
                            await resp.read()
                        async with http.get(f"{base}/api/handles/{h}?type=URL") as resp:
                            await resp.read()                                     # aiohttp
                    async with http.post(f"{base}/api/resolve", json={"handles": ids}) as resp:
                        assert resp.status == 200
                    async with http.post(f"{base}/api/resolve", data=msgpack.packb(ids),
                                         headers={"Content-Type": "application/msgpack"}) as resp:
                        assert resp.status == 200
                async with http.put(f"{base}/api/handles/{ids[0]}?index=1",
                                    headers=tenant.op.bearer,
                                    json=[{"index": 1, "type": "URL", "data": "https://x.org"}]
                                    ) as resp:
                    assert resp.status == 200
            reader, writer = await asyncio.open_connection("127.0.0.1", listeners.binary_port)
            frames = FrameReader()
            for _ in range(2):
                writer.write(b"".join(encode_request(n, 1, h) for n, h in enumerate(ids))
                             + encode_request(99, 2, ids))
                got: list[bytes] = []
                while len(got) < len(ids) + 1:
                    got += frames.feed(await reader.read(65536))[0]
            writer.close()
        finally:
            await listeners.close()
            await node.close()
            await pool.close()

    asyncio.run(go())
    writers = {module for module, _ in callers}
    assert writers == {"resolver.coalesce"}, callers
    done = {name for _, name in callers}
    assert {"put", "keep", "evict"} <= done, callers


def slow_requests(server: Server) -> float:
    """Requests the fast path gave aiohttp so far: lent, or with their connection (the
    metrics request reading them is one, lent)."""
    text = requests.get(f"{server.url}/metrics").text
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith(("idres_http_handoffs_total ", "idres_http_lent_total ")))


def _raw(port: int, request: bytes, handed_off: bool) -> tuple[int, dict[str, str], bytes]:
    """One response to ``request``, on the fast path or (``handed_off``) on a connection
    that an earlier request already handed to aiohttp for good (a chunked body is never
    lent: resolver/http/loan.py). A HEAD's body stays empty."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        if handed_off:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                      b"\r\n0\r\n\r\n")
            read_responses(s, 1)
        s.sendall(request)
        if not request.startswith(b"HEAD"):
            return read_responses(s, 1)[0]
        data = b""
        while b"\r\n\r\n" not in data:
            data += s.recv(65536)
        lines = data.split(b"\r\n\r\n")[0].decode().split("\r\n")
        return (int(lines[0].split()[1]),
                {k.lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:])}, b"")


def test_fast_path_and_aiohttp_send_the_same_reply(tenant: Tenant, server: Server,
                                                  admin: Any) -> None:
    h = tenant.handle_url
    assert requests.put(h("SAME"), headers=tenant.op.bearer, json=[
        {"index": 1, "type": "URL", "data": "https://example.org/same"}]).status_code == 201
    assert requests.put(h("HIDDEN"), headers=tenant.op.bearer, json=[
        {"index": 1, "type": "X", "data": "x", "permissions": "1100"}]).status_code == 201
    delegated = f"{tenant.prefix}.9"
    assert requests.post(f"{server.url}/api/prefixes", headers=tenant.op.bearer,
                         json={"prefix": delegated, "owner": tenant.op.name}).status_code == 201
    key = requests.get(f"{server.url}/api/node").json()["publicKey"]
    assert requests.post(f"{server.url}/api/delegations", headers=tenant.op.bearer, json={
        "prefix": delegated, "servers": [{"url": "http://127.0.0.1:9", "key": key}]}
    ).status_code == 201
    assert requests.put(h("MULTI"), headers=tenant.op.bearer, json=[
        {"index": 1, "type": "URL", "data": "https://example.org/m"},
        {"index": 2, "type": "EMAIL", "data": "m@example.org"},
        {"index": 3, "type": "order.status", "data": "open"}]).status_code == 201
    multi = f"{tenant.prefix}/MULTI"
    paths = [f"{tenant.prefix}/SAME", f"{tenant.prefix}/same-not-here", f"{tenant.prefix}/HIDDEN",
             f"{delegated}/X", f"{tenant.prefix.lower()}/SAME", "88.1/%zz", "no-slash",
             f"{tenant.prefix}/%E2%82%AC",
             # the value filters, answered on the fast path too
             f"{multi}?index=2", f"{multi}?type=url", f"{multi}?index=1&index=3",
             f"{multi}?type=order.&index=2", f"{multi}?type=NONE", f"{multi}?type=order%2Estatus",
             f"{tenant.prefix}/same-not-here?index=1", f"{delegated}/X?type=URL",
             f"{tenant.prefix}/HIDDEN?index=1"]
    for path in paths:
        for method in ("GET", "HEAD"):
            request = f"{method} /api/handles/{path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
            for _ in range(2):       # a miss first, then (where cacheable) a hit
                fast = _raw(server.port, request, handed_off=False)
                slow = _raw(server.port, request, handed_off=True)
                assert fast[0] == slow[0], (path, fast, slow)
                for headers in (fast[1], slow[1]):
                    headers.pop("date")
                assert fast[1] == slow[1], (path, method)
                if b'"signature"' in fast[2]:     # signed per second: compare the rest
                    one, two = orjson.loads(fast[2]), orjson.loads(slow[2])
                    assert one.pop("signature")["key"] == two.pop("signature")["key"]
                    assert one == two
                else:
                    assert fast[2] == slow[2], (path, method)
    assert fast[1]["server"] == "idres"
    # the filters stayed on the fast path; other query strings (and bad filters) did not
    before = slow_requests(server)
    for query, handed in [("index=2", 0), ("type=URL&type=EMAIL", 0), ("index=x", 1),
                          ("index=2&cert=true", 1), ("", 1), ("index", 1)]:
        request = f"GET /api/handles/{multi}?{query} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        status = _raw(server.port, request, handed_off=False)[0]
        now = slow_requests(server)
        assert now - before == handed + 1, (query, status)   # + the metrics request itself
        assert status == (400 if query in ("index=x", "index") else 200), query
        before = now
