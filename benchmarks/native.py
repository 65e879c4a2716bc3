"""The Handle native protocol (issue 13), against its references in one run:

* UDP resolution of cached identifiers, against the Handle.Net server's own UDP rate
  (``--reference HOST:PORT``, a server you started, see benchmarks/README.md; its
  identifiers ``--reference-handles``, e.g. ``88.100.7/BENCH-%04d``);
* TCP with pipelined requests on one connection, against the msgpack protocol's single
  resolutions with the same depth (``docs/protocol.md``); and TCP with a connection per
  request, one at a time, against the Handle.Net server (which answers one request per
  connection, so it cannot be pipelined).

The load comes from benchmarks/netload.c (built here with the system's C compiler:
recvmmsg/sendmmsg batches), since a Python loop sends no more than about 50,000
datagrams a second on these machines.

    python -m benchmarks.native                             # ~1 minute, idres alone
    python -m benchmarks.native --reference 127.0.0.1:2641 --reference-handles 88.100.7/BENCH-%04d

The servers (idres with its PostgreSQL, or the reference) are pinned to core 0, the load
generator to core 1 (benchmarks.run); rounds alternate and each side keeps its best. The
load generator keeps ``--window`` requests in flight on one socket and sends a request
for each answer it reads.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

from benchmarks import dataset
from benchmarks.run import (
    HERE,
    Idres,
    bench_database,
    pin_postgres,
    pinned,
    save,
    scenario,
    started,
)
from resolver.native import wire
from resolver.protocol.frames import encode_request
from resolver.native.wire import int4, string

N = 1000


def resolution(handle: str, request_id: int) -> bytes:
    body = string(handle) + int4(0) + int4(0)
    return wire.encode(2, 10, 0, request_id, wire.OC_RESOLUTION, 0, wire.PO, body)


def build(work: Path) -> Path:
    """benchmarks/netload.c, compiled with the system's C compiler into ``work``."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        sys.exit("benchmarks.native needs a C compiler for its load generator "
                 "(apt install gcc): a Python loop cannot send fast enough")
    out = work / "netload"
    subprocess.run([cc, "-O2", "-o", str(out), str(HERE / "netload.c")], check=True)
    return out


def requests_file(work: Path, name: str, frames: list[bytes]) -> Path:
    path = work / f"{name}.bin"
    path.write_bytes(b"".join(len(f).to_bytes(4, "big") + f for f in frames))
    return path


def measure(tool: Path, kind: str, port: int, frames: Path, seconds: float, window: int,
            length: tuple[int, int] = (16, 20), host: str = "127.0.0.1") -> dict[str, Any]:
    """One run of the load generator on core 1."""
    cmd = [str(tool), kind, host, str(port), str(seconds), str(window), str(frames),
           str(length[0]), str(length[1])]
    out = subprocess.run(pinned(1, cmd), capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"netload {kind} failed:\n{out.stderr}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def best(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    top = max(rounds, key=lambda r: r["per_second"])
    return {**top, "rounds": [round(r["per_second"]) for r in rounds]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--duration", type=float, default=5, help="seconds per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--window", type=int, default=64, help="requests in flight")
    p.add_argument("--reference", help="HOST:PORT of a Handle.Net server (UDP and TCP)")
    p.add_argument("--reference-handles", default="88.100.7/BENCH-%04d",
                   help="its identifiers, %%d numbered 0..999")
    p.add_argument("--out", type=Path, default=HERE / "results")
    args = p.parse_args()
    results = started(identifiers=N, window=args.window)
    ids = [dataset.identifier(i) for i in range(N)]
    with bench_database() as (work, pg, dsn, token, servers):
        tool = build(work)
        native = requests_file(work, "native", [resolution(h, i) for i, h in enumerate(ids)])
        packed = requests_file(work, "msgpack", [encode_request(i, 1, h) for i, h in enumerate(ids)])
        ref = None
        if args.reference:
            ref = args.reference.rsplit(":", 1)
            ref_frames = requests_file(work, "reference", [
                resolution(args.reference_handles % i, i) for i in range(N)])
        port = free_udp_tcp_port()
        srv = Idres(dsn, "--handle-port", str(port))
        servers.append(srv)
        r = requests.post(f"{srv.url}/api/bulk", json={"records": list(dataset.records(0, N))},
                          headers={"Authorization": f"Bearer {token}"}, timeout=120)
        r.raise_for_status()
        pin_postgres(pg.pgdata, {0})
        for h in ids:   # warm: answers are kept from an entry's second answer on
            for _ in range(3):
                measure_once(port, h)
        d, w = args.duration, args.window
        sides: dict[str, list[dict[str, Any]]] = {}
        for _ in range(args.rounds):
            sides.setdefault("idres UDP", []).append(measure(tool, "udp", port, native, d, w))
            if ref is not None:
                host, rport = ref[0], int(ref[1])
                sides.setdefault("Handle.Net UDP", []).append(
                    measure(tool, "udp", rport, ref_frames, d, w, host=host))
                sides.setdefault("Handle.Net TCP, a connection each", []).append(
                    measure(tool, "tcp1", rport, ref_frames, d, w, host=host))
                sides.setdefault("idres TCP, a connection each", []).append(
                    measure(tool, "tcp1", port, native, d, w))
            sides.setdefault("idres TCP, pipelined", []).append(
                measure(tool, "tcp", port, native, d, w))
            sides.setdefault("idres msgpack, single", []).append(
                measure(tool, "tcp", srv.binary_port, packed, d, w, length=(0, 4)))
    b = {name: best(rounds) for name, rounds in sides.items()}
    unit = "resolutions/s"
    scenario(results, "native UDP, cached", b["idres UDP"], b.get("Handle.Net UDP"),
             "Handle.Net UDP", unit)
    scenario(results, "native TCP pipelined, cached", b["idres TCP, pipelined"],
             b["idres msgpack, single"], "msgpack protocol, single", unit)
    if "Handle.Net TCP, a connection each" in b:
        scenario(results, "native TCP, a connection per request", b["idres TCP, a connection each"],
                 b["Handle.Net TCP, a connection each"], "Handle.Net TCP", unit)
    save(results, args.out, "native")


def measure_once(port: int, handle: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        s.sendto(resolution(handle, 1), ("127.0.0.1", port))
        s.recv(4096)


def free_udp_tcp_port() -> int:
    """A port free for both TCP and UDP."""
    while True:
        with socket.socket() as t:
            t.bind(("127.0.0.1", 0))
            port = int(t.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                try:
                    u.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port


if __name__ == "__main__":
    main()
