"""POST /api/resolve: many identifiers per request, JSON or msgpack, in request order."""

from __future__ import annotations

import msgpack
import orjson
import requests

from tests.conftest import Server, Tenant


def register(t: Tenant, n: int) -> list[str]:
    r = requests.post(f"{t.url}/api/bulk", headers=t.op.bearer, json=[
        {"handle": f"{t.prefix}/BA-{i}", "values": [
            {"index": 1, "type": "URL", "data": f"https://example.org/{i}"},
            {"index": 2, "type": "secret.cost", "data": "9", "permissions": "1100"}]}
        for i in range(n)])
    assert r.status_code == 201, r.text
    return [f"{t.prefix}/BA-{i}" for i in range(n)]


def test_batch_json_answers_each_in_order(tenant: Tenant, server: Server) -> None:
    ids = register(tenant, 300)
    asked = ids[:150] + [f"{tenant.prefix}/NOPE", "not-an-identifier"] + ids[150:]
    r = requests.post(f"{server.url}/api/resolve", json={"handles": asked})
    assert r.status_code == 200
    body = r.json()
    assert body["responseCode"] == 1 and body["count"] == 302
    results = body["results"]
    assert [x["handle"] for x in results] == asked
    assert results[150]["responseCode"] == 100 and results[151]["responseCode"] == 102
    ok = results[0]
    assert ok["responseCode"] == 1 and [v["index"] for v in ok["values"]] == [1]   # public only
    # each result is byte-for-byte what a single GET answers
    single = requests.get(f"{server.url}/api/handles/{ids[7]}").content
    assert single in r.content


def test_batch_msgpack(tenant: Tenant, server: Server) -> None:
    ids = register(tenant, 20)
    r = requests.post(f"{server.url}/api/resolve", data=msgpack.packb(ids + ids[:2]),
                      headers={"Content-Type": "application/msgpack"})
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/msgpack")
    body = msgpack.unpackb(r.content)
    assert body["count"] == 22
    assert [x["handle"] for x in body["results"]] == ids + ids[:2]
    assert body["results"][3]["values"][0]["data"]["value"] == "https://example.org/3"


def test_batch_bad_requests(server: Server) -> None:
    url = f"{server.url}/api/resolve"
    r = requests.post(url, data=b"\xc1", headers={"Content-Type": "application/msgpack"})
    assert r.status_code == 400 and "not valid msgpack" in r.json()["message"]
    r = requests.post(url, json={"handles": [1, 2]})
    assert r.status_code == 400 and "array of strings" in r.json()["message"]
    r = requests.post(url, json=["88.1/x"] * 10_001)
    assert r.status_code == 400 and "over the limit" in r.json()["message"]
    r = requests.post(url, data=b"x", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415


def test_batch_answers_follow_writes(tenant: Tenant, server: Server) -> None:
    """A repeated batch is answered from the cache by spelling; a write or a delete
    reaches those answers too."""
    ids = register(tenant, 3)
    url = f"{server.url}/api/resolve"

    def both() -> tuple[list[dict], list[dict]]:
        js = requests.post(url, json=ids).json()["results"]
        mp = msgpack.unpackb(requests.post(url, data=msgpack.packb(ids), headers={
            "Content-Type": "application/msgpack"}).content)["results"]
        return js, mp

    for _ in range(2):  # the second time from the cache
        for results in both():
            assert results[1]["values"][0]["data"]["value"] == "https://example.org/1"
    r = requests.put(f"{tenant.url}/api/handles/{ids[1]}?index=1", headers=tenant.op.bearer,
                     json=[{"index": 1, "type": "URL", "data": "https://example.org/moved"}])
    assert r.status_code == 200, r.text
    r = requests.delete(f"{tenant.url}/api/handles/{ids[2]}", headers=tenant.op.bearer)
    assert r.status_code == 200, r.text
    for results in both():
        assert results[1]["values"][0]["data"]["value"] == "https://example.org/moved"
        assert results[2]["responseCode"] == 100
        assert results[0]["values"][0]["data"]["value"] == "https://example.org/0"


def test_a_batch_reply_is_kept_from_an_identifiers_second_answer(tenant: Tenant,
                                                                   server: Server) -> None:
    """A cached identifier holds its values once: its batch reply (another copy of them)
    is kept only when it is asked for again; the answers are the same bytes each time."""
    ids = register(tenant, 50)

    def cache_bytes() -> float:
        text = requests.get(f"{server.url}/metrics").text
        return float(next(line.split()[-1] for line in text.splitlines()
                          if line.startswith("idres_cache_bytes ")))

    answers = []
    sizes = [cache_bytes()]
    for _ in range(3):
        r = requests.post(f"{server.url}/api/resolve", json={"handles": ids})
        assert r.status_code == 200
        answers.append(r.content)
        sizes.append(cache_bytes())
    first, second, third = (b - a for a, b in zip(sizes, sizes[1:]))
    assert first > 0 and second > 0 and third == 0, sizes   # cached; replies kept; nothing
    assert answers[0] == answers[1] == answers[2]
    # another spelling (parsed, not a key as written) gets its own reply, echoing it
    spelled = [i.lower() for i in ids]
    got = requests.post(f"{server.url}/api/resolve", json={"handles": spelled}).json()
    assert [x["handle"] for x in got["results"]] == spelled
    assert [x["values"] for x in got["results"]] == [x["values"] for x in
                                                     orjson.loads(answers[0])["results"]]
