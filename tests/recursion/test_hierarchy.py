"""A node tree on loopback, real processes: top-level → secondary → enterprise, and a
recursive node resolving through it (issue 4)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import requests
from aiohttp import web

from resolver.core import signing
from tests.conftest import Server, free_port, fresh_database, run_cli

URL = "https://mes.example/orders/1"


@dataclass
class Node:
    server: Server
    dsn: str
    token: str
    key: str

    @property
    def url(self) -> str:
        return self.server.url

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def prefix(self, *prefixes: str) -> None:
        for p in prefixes:
            r = requests.post(f"{self.url}/api/prefixes", json={"prefix": p}, headers=self.auth())
            assert r.status_code == 201, r.text

    def delegate(self, prefix: str, *to: Node | str, ttl: int = 86400, key: str = "") -> None:
        servers = [{"url": n.url, "key": n.key} if isinstance(n, Node) else
                   {"url": n, "key": key} for n in to]
        r = requests.post(f"{self.url}/api/delegations", headers=self.auth(),
                          json={"prefix": prefix, "servers": servers, "ttl": ttl})
        assert r.status_code == 201, r.text

    def put(self, handle: str, value: str = URL, ttl: int = 86400) -> None:
        r = requests.put(f"{self.url}/api/handles/{handle}", headers=self.auth(),
                         json=[{"index": 1, "type": "URL", "data": value, "ttl": ttl}])
        assert r.status_code in (200, 201), r.text


def node(pg_dsn: str, *extra: str) -> Node:
    dsn = fresh_database(pg_dsn, "node")
    token = json.loads(run_cli("operator", "create", "admin", "--admin", "--json",
                               dsn=dsn).stdout)["token"]
    srv = Server(dsn, *extra).wait_ready()
    key = requests.get(f"{srv.url}/api/node").json()["publicKey"]
    return Node(srv, dsn, token, key)


class Tamperer:
    """A man in the middle: forwards to a real node and changes the first value."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self.thread.start()
        ready.wait(5)

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)

        async def forward(request: web.Request) -> web.Response:
            async with aiohttp.ClientSession() as s, s.get(
                    self.upstream + str(request.rel_url)) as r:
                body = await r.json(content_type=None)
                status = r.status
            if body.get("values"):
                body["values"][0]["data"]["value"] = "https://evil.example/"
            return web.json_response(body, status=status)

        app = web.Application()
        app.router.add_get("/{tail:.*}", forward)
        self.runner = web.AppRunner(app)
        self.loop.run_until_complete(self.runner.setup())
        self.loop.run_until_complete(web.TCPSite(self.runner, "127.0.0.1", self.port).start())
        ready.set()
        self.loop.run_forever()

    def close(self) -> None:
        async def stop() -> None:
            await self.runner.cleanup()
        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@dataclass
class Tree:
    top: Node
    sec: Node
    ent: Node
    ent2: Node
    rec: Node
    mitm: Tamperer


@pytest.fixture(scope="module")
def tree(pg_dsn: str) -> Iterator[Tree]:
    ent, ent2, sec, top = (node(pg_dsn) for _ in range(4))
    ent.prefix("88.100.6", "88.100.7", "88.100.8")
    ent.put("88.100.7/ORDER-1")
    ent.put("88.100.8/ORDER-2")
    ent.put("88.100.6/ORDER-3")
    ent2.prefix("88.100.9")
    ent2.put("88.100.9/A", ttl=1)
    sec.prefix("88.100", "88.100.6", "88.100.7", "88.100.8", "88.100.9", "88.200")
    mitm = Tamperer(ent.url)
    sec.delegate("88.100.7", ent)
    sec.delegate("88.100.8", f"http://127.0.0.1:{free_port()}", ent.url, key=ent.key)
    sec.delegate("88.100.6", mitm.url, key=ent.key)
    sec.delegate("88.100.9", ent2)
    top.prefix("88", "88.100", "88.200")
    top.delegate("88.100", sec)
    top.delegate("88.200", sec)
    sec.delegate("88.200", top)                  # a loop
    rec = node(pg_dsn, "--recursive", "--root", top.url, "--root-key", top.key,
               "--upstream-timeout", "1", "--stale-window", "60")
    yield Tree(top, sec, ent, ent2, rec, mitm)
    mitm.close()
    for n in (rec, ent, ent2, sec, top):
        n.server.stop()


