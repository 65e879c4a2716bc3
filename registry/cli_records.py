"""The commands on typed records (``idres template ...``, ``idres record ...``), in the
table form of registry/cli.py: the same functions the HTTP API calls, as an
administrator (whoever can reach the database is in charge)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import orjson

from registry import templates
from registry.cli_table import Command, Result, local_actor
from registry.records_input import parse_records
from registry.store import Db, bulk
from registry.store.codes import lookup
from registry.store.records import move
from registry.template_schema import json_schema
from resolver.core.errors import BadRequest
from resolver.core.identifier import parse, parse_prefix

MAX_IMPORT_RECORDS = 10_000_000


def _read_json(path: str) -> Any:
    """A JSON document, or JSON lines (one record per line), from a file or ``-``."""
    import sys
    try:
        data = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as exc:
        raise BadRequest(f"cannot read {path}: {exc.strerror}") from None
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as first:
        lines = [line for line in data.splitlines() if line.strip()]
        try:
            return [orjson.loads(line) for line in lines]
        except orjson.JSONDecodeError:
            raise BadRequest(f"{path} is neither JSON nor JSON lines: {first}") from None


async def template_create(db: Db, args: argparse.Namespace) -> Result:
    body = _read_json(args.file)
    if not isinstance(body, dict) or not isinstance(body.get("handle"), str):
        raise BadRequest('the file must hold {"handle", "description"?, "items": [...]}')
    ident = parse(body.pop("handle"))
    version, report = await templates.create_version(db, local_actor(), ident, body,
                                                     args.publish)
    text = f"template {ident.spelling} version {version.version} created (draft)"
    if report is not None:
        text = f"template {ident.spelling} version {version.version} published " \
               f"({report['records']} records follow the template)"
    return {"handle": ident.spelling, "version": version.version, "state": version.state}, text


async def template_publish(db: Db, args: argparse.Namespace) -> Result:
    ident = parse(args.handle)
    report = await templates.publish(db, local_actor(), ident, args.version, args.force)
    return ({"handle": ident.spelling, "version": args.version, "report": report},
            f"template {ident.spelling} version {args.version} published; "
            f"{report['failing']} of {report['checked']} records checked fail it")


async def template_retire(db: Db, args: argparse.Namespace) -> Result:
    ident = parse(args.handle)
    await templates.retire(db, local_actor(), ident, args.version)
    return ({"handle": ident.spelling, "version": args.version, "state": "retired"},
            f"template {ident.spelling} version {args.version} retired; its records stay")


async def template_check(db: Db, args: argparse.Namespace) -> Result:
    ident = parse(args.handle)
    async with db.pool.acquire() as conn:
        found = await templates.get(conn, ident, args.version, drafts=True)
        report = await templates.check_existing(conn, ident.key, found.definition)
    lines = [f"{report['failing']} of {report['checked']} records checked (of "
             f"{report['records']}) fail version {found.version} of {ident.spelling}"]
    for ex in report["examples"]:
        lines += [f"  {ex['handle']}: " + "; ".join(
            f"{e.get('type', '')} {e['message']}".strip() for e in ex["errors"])]
    return {"handle": ident.spelling, "version": found.version, "report": report}, \
        "\n".join(lines)


async def template_show(db: Db, args: argparse.Namespace) -> Result:
    ident = parse(args.handle)
    async with db.pool.acquire() as conn:
        if args.versions:
            found = await templates.versions(conn, ident, drafts=True)
            return {"versions": [v.to_json() for v in found]}, "\n".join(
                f"version {v.version:<4} {v.state:<10} created {v.created}" for v in found)
        one = await templates.get(conn, ident, args.version, drafts=True)
    body = one.to_json()
    return body, orjson.dumps(body, option=orjson.OPT_INDENT_2).decode()


async def template_list(db: Db, args: argparse.Namespace) -> Result:
    prefix = parse_prefix(args.prefix)
    async with db.pool.acquire() as conn:
        found = await templates.under(conn, prefix.text, drafts=True)
    return {"templates": [{"handle": v.handle, "version": v.version, "state": v.state}
                          for v in found]}, "\n".join(
        f"{v.handle:<40} version {v.version:<4} {v.state:<10} {v.definition.description}"
        for v in found) or f"no templates under {prefix.text}"


async def template_schema(db: Db, args: argparse.Namespace) -> Result:
    ident = parse(args.handle)
    async with db.pool.acquire() as conn:
        one = await templates.get(conn, ident, args.version, drafts=True)
    schema = json_schema(ident.spelling, one.version, one.definition)
    return schema, orjson.dumps(schema, option=orjson.OPT_INDENT_2).decode()


async def record_state(db: Db, args: argparse.Namespace) -> Result:
    ident = parse(args.handle)
    info = await move(db, local_actor(), ident, args.state, args.reason, args.successor)
    shown = {k: v for k, v in info.items() if k != "epoch"}
    return {"handle": ident.spelling, **shown}, f"{ident.spelling} is {args.state}" + (
        f" (successor {info['successor']})" if info.get("successor") else "")


async def record_lookup(db: Db, args: argparse.Namespace) -> Result:
    prefix = parse_prefix(args.prefix)
    async with db.pool.acquire() as conn:
        keys = await lookup(conn, prefix.text, args.type, args.value, True, args.limit,
                            args.start)
    return {"prefix": prefix.text, "type": args.type, "handles": keys}, \
        "\n".join(keys) or f"no identifier under {prefix.text} has {args.type} = {args.value}"


async def record_import(db: Db, args: argparse.Namespace) -> Result:
    """A file of records (the bulk formats, or JSON lines), all or nothing, every record
    checked against its template as any write is."""
    entries = parse_records(_read_json(args.file), MAX_IMPORT_RECORDS)
    started = time.perf_counter()
    created, replaced = await bulk.bulk_put(db, local_actor(), entries,
                                            overwrite=args.overwrite)
    took = time.perf_counter() - started
    return ({"count": len(entries), "created": created, "replaced": replaced,
             "seconds": round(took, 3)},
            f"imported {len(entries)} records ({created} created, {replaced} replaced) "
            f"in {took:.1f} s")


def _handle_version(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("handle", help="the template's identifier")
    p.add_argument("--version", type=int, required=required,
                   help="the version" + ("" if required else " (default: the newest published)"))


def _prefix_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("prefix")


def _create_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help='JSON file {"handle", "description", "items": [...]} or -')
    p.add_argument("--publish", action="store_true",
                   help="publish the new version at once (not if records would fail it)")


def _publish_args(p: argparse.ArgumentParser) -> None:
    _handle_version(p)
    p.add_argument("--force", action="store_true",
                   help="publish even when records that follow the template would fail it")


def _show_args(p: argparse.ArgumentParser) -> None:
    _handle_version(p, required=False)
    p.add_argument("--versions", action="store_true", help="list every version instead")


def _state_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("handle")
    p.add_argument("state", choices=["active", "retired", "replaced"])
    p.add_argument("--reason", default="", help="why (shown on the tombstone)")
    p.add_argument("--successor", help="the identifier that replaces it (state replaced)")


def _lookup_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("prefix")
    p.add_argument("type", help="a unique or searchable item's type, e.g. asset.equipment_code")
    p.add_argument("value")
    p.add_argument("--start", action="store_true", help="codes that begin with VALUE")
    p.add_argument("--limit", type=int, default=100)


def _import_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="records as POST /api/bulk takes them, or JSON lines, or -")
    p.add_argument("--overwrite", action="store_true", help="replace records that exist")


GROUPS = {"template": "manage metadata templates", "record": "typed records"}
COMMANDS: tuple[Command, ...] = (
    Command("template", "create", "declare a new version of a template (a draft)",
            template_create, _create_args),
    Command("template", "list", "list the templates under a prefix", template_list,
            _prefix_arg),
    Command("template", "show", "show a template version (or --versions)", template_show,
            _show_args),
    Command("template", "check", "check the records that follow a template against a version",
            template_check, _handle_version),
    Command("template", "publish", "publish a draft version", template_publish, _publish_args),
    Command("template", "retire", "retire a version: no new records may follow it",
            template_retire, _handle_version),
    Command("template", "schema", "print a version's JSON Schema (2020-12)", template_schema,
            lambda p: _handle_version(p, required=False)),
    Command("record", "state", "move an identifier through its lifecycle", record_state,
            _state_args),
    Command("record", "lookup", "find identifiers by a code (a unique or searchable item)",
            record_lookup, _lookup_args),
    Command("record", "import", "register the records of a file, all or nothing",
            record_import, _import_args),
)
