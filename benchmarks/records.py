"""Typed records (issue 9), each against its reference in one run:

* a checked write against an unchecked one, single PUT and bulk: the same 8-value asset
  record under a prefix with no template and under one that follows a typed template;
* bulk with two indexed (unique) items against the same template without them;
* lookup by code (``GET /api/lookup``, never cached) at each size in ``--sizes``, against
  raw asyncpg running the same query, one per lookup.

    python -m benchmarks.records                          # sizes 1,000,000 (~4 minutes)
    python -m benchmarks.records --sizes 1000000,10000000 # and 10,000,000 (~25 minutes)
    python -m benchmarks.records --rounds 0 --sizes 1000000,10000000   # lookups only

The server side (idres, one process, and PostgreSQL) is pinned to core 0 and the load to
core 1, as in benchmarks.run, except while the lookup data set is loaded (both cores).
Write rounds alternate the variants, six times (every other round in the opposite order);
a cost is the median of the rounds' ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from pathlib import Path
from typing import Any

import requests

from benchmarks import dataset
from benchmarks.run import (
    HERE,
    Idres,
    bench_database,
    loadgen,
    pin_postgres,
    save,
    scenario,
    started,
    wrk,
)
from registry.store.codes import EXACT

UNCHECKED, PLAIN, INDEXED, LOOKUP = "88.300", "88.301", "88.302", "88.303"
TEMPLATES = {PLAIN: f"{PLAIN}/TPL-ASSET", INDEXED: f"{INDEXED}/TPL-ASSET"}


async def vacuum(dsn: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()


def lua_lookup(prefix: str, n: int) -> str:
    return f"""
n = {n}
request = function()
  return wrk.format("GET", string.format(
    "/api/lookup?prefix={prefix}&type=asset.equipment_code&value=EQ-%08d",
    math.random(0, n - 1)))
end
response = function(status, headers, body)
  if status ~= 200 or not string.find(body, "ASSET-", 1, true) then
    wrk.thread:stop()
  end
end
"""


def server_cpu(srv: Idres, pgdata: Path) -> float:
    """CPU seconds used so far by the idres process and the PostgreSQL backends serving
    its connections (the server side of a write): unlike elapsed time, not moved by the
    disk's fsync delays. PostgreSQL's background processes (autovacuum, checkpointer)
    are left out: they run when they please, not per write."""
    tick = os.sysconf("SC_CLK_TCK")
    postmaster = int((pgdata / "postmaster.pid").read_text().split()[0])
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            pid = int(stat.parent.name)
            ours = pid == srv.proc.pid or (int(fields[1]) == postmaster and b"(" in (
                stat.parent / "cmdline").read_bytes())   # "postgres: user db host(port)"
        except (OSError, ValueError):
            continue
        if ours:
            total += (int(fields[11]) + int(fields[12])) / tick    # utime + stime
    return total


def measured(srv: Idres, pgdata: Path, kind: str, n: int, **args: Any) -> dict[str, Any]:
    """One load-generator round, with the server side's CPU per write."""
    before = server_cpu(srv, pgdata)
    got = loadgen(kind, 1, url=srv.url, n=n, **args)
    got["cpu_us_per_write"] = (server_cpu(srv, pgdata) - before) / n * 1e6
    return got


def cost(results: dict[str, Any], name: str, variant: list[dict[str, Any]],
         base: list[dict[str, Any]], base_name: str, goal: float) -> None:
    """``variant`` against ``base`` as the extra cost per write, two ways: elapsed time
    (the median over rounds of each round's ratio: the two ran back to back in a round)
    and the server side's CPU per write (the median of the rounds' ratios too)."""
    ratios = sorted(b["per_second"] / v["per_second"] for v, b in zip(variant, base))
    cpu = sorted(v["cpu_us_per_write"] / b["cpu_us_per_write"] for v, b in zip(variant, base))
    extra, extra_cpu = statistics.median(ratios) - 1, statistics.median(cpu) - 1
    best_v = max(variant, key=lambda r: r["per_second"])
    best_b = max(base, key=lambda r: r["per_second"])
    scenario(results, name, best_v, best_b, base_name, "writes/s")
    results[name].update(extra_cost=extra, round_ratios=ratios, extra_cpu=extra_cpu,
                         cpu_ratios=cpu)
    print(f"     cost per write {extra:+.0%} elapsed, {extra_cpu:+.0%} server CPU "
          f"({statistics.median(v['cpu_us_per_write'] for v in variant):.0f} against "
          f"{statistics.median(b['cpu_us_per_write'] for b in base):.0f} µs); rounds: "
          f"{', '.join(f'{r - 1:+.0%}' for r in ratios)} elapsed, "
          f"{', '.join(f'{r - 1:+.0%}' for r in cpu)} CPU; goal ≤ {goal:+.0%}", flush=True)


def write_scenarios(results: dict[str, Any], srv: Idres, token: str, rounds: int,
                    pgdata: Path) -> None:
    single: dict[str, list[dict[str, Any]]] = {UNCHECKED: [], PLAIN: []}
    bulk: dict[str, list[dict[str, Any]]] = {UNCHECKED: [], PLAIN: [], INDEXED: []}
    for r in range(rounds):
        # every other round in the opposite order: a checkpoint or autovacuum set off by
        # one variant's writes falls on each variant alike
        turn = 1 if r % 2 == 0 else -1
        for prefix in list(single)[::turn]:
            single[prefix].append(measured(srv, pgdata, "writes", 1500, token=token,
                                           prefix=prefix, template=TEMPLATES.get(prefix),
                                           first=r * 1500, concurrency=16))
        for prefix in list(bulk)[::turn]:
            bulk[prefix].append(measured(srv, pgdata, "bulk", 20_000, token=token, assets=True,
                                         prefix=prefix, template=TEMPLATES.get(prefix),
                                         first=100_000 + r * 20_000, batch=5_000,
                                         concurrency=2))
    results["write_rounds"] = {"single": single, "bulk": bulk}
    cost(results, "single PUT, checked", single[PLAIN], single[UNCHECKED], "unchecked PUT",
         0.20)
    cost(results, "bulk, checked", bulk[PLAIN], bulk[UNCHECKED], "unchecked bulk", 0.20)
    cost(results, "bulk, checked, 2 unique items", bulk[INDEXED], bulk[PLAIN],
         "checked bulk, no index", 0.25)
    cost(results, "bulk, checked, 2 unique items vs unchecked", bulk[INDEXED],
         bulk[UNCHECKED], "unchecked bulk", 0.25)