def test_non_recursive_nodes_answer_signed_referrals(tree: Tree) -> None:
    r = requests.get(f"{tree.top.url}/api/handles/88.100.7/ORDER-1")
    assert r.status_code == 300
    body = r.json()
    assert body["responseCode"] == 303 and body["handle"] == "88.100.7/ORDER-1"
    assert body["referral"] == {"prefix": "88.100", "ttl": 86400,
                                "servers": [{"url": tree.sec.url, "key": tree.sec.key}]}
    sig = body["signature"]
    signing.verify(tree.top.key, {"kind": "referral", "handle": "88.100.7/ORDER-1",
                                  **body["referral"], "iat": sig["iat"], "exp": sig["exp"]},
                   sig["sig"], int(time.time()))
    r = requests.get(f"{tree.sec.url}/api/handles/88.100.7/ORDER-1")
    assert r.status_code == 300 and r.json()["referral"]["prefix"] == "88.100.7"
    assert requests.get(f"{tree.ent.url}/api/handles/88.100.7/ORDER-1").status_code == 200
    # the CLI says where to go
    out = run_cli("resolve", "88.100.7/ORDER-1", "--server", tree.top.url, check=False)
    assert out.returncode == 3 and f"served by {tree.sec.url}" in out.stderr


def test_recursive_node_walks_the_tree_then_answers_from_its_cache(tree: Tree) -> None:
    r = requests.get(f"{tree.rec.url}/api/handles/88.100.7/ORDER-1?trace=true")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["values"][0]["data"]["value"] == URL
    hops = body["trace"]
    assert hops[0] == {"cache": "miss"}
    assert [h.get("result") for h in hops[1:]] == [
        "referral to 88.100", "referral to 88.100.7", "answer"]
    assert [h["server"] for h in hops[1:]] == [tree.top.url, tree.sec.url, tree.ent.url]
    assert all(h["verified"] for h in hops[1:])
    again = requests.get(f"{tree.rec.url}/api/handles/88.100.7/ORDER-1?trace=true").json()
    assert again["trace"] == [{"cache": "hit"}]
    # plain Handle clients get the plain answer, from the fast path
    plain = requests.get(f"{tree.rec.url}/api/handles/88.100.7/ORDER-1").json()
    assert plain == {"responseCode": 1, "handle": "88.100.7/ORDER-1", "values": body["values"]}
    out = run_cli("resolve", "88.100.7/ORDER-1", "--trace", "--server", tree.rec.url).stdout
    assert "hop 1: cache=hit" in out and URL in out


def test_failover_to_the_second_server(tree: Tree) -> None:
    r = requests.get(f"{tree.rec.url}/api/handles/88.100.8/ORDER-2?trace=true")
    assert r.status_code == 200, r.text
    last_two = r.json()["trace"][-2:]
    assert last_two[0]["result"].startswith("unreachable")
    assert last_two[1]["server"] == tree.ent.url and last_two[1]["result"] == "answer"


def test_tampered_answers_are_rejected_and_never_cached(tree: Tree) -> None:
    for _ in range(2):
        r = requests.get(f"{tree.rec.url}/api/handles/88.100.6/ORDER-3")
        assert r.status_code == 502, r.text
        assert "does not verify" in r.json()["message"]


def test_loops_and_depth_are_reported(tree: Tree, pg_dsn: str) -> None:
    started = time.monotonic()
    r = requests.get(f"{tree.rec.url}/api/handles/88.200/X")
    assert r.status_code == 508 and "loop" in r.json()["message"]
    shallow = node(pg_dsn, "--recursive", "--root", tree.top.url, "--root-key", tree.top.key,
                   "--max-depth", "1")
    try:
        r = requests.get(f"{shallow.url}/api/handles/88.100.7/ORDER-1")
        assert r.status_code == 508 and "more than 1 referrals" in r.json()["message"]
    finally:
        shallow.server.stop()
    assert time.monotonic() - started < 20


