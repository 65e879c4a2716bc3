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
    ({"Authorization": "Bearer idr_not-a-real-token"}, 401, 402),
    ({"Authorization": "Bearer"}, 401, 402),
    ({"Authorization": "Basic !!!notbase64"}, 401, 402),
    ({"Authorization": "Digest abc"}, 401, 402),
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


def test_wrong_secret_is_401_and_never_echoed(record: Any, sql: Any) -> None:
    t, key, before = record
    r = requests.delete(t.handle_url("KEEP"), auth=(t.op.basic[0], "wrong-secret-value"))
    assert r.status_code == 401 and r.json()["responseCode"] == 402
    assert "wrong identity or secret" in r.json()["message"]
    assert "wrong-secret-value" not in r.text
    assert stored_values(sql, key) == before


def test_writing_under_a_prefix_not_served_here_is_refused(server: Server, admin: Any,
                                                           tenant: Tenant, sql: Any) -> None:
    """Even an administrator: a prefix never allocated here (or delegated away) answers
    400 + responseCode 301, as the Handle.Net server does, and nothing is stored."""
    for method, url, body in [
        ("PUT", f"{server.url}/api/handles/99.1/X1?overwrite=false", GOOD),
        ("PUT", f"{server.url}/api/handles/99.1/X1", GOOD),
        ("POST", f"{server.url}/api/bulk", [{"handle": "99.1/X1", "values": GOOD},
                                            {"handle": f"{tenant.prefix}/OK1", "values": GOOD}]),
    ]:
        r = requests.request(method, url, json=body, headers=admin.bearer)
        assert r.status_code == 400, r.text
        assert r.json()["responseCode"] == 301 and "99.1 is not allocated" in r.json()["message"]
    assert stored_values(sql, "99.1/X1") is None
    assert stored_values(sql, f"{tenant.prefix}/OK1") is None      # all or nothing
    # a prefix delegated to another node is written there, not here
    child = f"{tenant.prefix}.42"
    assert requests.post(f"{server.url}/api/prefixes", headers=tenant.op.bearer,
                         json={"prefix": child, "owner": tenant.op.name}).status_code == 201
    key = requests.get(f"{server.url}/api/node").json()["publicKey"]
    assert requests.post(f"{server.url}/api/delegations", headers=tenant.op.bearer, json={
        "prefix": child, "servers": [{"url": "http://127.0.0.1:9", "key": key}]}
    ).status_code == 201
    r = requests.put(f"{server.url}/api/handles/{child}/X", json=GOOD, headers=tenant.op.bearer)
    assert r.status_code == 400 and "delegated to http://127.0.0.1:9" in r.json()["message"]
    assert stored_values(sql, f"{child}/X") is None


@pytest.mark.parametrize("value", [
    b"Bearer \xff", b"Bearer idr_\xe2\x82\xac", b"Basic \xff\xfe", b"Basic " + b"\x00abc",
    b"Basic w7bDpMO8", b"Basic " + __import__("base64").b64encode(b"\xff\xfe:x"), b"\xff",
])
def test_undecodable_authorization_is_401_on_every_route(record: Any, sql: Any, server: Server,
                                                         value: bytes) -> None:
    """Raw bytes that are not ASCII, not base64 or not UTF-8 in Authorization: 401 with
    responseCode 402 (never 500), on every route that reads credentials; nothing stored."""
    import socket

    t, key, before = record
    body = json.dumps(GOOD).encode()
    for method, path, payload in [
        ("GET", f"/api/handles/{key}", b""), ("PUT", f"/api/handles/{key}", body),
        ("DELETE", f"/api/handles/{key}", b""), ("POST", "/api/bulk", b"[]"),
        ("GET", "/api/tokens", b""), ("POST", "/api/operators", b"{}"),
        ("GET", f"/api/handles?prefix={t.prefix}", b""), ("GET", "/hrls/handles?URL=*x*", b""),
        ("GET", f"/api/audit?handle={key}", b""), ("POST", "/api/prefixes", b"{}"),
    ]:
        head = (f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n").encode()
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
            s.sendall(head + b"Authorization: " + value + b"\r\n\r\n" + payload)
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        status = int(data.split(b" ", 2)[1])
        assert status in (400, 401), (method, path, value, data[:300])
        if status == 401:
            assert json.loads(data.split(b"\r\n\r\n", 1)[1])["responseCode"] == 402
    assert stored_values(sql, key) == before
    assert "Traceback" not in server.output()
