"""The write path (issue 11), each against its reference in one run:

* single ``PUT`` creating identifiers (the 8-value asset record, untyped) at 8 and 64
  connections, against a ``pgbench`` script doing the same SQL work per write on the
  same database: the row, the audit row, the notification, one commit (the reference
  for what PostgreSQL itself does per write; ``-M prepared``, as many clients);
* the server side's CPU per write (idres and the PostgreSQL backends serving it), and
  how many writes a group commit carried (registry/store/group.py);
* mixed traffic over 500 identifiers, 95% GET / 5% PUT and 80% / 20% (32 clients; a read
  is stale if it shows a version older than the newest acknowledged write issued before
  it), against reads alone on the same identifiers;
* with ``--bytes N``: the bytes per identifier after a bulk load of N of benchmarks.run's
  records (and a CHECKPOINT): table (heap and TOAST), indexes, audit, WAL and the whole
  data directory, each apart.

* with ``--memory N``: the RSS per cached identifier with N of those records cached.

    python -m benchmarks.writes              # ~1 minute
    python -m benchmarks.writes --bytes 1000000 --memory 1000000   # and the storage rows

The server side (idres, one process, and PostgreSQL) is pinned to core 0 and the load
(the Python load generator, or pgbench) to core 1, as in benchmarks.run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import requests

from benchmarks import dataset
from benchmarks.records import server_cpu
from benchmarks.run import (
    HERE,
    Idres,
    bench_database,
    loadgen,
    need,
    pin_postgres,
    pinned,
    save,
    scenario,
    started,
)
from registry.records_input import parse_records
from resolver.core import codec
from resolver.core.channel import INVALIDATE_CHANNEL

PREFIX = "88.310"


def pgbench_script() -> str:
    """One write's SQL work, as idres does it for a created asset: the record row (its
    values, and the public view resolution reads), the audit row holding the values, a
    notification, one commit."""
    rec = dataset.asset(1, PREFIX, None)
    entry = parse_records(codec.parse_json(orjson.dumps([rec])), 1)[0]
    stored, public = codec.encode_stored(entry.values)
    values = (stored if isinstance(stored, bytes) else orjson.dumps(stored)).decode()
    values = values.replace("'", "''")
    key = f"'{PREFIX}/PGB-' || :client_id || '-' || :i"
    return f"""\\set i random(1, 2000000000)
BEGIN;
INSERT INTO handles (handle, prefix, "values", public_json)
  VALUES ({key}, '{PREFIX}', '{values}'::jsonb, '\\x{bytes(public).hex()}'::bytea)
  ON CONFLICT (handle) DO NOTHING;
INSERT INTO audit (operator_id, actor, action, handle, prefix, after)
  VALUES (NULL, 'bench', 'create', {key}, '{PREFIX}', '{values}'::jsonb);
