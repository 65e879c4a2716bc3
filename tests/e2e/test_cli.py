"""The idres command line, as a user runs it."""

from __future__ import annotations

import json
import shutil
import time
from typing import Any

import pytest
import requests

from tests.conftest import Server, Tenant, free_port, make_temp_dir, run_cli


@pytest.mark.parametrize("args", [
    [], ["serve"], ["migrate"], ["operator"], ["operator", "create"], ["operator", "list"],
    ["operator", "token"], ["operator", "tokens"], ["operator", "revoke-token"],
    ["operator", "reset-secret"],
    ["prefix"], ["prefix", "create"], ["prefix", "list"], ["prefix", "delegate"], ["node"],
    ["node", "key"], ["resolve"], ["init"], ["prefix", "template"],
    *(["template", c] for c in ("create", "list", "show", "check", "publish", "retire", "schema")),
    *(["record", c] for c in ("state", "lookup", "import")),
    ["reader"], ["group"], ["grant"],
    *(["reader", c] for c in ("create", "list", "revoke")),
    *(["group", c] for c in ("create", "members", "list")),
    *(["grant", c] for c in ("create", "list", "revoke")),
])
def test_every_command_has_help(args: list[str]) -> None:
    out = run_cli(*args, "--help").stdout
    assert out.startswith("usage: idres")
    if args and args[0] != "resolve" and args[-1] not in (
            "operator", "prefix", "node", "template", "record", "reader", "group", "grant"):
        assert "--dsn" in out and "--data-dir" in out


def test_operator_and_prefix_commands(pg_dsn: str, server: Server) -> None:
    made = run_cli("operator", "create", "cli-op", "--identity", "300:88.77/ADMIN", dsn=pg_dsn)
    assert "shown only now" in made.stdout and "secret:" in made.stdout
    secret = made.stdout.split("secret:")[1].split()[0]
    assert run_cli("prefix", "create", "88.77", "--owner", "cli-op", dsn=pg_dsn).stdout.strip() \
        == "prefix 88.77 allocated to cli-op"
    listed = json.loads(run_cli("prefix", "list", "--json", dsn=pg_dsn).stdout)
    assert {"prefix": "88.77", "parent": "88", "owner": "cli-op"} in listed["prefixes"]
    assert "cli-op" in run_cli("operator", "list", dsn=pg_dsn).stdout
    # the identity works against the server straight away
    r = requests.put(f"{server.url}/api/handles/88.77/CLI-1", auth=("300%3A88.77/ADMIN", secret),
                     json=[{"index": 1, "type": "URL", "data": "https://example.org/cli"}])
    assert r.status_code == 201, r.text
    # errors: clear message, non-zero exit, nothing printed on stdout
    bad = run_cli("prefix", "create", "88.78", "--owner", "nobody-here", dsn=pg_dsn, check=False)
    assert bad.returncode == 1 and "no operator named 'nobody-here'" in bad.stderr
    bad = run_cli("prefix", "create", "88..1", "--owner", "cli-op", dsn=pg_dsn, check=False)
    assert bad.returncode == 1 and "empty segment" in bad.stderr
    bad = run_cli("operator", "create", "cli-op", dsn=pg_dsn, check=False)
    assert bad.returncode == 1 and "exists" in bad.stderr


def test_resolve_command(tenant: Tenant, server: Server) -> None:
    requests.put(tenant.handle_url("RES-1"), headers=tenant.op.bearer, json=[
        {"index": 1, "type": "URL", "data": "https://example.org/r"},
        {"index": 2, "type": "device.model", "data": "PLC-9000"}])
    out = run_cli("resolve", f"{tenant.prefix}/RES-1", "--server", server.url).stdout
    assert out.splitlines()[0] == f"{tenant.prefix}/RES-1"
    assert "device.model" in out and "PLC-9000" in out
    out = run_cli("resolve", f"{tenant.prefix}/RES-1", "--server", server.url, "--type", "URL",
                  "--json").stdout
    assert [v["index"] for v in json.loads(out)["values"]] == [1]
    miss = run_cli("resolve", f"{tenant.prefix}/NONE", "--server", server.url, check=False)
    assert miss.returncode == 1 and "not found (HTTP 404, responseCode 100)" in miss.stderr
    down = run_cli("resolve", "88.1/X", "--server", f"http://127.0.0.1:{free_port()}",
                   check=False)
    assert down.returncode == 2 and "cannot reach" in down.stderr


