"""Records in and out of files: ``idres import`` and ``idres export`` (JSON lines, CSV).

* **JSON lines**: one record a line, ``{"handle", "values": [...], "template"?}``, the
  bulk API's record (registry/api/bulk.py); what ``export`` writes, values in the input
  form (``{"index", "type", "data": {"format", "value"}, "ttl", "permissions"}``), so an
  export imports again as it was.
* **CSV**: a header row, ``handle`` first, then one column per value: ``TYPE`` (its index
  is the column's position) or ``INDEX:TYPE``; a row's empty cells are no value. Export
  writes the public string values with the default permissions under ``INDEX:TYPE``
  columns (a CSV cell has no permissions: a private or shared value is never written
  there, so an import cannot make it public; use JSON lines for whole records).

Import goes in chunks of :data:`CHUNK` records, each one bulk registration (checked
against templates, all or nothing, audited: registry/store/bulk.py). It is **idempotent**:
a record already stored with the same values (timestamps aside) is recognised and left
alone; one stored with other values is a conflict, reported and left alone (or replaced
with ``--overwrite``), never a reason to refuse the rest. It is **resumable**: after each
chunk the lines done are written to ``FILE.idres-progress`` (with the file's size and
time, so a changed file starts over); a rerun starts after them, and being idempotent,
a chunk cut short is simply done again. Progress goes to a bar (tqdm) on standard error.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import orjson

from registry.permissions import Principal
from registry.records_input import parse_records
from registry.store import Db
from registry.store.bulk import Entry, bulk_put
from resolver.core import codec
from resolver.core.errors import BadRequest, BulkInvalid, IdentifierExists, IdresError
from resolver.core.identifier import Prefix
from resolver.core.record import DEFAULT_PERMISSIONS

FORMATS = ("jsonl", "csv")
CHUNK = 5_000
EXAMPLES = 20      # conflicts and bad lines named in the report, at most
EXISTING = 'SELECT handle, "values" FROM handles WHERE handle = ANY($1::text[])'
UNDER = """SELECT coalesce(spelling, handle) AS spelled, "values", template, template_version
           FROM handles WHERE handle >= $1 AND handle < $2 AND state = 'active'
           ORDER BY handle"""   # (drafts are their owner's; retired and replaced ones stay)


def form_of(path: Path, given: str | None) -> str:
    """The file's format: given, or from its name (``.csv``; anything else JSON lines)."""
    form = given or ("csv" if path.suffix.lower() == ".csv" else "jsonl")
    if form not in FORMATS:
        raise BadRequest(f"format must be one of {', '.join(FORMATS)}")
    return form


def _csv_columns(header: list[str]) -> list[tuple[int, str]]:
    if not header or header[0].strip().lower() != "handle":
        raise BadRequest("a CSV file's first column must be 'handle'")
    out = []
    for n, cell in enumerate(header[1:], start=1):
        index, colon, kind = cell.strip().partition(":")
        if colon and index.isdigit():
            out.append((int(index), kind.strip()))
        elif cell.strip():
            out.append((n, cell.strip()))
        else:
            raise BadRequest(f"CSV column {n + 1} has no type in the header")
    return out


def read_records(handle: IO[str], form: str) -> Iterator[tuple[int, Any]]:
    """(line number, record) for each record of the file; a line that is not a record
    gives its text, to be reported."""
    if form == "jsonl":
        for n, line in enumerate(handle, start=1):
            if line.strip():
                try:
                    yield n, orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    yield n, f"not JSON: {exc}"
        return
    rows = csv.reader(handle)
    columns = _csv_columns(next(rows, []))
    for n, row in enumerate(rows, start=2):
        if not any(cell.strip() for cell in row):
            continue
        values = [{"index": i, "type": t, "data": cell}
                  for (i, t), cell in zip(columns, row[1:]) if cell != ""]
        yield n, {"handle": row[0].strip(), "values": values}