SELECT pg_notify('{INVALIDATE_CHANNEL}', {key});
END;
"""


def pgbench(dsn: str, clients: int, seconds: int) -> dict[str, Any]:
    u = urlsplit(dsn)
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write(pgbench_script())
    try:
        out = subprocess.run(pinned(1, [
            need("pgbench", "postgresql-client"), "-n", "-h", str(u.hostname), "-p", str(u.port),
            "-U", str(u.username), "-c", str(clients), "-j", "1", "-T", str(seconds),
            "-M", "prepared", "-f", f.name, u.path.lstrip("/")]),
            env={**os.environ, "PGPASSWORD": u.password or ""}, capture_output=True,
            text=True, check=True).stdout
    finally:
        os.unlink(f.name)
    fields = dict(line.split(" = ", 1) for line in out.splitlines() if " = " in line)
    return {"per_second": float(fields["tps"].split()[0]),
            "latency_ms": float(fields["latency average"].split()[0])}


def group_metrics(srv: Idres) -> tuple[float, float]:
    text = requests.get(srv.url + "/metrics", timeout=10).text
    got = {line.split()[0]: float(line.split()[-1]) for line in text.splitlines()
           if line.startswith("idres_write_group")}
    return got.get("idres_write_groups_total", 0.0), got.get("idres_write_group_writes_total", 0.0)


def single_writes(results: dict[str, Any], srv: Idres, dsn: str, token: str, pgdata: Path,
                  n: int, seconds: int) -> None:
    first = 0
    for conns in (8, 64):
        ref = pgbench(dsn, conns, seconds)
        groups, writes = group_metrics(srv)
        before = server_cpu(srv, pgdata)
        got = loadgen("writes", 1, url=srv.url, token=token, prefix=PREFIX, first=first, n=n,
                      concurrency=conns)
        got["cpu_us_per_write"] = (server_cpu(srv, pgdata) - before) / n * 1e6
        groups2, writes2 = group_metrics(srv)
        got["writes_per_group"] = (writes2 - writes) / max(1.0, groups2 - groups)
        first += n
        scenario(results, f"single PUT, {conns} connections", got, ref,
                 "pgbench, same SQL per write", "writes/s")
        print(f"     p50 {got['p50_ms']:.1f} ms, p99 {got['p99_ms']:.1f} ms; server CPU "
              f"{got['cpu_us_per_write']:.0f} µs per write; {got['writes_per_group']:.1f} "
              f"writes per group commit; pgbench latency {ref['latency_ms']:.1f} ms "
              "(goals: ≥ 5,000/s with p99 ≤ 20 ms at 64, ≥ 0.5x pgbench)", flush=True)


def mixed(results: dict[str, Any], srv: Idres, token: str, seconds: int) -> None:
    loadgen("bulk", None, url=srv.url, token=token, n=500, batch=500, concurrency=1)
    reads = loadgen("mixed", 1, url=srv.url, token=token, hot=500, duration=seconds,
                    concurrency=32, writes=0.0)
    for share in (0.05, 0.20):
        got = loadgen("mixed", 1, url=srv.url, token=token, hot=500, duration=seconds,
                      concurrency=32, writes=share)
        name = f"mixed {100 - share * 100:.0f}% GET / {share * 100:.0f}% PUT"
        scenario(results, name, got, reads, "reads alone", "ops/s")
        print(f"     {got['writes']:,} writes, {got['reads']:,} reads; stale answers: "
              f"{got['stale']}, errors: {got['errors']} (goal 95/5: ≥ 40,000/s, 0 stale)",
              flush=True)


async def _sizes(dsn: str) -> dict[str, int]:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CHECKPOINT")
        row = await conn.fetchrow(
            """SELECT pg_table_size('handles') AS handles_table,
                      pg_indexes_size('handles') AS handles_indexes,
                      pg_table_size('audit') AS audit_table,
                      pg_indexes_size('audit') AS audit_indexes,
                      pg_total_relation_size('codes') AS codes,
                      (SELECT sum(size) FROM pg_ls_waldir()) AS wal,
                      pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0') AS wal_written,
                      pg_database_size(current_database()) AS database""")
        return {k: int(v or 0) for k, v in dict(row).items()}
    finally:
        await conn.close()


def _du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def storage(results: dict[str, Any], dsn: str, token: str, pgdata: Path,
            n: int) -> None:
    import asyncio

    pin_postgres(pgdata, {0, 1})
    before = asyncio.run(_sizes(dsn))
    # a production-like server: 2 workers, both cores, as PostgreSQL and the load
    loader = Idres(dsn, "--workers", "2", core=None)
    try:
        got = loadgen("bulk", None, url=loader.url, token=token, n=n, first=1_000, batch=5_000,
                      concurrency=4)   # (after the mixed set)
    finally:
        loader.stop()
    after = asyncio.run(_sizes(dsn))
    per = {k: (after[k] - before[k]) / n for k in after}
    per["data_directory"] = _du(pgdata) / n
    results["bytes per identifier"] = {"identifiers": n, "load_per_second": got["per_second"],
                                       **per}
    print(f"  bytes per identifier after {n:,} ({got['per_second']:,.0f}/s loaded): "
          + ", ".join(f"{k} {v:,.0f}" for k, v in per.items())
          + " (goal: data directory ≤ 1,500)", flush=True)
    # the reference: PostgreSQL's COPY of the same rows, as many connections, both cores
    ref = loadgen("copy", None, dsn=dsn, n=n, first=50_000_000, batch=5_000, concurrency=4)
    results[f"bulk load of {n:,} (2 workers, both cores)"] = {
        "idres": got, "reference": ref, "reference_name": "PostgreSQL COPY of the same rows",
        "ratio": got["per_second"] / ref["per_second"], "unit": "identifiers/s"}
    print(f"  bulk load of {n:,}: idres {got['per_second']:,.0f}/s, PostgreSQL COPY of the same "
          f"rows {ref['per_second']:,.0f}/s ({got['per_second'] / ref['per_second']:.2f}x; "
          "goal ≥ 100,000/s)", flush=True)
    pin_postgres(pgdata, {0})


FIRST_CACHED = 20_000_000


def memory(results: dict[str, Any], dsn: str, token: str, n: int) -> None:
    """RSS per cached identifier with ``n`` of benchmarks.run's records cached: a server
    of its own (a cache bound above ``n``), its RSS before and after resolving them all
    (in batches of 10,000), over ``n``."""
    loader = Idres(dsn, "--workers", "2", core=None)
    try:
        loadgen("bulk", None, url=loader.url, token=token, n=n, first=FIRST_CACHED, batch=5_000,
                concurrency=4)      # (past the identifiers the other scenarios made)
    finally:
        loader.stop()
    srv = Idres(dsn, "--cache-entries", str(2 * n), "--cache-bytes", str(8 << 30), core=None)
    try:
        warm = [dataset.identifier(FIRST_CACHED + i) for i in range(1000)]
        requests.post(srv.url + "/api/resolve", json={"handles": warm})
        before = srv.rss_bytes()
        for start in range(FIRST_CACHED, FIRST_CACHED + n, 10_000):
            requests.post(srv.url + "/api/resolve", json={"handles": [
                dataset.identifier(i) for i in range(start, min(FIRST_CACHED + n,
                                                                start + 10_000))]})
        after = srv.rss_bytes()
        entries = next(float(line.split()[-1]) for line in requests.get(srv.url + "/metrics")
                       .text.splitlines() if line.startswith("idres_cache_entries "))
    finally:
        srv.stop()
    per = (after - before) / n
    results["memory per cached identifier"] = {"cached": entries, "bytes": per}
    print(f"  memory: {per:,.0f} bytes of RSS per cached identifier with {entries:,.0f} "
          "cached (goal ≤ 1,000)", flush=True)


def peer_writes(results: dict[str, Any], srv: Idres, token: str, url: str, auth: str,
                prefix: str, n: int) -> None:
    """The same PUTs against a Handle.Net server run by hand (benchmarks/README.md), and
    against idres over the same number of connections, in one run."""
    import base64

    header = "Basic " + base64.b64encode(auth.encode()).decode()
    for conns in (8, 64):
        peer = loadgen("writes", 1, url=url, auth=header, insecure=True, prefix=prefix,
                       first=1_000_000 + conns * n, n=n, concurrency=conns)
        got = loadgen("writes", 1, url=srv.url, token=token, prefix=PREFIX,
                      first=2_000_000 + conns * n, n=n, concurrency=conns)
        scenario(results, f"single PUT, {conns} connections, against Handle.Net", got, peer,
                 "Handle.Net server, HTTPS", "writes/s")
        print(f"     Handle.Net p50 {peer['p50_ms']:.1f} ms, p99 {peer['p99_ms']:.1f} ms "
              "(goal: idres ≥ 10x)", flush=True)


def lua_mixed(token: str, hot: int, share: float, threads: int) -> str:
    """wrk, one connection per thread: ``share`` of requests PUT a new version (index 90)
    of one of the thread's own identifiers (i % threads == its number), the others GET
    ``?index=90`` of any identifier. A read of the thread's own identifier is stale if it
    shows a version older than the thread's last acknowledged write of it (read-your-
    writes per client; benchmarks.loadgen's mixed checks across clients)."""
    return dataset.lua_tables() + f"""
hot, share, nthreads = {hot}, {share}, {threads}
local threads, made = {{}}, 0
function setup(thread)
  thread:set("me", made)
  made = made + 1
  table.insert(threads, thread)
end
function init(args)
  math.randomseed(me * 7919 + 1)
  acked, sent, stale, errors, writes = {{}}, {{}}, 0, 0, 0
  pending = nil
end
request = function()
  if math.random() < share then
    local i = me + nthreads * math.random(0, math.floor((hot - 1 - me) / nthreads))
    local v = (sent[i] or 0) + 1
    sent[i] = v
    pending = {{"w", i, v}}
    return wrk.format("PUT", "/api/handles/" .. ident(i) .. "?index=90",
      {{["Authorization"] = "Bearer {token}", ["Content-Type"] = "application/json"}},
      '[{{"index":90,"type":"bench.version","data":"' .. v .. '"}}]')
  end
  local i = math.random(0, hot - 1)
  pending = {{"r", i}}
  return wrk.format("GET", "/api/handles/" .. ident(i) .. "?index=90")
end
response = function(status, headers, body)
  local p = pending
  if p == nil then return end
  if status ~= 200 then errors = errors + 1 return end
  if p[1] == "w" then
    acked[p[2]] = p[3]
    writes = writes + 1
  elseif acked[p[2]] then
    local seen = tonumber(string.match(body, '"value":"(%d+)"') or "0")
    if seen < acked[p[2]] then stale = stale + 1 end
  end
end
function done(summary, latency, requests)
  local s, e, w = 0, 0, 0
  for _, t in ipairs(threads) do
    s = s + t:get("stale")
    e = e + t:get("errors")
    w = w + t:get("writes")
  end
  io.write(string.format("MIXED stale=%d errors=%d writes=%d\\n", s, e, w))
end
"""


