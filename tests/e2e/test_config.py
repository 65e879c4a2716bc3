"""Configuration from a TOML file beside flags and the environment; `idres config` prints
what is in force, where each setting came from, secrets masked."""

from __future__ import annotations

import json
from pathlib import Path

import requests

from tests.conftest import Server, run_cli


def test_flags_win_over_the_environment_which_wins_over_the_file(tmp_path: Path) -> None:
    conf = tmp_path / "idres.toml"
    conf.write_text('port = 9123\npool-max = 7\nlog_format = "json"\nroots = []\n'
                    'dsn = "postgresql://idres:s3cret-pw@127.0.0.1:5/idres"\n')
    out = run_cli("config", "--config", str(conf), "--port", "9200", "--json",
                  env={"IDRES_POOL_MAX": "9", "IDRES_DSN": ""})
    got = {r["setting"]: r for r in json.loads(out.stdout)["settings"]}
    assert (got["port"]["value"], got["port"]["from"]) == (9200, "flag --port")
    assert (got["pool_max"]["value"], got["pool_max"]["from"]) == (9, "environment IDRES_POOL_MAX")
    assert got["log_format"]["value"] == "json" and got["log_format"]["from"].startswith("config")
    assert got["dsn"]["value"] == "postgresql://idres:***@127.0.0.1:5/idres"
    assert "s3cret-pw" not in out.stdout + out.stderr
    assert got["workers"] == {"setting": "workers", "value": 1, "from": "default"}
    text = run_cli("config", "--config", str(conf), env={"IDRES_DSN": ""}).stdout
    assert text.splitlines()[0].split() == ["SETTING", "VALUE", "FROM"]
    # a key that is no setting, a value of the wrong kind, a file that is not TOML
    for body, said in (("nope = 1\n", "'nope' is not a setting"),
                       ("port = 99999\n", "port must be 0..65535"),
                       ("port = [\n", "is not TOML")):
        conf.write_text(body)
        bad = run_cli("config", "--config", str(conf), env={"IDRES_DSN": ""}, check=False)
        assert bad.returncode == 2 and said in bad.stderr, bad.stderr
    missing = run_cli("config", "--config", str(tmp_path / "none.toml"), check=False)
    assert missing.returncode == 2 and "No such file" in missing.stderr


def test_replicas_come_space_separated_and_are_printed_without_passwords() -> None:
    dsn = "postgresql://idres:pw@127.0.0.1:5/idres"
    replicas = ("postgresql://ro:r3plica-pw@r1:5432/idres "
                "postgresql://ro:r3plica-pw@r2:5432/idres?target_session_attrs=standby")
    out = run_cli("config", "--json", env={"IDRES_DSN": dsn, "IDRES_REPLICAS": replicas})
    got = {r["setting"]: r for r in json.loads(out.stdout)["settings"]}["replicas"]
    assert got["value"] == ["postgresql://ro:***@r1:5432/idres", "postgresql://ro:***@r2:5432/"
                            "idres?target_session_attrs=standby"]
    assert got["from"] == "environment IDRES_REPLICAS" and "r3plica-pw" not in out.stdout
    for env, said in (({"IDRES_DSN": "", "IDRES_REPLICAS": replicas}, "--replica needs --dsn"),
                      ({"IDRES_DSN": dsn, "IDRES_REPLICAS": "r1:5432"}, "postgresql:// DSN"),
                      ({"IDRES_DSN": dsn, "IDRES_REPLICAS": "postgresql://ro:pw@r1,r2/idres"},
                       "one --replica per server")):
        bad = run_cli("config", env=env, check=False)
        assert bad.returncode == 2 and said in bad.stderr, bad.stderr


def test_the_server_takes_its_settings_from_the_file(pg_dsn: str, tmp_path: Path) -> None:
    conf = tmp_path / "idres.toml"
    conf.write_text('access_log = true\nlog_format = "json"\nnegative_ttl = 0\n')
    srv = Server(pg_dsn, "--config", str(conf))
    try:
        srv.wait_ready()
        status = requests.get(f"{srv.url}/api/handles/88.0.0/CONF").status_code
        assert status in (400, 404)     # (not homed, or not found: the log says which)
    finally:
        assert srv.stop() == 0, srv.output()
    lines = [json.loads(ln) for ln in srv.output().splitlines() if ln.startswith("{")]
    assert any(ln.get("target") == "/api/handles/88.0.0/CONF" and ln["status"] == status
               for ln in lines), srv.output()