def test_embedded_database_is_shared_by_serve_and_cli(tmp_path: Any) -> None:
    """The README flow: `idres serve` on the embedded default, CLI commands beside it."""
    root = make_temp_dir()
    data = root / "data"
    env = {"IDRES_DATA_DIR": str(data), "IDRES_DSN": ""}
    try:
        # only serve and init make a database; any other command refuses to, naming the fix
        refused = run_cli("operator", "create", "boss", "--admin", env=env, check=False)
        assert refused.returncode == 2 and f"no idres database in {data}" in refused.stderr
        assert "idres init" in refused.stderr and not (data / "pg").exists()
        for args in (["migrate"], ["prefix", "list"], ["operator", "list"]):
            assert run_cli(*args, env=env, check=False).returncode == 2
        assert not (data / "pg").exists()
        assert "ready" in run_cli("init", env=env).stdout
        made = json.loads(run_cli("operator", "create", "boss", "--admin", "--json",
                                  env=env).stdout)
        assert not (data / "pg" / "postmaster.pid").exists()   # stopped again after the CLI
        srv = Server("", "--data-dir", str(data), port=free_port())
        srv.wait_ready()
        try:
            assert "embedded PostgreSQL" in srv.output()
            assert made["secret"] not in srv.output()
            password = (data / "pg.password").read_text().strip()
            assert password not in srv.output() and "idres:***@127.0.0.1" in srv.output()
            assert oct((data / "pg.password").stat().st_mode & 0o777) == "0o600"
            run_cli("prefix", "create", "90", "--owner", "boss", env=env)   # joins the server
            r = requests.put(f"{srv.url}/api/handles/90/X", headers={
                "Authorization": f"Bearer {made['token']}"}, json=[
                {"index": 1, "type": "URL", "data": "https://example.org/x"}])
            assert r.status_code == 201, r.text
            # the CLI left; the server's database is still up
            assert requests.get(f"{srv.url}/api/handles/90/X").status_code == 200
        finally:
            assert srv.stop() == 0, srv.output()
        deadline = time.monotonic() + 5
        while (data / "pg" / "postmaster.pid").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not (data / "pg" / "postmaster.pid").exists(), "embedded server left running"
        assert "stopping the embedded PostgreSQL" in srv.output()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_start_up_errors_name_their_cause(pg_dsn: str) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        for extra in ([], ["--workers", "2"]):
            out = run_cli("serve", "--port", str(port), *extra, dsn=pg_dsn, check=False)
            assert out.returncode == 2, out.stderr
            assert f"cannot listen for HTTP (--port) on 127.0.0.1:{port}" in out.stderr
            assert "database" not in out.stderr.splitlines()[-1]
    cases = [
        (["serve", "--tls-cert", "/nonexistent.pem", "--tls-key", "/nonexistent.key"],
         "--tls-cert /nonexistent.pem: no such file"),
        (["serve", "--recursive", "--root", "http://127.0.0.1:9", "--root-key", "abc"],
         "--root-key 'abc' is not an Ed25519 public key"),
        (["serve", "--recursive", "--root", "127.0.0.1:9", "--root-key", "a" * 43],
         "--root '127.0.0.1:9' needs a scheme"),
        (["resolve", "88.1/X", "--server", "127.0.0.1:8000"],
         "the server URL '127.0.0.1:8000' needs a scheme: http://127.0.0.1:8000"),
        (["operator", "list", "--dsn", f"postgresql://u:pw@127.0.0.1:{free_port()}/db"],
         "cannot use postgresql://u:***@127.0.0.1"),
    ]
    for args, message in cases:
        out = run_cli(*args, dsn=pg_dsn, check=False)
        assert out.returncode == 2 and message in out.stderr, (args, out.stderr)
        assert "Traceback" not in out.stderr
    # a certificate that is not one
    bad = make_temp_dir() / "bad.pem"
    bad.write_text("not a certificate")
    out = run_cli("serve", "--port", str(free_port()), "--tls-cert", str(bad), "--tls-key",
                  str(bad), dsn=pg_dsn, check=False)
    assert out.returncode == 2 and "cannot load the TLS certificate" in out.stderr, out.stderr