def mixed_wrk(results: dict[str, Any], srv: Idres, token: str, seconds: int) -> None:
    """Mixed traffic through wrk (the Python client above bounds what it can show)."""
    import re
    import tempfile

    threads = 16
    auth = {"Authorization": f"Bearer {token}"}
    for i in range(500):       # version 0 everywhere first (the set loaded by mixed())
        requests.put(f"{srv.url}/api/handles/{dataset.identifier(i)}?index=90", headers=auth,
                     json=[{"index": 90, "type": "bench.version", "data": "0"}]).raise_for_status()
    for share in (0.0, 0.05, 0.20):
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
            f.write(lua_mixed(token, 500, share, threads))
        out = subprocess.run(pinned(1, [need("wrk", "wrk"), f"-t{threads}", f"-c{threads}",
                                        f"-d{seconds}s", "--latency", "-s", f.name, srv.url]),
                             capture_output=True, text=True, check=True).stdout
        os.unlink(f.name)
        rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
        got = dict(re.findall(r"(stale|errors|writes)=(\d+)", out))
        name = f"mixed {100 - share * 100:.0f}/{share * 100:.0f} (wrk, {threads} conns)"
        results[name] = {"idres": {"per_second": rate, "stale": int(got.get("stale", 0)),
                                   "errors": int(got.get("errors", 0))},
                         "reference": None, "reference_name": "", "ratio": None,
                         "unit": "ops/s"}
        print(f"  {name:<34} {rate:>12,.0f} ops/s; {got.get('writes')} writes, stale "
              f"{got.get('stale')}, errors {got.get('errors')}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--writes", type=int, default=5000,
                   help="PUTs per measurement (0: skip the single and mixed writes)")
    p.add_argument("--duration", type=int, default=8, help="seconds of pgbench")
    p.add_argument("--bytes", type=int, default=0,
                   help="identifiers to bulk-load for the bytes per identifier (0: skip)")
    p.add_argument("--memory", type=int, default=0,
                   help="identifiers to cache for the RSS per cached identifier (0: skip)")
    p.add_argument("--peer", help="a Handle.Net server run by hand (https://host:port)")
    p.add_argument("--peer-auth", default="300%3A88.300/ADMIN:secret123",
                   help="its Basic credentials, INDEX%%3AHANDLE:SECRET")
    p.add_argument("--peer-prefix", default="88.300", help="a prefix homed on it")
    p.add_argument("--out", type=Path, default=HERE / "results")
    args = p.parse_args()
    results = started(writes=args.writes)
    with bench_database() as (_, pg, dsn, token, servers):
        srv = Idres(dsn)
        servers.append(srv)
        pin_postgres(pg.pgdata, {0})
        if args.writes:
            single_writes(results, srv, dsn, token, pg.pgdata, args.writes, args.duration)
            mixed(results, srv, token, args.duration)
            mixed_wrk(results, srv, token, args.duration)
        if args.peer:
            peer_writes(results, srv, token, args.peer, args.peer_auth, args.peer_prefix,
                        args.writes)
        if args.bytes:
            storage(results, dsn, token, pg.pgdata, args.bytes)
        if args.memory:
            memory(results, dsn, token, args.memory)
    save(results, args.out, "writes")


if __name__ == "__main__":
    main()
