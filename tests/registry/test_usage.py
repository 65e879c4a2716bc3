"""Statistics: resolutions counted per identifier and per prefix on every path, added to
PostgreSQL in batches, read by the prefix's owner over time ranges (API and command line);
registrations per prefix; memory bounded under a flood of distinct names."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
import requests

from resolver import usage
from resolver.protocol.client import BinaryClient
from tests.conftest import Operator, Server, Tenant, free_port, new_operator, run_cli


@pytest.fixture(scope="module")
def counting(pg_dsn: str) -> Any:
    """A server that adds its counts every 0.3 s, with the binary protocol on."""
    port = free_port()
    srv = Server(pg_dsn, "--binary-port", str(port), env={"IDRES_STATS_FLUSH": "0.3"})
    srv.wait_ready()
    srv.binary_port = port  # type: ignore[attr-defined]
    yield srv
    assert srv.stop() == 0, srv.output()


def _stats(url: str, op: Operator, **q: str) -> requests.Response:
    return requests.get(f"{url}/api/stats/resolutions", params=q, headers=op.bearer)


def _settled(url: str, op: Operator, want: int, **q: str) -> dict[str, Any]:
    """The stats once ``want`` resolutions are in (the counts arrive every 0.3 s)."""
    deadline = time.monotonic() + 10
    while True:
        got = _stats(url, op, **q).json()
        if got["totals"]["resolutions"] >= want or time.monotonic() > deadline:
            return got
        time.sleep(0.2)


def test_resolutions_are_counted_on_every_path(counting: Server, tenant: Tenant, pg_dsn: str,
                                               admin: Operator, server: Server) -> None:
    url, p = counting.url, tenant.prefix
    r = requests.post(f"{url}/api/bulk", headers=tenant.op.bearer, json=[
        {"handle": f"{p}/A-{i}", "values": [{"index": 1, "type": "URL", "data": f"https://e/{i}"}]}
        for i in range(5)])
    assert r.status_code == 201
    with requests.Session() as s:           # the fast path: a miss, then hits
        for _ in range(4):
            assert s.get(f"{url}/api/handles/{p}/A-0").status_code == 200
        for i in range(3):                  # unknown names: counted per prefix only
            assert s.get(f"{url}/api/handles/{p}/NOPE-{i}").status_code == 404
    assert requests.get(f"{url}/{p}/A-1", allow_redirects=False).status_code == 302
    assert requests.post(f"{url}/api/resolve", json={"handles": [f"{p}/A-2", f"{p}/A-3"]}
                         ).status_code == 200

    async def binary() -> None:
        async with BinaryClient("127.0.0.1", counting.binary_port) as client:  # type: ignore[attr-defined]
            assert (await client.resolve(f"{p}/A-4"))["responseCode"] == 1
    asyncio.run(binary())
    # not counted: identifiers of prefixes not homed here
    requests.get(f"{url}/api/handles/77.0.0/ELSEWHERE")

    got = _settled(url, tenant.op, 4 + 3 + 1 + 2 + 1, prefix=p)
    t = got["totals"]
    assert t["resolutions"] == 11, got
    assert t["not_found"] == 3 and t["hit"] >= 3 and t["miss"] >= 1
    assert t["by_protocol"] == {"http": 8, "batch": 2, "binary": 1}
    assert got["top"][0] == {"handle": f"{p}/A-0", "resolutions": 4}
    assert not any("NOPE" in r["handle"] for r in got["top"])
    assert got["registrations"]["total"] == 5
    assert sum(pt["resolutions"] for pt in got["series"]) == 11
    one = _stats(url, tenant.op, handle=f"{p}/A-0", by="day").json()
    assert one["totals"]["resolutions"] == 4 and one["series"][0]["at"].endswith("T00:00:00Z")
    # the parent prefix's owner sees these too (a prefix's counts include those under it)
    parent = p.rsplit(".", 1)[0]
    assert _stats(url, admin, prefix=parent).json()["totals"]["resolutions"] >= 11
    # nobody else does; a time range in the past holds nothing
    other = new_operator(server, admin, f"stats-other-{p}")
    assert _stats(url, other, prefix=p).status_code == 403
    assert requests.get(f"{url}/api/stats/resolutions", params={"prefix": p}).status_code == 401
    old = _stats(url, tenant.op, prefix=p, to="2020-01-02", **{"from": "2020-01-01"}).json()
    assert old["totals"]["resolutions"] == 0 and old["series"] == []
    # the command line reads the same
    out = run_cli("stats", "resolutions", p, "--json", dsn=pg_dsn)
    assert json.loads(out.stdout)["totals"]["resolutions"] == 11


@pytest.mark.parametrize("q,message", [
    ({"prefix": "88.1", "from": "yesterday"}, "ISO 8601"),
    ({"prefix": "88.1", "from": "2026-01-02", "to": "2026-01-01"}, "later than"),
    ({"prefix": "88.1", "from": "2020-01-01", "to": "2026-01-01"}, "at most a year"),
    ({"prefix": "88.1", "by": "minute"}, "by must be"),
    ({}, "give ?prefix"),
])
def test_bad_questions_get_clear_errors(server: Server, admin: Operator, q: dict[str, str],
                                        message: str) -> None:
    r = _stats(server.url, admin, **q)
    assert r.status_code == 400 and message in r.json()["message"], r.text


def test_memory_stays_bounded_under_a_flood_of_names() -> None:
    u = usage.Usage()
    for i in range(usage.MAX_NAMES + 500):
        u.count(f"88.1/FLOOD-{i}", "http", usage.NOT_FOUND)
    u.count("88.1/FLOOD-0", "http", usage.NOT_FOUND)      # a name held still counts
    assert len(u.counts) == usage.MAX_NAMES and u.dropped == 500
    assert u.counts[("88.1/FLOOD-0", "http", usage.NOT_FOUND)] == 2
    per_prefix, per_handle = usage.rows(u.take(), lambda ident: True, time.time())
    assert per_handle == [] and [(r[1], r[4]) for r in per_prefix] == [("88.1", usage.MAX_NAMES + 1)]
    assert u.counts == {}


def test_a_node_reports_its_totals_to_the_node_that_delegated_to_it(
        pg_dsn: str, server: Server, admin: Operator, tmp_path: Any) -> None:
    from tests.conftest import fresh_database

    n = int(time.time() * 1000) % 100000
    top, child_prefix = f"88.{n}", f"88.{n}.7"
    child_dsn = fresh_database(pg_dsn, "child")
    key = tmp_path / "child.pem"
    child = Server(child_dsn, "--key-file", str(key), env={"IDRES_STATS_FLUSH": "0.3"})
    try:
        child.wait_ready()
        child_key = run_cli("node", "key", "--key-file", str(key)).stdout.strip().split()[-1]
        made = json.loads(run_cli("operator", "create", "child-admin", "--admin", "--json",
                                  dsn=child_dsn).stdout)
        boss = {"Authorization": f"Bearer {made['token']}"}
        for p in (top, child_prefix):
            assert requests.post(f"{child.url}/api/prefixes", headers=boss,
                                 json={"prefix": p, "owner": "child-admin"}).status_code == 201
        requests.put(f"{child.url}/api/handles/{child_prefix}/R", headers=boss,
                     json=[{"index": 1, "type": "x", "data": "y"}])
        for _ in range(5):
            requests.get(f"{child.url}/api/handles/{child_prefix}/R")
        requests.get(f"{child.url}/api/handles/{child_prefix}/NONE")
        deadline = time.monotonic() + 10
        while _stats(child.url, Operator("child-admin", "", "", made["token"]), prefix=child_prefix
                     ).json()["totals"]["resolutions"] < 6 and time.monotonic() < deadline:
            time.sleep(0.2)
        # the parent delegated the prefix to the child (its key): a report is kept
        for p in (top, child_prefix):
            assert requests.post(f"{server.url}/api/prefixes", headers=admin.bearer,
                                 json={"prefix": p, "owner": admin.name}).status_code == 201
        assert requests.post(f"{server.url}/api/delegations", headers=admin.bearer, json={
            "prefix": child_prefix, "servers": [{"url": child.url, "key": child_key}],
            "ttl": 60}).status_code == 201
        for _ in range(2):      # twice: the same hours replace, not add
            out = run_cli("stats", "report", child_prefix, "--to", server.url,
                          "--key-file", str(key), dsn=child_dsn)
            assert "reported" in out.stdout
            got = _stats(server.url, admin, prefix=top).json()["totals"]
            assert got["resolutions"] == 6 and got["not_found"] == 1, got
        # another node's key is refused, and nothing of it kept
        other = tmp_path / "other.pem"
        refused = run_cli("stats", "report", child_prefix, "--to", server.url,
                          "--key-file", str(other), dsn=child_dsn, check=False)
        assert refused.returncode == 1 and "403" in refused.stderr, refused.stderr
        # a statement altered after signing is refused too
        r = requests.post(f"{server.url}/api/stats/reports", json={
            "statement": {"kind": "usage", "prefix": child_prefix, "rows": []},
            "signature": {"alg": "Ed25519", "key": child_key, "iat": 1, "exp": 2**40,
                          "sig": "A" * 86}})
        assert r.status_code == 403 and "refused" in r.json()["message"]
        assert _stats(server.url, admin, prefix=top).json()["totals"]["resolutions"] == 6
    finally:
        assert child.stop() == 0, child.output()