def test_a_signed_not_found_is_an_answer_not_an_outage(tree: Tree) -> None:
    """The authority answers, verifiably, that an identifier does not exist (or has no
    public value): the recursive node answers the same, caches the "not found" for the
    negative TTL, and never serves a deleted record as stale."""
    rec, ent = tree.rec.url, tree.ent
    for _ in range(2):
        r = requests.get(f"{rec}/api/handles/88.100.7/NEVER-THERE")
        assert r.status_code == 404 and r.json()["responseCode"] == 100, r.text
    r = requests.get(f"{rec}/api/handles/88.100.7/NEVER-TRACED?trace=true").json()
    assert r["trace"][-1]["result"] == "not found" and r["trace"][-1]["verified"]
    again = requests.get(f"{rec}/api/handles/88.100.7/NEVER-TRACED?trace=true").json()
    assert again["responseCode"] == 100 and again["trace"] == [{"cache": "hit"}]
    batch = requests.post(f"{rec}/api/resolve", json=["88.100.7/NEVER-THERE"]).json()
    assert batch["results"][0]["responseCode"] == 100
    # deleted at the authority once its TTL is over: "not found", not the old record
    ent.put("88.100.7/GONE", ttl=1)
    assert requests.get(f"{rec}/api/handles/88.100.7/GONE").status_code == 200
    assert requests.delete(f"{ent.url}/api/handles/88.100.7/GONE",
                           headers=ent.auth()).status_code == 200
    time.sleep(1.2)
    r = requests.get(f"{rec}/api/handles/88.100.7/GONE")
    assert r.status_code == 404 and "stale" not in r.json() and "Warning" not in r.headers
    # no public value: "no values" (responseCode 200), definitive too
    r = requests.put(f"{ent.url}/api/handles/88.100.7/HIDDEN", headers=ent.auth(), json=[
        {"index": 1, "type": "X", "data": "x", "permissions": "1100"}])
    assert r.status_code == 201
    r = requests.get(f"{rec}/api/handles/88.100.7/HIDDEN")
    assert r.status_code == 200 and r.json() == {"responseCode": 200, "values": [],
                                                 "handle": "88.100.7/HIDDEN"}


def test_stale_answers_when_every_authoritative_server_is_down(tree: Tree) -> None:
    assert requests.get(f"{tree.rec.url}/api/handles/88.100.9/A").status_code == 200
    assert tree.ent2.server.stop() == 0
    time.sleep(1.2)                               # the answer's TTL (1 s) has passed
    r = requests.get(f"{tree.rec.url}/api/handles/88.100.9/A")
    assert r.status_code == 200 and r.json()["stale"] is True
    started = time.monotonic()
    r = requests.get(f"{tree.rec.url}/api/handles/88.100.9/NEVER-SEEN")
    assert r.status_code == 504 and "no server of zone 88.100.9 answered" in r.json()["message"]
    assert time.monotonic() - started < 5         # bounded by --upstream-timeout
    got: Any = requests.get(f"{tree.rec.url}/api/handles/88.100.9/A?trace=true").json()
    assert got["stale"] is True and got["trace"][-1]["stale"] is True


def test_the_library_verifies_from_the_root_down(tree: Tree) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from resolver.core.delegation import Server
    from resolver.recursion.recursor import resolve_verified

    result = asyncio.run(resolve_verified("88.100.7/ORDER-1", (Server(tree.top.url, tree.top.key),)))
    assert result.public is not None and URL.encode() in result.public
    assert [h.get("result") for h in result.trace][-1] == "answer"
    wrong = signing.public_key_text(Ed25519PrivateKey.generate())
    with pytest.raises(signing.BadSignature, match="does not verify"):
        asyncio.run(resolve_verified("88.100.7/ORDER-1", (Server(tree.top.url, wrong),)))


