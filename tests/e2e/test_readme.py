"""The README's quickstart, run as written (with curl and the idres CLI) against a server on
a fresh database: if the documentation drifts from the code, this fails."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import requests

from tests.conftest import REPO, Server, fresh_database


def quickstart() -> str:
    text = (REPO / "README.md").read_text()
    section = text.split("## Quickstart with curl", 1)[1]
    match = re.search(r"```bash\n(.*?)```", section, re.S)
    assert match, "the quickstart has no bash block"
    return match.group(1)


def test_quickstart_runs_as_written(pg_dsn: str, tmp_path: Path) -> None:
    dsn = fresh_database(pg_dsn)
    srv = Server(dsn).wait_ready()
    try:
        script = quickstart()
        assert "IDRES=http://127.0.0.1:8000" in script
        script = script.replace("IDRES=http://127.0.0.1:8000", f"IDRES={srv.url}")
        # any HTTP error answer fails the run
        prelude = "set -euo pipefail\ncurl() { command curl --fail-with-body \"$@\"; }\n"
        env = {**os.environ, "IDRES_DSN": dsn,
               "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
        proc = subprocess.run(["bash", "-c", prelude + script], capture_output=True, text=True,
                              env=env, cwd=REPO, timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        out = proc.stdout
        assert "302 https://mes.acme.example/orders/ORDER-1" in out
        assert '"count":10000' in out and "EQ-CNC-5AX-0042" in out
        assert out.count('"handles":["88.100.7/ASSET-CNC-0042"]') == 2      # by either code
        assert "301 " in out and "/88.100.7/DEV-SMOKE-9120" in out
        assert '"$schema":"https://json-schema.org/draft/2020-12/schema"' in out
        for name in ("ORDER", "BATCH", "ASSET", "UNIT", "DEVICE", "SHIPMENT"):
            assert f'"handle":"88.100.7/TPL-{name}","version":1,"state":"published"' in out
        ship = requests.get(f"{srv.url}/api/handles/88.100.7/SHIP-2024-0001").json()
        assert ship["values"][0]["data"]["value"] == "88.100.7/ORDER-1"
        order = requests.get(f"{srv.url}/api/handles/88.100.7/ORDER-1").json()
        assert order["values"][3]["data"]["value"] == "shipped"
        assert [v["index"] for v in order["values"]] == [1, 2, 3, 4]     # 5, 6 are shared
        # step 13: each party sees what it was granted (the answers in order)
        assert out.count('"responseCode":200,"values":[],"handle":"88.100.7/ORDER-1"') == 1
        assert '"type":"order.due","data":{"format":"string","value":"2026-12-24"}' in out
        assert '"value":"Dock 4, Ningbo port"' in out
        assert '"value":"89.5"' in out and "Wang Fang" not in out
        asset = requests.get(f"{srv.url}/api/handles/88.100.7/ASSET-CNC-0042").json()
        assert [v["index"] for v in asset["values"]] == [1, 2, 3, 4]   # 5 is not public
    finally:
        assert srv.stop() == 0, srv.output()
