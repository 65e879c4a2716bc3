"""What operators do daily from the command line: identifiers (get, put, delete), the audit
trail by operator and action, a prefix transferred to another owner (the API too)."""

from __future__ import annotations

import json
from pathlib import Path

import requests

from tests.conftest import Operator, Server, Tenant, new_operator, run_cli


def test_identifiers_from_the_command_line(pg_dsn: str, tenant: Tenant, tmp_path: Path) -> None:
    ident = f"{tenant.prefix}/CLI-1"
    out = run_cli("handle", "put", ident, "--value", "URL=https://mes.example/1",
                  "--value", "5:order.status=made", dsn=pg_dsn)
    assert out.stdout.strip() == f"{ident} created (2 values)"
    got = requests.get(tenant.handle_url("CLI-1")).json()["values"]
    assert [(v["index"], v["type"], v["data"]["value"]) for v in got] == [
        (1, "URL", "https://mes.example/1"), (5, "order.status", "made")]
    text = run_cli("handle", "get", ident, dsn=pg_dsn).stdout.splitlines()
    assert text[0] == f"{ident} (active)" and text[1].split() == [
        "INDEX", "TYPE", "VALUE", "TTL", "PERMISSIONS"]
    assert text[3].split()[:3] == ["5", "order.status", "made"]
    created = json.loads(run_cli("audit", "list", "--handle", ident, "--action", "create",
                                 "--json", dsn=pg_dsn).stdout)["entries"]
    assert [v["data"]["value"] for v in created[0]["after"]] == ["https://mes.example/1", "made"]
    as_json = json.loads(run_cli("handle", "get", ident, "--json", dsn=pg_dsn).stdout)
    assert as_json["handle"] == ident and len(as_json["values"]) == 2
    (tmp_path / "v.json").write_text(json.dumps([{"index": 1, "type": "URL", "data": "https://x"}]))
    assert "replaced" in run_cli("handle", "put", ident, "--file", str(tmp_path / "v.json"),
                                 dsn=pg_dsn).stdout
    refused = run_cli("handle", "put", ident, "--value", "A=b", "--create-only", dsn=pg_dsn,
                      check=False)
    assert refused.returncode == 1 and "exists" in refused.stderr
    bad = run_cli("handle", "put", ident, "--value", "nodata", dsn=pg_dsn, check=False)
    assert bad.returncode == 1 and "TYPE=DATA" in bad.stderr
    run_cli("handle", "put", ident, "--value", "A=a", "--value", "B=b", dsn=pg_dsn)
    run_cli("handle", "delete", ident, "--index", "2", dsn=pg_dsn)
    assert [v["index"] for v in requests.get(tenant.handle_url("CLI-1")).json()["values"]] == [1]
    run_cli("handle", "delete", ident, dsn=pg_dsn)
    assert requests.get(tenant.handle_url("CLI-1")).status_code == 404
    missing = run_cli("handle", "get", ident, dsn=pg_dsn, check=False)
    assert missing.returncode == 1 and "not found" in missing.stderr


def test_the_audit_trail_by_operator_and_action(pg_dsn: str, server: Server,
                                                admin: Operator) -> None:
    op = new_operator(server, admin, "audit-cli-op")
    requests.post(f"{server.url}/api/tokens", json={"label": "ci"}, headers=op.bearer)
    requests.post(f"{server.url}/api/operators/{op.name}/secret", headers=op.bearer)
    got = json.loads(run_cli("audit", "list", "--operator", op.name, "--json",
                             dsn=pg_dsn).stdout)["entries"]
    actions = [e["action"] for e in got]
    assert "token_create" in actions and "operator_secret_reset" in actions
    assert "idres-sha256" not in json.dumps(got)          # hashes never shown
    tokens = json.loads(run_cli("audit", "list", "--action", "token_*", "--operator", op.name,
                                "--json", dsn=pg_dsn).stdout)["entries"]
    assert tokens and {e["action"] for e in tokens} == {"token_create"}
    text = run_cli("audit", "list", "--operator", op.name, "--limit", "1", dsn=pg_dsn).stdout
    assert text.splitlines()[0].split() == ["ID", "AT", "ACTOR", "ACTION", "ON"]
    assert len(text.splitlines()) == 2


def test_a_prefix_changes_hands(pg_dsn: str, server: Server, admin: Operator,
                                tenant: Tenant) -> None:
    new = new_operator(server, admin, f"heir-{tenant.prefix}")
    stranger = new_operator(server, admin, f"stranger-{tenant.prefix}")
    url = f"{server.url}/api/prefixes/{tenant.prefix}/owner"
    assert requests.post(url, json={"owner": stranger.name}, headers=stranger.bearer
                         ).status_code == 403
    r = requests.post(url, json={"owner": new.name}, headers=tenant.op.bearer)
    assert r.status_code == 200 and (r.json()["before"], r.json()["owner"]) == (
        tenant.op.name, new.name)
    value = [{"index": 1, "type": "x", "data": "y"}]
    assert requests.put(tenant.handle_url("MINE"), json=value, headers=new.bearer
                        ).status_code == 201
    assert requests.put(tenant.handle_url("THEIRS"), json=value, headers=tenant.op.bearer
                        ).status_code == 403
    out = run_cli("prefix", "transfer", tenant.prefix, "--to", tenant.op.name, dsn=pg_dsn)
    assert out.stdout.strip() == f"prefix {tenant.prefix}: {new.name} -> {tenant.op.name}"
    trail = json.loads(run_cli("audit", "list", "--prefix", tenant.prefix, "--action",
                               "prefix_transfer", "--json", dsn=pg_dsn).stdout)["entries"]
    assert [(e["before"]["owner"], e["after"]["owner"]) for e in trail] == [
        (new.name, tenant.op.name), (tenant.op.name, new.name)]
