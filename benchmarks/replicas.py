"""Uncached resolution with 0, 1 and 2 streaming replicas, and stale reads across replica
lag (issue 14), in one run.

    python -m benchmarks.replicas                       # 100,000 identifiers, ~3 minutes
    python -m benchmarks.replicas --identifiers 20000 --duration 3

A primary (embedded binaries) loaded through POST /api/bulk, two replicas made from it
with pg_basebackup; then idres with its cache off (every GET a miss) on the primary
alone, with one replica and with two, alternating for ``--rounds``; wrk on core 1, idres
on core 0, the PostgreSQL servers where the scheduler puts them. Then mixed traffic (the
mixed load of benchmarks.run: 95% GET, 5% PUT, a read is stale when it shows a version
older than one acknowledged before it was sent) with a replica delayed by
``recovery_min_apply_delay``, with the cache on and off. Results:
benchmarks/results/replicas-*.json and .md.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import requests

from benchmarks.run import HERE, Idres, bench_database, loadgen, lua_get, save, scenario, \
    started, wrk
from tests.replicas.cluster import Standby


def replica_reads(srv: Idres, name: str = "idres_replica_reads_total{") -> float:
    return sum(float(line.split()[-1]) for line in
               requests.get(srv.url + "/metrics", timeout=10).text.splitlines()
               if line.startswith(name))


def primary_reads(srv: Idres) -> dict[str, float]:
    """Misses the primary answered, by why no replica could."""
    return {line.split('"')[1]: float(line.split()[-1]) for line in
            requests.get(srv.url + "/metrics", timeout=10).text.splitlines()
            if line.startswith("idres_replica_primary_reads_total{")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--identifiers", type=int, default=100_000)
    p.add_argument("--duration", type=int, default=5, help="seconds per measurement")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--delay-ms", type=int, default=500,
                   help="the lagging replica's recovery_min_apply_delay")
    p.add_argument("--out", type=Path, default=HERE / "results")
    args = p.parse_args()
    n, d = args.identifiers, args.duration
    results: dict[str, Any] = started(identifiers=n)
    with bench_database() as (work, pg, dsn, token, servers):
        loader = Idres(dsn, "--workers", "2", core=None)
        print(f"loading {n:,} identifiers…", flush=True)
        try:
            loadgen("bulk", None, url=loader.url, token=token, n=n, batch=5_000, concurrency=6)
        finally:
            loader.stop()
        standbys = [Standby(pg, dsn, work / f"replica{i}") for i in range(2)]
        try:
            for standby in standbys:
                standby.wait_caught_up(dsn)
            configs = {"primary alone": [], "1 replica": [standbys[0].dsn],
                       "2 replicas": [s.dsn for s in standbys]}
            best: dict[str, dict[str, Any]] = {}
            for round_ in range(args.rounds):
                for name, dsns in configs.items():
                    extra = [a for r in dsns for a in ("--replica", r)]
                    srv = Idres(dsn, "--cache-entries", "0", *extra)
                    try:
                        wrk(srv.url, lua_get(n, n), 1)           # warm-up
                        before = replica_reads(srv)
                        got: dict[str, Any] = dict(wrk(srv.url, lua_get(n, n), d))
                        got["replica_reads"] = replica_reads(srv) - before
                        got["primary_reads"] = primary_reads(srv) if dsns else {}
                    finally:
                        srv.stop()
                    print(f"  round {round_ + 1} {name:<14} {got['per_second']:>9,.0f} GET/s "
                          f"(replicas answered {got['replica_reads']:,.0f}; the primary "
                          f"{got['primary_reads']})", flush=True)
                    if name not in best or got["per_second"] > best[name]["per_second"]:
                        best[name] = got
            alone = best["primary alone"]
            for name in ("1 replica", "2 replicas"):
                scenario(results, f"uncached GET, {name}", best[name], alone,
                         "primary alone", "req/s")
            standbys[0].set_delay(args.delay_ms)
            for cache in ("on", "off"):
                extra = [] if cache == "on" else ["--cache-entries", "0"]
                srv = Idres(dsn, "--replica", standbys[0].dsn, *extra)
                try:
                    got = loadgen("mixed", 1, url=srv.url, token=token, hot=500, duration=d,
                                  concurrency=32)
                    got["replica_reads"] = replica_reads(srv)
                    got["primary_reads"] = primary_reads(srv)
                finally:
                    srv.stop()
                results[f"mixed, replica {args.delay_ms} ms behind, cache {cache}"] = got
                print(f"  mixed 95/5 with a replica {args.delay_ms} ms behind, cache {cache}: "
                      f"{got['per_second']:,.0f} ops/s, {got['reads']:,} reads, "
                      f"{got['writes']:,} writes, stale {got['stale']}, errors "
                      f"{got['errors']}, replica reads {got['replica_reads']:,.0f}, primary "
                      f"{got['primary_reads']}", flush=True)
        finally:
            for standby in standbys:
                standby.remove()
    save(results, args.out, "replicas")


if __name__ == "__main__":
    main()
