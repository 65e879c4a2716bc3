"""The ``idres`` command: serve, migrate, operator, prefix, resolve.

Commands that touch the database take the same ``--dsn``/``--data-dir`` as
``serve`` and work while a server runs on the same embedded database.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import fields
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import asyncpg
import uvloop

from registry import usage
from registry.cli import COMMANDS, GROUPS, Run
from registry.store import Db
from resolver import __version__, cli_data
from resolver.config import (
    ENV_NAMES,
    Settings,
    StartupError,
    add_database_flags,
    add_serve_flags,
    config_file,
    from_args,
    sources,
)
from resolver.core import signing
from resolver.core.errors import IdresError
from resolver.core.identifier import parse_prefix
from resolver.core.signing import derived_key, public_key_text
from resolver.acks import AckListener
from resolver.keys import load_or_create
from resolver.pg.embedded import EmbeddedError
from resolver.pg.backup import BackupError
from resolver.pg.migrate import MigrationError
from resolver.pg.pool import create_pool, database, migrate_dsn, redact
from resolver.traffic import configure_logging

log = logging.getLogger("idres")


async def _with_db(settings: Settings, work: Callable[[Db], Awaitable[int]]) -> int:
    """Run ``work`` on the database; its writes return once running resolvers applied them."""
    async with database(settings.dsn, settings.data_dir, create=False) as dsn:
        await migrate_dsn(dsn, settings.case_sensitive)
        pool = await create_pool(dsn, min_size=1, max_size=2)
        acks = AckListener(dsn)
        try:
            await acks.start()
            return await work(Db(pool, acks, seal_key=_seal_key(settings)))
        finally:
            await acks.close()
            await pool.close()


def _seal_key(settings: Settings) -> bytes:
    """The key that seals operators' secrets, if this node's key is here (it is never made
    by a command: a server elsewhere would not know it)."""
    path = settings.key_file or settings.data_dir / "node_ed25519.pem"
    try:
        return derived_key(load_or_create(path), b"idres secret keys") if path.exists() else b""
    except (OSError, ValueError) as exc:
        log.warning("cannot read the node key %s (%s): secrets made now are not sealed", path,
                    exc)
        return b""


def _print(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    print(json.dumps(data, indent=2, default=str) if args.json else text)


# --- commands ------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    if settings.workers > 1:
        from resolver.workers import supervise

        return supervise(settings)
    from resolver.node import serve

    uvloop.run(serve(settings))
    return 0


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    async def run() -> int:
        async with database(settings.dsn, settings.data_dir, create=False) as dsn:
            applied = await migrate_dsn(dsn, settings.case_sensitive)
        print("applied: " + ", ".join(applied) if applied else "schema is up to date")
        return 0

    return asyncio.run(run())


def cmd_init(args: argparse.Namespace, settings: Settings) -> int:
    """Create the embedded database (or prepare the one --dsn names) and its schema."""
    async def run() -> int:
        where = settings.dsn and redact(settings.dsn) or f"{settings.data_dir}"
        async with database(settings.dsn, settings.data_dir, create=True) as dsn:
            applied = await migrate_dsn(dsn, settings.case_sensitive)
        print(f"idres database ready in {where}"
              + (f" (applied {', '.join(applied)})" if applied else " (already up to date)"))
        return 0

    return asyncio.run(run())


def db_command(work: Run) -> Callable[[argparse.Namespace, Settings], int]:
    """A registry command (registry/cli.py) run on the database (the embedded server
    started if needed), printing its result as text, or as JSON with ``--json``."""
    def run(args: argparse.Namespace, settings: Settings) -> int:
        async def go(db: Db) -> int:
            data, text = await work(db, args)
            _print(args, data, text)
            return 0

        return asyncio.run(_with_db(settings, go))

    return run


def cmd_node_key(args: argparse.Namespace, settings: Settings) -> int:
    key = load_or_create(settings.key_file or settings.data_dir / "node_ed25519.pem")
    print(public_key_text(key))
    return 0


def cmd_stats_report(args: argparse.Namespace, settings: Settings) -> int:
    """Report this node's resolution counts under a prefix to the node that delegated it
    (registry/usage.py), signed with this node's key."""
    key = load_or_create(settings.key_file or settings.data_dir / "node_ed25519.pem")
    prefix = parse_prefix(args.prefix)

    async def go(db: Db) -> int:
        async with db.pool.acquire() as conn:
            rows = await usage.own_totals(conn, prefix, args.hours)
        statement = {"kind": "usage", "prefix": prefix.text, "rows": rows}
        body = {"statement": statement,
                "signature": signing.signed(key, statement, 300, int(time.time()))}
        url = args.to.rstrip("/") + "/api/stats/reports"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
            async with http.post(url, json=body) as r:
                answer = await r.json(content_type=None)
        if r.status != 200:
            print(f"idres: {url} refused the report ({r.status}): {answer.get('message')}",
                  file=sys.stderr)
            return 1
        _print(args, answer, f"reported {len(rows)} rows of counts under {prefix.text} "
                             f"(the last {args.hours} hours) to {args.to}")
        return 0

    return asyncio.run(_with_db(settings, go))


