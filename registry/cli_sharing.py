"""Readers, groups and grants on the command line (registry/sharing.py): the same
functions as the API's, run as the operator named by ``--owner`` / ``--by`` (the owner
of what is made; the command line's user is in charge, as for every command)."""

from __future__ import annotations

import argparse

from registry import accounts, sharing, usage
from registry.cli_table import Command, Result
from registry.permissions import Principal
from registry.store import Db
from resolver.core.identifier import parse, parse_prefix


async def _as(db: Db, name: str) -> Principal:
    return await accounts.find_operator(db.pool, name)


async def reader_create(db: Db, args: argparse.Namespace) -> Result:
    owner = await _as(db, args.owner)
    made, token = await sharing.create_reader(db, owner, args.name, args.description,
                                              args.expires)
    return {**made, "token": token}, (
        f"reader {made['name']} (owner {owner.name}): {token}\n"
        "keep the token: it is shown only now")


async def reader_list(db: Db, args: argparse.Namespace) -> Result:
    async with db.pool.acquire() as conn:
        rows = await sharing.list_readers(conn, Principal(0, "cli", "", True))
    return {"readers": rows}, "\n".join(
        f"{r['name']:<32} owner {r['owner']:<20} "
        f"{'revoked' if r['revoked'] else 'expires ' + str(r['expires'] or 'never')}"
        for r in rows) or "no readers"


async def reader_revoke(db: Db, args: argparse.Namespace) -> Result:
    done = await sharing.revoke_reader(db, Principal(0, "cli", "", True), args.name)
    return done, f"reader {args.name} revoked"


async def group_create(db: Db, args: argparse.Namespace) -> Result:
    owner = await _as(db, args.owner)
    made = await sharing.create_group(db, owner, args.name, args.description, args.member)
    return made, f"group {made['name']}: {', '.join(made['members']) or 'no members'}"


async def group_members(db: Db, args: argparse.Namespace) -> Result:
    done = await sharing.change_members(db, Principal(0, "cli", "", True), args.name, args.add,
                                        args.remove)
    return done, f"group {args.name}: {', '.join(done['members']) or 'no members'}"


async def group_list(db: Db, args: argparse.Namespace) -> Result:
    async with db.pool.acquire() as conn:
        rows = await sharing.list_groups(conn, Principal(0, "cli", "", True))
    return {"groups": rows}, "\n".join(
        f"{r['name']:<32} owner {r['owner']:<20} {', '.join(r['members'])}" for r in rows
    ) or "no groups"


async def grant_create(db: Db, args: argparse.Namespace) -> Result:
    granter = await _as(db, args.by)
    made = await sharing.grant(db, granter, args.grantee, args.scope, args.types,
                               args.template, args.expires)
    return made, (f"grant {made['id']}: {made['grantee']} reads {made['types']} under "
                  f"{made['scope']}")


async def grant_list(db: Db, args: argparse.Namespace) -> Result:
    async with db.pool.acquire() as conn:
        rows = await sharing.list_grants(conn, Principal(0, "cli", "", True), args.scope)
    return {"grants": rows}, "\n".join(
        f"{r['id']:>6} {r['grantee']:<32} {r['types']:<24} {r['scope']}"
        + (f" (template {r['template']})" if r["template"] else "")
        + (f" until {r['expires']}" if r["expires"] else "") for r in rows) or "no grants"


async def grant_revoke(db: Db, args: argparse.Namespace) -> Result:
    done = await sharing.revoke_grant(db, Principal(0, "cli", "", True), args.grant_id)
    return done, f"grant {args.grant_id} revoked"


def _reader_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="the reader's name (an application identity)")
    p.add_argument("--owner", required=True, help="the operator that owns it")
    p.add_argument("--description", default="")
    p.add_argument("--expires", help="RFC 3339 date-time (default: until revoked)")


def _group_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("name")
    p.add_argument("--owner", required=True, help="the operator that owns it")
    p.add_argument("--description", default="")
    p.add_argument("--member", action="append", default=[],
                   help="reader:NAME or operator:NAME (repeatable)")


def _members_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("name")
    p.add_argument("--add", action="append", default=[], help="reader:NAME or operator:NAME")
    p.add_argument("--remove", action="append", default=[])


def _grant_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("grantee", help="reader:NAME, operator:NAME or group:NAME")
    p.add_argument("scope", help="a prefix (its identifiers and descendants') or an identifier")
    p.add_argument("--by", required=True, help="the granting operator (administers the scope)")
    p.add_argument("--types", default="*", help="value types, '*' any run ('order.*')")
    p.add_argument("--template", help="only records that follow this template")
    p.add_argument("--expires", help="RFC 3339 date-time (default: until revoked)")


def _name_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("name")


def _scope_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scope", help="of one scope only")


def _id_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("grant_id", type=int)


async def stats_resolutions(db: Db, args: argparse.Namespace) -> Result:
    ident = parse(args.target) if "/" in args.target else None
    prefix = ident.prefix if ident is not None else parse_prefix(args.target)
    async with db.pool.acquire() as conn:
        got = await usage.resolutions(conn, Principal(0, "cli", "", True), prefix, ident,
                                      args.since, args.until, args.by)
    t = got["totals"]
    lines = [f"{got.get('identifier') or got['prefix']}: {t['resolutions']:,} resolutions "
             f"({t['hit']:,} from the cache, {t['miss']:,} from the database, "
             f"{t['not_found']:,} not found) from {got['from']} to {got['to']}"]
    lines += [f"  {p['at']}  {p['resolutions']:>12,}" for p in got["series"]]
    if "registrations" in got:
        lines.append(f"registered: {got['registrations']['total']:,}")
        lines += [f"most resolved: {r['handle']} ({r['resolutions']:,})" for r in got["top"]]
    return got, "\n".join(lines)


def _stats_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", help="a prefix (with those under it), or one identifier")
    p.add_argument("--from", dest="since", help="ISO 8601 time or date (default: a day ago)")
    p.add_argument("--to", dest="until", help="ISO 8601 time or date (default: now)")
    p.add_argument("--by", choices=usage.BUCKETS, default="hour", help="bucket (default hour)")


GROUPS = {"stats": "how often identifiers are resolved and registered",
          "reader": "manage readers (application identities)",
          "group": "manage groups of readers", "grant": "manage grants of shared values"}
COMMANDS: tuple[Command, ...] = (
    Command("reader", "create", "create a reader and print its token (once)", reader_create,
            _reader_args),
    Command("reader", "list", "list readers", reader_list),
    Command("reader", "revoke", "revoke a reader's token", reader_revoke, _name_arg),
    Command("group", "create", "create a group of readers", group_create, _group_args),
    Command("group", "members", "add or remove members of a group", group_members,
            _members_args),
    Command("group", "list", "list groups and their members", group_list),
    Command("grant", "create", "let a party read shared values", grant_create, _grant_args),
    Command("grant", "list", "list live grants", grant_list, _scope_arg),
    Command("grant", "revoke", "revoke a grant", grant_revoke, _id_arg),
    Command("stats", "resolutions", "resolutions (and registrations) under a prefix or of one "
            "identifier, over a time range", stats_resolutions, _stats_args),
)