def test_delegation_api_errors_and_cli(tree: Tree, pg_dsn: str) -> None:
    url = f"{tree.sec.url}/api/delegations"
    good = {"url": tree.ent.url, "key": tree.ent.key}
    for body, status, fragment in [
        ({"prefix": "88.100.7", "servers": [{"url": tree.ent.url, "key": "abc"}]}, 400,
         "not an Ed25519 public key"),
        ({"prefix": "88.100.7", "servers": [{"url": "ftp://x", "key": tree.ent.key}]}, 400,
         "http:// or https://"),
        ({"prefix": "88.100.7", "servers": []}, 400, "1 to 16"),
        ({"prefix": "88.999", "servers": [good]}, 404, "not allocated here"),
    ]:
        r = requests.post(url, json=body, headers=tree.sec.auth())
        assert r.status_code == status and fragment in r.json()["message"], r.text
    assert requests.post(url, json={"prefix": "88.100.7", "servers": [good]}).status_code == 401
    listed = requests.get(url).json()["delegations"]
    assert {"prefix": "88.100.7", "servers": [good], "ttl": 86400} in listed
    # the command line, on the enterprise node's own database: delegate, then a referral
    ent = tree.ent
    out = run_cli("prefix", "delegate", "88.100.8", "--server", tree.sec.url, "--key",
                  tree.sec.key, "--ttl", "60", dsn=ent.dsn)
    assert out.stdout.strip() == f"prefix 88.100.8 delegated to {tree.sec.url}"
    r = requests.get(f"{ent.url}/api/handles/88.100.8/ORDER-2")
    assert r.status_code == 300 and r.json()["referral"]["ttl"] == 60
    r = requests.delete(f"{ent.url}/api/delegations/88.100.8", headers=ent.auth())
    assert r.status_code == 200
    assert requests.get(f"{ent.url}/api/handles/88.100.8/ORDER-2").status_code == 200


def test_batches_carry_referrals_and_recursive_answers(tree: Tree) -> None:
    asked = ["88.100.7/ORDER-1", "88.100.6/ORDER-3", "bad"]
    r = requests.post(f"{tree.sec.url}/api/resolve", json=asked).json()["results"]
    assert r[0]["responseCode"] == 303 and r[0]["referral"]["prefix"] == "88.100.7"
    assert r[2]["responseCode"] == 102
    r = requests.post(f"{tree.rec.url}/api/resolve", json=asked).json()["results"]
    assert r[0]["responseCode"] == 1 and r[0]["values"][0]["data"]["value"] == URL
    assert r[1]["responseCode"] == 2 and "does not verify" in r[1]["message"]


def test_a_recursive_node_forwards_no_credentials_and_keeps_no_readers_answers(
        tree: Tree) -> None:
    """A reader of the enterprise node asks the recursive node with its token: the
    recursive node knows no such reader (401) and never sends the token upstream (the
    enterprise node's read log stays empty); anonymous answers through it show the
    public values only, shared ones never reach its cache."""
    ent, rec = tree.ent, tree.rec
    r = requests.put(f"{ent.url}/api/handles/88.100.7/SHARED-1", headers=ent.auth(), json=[
        {"index": 1, "type": "URL", "data": URL},
        {"index": 2, "type": "order.due", "data": "2027-01-01", "classification": "shared"}])
    assert r.status_code == 201, r.text
    token = requests.post(f"{ent.url}/api/readers", headers=ent.auth(),
                          json={"name": "carrier-app"}).json()["token"]
    assert requests.post(f"{ent.url}/api/grants", headers=ent.auth(), json={
        "grantee": "reader:carrier-app", "scope": "88.100.7"}).status_code == 201
    assert requests.put(f"{ent.url}/api/readlogs/88.100.7", headers=ent.auth(),
                        json={"enabled": True}).status_code == 200
    as_reader = {"Authorization": f"Bearer {token}"}
    direct = requests.get(f"{ent.url}/api/handles/88.100.7/SHARED-1", headers=as_reader).json()
    assert [v["type"] for v in direct["values"]] == ["URL", "order.due"]
    through = requests.get(f"{rec.url}/api/handles/88.100.7/SHARED-1", headers=as_reader)
    assert through.status_code == 401, through.text
    for _ in range(2):
        anonymous = requests.get(f"{rec.url}/api/handles/88.100.7/SHARED-1").json()
        assert [v["type"] for v in anonymous["values"]] == ["URL"]
    batch = requests.post(f"{rec.url}/api/resolve", headers=as_reader,
                          json={"handles": ["88.100.7/SHARED-1"]})
    assert batch.status_code == 401
    reads = requests.get(f"{ent.url}/api/reads", headers=ent.auth(),
                         params={"prefix": "88.100.7"}).json()["entries"]
    assert [e["party"] for e in reads] == ["reader:carrier-app"]     # the direct read only