def cpu_costs(results: dict[str, Any], n: int = 5_000, repeat: int = 5) -> None:
    """In this process, without PostgreSQL: what checking adds to a bulk request's own
    work on its records (decoding the body, validating and encoding the values), per
    record, best of ``repeat``. The database's share (COPY, indexes, the WAL; the noisy
    part on a shared machine) is in the rounds above."""
    import orjson

    from registry import record_check as rc
    from registry import template_model as tm
    from registry.records_input import parse_records
    from resolver.core import codec

    definition = tm.parse_definition({"items": dataset.ASSET_ITEMS})
    raw = [dataset.asset(i, PLAIN, TEMPLATES[PLAIN]) for i in range(n)]
    body = orjson.dumps(raw)
    base, check = [], []
    for _ in range(repeat):
        t = time.perf_counter()
        entries = parse_records(codec.parse_json(body), n)
        for e in entries:
            codec.encode_stored(e.values)
        base.append(time.perf_counter() - t)
        t = time.perf_counter()
        for e, r in zip(entries, raw):
            problems, _ = rc.conform_values(e.values, r["values"], definition)
            assert not problems
        check.append(time.perf_counter() - t)
    per_base, per_check = min(base) / n * 1e6, min(check) / n * 1e6
    results["cpu per record"] = {"bulk_own_work_us": per_base, "checking_us": per_check}
    print(f"  in process: checking an 8-value record costs {per_check:.1f} µs, the bulk "
          f"request's own work on it {per_base:.1f} µs ({per_check / per_base:+.0%})",
          flush=True)


def load(srv_url: str, token: str, first: int, n: int) -> float:
    """Register assets first..first+n under LOOKUP (following the indexed template), a
    million per load generator (its request bodies are built before its clock starts)."""
    took = 0.0
    for start in range(first, first + n, 1_000_000):
        got = loadgen("bulk", None, url=srv_url, token=token, assets=True, prefix=LOOKUP,
                      template=TEMPLATES[INDEXED], first=start,
                      n=min(1_000_000, first + n - start), batch=5_000, concurrency=6)
        took += got["seconds"]
        print(f"     {start + got['identifiers']:,} loaded ({got['per_second']:,.0f}/s)",
              flush=True)
    return took


def lookup_scenario(results: dict[str, Any], srv: Idres, dsn: str, size: int, d: int) -> None:
    ref = loadgen("asyncpg", 0, dsn=dsn, n=size, duration=d, concurrency=64, pool=16,
                  query=EXACT, prefix=LOOKUP)
    wrk(srv.url, lua_lookup(LOOKUP, size), 1)
    got = wrk(srv.url, lua_lookup(LOOKUP, size), d)
    scenario(results, f"lookup by code, {size:,} records", got, ref,
             "raw asyncpg, same query", "lookups/s")
    print(f"     p50 {got['p50_ms']:.2f} ms, p99 {got['p99_ms']:.2f} ms (goal ≥ 10,000/s, "
          f"p99 ≤ 10 ms); reference p99 {ref['p99_ms']:.2f} ms", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sizes", default="1000000",
                   help="comma-separated data-set sizes for lookup by code")
    p.add_argument("--duration", type=int, default=5, help="seconds per lookup measurement")
    p.add_argument("--rounds", type=int, default=6,
                   help="write rounds per variant (0: lookups only)")
    p.add_argument("--out", type=Path, default=HERE / "results")
    args = p.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(",") if int(s))  # 0: writes only
    results = started(sizes=sizes)
    with bench_database() as (_, pg, dsn, token, servers):
        srv = Idres(dsn)
        servers.append(srv)
        auth = {"Authorization": f"Bearer {token}"}
        for prefix, handle in TEMPLATES.items():
            r = requests.post(srv.url + "/api/templates", headers=auth,
                              json=dataset.asset_template(handle, prefix == INDEXED))
            r.raise_for_status()
        pin_postgres(pg.pgdata, {0})
        print("writes: one process on core 0 with PostgreSQL, load on core 1", flush=True)
        if args.rounds % 2:
            print("     (an even number of rounds balances the order of the variants)")
        if args.rounds:
            write_scenarios(results, srv, token, args.rounds, pg.pgdata)
            cpu_costs(results)
        loaded = 0
        for size in sizes:
            pin_postgres(pg.pgdata, {0, 1})
            print(f"loading {size - loaded:,} assets (two indexed codes each)…", flush=True)
            loader = Idres(dsn, "--workers", "2", core=None)
            try:
                took = load(loader.url, token, loaded, size - loaded)
            finally:
                loader.stop()
            results[f"load to {size:,}"] = {"seconds": took, "per_second": (size - loaded) / took}
            asyncio.run(vacuum(dsn))
            loaded = size
            pin_postgres(pg.pgdata, {0})
            lookup_scenario(results, srv, dsn, size, args.duration)
    save(results, args.out, "records")


if __name__ == "__main__":
    main()
