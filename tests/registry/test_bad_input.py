"""Bad input gets a clear 4xx and changes nothing: every case checks the stored record."""

from __future__ import annotations

import http.client
import json
from typing import Any

import pytest
import requests

from tests.conftest import Server, Tenant, new_operator, stored_values

GOOD = [{"index": 1, "type": "URL", "data": "https://example.org/good"}]


@pytest.fixture
def record(tenant: Tenant, sql: Any) -> tuple[Tenant, str, Any]:
    """A registered identifier and its stored values before the bad request."""
    r = requests.put(tenant.handle_url("KEEP"), json=GOOD, headers=tenant.op.bearer)
    assert r.status_code == 201
    key = f"{tenant.prefix}/KEEP"
    return tenant, key, stored_values(sql, key)


def put_raw(t: Tenant, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    host, port = t.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("PUT", path, body=body, headers={**t.op.bearer, **headers})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, json.loads(data)


@pytest.mark.parametrize("body, status, rc, fragment", [
    (b"{not json", 400, 4, "not valid JSON"),
    (b"", 400, 4, "empty"),
    (b'"just a string"', 400, 4, "must be an array"),
    (b'[{"index": 1, "type": "URL", "data": 42}]', 400, 202, "data must be an object"),
    (b'[{"index": "x", "type": "URL", "data": "u"}]', 400, 202, "index must be an integer"),
    (b'[{"index": 1, "type": "URL", "data": "u", "ttl": "1 day"}]', 400, 202, "ttl"),
    (b'[{"index": 1, "type": ["URL"], "data": "u"}]', 400, 202, "type must be a string"),
    (b'[{"index": 2, "type": "A", "data": "a"}, {"index": 2, "type": "B", "data": "b"}]',
     400, 202, "duplicate index 2"),
    (b'[{"index": 1, "type": "URL", "data": "u", "permissions": "yes"}]', 400, 202, "0/1"),
    (b'[{"index": 99999999999, "type": "URL", "data": "u"}]', 400, 202, "index must be"),
])
def test_bad_bodies_change_nothing(record: Any, sql: Any, body: bytes, status: int, rc: int,
                                   fragment: str) -> None:
    t, key, before = record
    code, answer = put_raw(t, f"/api/handles/{key}", body, {"Content-Type": "application/json"})
    assert (code, answer["responseCode"]) == (status, rc), answer
    assert fragment in answer["message"]
    assert answer["handle"] == key
    assert stored_values(sql, key) == before


def test_oversized_body_is_413_and_changes_nothing(record: Any, sql: Any) -> None:
    t, key, before = record
    big = json.dumps([{"index": 1, "type": "URL", "data": "x" * (1 << 20)}]).encode()
    code, answer = put_raw(t, f"/api/handles/{key}", big, {"Content-Type": "application/json"})
    assert code == 413 and "over the limit" in answer["message"]
    assert stored_values(sql, key) == before


def test_non_json_content_type_is_415(record: Any, sql: Any) -> None:
    t, key, before = record
    code, answer = put_raw(t, f"/api/handles/{key}", b"index=1",
                           {"Content-Type": "application/x-www-form-urlencoded"})
    assert code == 415 and "application/json" in answer["message"]
    assert stored_values(sql, key) == before


def test_malformed_identifiers_on_write(record: Any, sql: Any) -> None:
    t, _, _ = record
    for path in [f"/api/handles/{t.prefix}/", f"/api/handles/{t.prefix}/%G1",
                 f"/api/handles/{t.prefix}/a%0Ab", "/api/handles/88..1/x"]:
        code, answer = put_raw(t, path, json.dumps(GOOD).encode(),
                               {"Content-Type": "application/json"})
        assert code == 400 and answer["responseCode"] == 102, (path, answer)
    assert sql("SELECT count(*) AS n FROM handles WHERE prefix = $1", t.prefix)[0]["n"] == 1


def test_writing_under_someone_elses_prefix_is_403(record: Any, sql: Any, server: Server,
                                                   admin: Any) -> None:
    t, key, before = record
    stranger = new_operator(server, admin, f"stranger-{t.op.name}")
    for method, url, body in [
        ("PUT", t.handle_url("KEEP"), [{"index": 1, "type": "URL", "data": "https://evil"}]),
        ("PUT", t.handle_url("NEW"), GOOD),
        ("PUT", t.handle_url("KEEP") + "?index=7", [{"index": 7, "type": "X", "data": "x"}]),
        ("DELETE", t.handle_url("KEEP") + "?index=1", None),
        ("DELETE", t.handle_url("KEEP"), None),
    ]:
        r = requests.request(method, url, json=body, headers=stranger.bearer)
        assert r.status_code == 403, (method, url, r.text)
        assert r.json()["responseCode"] == 401 and "may not write" in r.json()["message"]
    assert stored_values(sql, key) == before
    assert stored_values(sql, f"{t.prefix}/NEW") is None
    r = requests.post(f"{server.url}/api/bulk", headers=stranger.bearer,
                      json=[{"handle": f"{t.prefix}/B1", "values": GOOD}])
    assert r.status_code == 403
    assert stored_values(sql, f"{t.prefix}/B1") is None


@pytest.mark.parametrize("headers, status, rc", [
    ({}, 401, 402),
    ({"Authorization": "Bearer idr_not-a-real-token"}, 403, 403),
    ({"Authorization": "Bearer"}, 403, 403),
    ({"Authorization": "Basic !!!notbase64"}, 403, 403),
    ({"Authorization": "Digest abc"}, 403, 403),
])
def test_missing_or_wrong_credentials(record: Any, sql: Any, headers: dict[str, str],
                                      status: int, rc: int) -> None:
    t, key, before = record
    for method, url in [("PUT", t.handle_url("KEEP")), ("DELETE", t.handle_url("KEEP")),
                        ("PUT", t.handle_url("OTHER"))]:
        r = requests.request(method, url, json=GOOD, headers=headers)
        assert (r.status_code, r.json()["responseCode"]) == (status, rc), r.text
        assert "handle" in r.json()
    if status == 401:
        assert "WWW-Authenticate" in r.headers
    assert stored_values(sql, key) == before
    assert stored_values(sql, f"{t.prefix}/OTHER") is None


def test_wrong_secret_is_403_and_never_echoed(record: Any, sql: Any) -> None:
    t, key, before = record
    r = requests.delete(t.handle_url("KEEP"), auth=(t.op.basic[0], "wrong-secret-value"))
    assert r.status_code == 403 and "wrong identity or secret" in r.json()["message"]
    assert "wrong-secret-value" not in r.text
    assert stored_values(sql, key) == before
