"""Credentials over time: tokens issued, listed and revoked, secrets reset (API and CLI);
what is revoked or replaced stops working at once."""

from __future__ import annotations

import json
from typing import Any

import requests

from tests.conftest import Operator, Server, Tenant, new_operator, run_cli

GOOD = [{"index": 1, "type": "URL", "data": "https://example.org/t"}]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_an_operator_lists_and_revokes_its_own_tokens(tenant: Tenant, sql: Any) -> None:
    url = f"{tenant.url}/api/tokens"
    made = requests.post(url, json={"label": "mes-line-3"}, headers=tenant.op.bearer).json()
    spare = made["token"]
    assert requests.put(tenant.handle_url("RV1"), json=GOOD, headers=bearer(spare)).status_code == 201
    listed = requests.get(url, headers=tenant.op.bearer).json()
    assert listed["operator"] == tenant.op.name
    assert [t["label"] for t in listed["tokens"]] == ["initial", "mes-line-3"]
    assert all(t["revoked"] is None for t in listed["tokens"])
    assert spare not in json.dumps(listed) and tenant.op.token not in json.dumps(listed)

    r = requests.delete(f"{url}/{made['id']}", headers=tenant.op.bearer)
    assert r.status_code == 200, r.text
    revoked = r.json()["token"]
    assert revoked["id"] == made["id"] and revoked["revoked"]
    # at once: the revoked token is refused, nothing is written, the other token still works
    r = requests.put(tenant.handle_url("RV2"), json=GOOD, headers=bearer(spare))
    assert r.status_code == 401 and r.json()["responseCode"] == 402
    assert sql("SELECT 1 FROM handles WHERE handle = $1", f"{tenant.prefix}/RV2") == []
    assert requests.put(tenant.handle_url("RV3"), json=GOOD,
                        headers=tenant.op.bearer).status_code == 201
    # revoking twice changes nothing; the trail has both the issue and the revocation
    again = requests.delete(f"{url}/{made['id']}", headers=tenant.op.bearer).json()
    assert again["token"]["revoked"] == revoked["revoked"]
    actions = [row["action"] for row in sql(
        "SELECT action FROM audit WHERE actor = $1 AND action LIKE 'token_%' ORDER BY id",
        tenant.op.name)]
    assert actions == ["token_create", "token_revoke"]


def test_tokens_of_others_are_out_of_reach(tenant: Tenant, server: Server,
                                           admin: Operator) -> None:
    other = new_operator(server, admin, f"other-{tenant.op.name}")
    theirs = requests.get(f"{server.url}/api/tokens", headers=other.bearer).json()["tokens"]
    # another operator: no listing, and revoking says "not found" (existence not revealed)
    r = requests.get(f"{server.url}/api/tokens?operator={other.name}", headers=tenant.op.bearer)
    assert r.status_code == 403
    r = requests.delete(f"{server.url}/api/tokens/{theirs[0]['id']}", headers=tenant.op.bearer)
    assert r.status_code == 404 and r.json()["responseCode"] == 100
    r = requests.post(f"{server.url}/api/tokens", json={"operator": other.name},
                      headers=tenant.op.bearer)
    assert r.status_code == 403
    assert requests.get(f"{server.url}/api/tokens", headers=other.bearer).status_code == 200
    # bad ids and bodies
    r = requests.delete(f"{server.url}/api/tokens/abc", headers=tenant.op.bearer)
    assert r.status_code == 400 and "number" in r.json()["message"]
    r = requests.delete(f"{server.url}/api/tokens/1", headers={})
    assert r.status_code == 401
    r = requests.post(f"{server.url}/api/tokens", json=["x"], headers=tenant.op.bearer)
    assert r.status_code == 400
    # an administrator may do all of it for the other operator
    r = requests.post(f"{server.url}/api/tokens", json={"operator": other.name, "label": "ops"},
                      headers=admin.bearer)
    assert r.status_code == 201 and r.json()["operator"] == other.name
    r = requests.delete(f"{server.url}/api/tokens/{theirs[0]['id']}", headers=admin.bearer)
    assert r.status_code == 200
    assert requests.get(f"{server.url}/api/tokens", headers=other.bearer).status_code == 401


