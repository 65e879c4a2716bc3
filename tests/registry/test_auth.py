"""Credentials: Basic with a Handle admin identity, Bearer tokens, secrets stored hashed."""

from __future__ import annotations

from typing import Any

import requests

from tests.conftest import Server, Tenant, new_operator

GOOD = [{"index": 1, "type": "URL", "data": "https://example.org/a"}]


def test_basic_with_percent_encoded_identity_and_plain_colon(tenant: Tenant) -> None:
    encoded_user, secret = tenant.op.basic
    assert "%3A" in encoded_user
    r = requests.put(tenant.handle_url("B1"), json=GOOD, auth=(encoded_user, secret))
    assert r.status_code == 201, r.text
    # curl users often send the colon unencoded: the secret never holds one, so accept it
    r = requests.put(tenant.handle_url("B2"), json=GOOD, auth=(tenant.op.identity, secret))
    assert r.status_code == 201, r.text


def test_identity_handle_resolves_publicly_without_its_secret(tenant: Tenant, sql: Any) -> None:
    handle = tenant.op.identity.split(":", 1)[1]
    body = requests.get(f"{tenant.url}/api/handles/{handle}").json()
    assert body["responseCode"] == 1 and body["handle"] == handle
    assert [v["type"] for v in body["values"]] == ["HS_ADMIN"]
    # not even an authenticated administrator of it sees the HS_SECKEY value
    mine = requests.get(f"{tenant.url}/api/handles/{handle}", headers=tenant.op.bearer).json()
    assert "HS_SECKEY" not in [v["type"] for v in mine["values"]]
    stored = sql('SELECT "values" FROM handles WHERE handle = $1', handle)[0]["values"]
    seckey = next(v for v in stored if v["type"] == "HS_SECKEY")
    assert seckey["permissions"] == "0100"
    assert tenant.op.secret not in str(stored)             # only a hash is kept
    assert seckey["data"]["value"].startswith("idres-sha256$")


def test_tokens_are_stored_hashed_and_new_ones_work(tenant: Tenant, sql: Any) -> None:
    rows = sql("SELECT token_hash FROM tokens t JOIN operators o ON o.id = t.operator_id "
               "WHERE o.name = $1", tenant.op.name)
    assert rows and all(tenant.op.token.encode() not in bytes(r["token_hash"]) for r in rows)
    r = requests.post(f"{tenant.url}/api/tokens", json={"label": "ci"}, headers=tenant.op.bearer)
    assert r.status_code == 201 and r.headers["Cache-Control"] == "no-store"
    token = r.json()["token"]
    r = requests.put(tenant.handle_url("T1"), json=GOOD,
                     headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 201


def test_secret_and_token_never_reach_the_server_log(server: Server, admin: Any) -> None:
    op = new_operator(server, admin, "log-check")
    requests.put(f"{server.url}/api/handles/88.0.0/X", json=GOOD,
                 auth=(op.basic[0], "bad" + op.secret))
    log = server.output()
    assert op.secret not in log and op.token not in log and admin.token not in log


def test_only_administrators_manage_operators(tenant: Tenant, server: Server, admin: Any) -> None:
    r = requests.post(f"{server.url}/api/operators", json={"name": "sneaky"},
                      headers=tenant.op.bearer)
    assert r.status_code == 403
    assert requests.get(f"{server.url}/api/operators", headers=tenant.op.bearer).status_code == 403
    names = [o["name"] for o in requests.get(f"{server.url}/api/operators",
                                             headers=admin.bearer).json()["operators"]]
    assert tenant.op.name in names and "sneaky" not in names
    r = requests.post(f"{server.url}/api/operators", json={"name": tenant.op.name},
                      headers=admin.bearer)
    assert r.status_code == 409
    r = requests.post(f"{server.url}/api/operators", json={"name": "bad name!"},
                      headers=admin.bearer)
    assert r.status_code == 400


def test_identity_handles_are_protected_from_the_prefix_owner(tenant: Tenant, server: Server,
                                                              admin: Any, sql: Any) -> None:
    # an operator whose identity lives under the tenant's prefix
    bob = new_operator(server, admin, f"bob-{tenant.op.name}",
                       identity=f"300:{tenant.prefix}/BOB")
    handle = f"{tenant.prefix}/BOB"
    before = sql('SELECT "values" FROM handles WHERE handle = $1', handle)[0]["values"]
    forged = [{"index": 300, "type": "HS_SECKEY", "data": "idres-sha256$AAAA$00"}]
    for method, url, body in [("PUT", tenant.handle_url("BOB"), forged),
                              ("PUT", tenant.handle_url("BOB") + "?index=300", forged),
                              ("DELETE", tenant.handle_url("BOB"), None)]:
        r = requests.request(method, url, json=body, headers=tenant.op.bearer)
        assert r.status_code == 403 and "identity handle of operator" in r.json()["message"]
    r = requests.post(f"{tenant.url}/api/bulk?overwrite=true", headers=tenant.op.bearer,
                      json=[{"handle": handle, "values": forged}])
    assert r.status_code == 403
    assert sql('SELECT "values" FROM handles WHERE handle = $1', handle)[0]["values"] == before
    r = requests.put(tenant.handle_url("BOB-OK"), auth=bob.basic,
                     json=[{"index": 1, "type": "URL", "data": "https://x"}])
    assert r.status_code == 403   # bob owns no prefix: authenticated, but not permitted
    assert "may not write under prefix" in r.json()["message"]