def test_a_case_sensitive_node(pg_dsn: str) -> None:
    """The node setting: a new database made case-sensitive keeps suffixes apart; the mode
    belongs to the database (a later start without the flag keeps it; a database with
    identifiers refuses to switch)."""
    from tests.conftest import fresh_database

    dsn = fresh_database(pg_dsn, "cs")
    assert "ready" in run_cli("init", "--case-sensitive", dsn=dsn).stdout
    token = json.loads(run_cli("operator", "create", "cs-admin", "--admin", "--json",
                               dsn=dsn).stdout)["token"]
    auth = {"Authorization": f"Bearer {token}"}
    srv = Server(dsn).wait_ready()
    try:
        assert requests.post(f"{srv.url}/api/prefixes", json={"prefix": "88.9"},
                             headers=auth).status_code == 201
        for suffix in ("Abc", "abc"):
            r = requests.put(f"{srv.url}/api/handles/88.9/{suffix}?overwrite=false", headers=auth,
                             json=[{"index": 1, "type": "URL", "data": f"https://x/{suffix}"}])
            assert r.status_code == 201, r.text               # two identifiers here
        assert requests.get(f"{srv.url}/api/handles/88.9/ABC").status_code == 404
        got = requests.get(f"{srv.url}/api/handles/88.9/abc").json()
        assert got["values"][0]["data"]["value"] == "https://x/abc"
    finally:
        assert srv.stop() == 0, srv.output()
    out = run_cli("migrate", dsn=pg_dsn, env={"IDRES_CASE_SENSITIVE": "1"}, check=False)
    assert out.returncode == 2 and "cannot change" in out.stderr


def test_typed_record_commands(pg_dsn: str, tenant: Tenant, tmp_path: Any) -> None:
    """Templates, a file import checked against them, lifecycle and lookup by code."""
    h = f"{tenant.prefix}/META_DEVICE"
    spec = tmp_path / "device.json"
    spec.write_text(json.dumps({"handle": h, "description": "community devices", "items": [
        {"type": "device.serial", "unique": True, "required": True},
        {"type": "device.kind", "datatype": "enum", "values": ["camera", "meter"]}]}))
    made = run_cli("template", "create", str(spec), "--publish", dsn=pg_dsn)
    assert made.stdout.startswith(f"template {h.upper()} version 1 published"), made.stdout
    assert h.upper() in run_cli("template", "list", tenant.prefix, dsn=pg_dsn).stdout
    schema = json.loads(run_cli("template", "schema", h, dsn=pg_dsn).stdout)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    shown = json.loads(run_cli("template", "show", h, "--json", dsn=pg_dsn).stdout)
    assert shown["state"] == "published" and len(shown["items"]) == 2

    def record(n: int, kind: str = "camera") -> dict[str, Any]:
        return {"handle": f"{tenant.prefix}/DEV-{n}", "template": h, "values": [
            {"index": 1, "type": "device.serial", "data": f"SN-{n:05d}"},
            {"index": 2, "type": "device.kind", "data": kind}]}

    lines = tmp_path / "devices.jsonl"
    lines.write_text("\n".join(json.dumps(record(n)) for n in range(3)) + "\n"
                     + json.dumps(record(3, "toaster")) + "\n")
    bad = run_cli("record", "import", str(lines), dsn=pg_dsn, check=False)
    assert bad.returncode == 1 and "1 of 4 records do not conform" in bad.stderr, bad.stderr
    assert requests.get(tenant.handle_url("DEV-0")).status_code == 404   # nothing stored
    lines.write_text("\n".join(json.dumps(record(n)) for n in range(4)))
    done = run_cli("record", "import", str(lines), dsn=pg_dsn)
    assert done.stdout.startswith("imported 4 records (4 created"), done.stdout
    found = run_cli("record", "lookup", tenant.prefix, "device.serial", "SN-00002", dsn=pg_dsn)
    assert found.stdout.strip() == f"{tenant.prefix}/DEV-2"
    assert run_cli("record", "lookup", tenant.prefix, "device.serial", "SN-0000", "--start",
                   dsn=pg_dsn).stdout.count("DEV-") == 4
    moved = run_cli("record", "state", f"{tenant.prefix}/DEV-1", "retired", "--reason",
                    "removed from the lobby", dsn=pg_dsn)
    assert moved.stdout.strip() == f"{tenant.prefix}/DEV-1 is retired"
    assert requests.get(f"{tenant.url}/{tenant.prefix}/DEV-1").status_code == 410
    again = run_cli("record", "state", f"{tenant.prefix}/DEV-1", "active", dsn=pg_dsn,
                    check=False)
    assert again.returncode == 1 and "retired is final" in again.stderr
    required = run_cli("prefix", "template", tenant.prefix, h, dsn=pg_dsn)
    assert required.stdout.strip() == f"records under {tenant.prefix} must follow {h.upper()}"
    r = requests.put(tenant.handle_url("LOOSE"), headers=tenant.op.bearer,
                     json=[{"index": 1, "type": "URL", "data": "https://example.org"}])
    assert r.status_code == 400 and "does not conform" in r.text
    missing = run_cli("template", "create", str(tmp_path / "none.json"), dsn=pg_dsn, check=False)
    assert missing.returncode == 1 and "cannot read" in missing.stderr


