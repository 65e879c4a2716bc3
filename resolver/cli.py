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
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import asyncpg
import uvloop

from registry import accounts, delegations, prefixes, tokens
from registry.permissions import Principal
from registry.store import Db
from resolver import __version__
from resolver.config import Settings, add_database_flags, add_serve_flags, from_args
from resolver.core.delegation import Delegation
from resolver.core.errors import BadRequest, IdresError
from resolver.core.identifier import parse_prefix
from resolver.core.signing import public_key_text
from resolver.invalidate import AckListener
from resolver.keys import load_or_create
from resolver.pg.embedded import EmbeddedError
from resolver.pg.migrate import MigrationError
from resolver.pg.pool import create_pool, database, migrate_dsn

log = logging.getLogger("idres")


def _local_actor() -> Principal:
    """The principal of CLI commands: whoever can reach the database is in charge."""
    user = os.environ.get("USER") or str(os.geteuid())
    return Principal(0, f"cli:{user}", "", True)


async def _with_db(settings: Settings, work: Callable[[Db], Awaitable[int]]) -> int:
    """Run ``work`` on the database; its writes return once running resolvers applied them."""
    async with database(settings.dsn, settings.data_dir) as dsn:
        await migrate_dsn(dsn)
        pool = await create_pool(dsn, min_size=1, max_size=2)
        acks = AckListener(dsn)
        try:
            await acks.start()
            return await work(Db(pool, acks))
        finally:
            await acks.close()
            await pool.close()


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
        async with database(settings.dsn, settings.data_dir) as dsn:
            applied = await migrate_dsn(dsn)
        print("applied: " + ", ".join(applied) if applied else "schema is up to date")
        return 0

    return asyncio.run(run())


DbWork = Callable[[Db, argparse.Namespace], Awaitable[tuple[dict[str, Any], str]]]


def db_command(work: DbWork) -> Callable[[argparse.Namespace, Settings], int]:
    """A command that runs ``work`` on one connection (embedded server started if needed)
    and prints its result as text, or as JSON with ``--json``."""
    def run(args: argparse.Namespace, settings: Settings) -> int:
        async def go(db: Db) -> int:
            data, text = await work(db, args)
            _print(args, data, text)
            return 0

        return asyncio.run(_with_db(settings, go))

    return run