def test_cli_issues_lists_and_revokes(pg_dsn: str, server: Server, tenant: Tenant) -> None:
    made = json.loads(run_cli("operator", "token", tenant.op.name, "--label", "erp", "--json",
                              dsn=pg_dsn).stdout)
    assert requests.put(tenant.handle_url("CLI-T"), json=GOOD,
                        headers=bearer(made["token"])).status_code == 201
    listed = run_cli("operator", "tokens", tenant.op.name, dsn=pg_dsn).stdout
    assert "erp" in listed and made["token"] not in listed
    out = run_cli("operator", "revoke-token", str(made["id"]), dsn=pg_dsn).stdout
    assert f"token {made['id']} of {tenant.op.name} revoked" in out
    assert requests.put(tenant.handle_url("CLI-U"), json=GOOD,
                        headers=bearer(made["token"])).status_code == 401
    bad = run_cli("operator", "revoke-token", "999999999", dsn=pg_dsn, check=False)
    assert bad.returncode == 1 and "no token 999999999" in bad.stderr


def test_secret_reset(tenant: Tenant, server: Server, admin: Operator, sql: Any) -> None:
    old = tenant.op.basic
    handle = tenant.op.identity.split(":", 1)[1]
    public_before = requests.get(f"{server.url}/api/handles/{handle}").json()["values"]
    url = f"{server.url}/api/operators/{tenant.op.name}/secret"
    # someone else may not; without credentials: 401
    other = new_operator(server, admin, f"nosy-{tenant.op.name}")
    assert requests.post(url, headers=other.bearer).status_code == 403
    assert requests.post(url).status_code == 401
    assert requests.put(tenant.handle_url("S0"), json=GOOD, auth=old).status_code == 201

    r = requests.post(url, auth=old)
    assert r.status_code == 200 and r.headers["Cache-Control"] == "no-store"
    secret = r.json()["secret"]
    assert secret != tenant.op.secret
    r = requests.put(tenant.handle_url("S1"), json=GOOD, auth=old)
    assert r.status_code == 401
    assert sql("SELECT 1 FROM handles WHERE handle = $1", f"{tenant.prefix}/S1") == []
    assert requests.put(tenant.handle_url("S2"), json=GOOD,
                        auth=(old[0], secret)).status_code == 201
    # the identity handle looks the same to the world; only a hash is stored, nowhere else
    assert requests.get(f"{server.url}/api/handles/{handle}").json()["values"] == public_before
    stored = json.dumps(sql('SELECT "values" FROM handles WHERE handle = $1', handle)[0]["values"])
    trail = json.dumps([dict(r) for r in sql(
        "SELECT before, after FROM audit WHERE action = 'operator_secret_reset' AND handle = $1",
        handle)], default=str)
    assert secret not in stored and secret not in trail and "idres-sha256" not in trail
    assert server.output().count(secret) == 0
    # an administrator may reset anyone's, and so may the CLI
    r = requests.post(url, headers=admin.bearer)
    assert r.status_code == 200
    assert requests.put(tenant.handle_url("S3"), json=GOOD,
                        auth=(old[0], secret)).status_code == 401


def test_cli_resets_a_secret(pg_dsn: str, server: Server, tenant: Tenant) -> None:
    out = json.loads(run_cli("operator", "reset-secret", tenant.op.name, "--json",
                             dsn=pg_dsn).stdout)
    assert out["identity"] == tenant.op.identity
    assert requests.put(tenant.handle_url("CS1"), json=GOOD,
                        auth=(tenant.op.basic[0], out["secret"])).status_code == 201
    assert requests.put(tenant.handle_url("CS2"), json=GOOD,
                        auth=tenant.op.basic).status_code == 401
    bad = run_cli("operator", "reset-secret", "nobody-at-all", dsn=pg_dsn, check=False)
    assert bad.returncode == 1 and "no operator named 'nobody-at-all'" in bad.stderr
