"""The data commands of ``idres``: import, export (registry/transfer.py), backup and restore
(resolver/pg/backup.py). Part of the command line (resolver/cli.py adds them)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from tqdm import tqdm

from registry import transfer
from registry.cli_table import local_actor
from registry.store import Db
from resolver.config import Settings, add_database_flags
from resolver.core.identifier import parse_prefix
from resolver.pg import backup as pgbackup
from resolver.pg.pool import database, migrate_dsn

WithDb = Callable[[Settings, Callable[[Db], Coroutine[Any, Any, int]]],
                  Coroutine[Any, Any, int]]


def _say(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    print(json.dumps(data, indent=2, default=str) if args.json else text)


def cmd_import(args: argparse.Namespace, settings: Settings, with_db: WithDb) -> int:
    path = Path(args.file)
    form = transfer.form_of(path, args.format)
    transfer.CHUNK = args.chunk
    with path.open("rb") as counting:
        lines = sum(1 for _ in counting)
    # a bar on a terminal (tqdm); elsewhere (a pipe, CI) the closing line alone
    bar = tqdm(total=lines, unit=" lines",
               desc=f"importing {path.name}", file=sys.stderr, disable=None, mininterval=0.5,
               postfix="records")

    def shown(line: int, records: int) -> None:
        bar.update(line - bar.n)

    async def go(db: Db) -> int:
        report = await transfer.import_file(db, local_actor(), path, form, args.overwrite, shown)
        bar.close()
        print(f"{report['created']} records imported from {path}", file=sys.stderr)
        _say(args, report, "\n".join([
            f"{path}: {report['created']} created, {report['replaced']} replaced, "
            f"{report['unchanged']} unchanged (already there), {report['conflicts']} "
            f"conflicts (stored with other values), {report['invalid']} invalid"
            + (f"; resumed after line {report['resumed_after_line']}"
               if report["resumed_after_line"] else ""),
            *(f"  line {e['line']} ({e['handle']}): {e['problem']}" for e in report["examples"])]))
        return 0

    return asyncio.run(with_db(settings, go))


def cmd_export(args: argparse.Namespace, settings: Settings, with_db: WithDb) -> int:
    prefix = parse_prefix(args.prefix)
    out_path = Path(args.output) if args.output else None
    form = transfer.form_of(out_path or Path("-.jsonl"), args.format)

    async def go(db: Db) -> int:
        if out_path is None:
            n = await transfer.export_prefix(db, prefix, form, sys.stdout)
        else:
            tmp = out_path.with_name(out_path.name + ".partial")
            with tmp.open("w", newline="" if form == "csv" else None, encoding="utf-8") as out:
                n = await transfer.export_prefix(db, prefix, form, out)
            tmp.replace(out_path)
            print(f"{n} records of {prefix.text} written to {out_path} ({form})")
        return 0

    return asyncio.run(with_db(settings, go))


def cmd_backup(args: argparse.Namespace, settings: Settings) -> int:
    async def go() -> int:
        async with database(settings.dsn, settings.data_dir, create=False) as dsn:
            size = await asyncio.to_thread(pgbackup.backup, dsn, Path(args.file))
        print(f"backed up to {args.file} ({size:,} bytes)")
        return 0

    return asyncio.run(go())


def cmd_restore(args: argparse.Namespace, settings: Settings) -> int:
    path = Path(args.file)
    pgbackup.check_file(path)

    async def go() -> int:
        async with database(settings.dsn, settings.data_dir, create=True) as dsn:
            held = await pgbackup.identifiers(dsn)
            if held and not args.force:
                raise pgbackup.BackupError(
                    f"the database holds {held} identifiers: restore into a new --data-dir, "
                    "or give --force to replace what it holds with the backup")
            await asyncio.to_thread(pgbackup.restore, dsn, path)
            await migrate_dsn(dsn, settings.case_sensitive)
            now = await pgbackup.identifiers(dsn)
        print(f"restored {path}: {now} identifiers")
        return 0

    return asyncio.run(go())


def add_commands(sub: Any, with_db: WithDb) -> None:
    """``idres import``, ``export``, ``backup``, ``restore``."""
    s = sub.add_parser("import", help="register the records of a file (JSON lines or CSV); "
                       "rerun to resume: what is there already is recognised")
    s.add_argument("file")
    s.add_argument("--format", choices=transfer.FORMATS, help="default: from the file name")
    s.add_argument("--overwrite", action="store_true",
                   help="replace records stored with other values (default: report them)")
    s.add_argument("--chunk", type=int, default=transfer.CHUNK,
                   help=f"records per transaction (default {transfer.CHUNK})")
    s.add_argument("--json", action="store_true", help="print the report as JSON")
    add_database_flags(s)
    s.set_defaults(func=lambda a, st: cmd_import(a, st, with_db))
    s = sub.add_parser("export", help="write the records of a prefix (JSON lines or CSV)")
    s.add_argument("prefix")
    s.add_argument("--output", help="file (.csv for CSV); default: JSON lines to stdout")
    s.add_argument("--format", choices=transfer.FORMATS)
    add_database_flags(s)
    s.set_defaults(func=lambda a, st: cmd_export(a, st, with_db))
    s = sub.add_parser("backup", help="the whole database in one file (pg_dump)")
    s.add_argument("file")
    add_database_flags(s)
    s.set_defaults(func=cmd_backup)
    s = sub.add_parser("restore", help="a backup into a database without identifiers "
                       "(a new --data-dir is made), all or nothing")
    s.add_argument("file")
    s.add_argument("--force", action="store_true",
                   help="replace the identifiers the database holds")
    add_database_flags(s)
    s.set_defaults(func=cmd_restore)