def cmd_config(args: argparse.Namespace, settings: Settings) -> int:
    """The effective configuration: each setting, its value and where it came from."""
    came = sources(args)[1]
    rows = []
    for f in fields(Settings):
        if f.name in ENV_NAMES:
            value = getattr(settings, f.name)
            if f.name == "dsn" and value:
                value = redact(value)           # the password never printed
            elif f.name == "replicas":
                value = [redact(v) for v in value]
            rows.append({"setting": f.name, "value": str(value) if isinstance(value, Path)
                         else value, "from": came.get(f.name, "default")})
    _print(args, {"settings": rows}, "\n".join(
        f"{r['setting']:<18} {str(r['value']):<40} {r['from']}"
        for r in [{"setting": "SETTING", "value": "VALUE", "from": "FROM"}, *rows]))
    return 0


def cmd_resolve(args: argparse.Namespace, settings: Settings) -> int:
    if not args.server.startswith(("http://", "https://")):
        raise StartupError(f"the server URL {args.server!r} needs a scheme: "
                           f"http://{args.server} or https://{args.server}")
    query = [("type", t) for t in args.type] + [("index", str(i)) for i in args.index]
    if args.trace:
        query += [("trace", "true"), ("recursive", "true")]
    url = f"{args.server.rstrip('/')}/api/handles/{quote(args.identifier, safe='/')}"
    try:
        status, body = asyncio.run(_get_json(url, query, args.timeout))
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        print(f"cannot reach {args.server}: {exc or type(exc).__name__}", file=sys.stderr)
        return 2
    if status == 300 and "referral" in body:
        servers = ", ".join(s["url"] for s in body["referral"]["servers"])
        print(f"{args.identifier}: referral: prefix {body['referral']['prefix']} is served "
              f"by {servers} (use --trace to follow it)", file=sys.stderr)
        return 3
    if status >= 300:
        print(f"{args.identifier}: {body.get('message', 'error')} "
              f"(HTTP {status}, responseCode {body.get('responseCode')})", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(body, indent=2, ensure_ascii=False))
        return 0
    for n, hop in enumerate(body.get("trace", []), 1):
        print(f"hop {n}: " + ", ".join(f"{k}={v}" for k, v in hop.items()))
    if body.get("stale"):
        print("(stale: every authoritative server is unreachable; this is the last answer seen)")
    print(body["handle"])
    for v in body.get("values", []):
        data = v["data"]["value"]
        shown = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
        print(f"  {v['index']:>5}  {v['type']:<20} {shown}   (ttl {v['ttl']})")
    return 0


