"""The API description: OpenAPI 3.1 made from the running application (its routes, the
msgspec types its handlers decode bodies with), valid, and held to by every answer while
schemathesis fuzzes every operation of a live server (no 5xx, every answer matching)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import requests
from openapi_spec_validator import validate

from tests.conftest import Server, fresh_database, run_cli


def test_the_description_is_valid_and_covers_every_route(server: Server) -> None:
    doc = requests.get(f"{server.url}/api/openapi.json").json()
    validate(doc)
    assert doc["openapi"] == "3.1.0"
    paths = doc["paths"]
    for path, method in [("/api/handles/{handle}", "get"), ("/api/handles/{handle}", "put"),
                         ("/{handle}", "get"), ("/api/resolve", "post"), ("/api/bulk", "post"),
                         ("/api/templates", "post"), ("/api/grants", "post"),
                         ("/api/stats/resolutions", "get"), ("/api/openapi.json", "get")]:
        assert method in paths.get(path, {}), (path, method)
    # a body is described by the type that decodes it: the same field names and rules
    schemas = doc["components"]["schemas"]
    body = paths["/api/prefixes"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/NewPrefix"}
    assert schemas["NewPrefix"]["required"] == ["prefix"]
    assert set(schemas["Move"]["properties"]) >= {"state", "reason", "successor"}
    assert "302" in paths["/{handle}"]["get"]["responses"]


def test_a_body_the_description_rejects_is_refused_naming_the_field(server: Server,
                                                                     admin: object) -> None:
    r = requests.post(f"{server.url}/api/prefixes", json={"prefix": 88},
                      headers=admin.bearer)  # type: ignore[attr-defined]
    assert r.status_code == 400 and "$.prefix" in r.json()["message"]
    r = requests.post(f"{server.url}/api/prefixes", json={"prefix": "88.9", "owner": "x",
                                                          "extra": 1},
                      headers=admin.bearer)  # type: ignore[attr-defined]
    assert r.status_code == 400 and "extra" in r.json()["message"]


def test_schemathesis_finds_no_server_error_and_no_answer_off_the_description(
        pg_dsn: str, tmp_path: Path) -> None:
    dsn = fresh_database(pg_dsn, "fuzz")
    token = json.loads(run_cli("operator", "create", "fuzz-admin", "--admin", "--json",
                               dsn=dsn).stdout)["token"]
    srv = Server(dsn)
    try:
        srv.wait_ready()
        requests.post(f"{srv.url}/api/prefixes", json={"prefix": "88"},
                      headers={"Authorization": f"Bearer {token}"})
        out = subprocess.run(
            [sys.executable, "-m", "schemathesis.cli", "run", f"{srv.url}/api/openapi.json",
             "--checks", "not_a_server_error,response_schema_conformance",
             "--max-examples", "10", "--phases", "coverage,fuzzing", "--workers", "2",
             "--seed", "20261202", "-H", f"Authorization: Bearer {token}"],
            capture_output=True, text=True, timeout=600, cwd=tmp_path,
            env={**os.environ, "SCHEMATHESIS_HOOKS": ""})
        report = out.stdout + out.stderr
        assert out.returncode == 0, report[-6000:]
        # every generated case passed (a warning may say "Authentication failed": the
        # Handle session operations answer a bearer token 401, as they must)
        summary = report.split("SUMMARY")[-1]
        counts = re.search(r"(\d+) generated, (\d+) passed", summary)
        assert counts is not None and counts.group(1) == counts.group(2), report[-3000:]
        assert not re.search(r"\d+ failed", summary), report[-3000:]
    finally:
        assert srv.stop() == 0, srv.output()
