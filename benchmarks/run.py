"""Run every benchmark scenario against idres and its reference, in one run.

    python -m benchmarks.run                    # 1,000,000 identifiers, ~5 minutes
    python -m benchmarks.run --identifiers 100000 --duration 3     # a quick look

Servers (idres, nginx, the asyncpg reference) are pinned to core 0, load
generators (wrk, the Python ones) to core 1. PostgreSQL may use both cores while
the data set is loaded, then is pinned to core 0 with the servers, so that every
read scenario compares server sides that own the same core. Results go to benchmarks/results/ as
JSON and as a table; ratios compare numbers taken minutes apart on one machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests

from benchmarks import dataset
from resolver.pg.embedded import EmbeddedPostgres
from resolver.pg.pool import _ensure_database, migrate_dsn

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PIN = len(os.sched_getaffinity(0)) >= 2


def pinned(core: int, cmd: list[str]) -> list[str]:
    return ["taskset", "-c", str(core), *cmd] if PIN and shutil.which("taskset") else cmd


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def need(tool: str, package: str) -> str:
    path = shutil.which(tool) or (f"/usr/sbin/{tool}" if Path(f"/usr/sbin/{tool}").exists() else None)
    if path:
        return path
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print(f"installing {package} (Debian package)…", flush=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", package], check=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
                       stdout=subprocess.DEVNULL)
        return need(tool, package)
    sys.exit(f"{tool} is needed: apt-get install {package}")


class Idres:
    def __init__(self, dsn: str, *extra: str, core: int | None = 0) -> None:
        self.port, self.binary_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.TemporaryFile("w+")
        env = {**os.environ, "IDRES_DSN": dsn}
        self.keydir = tempfile.mkdtemp(prefix="idres-bench-key-")
        cmd = [sys.executable, "-m", "resolver.cli", "serve", "--port", str(self.port),
               "--binary-port", str(self.binary_port), "--pool-max", "16",
               "--key-file", f"{self.keydir}/node.pem", *extra]
        self.proc = subprocess.Popen(pinned(core, cmd) if core is not None else cmd,
                                     stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        for _ in range(300):
            try:
                requests.get(self.url + "/", timeout=1)
                return
            except requests.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("idres did not start")

    def rss_bytes(self) -> int:
        pid = self.proc.pid
        # taskset execs the server, so the pid is the server's
        status = Path(f"/proc/{pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) * 1024  # type: ignore[union-attr]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)
        self.log.close()
        shutil.rmtree(self.keydir, ignore_errors=True)


def server_pids(pgdata: Path) -> list[int]:
    """The postmaster of the server running on ``pgdata`` and every process it started."""
    postmaster = int((pgdata / "postmaster.pid").read_text().split()[0])
    pids = [postmaster]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == postmaster:
                pids.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return pids


def pin_postgres(pgdata: Path, cores: set[int]) -> None:
    """Move the PostgreSQL server (postmaster and every backend; later backends inherit)
    onto ``cores``: the database is part of the server side of the measurement."""
    if not PIN:
        return
    for pid in server_pids(pgdata):
        try:
            os.sched_setaffinity(pid, cores)
        except OSError:
            pass


def wrk(url: str, script: str, duration: int, connections: int = 64) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    out = subprocess.run(pinned(1, [need("wrk", "wrk"), "-t1", f"-c{connections}",
                                    f"-d{duration}s", "--latency", "-s", f.name, url]),
                         capture_output=True, text=True, check=True).stdout
    os.unlink(f.name)

    def ms(label: str) -> float:
        m = re.search(rf"{label}\s+([\d.]+)(us|ms|s)\b", out)
        if not m:
            return 0.0
        return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {"per_second": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
            "p50_ms": ms("50%"), "p99_ms": ms("99%"),
            "errors": (int(errors.group(1)) if errors else 0)
            + (sum(int(x) for x in sock.groups()) if sock else 0)}


def loadgen(kind: str, core: int | None, **args: Any) -> dict[str, Any]:
    """Run one load generator, on ``core`` (None: wherever the scheduler puts it)."""
    cmd = [sys.executable, "-m", "benchmarks.loadgen", kind, json.dumps(args)]
    out = subprocess.run(pinned(core, cmd) if core is not None else cmd,
                         capture_output=True, text=True, cwd=REPO)
    if out.returncode != 0:
        raise RuntimeError(f"loadgen {kind} failed:\n{out.stderr}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def nginx(body: bytes, workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    conf = (HERE / "reference" / "nginx.conf").read_text()
    text = body.decode().replace("\\", "\\\\").replace("'", "\\'")
    conf = conf.replace("{dir}", str(workdir)).replace("{port}", str(port)).replace("{body}", text)
    (workdir / "nginx.conf").write_text(conf)
    proc = subprocess.Popen(pinned(0, [need("nginx", "nginx-light"), "-p", str(workdir),
                                       "-c", str(workdir / "nginx.conf")]))
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            requests.get(url + "/x", timeout=1)
            break
        except requests.ConnectionError:
            time.sleep(0.05)
    return proc, url


def lua_get(n: int, span: int) -> str:
    """wrk: GET identifier i for i cycling through 0..span-1 (random when span == n)."""
    pick = "math.random(0, n - 1)" if span >= n else "counter % span"
    return dataset.lua_tables() + f"""