async def operator_create(db: Db, args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    async with db.pool.acquire() as conn:
        new = await accounts.create_operator(conn, _local_actor(), args.name, args.identity,
                                             is_admin=args.admin)
    p = new.principal
    return ({"name": p.name, "identity": p.identity, "admin": p.is_admin,
             "secret": new.secret, "token": new.token},
            f"operator {p.name} created{' (administrator)' if p.is_admin else ''}\n"
            f"  identity: {p.identity}\n"
            f"  secret:   {new.secret}\n"
            f"  token:    {new.token}\n"
            "The secret and the token are shown only now; idres keeps only their hashes.")


async def operator_list(db: Db, args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    async with db.pool.acquire() as conn:
        ops = await accounts.list_operators(conn)
    return {"operators": ops}, "\n".join(
        f"{o['name']:<24} {o['identity']:<40} {'admin' if o['admin'] else ''}" for o in ops
    ) or "no operators"


async def operator_token(db: Db, args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    async with db.pool.acquire() as conn:
        owner = await accounts.find_operator(conn, args.name)
        token_id, token = await tokens.create_token(conn, _local_actor(), owner, args.label)
    return ({"operator": owner.name, "id": token_id, "token": token},
            f"token {token_id} for {owner.name}: {token}\n"
            "It is shown only now; idres keeps only its hash.")


async def operator_secret(db: Db, args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    async with db.pool.acquire() as conn:
        owner = await accounts.find_operator(conn, args.name)
        secret = await accounts.reset_secret(conn, _local_actor(), owner)
    return ({"name": owner.name, "identity": owner.identity, "secret": secret},
            f"new secret for {owner.name} ({owner.identity}): {secret}\n"
            "It is shown only now; the old secret no longer works.")


async def operator_tokens(db: Db, args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    async with db.pool.acquire() as conn:
        owner = await accounts.find_operator(conn, args.name)
        listed = await tokens.list_tokens(conn, _local_actor(), owner)
    return {"operator": owner.name, "tokens": listed}, "\n".join(
        f"{t['id']:>6}  {t['created']}  {'revoked ' + t['revoked'] if t['revoked'] else 'valid':<28}"
        f"  {t['label']}" for t in listed) or f"{owner.name} has no tokens"


async def operator_revoke(db: Db, args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    async with db.pool.acquire() as conn:
        revoked = await tokens.revoke_token(conn, _local_actor(), args.token_id)
    return ({"token": revoked},
            f"token {revoked['id']} of {revoked['operator']} revoked at {revoked['revoked']}")


async def prefix_create(db: Db, args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    prefix = parse_prefix(args.prefix)
    owner = await prefixes.create_prefix(db, _local_actor(), prefix, args.owner)
    return ({"prefix": prefix.text, "owner": owner.name},
            f"prefix {prefix.text} allocated to {owner.name}")


async def prefix_delegate(db: Db, args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    if len(args.server) != len(args.key):
        raise BadRequest("give one --key for every --server")
    binaries = args.binary + [None] * (len(args.server) - len(args.binary))
    servers = delegations.parse_servers([
        {"url": u, "key": k, **({"binary": b} if b else {})}
        for u, k, b in zip(args.server, args.key, binaries)])
    d = Delegation(parse_prefix(args.prefix).text, servers, args.ttl)
    await delegations.delegate(db, _local_actor(), d)
    return d.to_json(), f"prefix {d.prefix} delegated to " + ", ".join(s.url for s in servers)


async def prefix_list(db: Db, args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    async with db.pool.acquire() as conn:
        rows = await prefixes.list_prefixes(conn)
    return {"prefixes": rows}, "\n".join(
        f"{r['prefix']:<24} owner {r['owner']}" for r in rows) or "no prefixes"


def cmd_node_key(args: argparse.Namespace, settings: Settings) -> int:
    key = load_or_create(settings.key_file or settings.data_dir / "node_ed25519.pem")
    print(public_key_text(key))
    return 0


def cmd_resolve(args: argparse.Namespace, settings: Settings) -> int:
    query = "&".join([f"type={quote(t)}" for t in args.type] +
                     [f"index={i}" for i in args.index] +
                     (["trace=true", "recursive=true"] if args.trace else []))
    url = f"{args.server.rstrip('/')}/api/handles/{quote(args.identifier, safe='/')}"
    if query:
        url += "?" + query
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=args.timeout) as resp:
            body = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        body = json.loads(exc.read() or b"{}")
        if exc.code == 300 and "referral" in body:
            servers = ", ".join(s["url"] for s in body["referral"]["servers"])
            print(f"{args.identifier}: referral: prefix {body['referral']['prefix']} is served "
                  f"by {servers} (use --trace to follow it)", file=sys.stderr)
            return 3
        print(f"{args.identifier}: {body.get('message', exc.reason)} "
              f"(HTTP {exc.code}, responseCode {body.get('responseCode')})", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"cannot reach {args.server}: {getattr(exc, 'reason', exc)}", file=sys.stderr)
        return 2
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

    def db_parser(group: Any, name: str, help: str, work: DbWork) -> argparse.ArgumentParser:
        sp: argparse.ArgumentParser = group.add_parser(name, help=help)
        sp.add_argument("--json", action="store_true", help="print JSON")
        add_database_flags(sp)
        sp.set_defaults(func=db_command(work))
        return sp

    op = sub.add_parser("operator", help="manage operators").add_subparsers(
        dest="action", required=True, metavar="ACTION")
    s = db_parser(op, "create", "create an operator; prints its secret and a token once",
                  operator_create)
    s.add_argument("name")
    s.add_argument("--identity", help="admin identity INDEX:HANDLE (default 300:0.OPERATOR/NAME)")
    s.add_argument("--admin", action="store_true", help="may write anywhere and manage operators")
    db_parser(op, "list", "list operators", operator_list)
    s = db_parser(op, "token", "issue a new bearer token to an operator; prints it once",
                  operator_token)
    s.add_argument("name", help="operator name or identity")
    s.add_argument("--label", default="", help="what the token is for (shown in lists)")
    s = db_parser(op, "reset-secret", "give an operator a new secret; prints it once",
                  operator_secret)
    s.add_argument("name", help="operator name or identity")
    s = db_parser(op, "tokens", "list an operator's tokens (ids, labels, revocations)",
                  operator_tokens)
    s.add_argument("name", help="operator name or identity")
    s = db_parser(op, "revoke-token", "revoke a token by its id; it stops working at once",
                  operator_revoke)
    s.add_argument("token_id", type=int)

    pf = sub.add_parser("prefix", help="manage prefixes").add_subparsers(
        dest="action", required=True, metavar="ACTION")
    s = db_parser(pf, "create", "allocate a prefix to an operator", prefix_create)
    s.add_argument("prefix")
    s.add_argument("--owner", required=True, help="operator name or identity")
    s = db_parser(pf, "delegate", "delegate a prefix to other nodes (referrals)",
                  prefix_delegate)
    s.add_argument("prefix")
    s.add_argument("--server", action="append", required=True,
                   help="base URL of a node serving the prefix (repeatable)")
    s.add_argument("--key", action="append", required=True,
                   help="that node's public key, from its `idres node key` (one per --server)")
    s.add_argument("--binary", action="append", default=[],
                   help="that node's binary-protocol host:port (optional, in --server order)")
    s.add_argument("--ttl", type=int, default=86400, help="seconds (default 86400)")
    db_parser(pf, "list", "list prefixes", prefix_list)

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
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = from_args(args)
        return int(args.func(args, settings))
    except IdresError as exc:
        print(f"idres: {exc.message}", file=sys.stderr)
        return 1
    except (EmbeddedError, MigrationError, ValueError) as exc:
        print(f"idres: {exc}", file=sys.stderr)
        return 2
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"idres: database error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