def _same(stored: list[dict[str, Any]], new: list[dict[str, Any]]) -> bool:
    """The same record, as far as the file says: the values' indexes, types and data (a
    template fills in TTLs and classifications the file may not give)."""
    def essence(values: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return sorted((v["index"], v["type"], orjson.dumps(v["data"])) for v in values)
    return essence(stored) == essence(new)


class Progress:
    """Where a rerun of an import of this file starts (``FILE.idres-progress``)."""

    def __init__(self, path: Path) -> None:
        self.path = path.with_name(path.name + ".idres-progress")
        st = path.stat()
        self.stamp = [st.st_size, int(st.st_mtime)]

    def start(self) -> int:
        try:
            kept = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return 0
        return int(kept["done"]) if kept.get("file") == self.stamp else 0

    def save(self, done: int) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            tmp.write_text(json.dumps({"file": self.stamp, "done": done}))
            os.replace(tmp, self.path)
        except OSError:
            pass   # (a folder it cannot write: the import goes on; a rerun, idempotent, redoes)

    def finish(self) -> None:
        self.path.unlink(missing_ok=True)


async def import_file(db: Db, who: Principal, path: Path, form: str, overwrite: bool,
                      shown: Callable[[int, int], None] = lambda lines, records: None,
                      ) -> dict[str, Any]:
    """Import every record of the file (see the module docstring); the report."""
    progress = Progress(path)
    skip = progress.start()
    report: dict[str, Any] = {"file": str(path), "format": form, "resumed_after_line": skip,
                              "created": 0, "replaced": 0, "unchanged": 0, "conflicts": 0,
                              "invalid": 0, "examples": []}
    chunk: list[tuple[int, Any]] = []
    with path.open(newline="" if form == "csv" else None, encoding="utf-8") as handle:
        for n, record in read_records(handle, form):
            if n <= skip:
                continue
            chunk.append((n, record))
            if len(chunk) >= CHUNK:
                await _chunk(db, who, chunk, overwrite, report)
                progress.save(chunk[-1][0])
                shown(chunk[-1][0], len(chunk))
                chunk = []
        if chunk:
            await _chunk(db, who, chunk, overwrite, report)
            shown(chunk[-1][0], len(chunk))
    progress.finish()
    return report


def _note(report: dict[str, Any], line: int, handle: Any, why: str) -> None:
    if len(report["examples"]) < EXAMPLES:
        report["examples"].append({"line": line, "handle": handle, "problem": why})


async def _chunk(db: Db, who: Principal, chunk: list[tuple[int, Any]], overwrite: bool,
                 report: dict[str, Any]) -> None:
    entries: list[Entry] = []
    lines: dict[str, int] = {}
    for n, record in chunk:      # each record alone: one bad line is reported, not fatal
        try:
            if not isinstance(record, dict):
                raise BadRequest(str(record))
            [entry] = parse_records([record], 1)
        except IdresError as exc:
            report["invalid"] += 1
            _note(report, n, record.get("handle") if isinstance(record, dict) else None,
                  exc.message)
            continue
        if entry.ident.key in lines:
            report["invalid"] += 1
            _note(report, n, entry.ident.spelling, f"also on line {lines[entry.ident.key]}")
            continue
        lines[entry.ident.key] = n
        entries.append(entry)
    tries = 0
    while entries:
        tries += 1
        stored = {r["handle"]: r["values"] for r in await db.pool.fetch(  # network op
            EXISTING, [e.ident.key for e in entries])}
        todo, unchanged, conflicts = [], 0, []
        for e in entries:
            have = stored.get(e.ident.key)
            if have is None or (overwrite and not _same(have, e.values)):
                todo.append(e)
            elif _same(have, e.values):
                unchanged += 1
            else:
                conflicts.append(e)
        try:
            created, replaced = await bulk_put(db, who, todo, overwrite=overwrite) \
                if todo else (0, 0)  # network op
        except IdentifierExists:    # (a record made meanwhile by another writer: look again)
            if tries > 1:
                raise
            continue
        except BulkInvalid as exc:  # those its template refuses are reported, the rest go
            named: list[dict[str, Any]] = (exc.details or {}).get("records", [])
            failing = {r["record"] for r in named}
            if not failing or tries > 3:
                raise
            for r in named:
                e = todo[r["record"]]
                report["invalid"] += 1
                _note(report, lines[e.ident.key], e.ident.spelling,
                      "; ".join(str(p.get("message")) for p in r["errors"]))
            refused = {todo[n].ident.key for n in failing}
            entries = [e for e in entries if e.ident.key not in refused]
            continue
        report["created"] += created
        report["replaced"] += replaced
        report["unchanged"] += unchanged
        report["conflicts"] += len(conflicts)
        for e in conflicts:
            _note(report, lines[e.ident.key], e.ident.spelling,
                  "stored with other values (--overwrite replaces them)")
        return


def _csv_cell(v: dict[str, Any]) -> bool:
    """Whether a value can go in a CSV cell as it is: a public string with the default
    permissions (what an import of the cell makes of it)."""
    return v["data"]["format"] == "string" and v["permissions"] == DEFAULT_PERMISSIONS \
        and "classification" not in v


def _input_form(v: dict[str, Any]) -> dict[str, Any]:
    out = {"index": v["index"], "type": v["type"], "data": v["data"], "ttl": v["ttl"]}
    if v["permissions"] != DEFAULT_PERMISSIONS:
        out["permissions"] = v["permissions"]
    if "classification" in v:
        out["classification"] = v["classification"]
    return out


async def export_prefix(db: Db, prefix: Prefix, form: str, out: IO[str]) -> int:
    """Write the records under ``prefix`` (not its sub-prefixes' identifiers; no drafts;
    no value nobody may read, such as a secret's hash); the number written."""
    written = 0
    bounds = (prefix.text + "/", prefix.text + "0")
    async with db.pool.acquire() as conn, conn.transaction(isolation="repeatable_read",
                                                           readonly=True):   # one snapshot
        if form == "csv":
            columns: dict[tuple[int, str], None] = {}
            async for row in conn.cursor(UNDER, *bounds):
                for v in row["values"]:
                    if _csv_cell(v):
                        columns[(v["index"], v["type"])] = None
            ordered = sorted(columns)
            writer = csv.writer(out)
            writer.writerow(["handle", *(f"{i}:{t}" for i, t in ordered)])
        async for row in conn.cursor(UNDER, *bounds):
            values = codec.visible(row["values"], admin=True)
            if form == "jsonl":
                record: dict[str, Any] = {"handle": row["spelled"],
                                          "values": [_input_form(v) for v in values]}
                if row["template"]:
                    record["template"], record["templateVersion"] = row["template"], \
                        row["template_version"]
                out.write(orjson.dumps(record).decode() + "\n")
            else:
                cells = {(v["index"], v["type"]): v["data"]["value"] for v in values
                         if _csv_cell(v)}
                writer.writerow([row["spelled"], *(cells.get(c, "") for c in ordered)])
            written += 1
    return written