async def _get_json(url: str, query: list[tuple[str, str]],
                    timeout: float) -> tuple[int, dict[str, Any]]:
    """(HTTP status, JSON body) of a GET; a body that is not JSON counts as empty."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session, \
            session.get(url, params=query, headers={"Accept": "application/json"}) as resp:
        raw = await resp.read()  # network op
    try:
        body = json.loads(raw)
    except ValueError:
        body = {}
    return resp.status, body if isinstance(body, dict) else {}


# --- parser --------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="idres", description=(
        "idres: identifier resolution service (Handle-compatible). "
        "Without --dsn it runs on an embedded PostgreSQL in --data-dir."))
    p.add_argument("--version", action="version", version=f"idres {__version__}")
    p.add_argument("--log-level", default=None, help="debug, info, warning (default info)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("serve", help="run the resolver and registry HTTP server")
    add_database_flags(s)
    add_serve_flags(s)
    s.set_defaults(func=cmd_serve)

    s = sub.add_parser("migrate", help="apply database migrations and exit")
    add_database_flags(s)
    s.set_defaults(func=cmd_migrate)

    s = sub.add_parser("init", help="create the embedded database in --data-dir (serve does "
                                    "too); other commands never create one")
    add_database_flags(s)
    s.set_defaults(func=cmd_init)

    groups = {name: sub.add_parser(name, help=help).add_subparsers(
        dest="action", required=True, metavar="ACTION") for name, help in GROUPS.items()}
    for command in COMMANDS:
        sp = groups[command.group].add_parser(command.name, help=command.help)
        sp.add_argument("--json", action="store_true", help="print JSON")
        add_database_flags(sp)
        command.arguments(sp)
        sp.set_defaults(func=db_command(command.run))

    s = groups["stats"].add_parser("report", help="report the resolution counts under a "
                                   "prefix to the node that delegated it (signed)")
    s.add_argument("prefix")
    s.add_argument("--to", required=True, help="base URL of the parent node")
    s.add_argument("--hours", type=int, default=48, help="how far back (default 48)")
    s.add_argument("--key-file", type=Path, help="default DATA_DIR/node_ed25519.pem")
    s.add_argument("--json", action="store_true", help="print JSON")
    add_database_flags(s)
    s.set_defaults(func=cmd_stats_report)

    cli_data.add_commands(sub, _with_db)
    s = sub.add_parser("config", help="print the effective configuration (secrets masked) "
                       "and where each setting came from")
    s.add_argument("--json", action="store_true", help="print JSON")
    add_database_flags(s)
    add_serve_flags(s)
    s.set_defaults(func=cmd_config)

    nd = sub.add_parser("node", help="this node").add_subparsers(
        dest="action", required=True, metavar="ACTION")
    s = nd.add_parser("key", help="print this node's public key (made on first use)")
    s.add_argument("--key-file", type=Path, help="default DATA_DIR/node_ed25519.pem")
    add_database_flags(s)
    s.set_defaults(func=cmd_node_key)

    s = sub.add_parser("resolve", help="resolve an identifier through a running server")
    s.add_argument("identifier")
    s.add_argument("--server", default=os.environ.get("IDRES_SERVER", "http://127.0.0.1:8000"),
                   help="base URL (env IDRES_SERVER; default http://127.0.0.1:8000)")
    s.add_argument("--type", action="append", default=[], help="only values of this type")
    s.add_argument("--index", action="append", type=int, default=[], help="only this index")
    s.add_argument("--timeout", type=float, default=5.0, help="seconds (default 5)")
    s.add_argument("--json", action="store_true", help="print the JSON answer")
    s.add_argument("--trace", action="store_true",
                   help="resolve recursively and print every hop: node, delegation, cache, "
                        "signature check")
    s.set_defaults(func=cmd_resolve)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    quiet = "warning" if args.command != "serve" else "info"
    level = (args.log_level or os.environ.get("IDRES_LOG_LEVEL") or quiet).upper()
    configure_logging(level, getattr(args, "log_format", None)
                      or os.environ.get("IDRES_LOG_FORMAT") or "text")
    settings: Settings | None = None
    try:
        settings = from_args(args)
        if config_file(args) is not None:    # the file may set the log's level and form
            came = sources(args)[1]
            filed = came.get("log_level", "").startswith("config")
            configure_logging(settings.log_level.upper() if filed else level,
                              settings.log_format)
        return int(args.func(args, settings))
    except IdresError as exc:
        print(f"idres: {exc.message}", file=sys.stderr)
        return 1
    except (EmbeddedError, MigrationError, StartupError, ValueError, BackupError) as exc:
        print(f"idres: {exc}", file=sys.stderr)
        return 2
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        # what is left of the OS errors: the database's (ports, files and URLs are
        # StartupErrors, named where they happen)
        where = redact(settings.dsn) if settings and settings.dsn else (
            f"the embedded database in {settings.data_dir}" if settings else "the database")
        print(f"idres: cannot use {where}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
