"""An operator disabled and enabled again; tokens that expire and say when they were last
used (issue 12, operator commands)."""

from __future__ import annotations

import json
import time

import requests

from tests.conftest import Operator, Server, Tenant, new_operator, run_cli

VALUE = [{"index": 1, "type": "x", "data": "y"}]


def test_a_disabled_operator_is_refused_at_once_and_let_in_again(
        pg_dsn: str, server: Server, admin: Operator, tenant: Tenant) -> None:
    op = tenant.op
    assert requests.put(tenant.handle_url("D1"), json=VALUE, headers=op.bearer).status_code == 201
    # only administrators, and not themselves
    url = f"{server.url}/api/operators/{op.name}/disable"
    assert requests.post(url, headers=op.bearer).status_code == 403
    me = requests.post(f"{server.url}/api/operators/{admin.name}/disable", headers=admin.bearer)
    assert me.status_code == 400 and "itself" in me.json()["message"]
    assert requests.post(url, headers=admin.bearer).json()["disabled"] is True
    r = requests.put(tenant.handle_url("D2"), json=VALUE, headers=op.bearer)
    assert r.status_code == 401 and "not valid" in r.json()["message"]
    basic = requests.put(tenant.handle_url("D2"), json=VALUE, auth=op.basic)
    assert basic.status_code == 401 and "is disabled" in basic.json()["message"]
    wrong = requests.put(tenant.handle_url("D2"), json=VALUE, auth=(op.basic[0], "wrong"))
    assert "disabled" not in wrong.json()["message"]     # said only to who has the secret
    assert requests.get(tenant.handle_url("D1")).status_code == 200   # its records stay
    listed = json.loads(run_cli("operator", "list", "--json", dsn=pg_dsn).stdout)["operators"]
    assert next(o for o in listed if o["name"] == op.name)["disabled"]
    # enabled again (here from the command line): its same token works
    assert "enabled" in run_cli("operator", "enable", op.name, dsn=pg_dsn).stdout
    assert requests.put(tenant.handle_url("D2"), json=VALUE, headers=op.bearer).status_code == 201
    trail = json.loads(run_cli("audit", "list", "--action", "operator_*able", "--json",
                               dsn=pg_dsn).stdout)["entries"]
    assert [e["action"] for e in trail if e["after"]["operator"] == op.name][:2] == [
        "operator_enable", "operator_disable"]


def test_tokens_expire_and_say_when_they_were_last_used(
        pg_dsn: str, server: Server, admin: Operator) -> None:
    op = new_operator(server, admin, f"expiring-{int(time.time() * 1000) % 10**8}")
    r = requests.post(f"{server.url}/api/tokens", json={"label": "short", "expires_in": 2},
                      headers=op.bearer)
    assert r.status_code == 201
    short = {"Authorization": f"Bearer {r.json()['token']}"}
    assert requests.get(f"{server.url}/api/tokens", headers=short).status_code == 200
    listed = requests.get(f"{server.url}/api/tokens", headers=op.bearer).json()["tokens"]
    mine = next(t for t in listed if t["id"] == r.json()["id"])
    assert mine["expires"] and mine["last_used"]          # used just now
    unused = next(t for t in listed if t["label"] == "initial")
    assert unused["expires"] is None
    time.sleep(2.5)
    gone = requests.get(f"{server.url}/api/tokens", headers=short)
    assert gone.status_code == 401 and "not valid" in gone.json()["message"]
    for body, said in (({"expires": "2020-01-01T00:00:00Z"}, "in the future"),
                       ({"expires": "soon"}, "ISO 8601"), ({"expires_in": -5}, "seconds")):
        bad = requests.post(f"{server.url}/api/tokens", json=body, headers=op.bearer)
        assert bad.status_code == 400 and said in bad.json()["message"], bad.text
    # the command line: a token for a number of days, the table of tokens
    out = run_cli("operator", "token", op.name, "--days", "30", "--label", "ci", dsn=pg_dsn)
    assert "shown only now" in out.stdout
    table = run_cli("operator", "tokens", op.name, dsn=pg_dsn).stdout.splitlines()
    assert table[0].split() == ["ID", "CREATED", "STATE", "EXPIRES", "LAST", "USED", "LABEL"]
    assert any(line.rstrip().endswith("ci") and "never" in line for line in table[1:])