def test_sharing_commands(pg_dsn: str, tenant: Tenant) -> None:
    """A reader, a group and a grant made on the command line work over HTTP."""
    tag = str(time.monotonic_ns())
    r = requests.put(tenant.handle_url("CLI-SHARED"), headers=tenant.op.bearer, json=[
        {"index": 1, "type": "order.product", "data": "gearbox"},
        {"index": 2, "type": "order.quantity", "data": "5", "classification": "shared"},
        {"index": 3, "type": "order.price", "data": "9.50", "classification": "private"}])
    assert r.status_code == 201, r.text
    made = run_cli("reader", "create", f"erp-{tag}", "--owner", tenant.op.name, "--json",
                   dsn=pg_dsn)
    token = json.loads(made.stdout)["token"]
    run_cli("group", "create", f"suppliers-{tag}", "--owner", tenant.op.name, "--member",
            f"reader:erp-{tag}", dsn=pg_dsn)
    granted = run_cli("grant", "create", f"group:suppliers-{tag}", tenant.prefix, "--by",
                      tenant.op.name, "--types", "order.*", dsn=pg_dsn)
    assert granted.stdout.startswith("grant "), granted.stdout
    seen = requests.get(tenant.handle_url("CLI-SHARED"), headers={
        "Authorization": f"Bearer {token}"}).json()["values"]
    assert [v["type"] for v in seen] == ["order.product", "order.quantity"]
    assert f"group:suppliers-{tag}" in run_cli("grant", "list", "--scope", tenant.prefix,
                                               dsn=pg_dsn).stdout
    assert f"reader:erp-{tag}" in run_cli("group", "list", dsn=pg_dsn).stdout
    grant_id = granted.stdout.split()[1].rstrip(":")
    run_cli("grant", "revoke", grant_id, dsn=pg_dsn)
    seen = requests.get(tenant.handle_url("CLI-SHARED"), headers={
        "Authorization": f"Bearer {token}"}).json()["values"]
    assert [v["type"] for v in seen] == ["order.product"]
    run_cli("reader", "revoke", f"erp-{tag}", dsn=pg_dsn)
    assert requests.get(tenant.handle_url("CLI-SHARED"), headers={
        "Authorization": f"Bearer {token}"}).status_code == 401
    bad = run_cli("grant", "create", "reader:nobody", tenant.prefix, "--by", tenant.op.name,
                  dsn=pg_dsn, check=False)
    assert bad.returncode == 1 and "no reader named nobody" in bad.stderr, bad.stderr
