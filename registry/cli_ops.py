"""What operators do daily, on the command line (``idres handle ...``, ``idres audit``,
``idres prefix transfer``): the same functions the HTTP API calls, as an administrator
(whoever can reach the database is in charge), tables with headers, ``--json`` for all."""

from __future__ import annotations

import argparse
from typing import Any

import orjson

from registry import prefixes
from registry.cli_table import Command, Result, local_actor
from registry.permissions import unreadable_hidden
from registry.store import Db
from registry.store.queries import AUDIT_COLUMNS
from registry.store.records import delete, put_record
from resolver.core import codec
from resolver.core.errors import BadRequest, IdentifierNotFound
from resolver.core.identifier import parse, parse_prefix
from resolver.core.record import check_record

READ = """SELECT coalesce(spelling, handle) AS spelled, "values", template, template_version,
                 state FROM handles WHERE handle = $1"""
TRAIL = "SELECT " + AUDIT_COLUMNS + """
           FROM audit a LEFT JOIN operators o ON o.id = a.operator_id
           WHERE ($1::text IS NULL OR a.actor = $1 OR o.name = $1)
             AND ($2::text IS NULL OR a.action LIKE $2)
             AND ($3::text IS NULL OR a.handle = $3)
             AND ($4::text IS NULL OR a.prefix = $4 OR a.handle >= $4 || '/'
                  AND a.handle < $4 || '0')
             AND ($5::timestamptz IS NULL OR a.at >= $5)
           ORDER BY a.id DESC LIMIT $6"""


def table(header: list[str], rows: list[list[Any]]) -> str:
    """Rows under a header, each column as wide as its widest cell."""
    cells = [header, *[[("" if c is None else str(c)) for c in r] for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()
                     for row in cells)


async def handle_get(db: Db, args: argparse.Namespace) -> Result:
    ident = parse(args.identifier)
    row = await db.pool.fetchrow(READ, ident.key)
    if row is None:
        raise IdentifierNotFound(f"handle {ident.spelling} not found")
    values = [codec.to_output(v) for v in codec.visible(row["values"], admin=True)]
    data = {"handle": row["spelled"], "state": row["state"], "template": row["template"],
            "values": values}
    text = table(["INDEX", "TYPE", "VALUE", "TTL", "PERMISSIONS"], [
        [v["index"], v["type"], v["data"]["value"] if v["data"]["format"] == "string"
         else orjson.dumps(v["data"]).decode(), v["ttl"], v.get("permissions", "1110")]
        for v in values])
    return data, f"{row['spelled']} ({row['state']})\n{text}"


def _values(args: argparse.Namespace) -> list[Any]:
    if args.file:
        from registry.cli_records import _read_json
        body = _read_json(args.file)
        return codec.values_from_body(body)
    out = []
    for n, given in enumerate(args.value, start=1):
        kind, eq, data = given.partition("=")
        if not eq or not kind:
            raise BadRequest(f"--value takes TYPE=DATA (or INDEX:TYPE=DATA), not {given!r}")
        index, colon, name = kind.partition(":")
        out.append({"index": int(index), "type": name, "data": data} if colon and
                   index.isdigit() else {"index": n, "type": kind, "data": data})
    if not out:
        raise BadRequest("give the values: --value TYPE=DATA (repeatable) or --file FILE")
    return out


async def handle_put(db: Db, args: argparse.Namespace) -> Result:
    ident = parse(args.identifier)
    values = codec.parse_values(_values(args))
    check_record(values)
    created = await put_record(db, local_actor(), ident, values, overwrite=not args.create_only)
    return ({"handle": ident.spelling, "created": created},
            f"{ident.spelling} {'created' if created else 'replaced'} ({len(values)} values)")


async def handle_delete(db: Db, args: argparse.Namespace) -> Result:
    ident = parse(args.identifier)
    await delete(db, local_actor(), ident, frozenset(args.index))
    what = f"values {args.index} of " if args.index else ""
    return {"handle": ident.spelling, "deleted": args.index or "all"}, \
        f"deleted {what}{ident.spelling}"


async def audit_trail(db: Db, args: argparse.Namespace) -> Result:
    from datetime import datetime

    since = datetime.fromisoformat(args.since.replace("Z", "+00:00")) if args.since else None
    if since is not None and since.tzinfo is None:
        from datetime import timezone
        since = since.replace(tzinfo=timezone.utc)
    rows = await db.pool.fetch(
        TRAIL, args.operator, args.action.replace("*", "%") if args.action else None,
        parse(args.handle).key if args.handle else None,
        parse_prefix(args.prefix).text if args.prefix else None, since, args.limit)
    entries = [{**dict(r), "at": r["at"].isoformat(), "before": unreadable_hidden(r["before"]),
                "after": unreadable_hidden(r["after"])} for r in rows]
    return {"entries": entries}, table(["ID", "AT", "ACTOR", "ACTION", "ON"], [
        [e["id"], e["at"][:19], e["actor"], e["action"], e["handle"] or e["prefix"] or ""]
        for e in entries]) if entries else "no audit entries match"


async def prefix_transfer(db: Db, args: argparse.Namespace) -> Result:
    prefix = parse_prefix(args.prefix)
    before, after = await prefixes.transfer_prefix(db, local_actor(), prefix, args.to)
    return {"prefix": prefix.text, "from": before, "to": after}, \
        f"prefix {prefix.text}: {before} -> {after}"


def _ident_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("identifier", help="PREFIX/SUFFIX")


def _put_args(p: argparse.ArgumentParser) -> None:
    _ident_arg(p)
    p.add_argument("--value", action="append", default=[],
                   help="TYPE=DATA or INDEX:TYPE=DATA (repeatable; index: the position)")
    p.add_argument("--file", help="a JSON file of values (as a PUT body), or - for stdin")
    p.add_argument("--create-only", action="store_true", help="refuse if it exists")


def _delete_args(p: argparse.ArgumentParser) -> None:
    _ident_arg(p)
    p.add_argument("--index", type=int, action="append", default=[],
                   help="delete only this value (repeatable)")


def _audit_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--operator", help="events by this operator (name)")
    p.add_argument("--action", help="this action, * for any text (token_*, operator_*)")
    p.add_argument("--handle", help="events on this identifier")
    p.add_argument("--prefix", help="events on this prefix and its identifiers")
    p.add_argument("--since", help="ISO 8601 time")
    p.add_argument("--limit", type=int, default=100, help="newest first, at most (default 100)")


def _transfer_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("prefix")
    p.add_argument("--to", required=True, help="the new owner (operator name or identity)")


GROUPS = {"handle": "read, write and delete identifiers", "audit": "the audit trail"}
COMMANDS: tuple[Command, ...] = (
    Command("handle", "get", "an identifier's record, every readable value", handle_get,
            _ident_arg),
    Command("handle", "put", "create or replace an identifier", handle_put, _put_args),
    Command("handle", "delete", "delete an identifier, or some of its values", handle_delete,
            _delete_args),
    Command("audit", "list", "audit entries (operators, tokens, secrets, prefixes, records), "
            "newest first", audit_trail, _audit_args),
    Command("prefix", "transfer", "give a prefix to another owner", prefix_transfer,
            _transfer_args),
)
