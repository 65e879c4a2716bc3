"""idres import / export (JSON lines, CSV: idempotent, resumable, reporting what it did) and
idres backup / restore (the bundled PostgreSQL tools, into a fresh data directory)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import requests

from tests.conftest import Server, Tenant, fresh_database, make_temp_dir, run_cli


def _records(t: Tenant, tag: str, n: int, status: str = "made") -> list[dict[str, Any]]:
    return [{"handle": f"{t.prefix}/{tag}-{i}", "values": [
        {"index": 1, "type": "URL", "data": f"https://mes.example/{tag}/{i}"},
        {"index": 2, "type": "order.status", "data": status}]} for i in range(n)]


def _write(path: Path, lines: list[Any]) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


def _import(pg_dsn: str, path: Path, *extra: str) -> dict[str, Any]:
    out = run_cli("import", str(path), "--json", *extra, dsn=pg_dsn)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def _count(t: Tenant, tag: str) -> int:
    r = requests.get(f"{t.url}/api/handles", params={"prefix": t.prefix, "pageSize": 1000},
                     headers=t.op.bearer)
    return sum(1 for h in r.json()["handles"] if f"/{tag}-" in h)


def test_import_is_idempotent_resumable_and_says_what_it_did(
        pg_dsn: str, tenant: Tenant, tmp_path: Path) -> None:
    bad = {"handle": f"{tenant.prefix}/BAD", "values": [
        {"index": 1, "type": "a", "data": "x"}, {"index": 1, "type": "b", "data": "y"}]}
    lines = [*_records(tenant, "O", 6), "{not json", bad, *_records(tenant, "O", 10)[6:]]
    path = _write(tmp_path / "orders.jsonl", lines)
    first = _import(pg_dsn, path, "--chunk", "4")
    assert (first["created"], first["invalid"], first["unchanged"]) == (10, 2, 0), first
    assert {e["line"] for e in first["examples"]} == {7, 8}
    assert "duplicate index" in next(e for e in first["examples"] if e["line"] == 8)["problem"]
    assert _count(tenant, "O") == 10
    # again: recognised, nothing duplicated or refused
    again = _import(pg_dsn, path, "--chunk", "4")
    assert (again["created"], again["unchanged"], again["conflicts"]) == (0, 10, 0), again
    assert _count(tenant, "O") == 10 and not (tmp_path / "orders.jsonl.idres-progress").exists()
    # the same identifiers with other values: conflicts, left alone; --overwrite replaces
    changed = _write(tmp_path / "changed.jsonl", _records(tenant, "O", 3, status="shipped"))
    got = _import(pg_dsn, changed)
    assert (got["conflicts"], got["created"]) == (3, 0), got
    assert requests.get(tenant.handle_url("O-0")).json()["values"][1]["data"]["value"] == "made"
    got = _import(pg_dsn, changed, "--overwrite")
    assert got["replaced"] == 3
    assert requests.get(tenant.handle_url("O-0")).json()["values"][1]["data"]["value"] == "shipped"
    # resumed: an interrupted import left its progress; the rerun starts after it
    fresh = _write(tmp_path / "resume.jsonl", _records(tenant, "R", 8))
    st = fresh.stat()
    (tmp_path / "resume.jsonl.idres-progress").write_text(json.dumps(
        {"file": [st.st_size, int(st.st_mtime)], "done": 5}))
    got = _import(pg_dsn, fresh)
    assert got["resumed_after_line"] == 5 and got["created"] == 3, got
    assert requests.get(tenant.handle_url("R-4")).status_code == 404
    assert requests.get(tenant.handle_url("R-5")).status_code == 200
    # a progress bar for people, on standard error
    shown = run_cli("import", str(fresh), dsn=pg_dsn)
    assert "records" in shown.stderr and "unchanged" in shown.stdout


def test_csv_in_and_both_formats_out(pg_dsn: str, tenant: Tenant, tmp_path: Path) -> None:
    p = tenant.prefix
    (tmp_path / "assets.csv").write_text(
        "handle,URL,5:asset.location\n"
        f"{p}/PUMP-1,https://a.example/1,\"hall B, line 2\"\n"
        f"{p}/PUMP-2,https://a.example/2,\n\n")
    got = _import(pg_dsn, tmp_path / "assets.csv")
    assert got["created"] == 2 and got["invalid"] == 0, got
    values = requests.get(tenant.handle_url("PUMP-1")).json()["values"]
    assert [(v["index"], v["type"], v["data"]["value"]) for v in values] == [
        (1, "URL", "https://a.example/1"), (5, "asset.location", "hall B, line 2")]
    assert len(requests.get(tenant.handle_url("PUMP-2")).json()["values"]) == 1
    # export: JSON lines that import again as they are, and CSV
    out = tmp_path / "out.jsonl"
    said = run_cli("export", p, "--output", str(out), dsn=pg_dsn)
    assert "2 records" in said.stdout
    assert [json.loads(ln)["handle"] for ln in out.read_text().splitlines()] == [
        f"{p}/PUMP-1", f"{p}/PUMP-2"]
    back = _import(pg_dsn, out)
    assert (back["unchanged"], back["created"], back["conflicts"]) == (2, 0, 0), back
    requests.put(tenant.handle_url("PUMP-1") + "?index=7", headers=tenant.op.bearer, json=[
        {"index": 7, "type": "asset.cost", "data": "secret", "classification": "private"}])
    csv_out = tmp_path / "out.csv"
    run_cli("export", p, "--output", str(csv_out), dsn=pg_dsn)   # a private value: not in CSV
    assert "secret" not in csv_out.read_text()
    rows = csv_out.read_text().splitlines()
    assert rows[0] == "handle,1:URL,5:asset.location"
    assert rows[1] == f'{p}/PUMP-1,https://a.example/1,"hall B, line 2"'


def test_backup_and_restore_into_a_fresh_data_directory(pg_dsn: str) -> None:
    dsn = fresh_database(pg_dsn, "bk")
    made = json.loads(run_cli("operator", "create", "bk-admin", "--admin", "--json",
                              dsn=dsn).stdout)
    bearer = {"Authorization": f"Bearer {made['token']}"}
    work = make_temp_dir()
    srv = Server(dsn)
    try:
        srv.wait_ready()
        requests.post(f"{srv.url}/api/prefixes", headers=bearer,
                      json={"prefix": "88.77", "owner": "bk-admin"})
        requests.put(f"{srv.url}/api/handles/88.77/KEEP", headers=bearer,
                     json=[{"index": 1, "type": "URL", "data": "https://kept.example"}])
        before = requests.get(f"{srv.url}/api/handles/88.77/KEEP").json()
        file = work / "idres.backup"
        out = run_cli("backup", str(file), dsn=dsn)       # while it serves
        assert file.stat().st_size > 0 and "backed up" in out.stdout
    finally:
        assert srv.stop() == 0, srv.output()
    data = work / "restored"
    try:
        out = run_cli("restore", str(file), "--data-dir", str(data), env={"IDRES_DSN": ""})
        assert "restored" in out.stdout
        restored = Server("", "--data-dir", str(data))
        try:
            restored.wait_ready()
            assert requests.get(f"{restored.url}/api/handles/88.77/KEEP").json() == before
        finally:
            assert restored.stop() == 0, restored.output()
        # a database holding identifiers is not overwritten unless asked
        again = run_cli("restore", str(file), "--data-dir", str(data), env={"IDRES_DSN": ""},
                        check=False)
        assert again.returncode == 2 and "holds 2 identifiers" in again.stderr, again.stderr
        # a file that is not a backup: a clear error, nothing changed
        junk = work / "junk.backup"
        junk.write_bytes(b"PGDMP\x00 not really")
        bad = run_cli("restore", str(junk), "--data-dir", str(data), "--force",
                      env={"IDRES_DSN": ""}, check=False)
        assert bad.returncode == 2 and "is it a file `idres backup` wrote" in bad.stderr
    finally:
        shutil.rmtree(work, ignore_errors=True)
