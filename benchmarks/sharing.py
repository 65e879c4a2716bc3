"""Authorized resolution (issue 10), each against its reference in one run:

* a reader's cached GET (its grants show shared values, derived from the cached record
  on the fast path) against the public cached GET of the same identifiers;
* a reader's batch of 1,000 identifiers against the public batch of the same ones.

    python -m benchmarks.sharing                 # ~1 minute
    python -m benchmarks.sharing --duration 10

The server (one process) and PostgreSQL are pinned to core 0, wrk to core 1, as in
benchmarks.run; each pair alternates twice and keeps each side's best round.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import requests

from benchmarks.run import (
    HERE,
    Idres,
    bench_database,
    lua_batch,
    pin_postgres,
    save,
    scenario,
    started,
    wrk,
)

PREFIX = "88.400"
N = 1000
ITEMS = [{"type": "URL", "datatype": "url"},
         {"type": "unit.building", "required": True},
         {"type": "unit.area_m2", "datatype": "decimal", "classification": "shared"},
         {"type": "unit.status", "datatype": "enum", "values": ["occupied", "vacant"],
          "classification": "shared"},
         {"type": "unit.resident", "classification": "private"}]


def unit(i: int) -> dict[str, Any]:
    return {"handle": f"{PREFIX}/UNIT-{i:05d}", "template": f"{PREFIX}/TPL-UNIT", "values": [
        {"index": 1, "type": "URL", "data": f"https://community.example/units/{i}"},
        {"index": 2, "type": "unit.building", "data": f"Building {i % 20}"},
        {"index": 3, "type": "unit.area_m2", "data": f"{60 + i % 80}.5"},
        {"index": 4, "type": "unit.status", "data": "occupied" if i % 3 else "vacant"},
        {"index": 5, "type": "unit.resident", "data": f"resident {i}"}]}


def lua_get(token: str | None) -> str:
    auth = f'wrk.headers["Authorization"] = "Bearer {token}"\n' if token else ""
    return auth + f"""
counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", string.format("/api/handles/{PREFIX}/UNIT-%05d", counter % {N}))
end
"""


def best_of(pairs: list[tuple[dict[str, Any], dict[str, Any]]], side: int) -> dict[str, Any]:
    return max((p[side] for p in pairs), key=lambda r: r["per_second"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--duration", type=int, default=5, help="seconds per measurement")
    p.add_argument("--out", type=Path, default=HERE / "results")
    args = p.parse_args()
    d = args.duration
    results = started()
    with bench_database() as (_, pg, dsn, token, servers):
        srv = Idres(dsn)
        servers.append(srv)
        auth = {"Authorization": f"Bearer {token}"}
        requests.post(srv.url + "/api/templates", headers=auth, json={
            "handle": f"{PREFIX}/TPL-UNIT", "items": ITEMS, "publish": True}).raise_for_status()
        requests.post(srv.url + "/api/bulk", headers=auth,
                      json=[unit(i) for i in range(N)]).raise_for_status()
        reader = requests.post(srv.url + "/api/readers", headers=auth,
                               json={"name": "city-platform"}).json()["token"]
        requests.post(srv.url + "/api/grants", headers=auth, json={
            "grantee": "reader:city-platform", "scope": PREFIX, "types": "unit.*",
            "template": f"{PREFIX}/TPL-UNIT"}).raise_for_status()
        ids = [f"{PREFIX}/UNIT-{i:05d}" for i in range(N)]
        as_reader = {"Authorization": f"Bearer {reader}"}
        shown = requests.get(f"{srv.url}/api/handles/{ids[1]}", headers=as_reader).json()
        assert [v["type"] for v in shown["values"]] == [
            "URL", "unit.building", "unit.area_m2", "unit.status"], shown
        requests.post(srv.url + "/api/resolve", json={"handles": ids})      # warm the cache
        pin_postgres(pg.pgdata, {0})
        wrk(srv.url, lua_get(None), 1)
        wrk(srv.url, lua_get(reader), 1)
        pairs = [(wrk(srv.url, lua_get(None), d), wrk(srv.url, lua_get(reader), d))
                 for _ in range(2)]
        fast = next(float(line.split()[-1]) for line in requests.get(srv.url + "/metrics")
                    .text.splitlines() if line.startswith("idres_http_fast_authorized_total "))
        results["get_rounds"] = pairs
        scenario(results, "reader's cached GET (64 conns)", best_of(pairs, 1), best_of(pairs, 0),
                 "public cached GET", "req/s")
        print(f"     answered on the fast path from the cache: {fast:,.0f}", flush=True)
        batch = lua_batch(ids)
        reader_batch = f'wrk.headers["Authorization"] = "Bearer {reader}"\n' + batch
        pairs = [(wrk(srv.url + "/api/resolve", batch, d, connections=8),
                  wrk(srv.url + "/api/resolve", reader_batch, d, connections=8))
                 for _ in range(2)]
        results["batch_rounds"] = pairs
        pub, mine = best_of(pairs, 0), best_of(pairs, 1)
        scenario(results, "reader's batch of 1,000", {**mine, "per_second": mine["per_second"] * N},
                 {**pub, "per_second": pub["per_second"] * N}, "public batch", "ids/s")
    save(results, args.out, "sharing")


if __name__ == "__main__":
    main()