n = {n}
span = {span}
counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", "/api/handles/" .. ident({pick}))
end
"""


def lua_batch(ids: list[str]) -> str:
    body = json.dumps({"handles": ids}).replace("'", "\\'")
    return (f"wrk.method = 'POST'\nwrk.body = '{body}'\n"
            "wrk.headers['Content-Type'] = 'application/json'\n")


def scenario(results: dict[str, Any], name: str, idres: dict[str, Any],
             ref: dict[str, Any] | None, ref_name: str, unit: str) -> None:
    ratio = idres["per_second"] / ref["per_second"] if ref else None
    results[name] = {"idres": idres, "reference": ref, "reference_name": ref_name,
                     "ratio": ratio, "unit": unit}
    shown = f"{ratio:.2f}x {ref_name}" if ratio else "-"
    print(f"  {name:<34} {idres['per_second']:>12,.0f} {unit:<14} {shown}", flush=True)


def table(results: dict[str, Any]) -> str:
    lines = ["| scenario | idres | reference | ratio | idres p50 / p99 ms | errors |",
             "|---|---|---|---|---|---|"]
    for name, r in results.items():
        if not isinstance(r, dict) or "idres" not in r:
            continue
        i, ref = r["idres"], r["reference"]
        lat = f"{i['p50_ms']:.2f} / {i['p99_ms']:.2f}" if "p99_ms" in i else "-"
        refs = f"{ref['per_second']:,.0f} ({r['reference_name']})" if ref else "-"
        ratio = f"{r['ratio']:.2f}" if r["ratio"] else "-"
        lines.append(f"| {name} | {i['per_second']:,.0f} {r['unit']} | {refs} | {ratio} | {lat} "
                     f"| {i.get('errors', 0) + i.get('stale', 0)} |")
    return "\n".join(lines)


def start_database() -> tuple[Path, EmbeddedPostgres, str, str]:
    """A scratch folder and an embedded PostgreSQL in it, migrated, with an
    administrator ``bench`` that owns prefix 88: (folder, server, DSN, bench's token).
    The caller stops the server and removes the folder."""
    work = Path(tempfile.mkdtemp(prefix="idres-bench-"))
    work.chmod(0o711)
    pg = EmbeddedPostgres(work / "data")
    dsn = pg.start()
    asyncio.run(_ensure_database(dsn))
    asyncio.run(migrate_dsn(dsn))
    env = {**os.environ, "IDRES_DSN": dsn}
    token: str = json.loads(subprocess.run(
        [sys.executable, "-m", "resolver.cli", "operator", "create", "bench", "--admin",
         "--json"], env=env, capture_output=True, text=True, check=True, cwd=REPO).stdout
    )["token"]
    # data sets live under 88 (writes are refused under a prefix not served here)
    subprocess.run([sys.executable, "-m", "resolver.cli", "prefix", "create", "88",
                    "--owner", "bench"], env=env, capture_output=True, check=True, cwd=REPO)
    return work, pg, dsn, token


@contextlib.contextmanager
def bench_database() -> Iterator[tuple[Path, EmbeddedPostgres, str, str, list[Idres]]]:
    """:func:`start_database`, and a list for the servers started on it: on the way out
    they are stopped, the database too, and the folder removed."""
    work, pg, dsn, token = start_database()
    servers: list[Idres] = []
    try:
        yield work, pg, dsn, token, servers
    finally:
        for srv in servers:
            srv.stop()
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)


def started(**extra: Any) -> dict[str, Any]:
    """The head of a results record: what the machine was, when."""
    return {**extra, "pinned": PIN, "cores": os.cpu_count(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def save(results: dict[str, Any], out: Path, name: str) -> None:
    """``out/NAME-<stamp>.json`` and ``.md`` (the table), and the table printed."""
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (out / f"{name}-{stamp}.json").write_text(json.dumps(results, indent=2))
    text = table(results)
    (out / f"{name}-{stamp}.md").write_text(text + "\n")
    print("\n" + text)
    print(f"\nresults: {out}/{name}-{stamp}.json")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--identifiers", type=int, default=1_000_000)
    p.add_argument("--duration", type=int, default=5, help="seconds per measurement")
    p.add_argument("--out", type=Path, default=HERE / "results")
    args = p.parse_args()
    n, d = args.identifiers, args.duration
    results = started(identifiers=n)
    with bench_database() as (work, pg, dsn, token, servers):
        # loading: a production-like server (2 workers, both cores, as PostgreSQL)
        loader = Idres(dsn, "--workers", "2", core=None)
        print(f"loading {n:,} identifiers through POST /api/bulk…", flush=True)
        try:
            # the loader shares both cores with idres and PostgreSQL, as the README says
            results["bulk_registration"] = loadgen("bulk", None, url=loader.url, token=token,
                                                   n=n, batch=5_000, concurrency=6)
        finally:
            loader.stop()
        main_srv = Idres(dsn)
        servers.append(main_srv)
        b = results["bulk_registration"]
        print(f"  bulk registration: {b['per_second']:,.0f} identifiers/s "
              f"({b['record_bytes_min']}-{b['record_bytes_max']} bytes per record; idres "
              "with 2 workers and PostgreSQL on both cores)", flush=True)
        # from here on the server side (idres and PostgreSQL) has core 0, the load core 1
        pin_postgres(pg.pgdata, {0})
        run_scenarios(results, dsn, token, main_srv, servers, work, n, d)
    save(results, args.out, "run")


def run_scenarios(results: dict[str, Any], dsn: str, token: str, srv: Idres,
                  servers: list[Idres], work: Path, n: int, d: int) -> None:
    hot = [dataset.identifier(i) for i in range(1000)]
    requests.post(srv.url + "/api/resolve", json={"handles": hot})        # warm the cache
    body = requests.get(f"{srv.url}/api/handles/{hot[0]}").content
    ng, ng_url = nginx(body, work)
    try:
        wrk(ng_url, lua_get(n, 1000), 1)                                  # warm-ups
        wrk(srv.url, lua_get(n, 1000), 1)
        rounds = [(wrk(ng_url, lua_get(n, 1000), d), wrk(srv.url, lua_get(n, 1000), d))
                  for _ in range(2)]
    finally:
        ng.terminate()
        ng.wait()
    ref = max((r[0] for r in rounds), key=lambda x: x["per_second"])
    got = max((r[1] for r in rounds), key=lambda x: x["per_second"])
    results["cached_get_rounds"] = rounds
    scenario(results, "a. cached GET (64 conns)", got, ref, "nginx return 200", "req/s")

    cold = Idres(dsn, "--cache-entries", "0")
    servers.append(cold)
    ref = loadgen("asyncpg", 0, dsn=dsn, n=n, duration=d, concurrency=64, pool=16)
    got = wrk(cold.url, lua_get(n, n), d)
    scenario(results, "b. uncached GET (random of all)", got, ref, "raw asyncpg lookups", "req/s")

    ids = hot[:1000]
    got = wrk(srv.url + "/api/resolve", lua_batch(ids), d, connections=8)
    got = {**got, "per_second": got["per_second"] * len(ids)}
    scenario(results, "c1. batch HTTP (1000 per request)", got, None, "", "ids/s")
    got = loadgen("binary", 1, host="127.0.0.1", port=srv.binary_port, ids=list(range(1000)),
                  duration=d, conns=4, depth=256)
    scenario(results, "c2. binary protocol, single ops", got, None, "", "resolutions/s")
    got = loadgen("binary", 1, host="127.0.0.1", port=srv.binary_port, ids=list(range(1000)),
                  duration=d, conns=2, depth=8, batch=100)
    scenario(results, "c3. binary protocol, batch of 100", got, None, "", "resolutions/s")

    got = loadgen("mixed", 1, url=srv.url, token=token, hot=500, duration=d, concurrency=32)
    scenario(results, "d. mixed 95% GET / 5% PUT", got, None, "", "ops/s")
    print(f"     stale answers: {got['stale']}, errors: {got['errors']}", flush=True)

    recursive_scenarios(results, dsn, srv, servers, n, d)

    before = srv.rss_bytes()
    warm = 200_000 if n >= 200_000 else n
    for start in range(0, warm, 10_000):
        requests.post(srv.url + "/api/resolve", json={"handles": [
            dataset.identifier(i) for i in range(start, min(warm, start + 10_000))]})
    after = srv.rss_bytes()
    entries = next(float(line.split()[-1]) for line in requests.get(srv.url + "/metrics")
                   .text.splitlines() if line.startswith("idres_cache_entries "))
    results["memory"] = {"rss_before_bytes": before, "rss_after_bytes": after,
                         "cached_identifiers": entries,
                         "bytes_per_cached_identifier": (after - before) / max(1, warm)}
    print(f"  memory: {(after - before) / max(1, warm):,.0f} bytes per cached identifier, "
          f"RSS {after / 2**20:,.0f} MiB with {entries:,.0f} cached", flush=True)


def recursive_scenarios(results: dict[str, Any], dsn: str, srv: Idres, servers: list[Idres],
                        n: int, d: int) -> None:
    """A recursive node whose root is the authoritative server (one hop): its warm-cache
    rate against the authoritative node's own cached rate, and the latency one uncached
    hop adds (one connection: p50 through the recursive node minus p50 direct)."""
    from tests.conftest import fresh_database

    root = ("--recursive", "--root", srv.url, "--root-key",
            requests.get(srv.url + "/api/node").json()["publicKey"])
    warm = Idres(fresh_database(dsn, "recursive"), *root)
    cold = Idres(fresh_database(dsn, "recursive"), *root, "--cache-entries", "0")
    servers += [warm, cold]
    hot = [dataset.identifier(i) for i in range(1000)]
    requests.post(warm.url + "/api/resolve", json={"handles": hot})     # walks, then cached
    direct = wrk(srv.url, lua_get(n, 1000), d)
    got = wrk(warm.url, lua_get(n, 1000), d)
    scenario(results, "e. recursive node, warm cache", got, direct, "authoritative cached",
             "req/s")
    one_direct = wrk(srv.url, lua_get(n, 1000), d, connections=1)
    one_hop = wrk(cold.url, lua_get(n, 1000), d, connections=1)
    added = one_hop["p50_ms"] - one_direct["p50_ms"]
    results["f. one uncached hop"] = {"direct": one_direct, "through_recursive": one_hop,
                                      "added_p50_ms": added}
    print(f"  f. one uncached hop adds {added:.2f} ms at p50 "
          f"({one_direct['p50_ms']:.2f} → {one_hop['p50_ms']:.2f} ms, one connection)",
          flush=True)


if __name__ == "__main__":
    main()
