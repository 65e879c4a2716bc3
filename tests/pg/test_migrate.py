"""Migrations: applied exactly once, safe under concurrent start, append-only."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from resolver.pg.migrate import MigrationError, load, migrate, migrations_dir


def _dsn_for(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, ""))


async def _fresh_database(dsn: str) -> str:
    name = "mig_" + uuid.uuid4().hex[:10]
    conn = await asyncpg.connect(dsn)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    return _dsn_for(dsn, name)


def test_concurrent_starts_apply_each_migration_once(pg_dsn: str) -> None:
    async def go() -> None:
        dsn = await _fresh_database(pg_dsn)
        conns = [await asyncpg.connect(dsn) for _ in range(4)]
        try:
            results = await asyncio.gather(*(migrate(c) for c in conns))
            applied = [r for r in results if r]
            assert len(applied) == 1
            assert applied[0] == [m.version for m in load()]
            rows = await conns[0].fetch("SELECT version FROM schema_migrations")
            assert sorted(r["version"] for r in rows) == applied[0]
            assert await migrate(conns[0]) == []     # a later start: nothing to do
        finally:
            for c in conns:
                await c.close()

    asyncio.run(go())


def test_an_applied_migration_must_not_change(pg_dsn: str, tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    shutil.copytree(migrations_dir(), folder)
    (folder / "9998_extra.sql").write_text("CREATE TABLE extra (id int);\n")

    async def go() -> None:
        dsn = await _fresh_database(pg_dsn)
        conn = await asyncpg.connect(dsn)
        try:
            assert (await migrate(conn, folder))[-1] == "9998_extra"
            (folder / "9998_extra.sql").write_text("CREATE TABLE extra (id bigint);\n")
            with pytest.raises(MigrationError, match="9998_extra was changed"):
                await migrate(conn, folder)
            # a failing migration leaves nothing behind
            (folder / "9998_extra.sql").write_text("CREATE TABLE extra (id int);\n")
            (folder / "9999_broken.sql").write_text("CREATE TABLE t3 (id int); SELEC 1;\n")
            with pytest.raises(asyncpg.PostgresSyntaxError):
                await migrate(conn, folder)
            assert await conn.fetchval("SELECT to_regclass('t3')") is None
            assert "9999_broken" not in [
                r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")]
        finally:
            await conn.close()

    asyncio.run(go())


def _older(tmp: Path, upto: str) -> Path:
    """The migrations folder as a previous version shipped it (up to ``upto``)."""
    folder = tmp / f"old-{upto}"
    folder.mkdir()
    for path in sorted(migrations_dir().glob("*.sql")):
        if path.stem <= upto:
            shutil.copy(path, folder)
    return folder


def test_case_folding_migrates_a_database_of_the_previous_version(pg_dsn: str,
                                                                  tmp_path: Path) -> None:
    """0006 on a database filled by the previous version (suffixes kept as written):
    keys are folded, spellings kept, the audit trail re-keyed (and still append-only),
    operators found by their identity whatever its case."""
    async def go() -> None:
        dsn = await _fresh_database(pg_dsn)
        conn = await asyncpg.connect(dsn)
        try:
            await migrate(conn, _older(tmp_path, "0005_listener_leases"))
            await conn.execute("""INSERT INTO handles (handle, prefix, "values", public_json)
                                  VALUES ('88.1/Order-1', '88.1', '[]', '[]'),
                                         ('88.1/UPPER', '88.1', '[]', '[]'),
                                         ('0.OPERATOR/acme', '0.OPERATOR', '[]', '[]')""")
            await conn.execute("""INSERT INTO operators (name, identity)
                                  VALUES ('acme', '300:0.OPERATOR/acme')""")
            await conn.execute("""INSERT INTO audit (actor, action, handle, prefix, after)
                                  VALUES ('a', 'create', '88.1/Order-1', '88.1', '[]')""")
            assert (await migrate(conn))[0] == "0006_case_insensitive"
            rows = {r["handle"]: r["spelling"] for r in await conn.fetch(
                "SELECT handle, spelling FROM handles")}
            assert rows == {"88.1/ORDER-1": "88.1/Order-1", "88.1/UPPER": None,
                            "0.OPERATOR/ACME": "0.OPERATOR/acme"}
            assert await conn.fetchval("SELECT identity FROM operators") == "300:0.OPERATOR/ACME"
            assert await conn.fetchval("SELECT handle FROM audit") == "88.1/ORDER-1"
            assert await conn.fetchval(
                "SELECT value FROM node_settings WHERE name = 'case_sensitive'") == "false"
            with pytest.raises(asyncpg.RaiseError, match="append-only"):
                await conn.execute("UPDATE audit SET actor = 'x'")
        finally:
            await conn.close()

    asyncio.run(go())


def test_a_database_with_case_twins_stays_case_sensitive(pg_dsn: str, tmp_path: Path) -> None:
    from resolver.pg.pool import apply_case_mode

    async def go() -> None:
        dsn = await _fresh_database(pg_dsn)
        conn = await asyncpg.connect(dsn)
        try:
            await migrate(conn, _older(tmp_path, "0005_listener_leases"))
            await conn.execute("""INSERT INTO handles (handle, prefix, "values", public_json)
                                  VALUES ('88.1/abc', '88.1', '[]', '[]'),
                                         ('88.1/ABC', '88.1', '[]', '[]')""")
            await migrate(conn)
            assert {r["handle"] for r in await conn.fetch("SELECT handle FROM handles")} == {
                "88.1/abc", "88.1/ABC"}                   # both kept, nothing merged
            assert await apply_case_mode(conn, None) is True
            with pytest.raises(MigrationError, match="cannot change"):
                await apply_case_mode(conn, False)
        finally:
            await conn.close()
            from resolver.core.identifier import set_case_sensitive
            set_case_sensitive(False)

    asyncio.run(go())


def test_the_code_index_migrates_a_database_of_the_previous_version(pg_dsn: str,
                                                                     tmp_path: Path) -> None:
    """0010 on codes written by 0009's version: every row kept, one index left, which
    keeps codes unique as written (case-sensitive) and finds them ignoring case."""
    async def go() -> None:
        dsn = await _fresh_database(pg_dsn)
        conn = await asyncpg.connect(dsn)
        try:
            await migrate(conn, _older(tmp_path, "0009_codes_one_key"))
            await conn.execute("""INSERT INTO codes (prefix, type, value, handle, is_unique,
                                                     is_public)
                                  VALUES ('88.1', 'a.eq', 'EQ-1', '88.1/A', true, true),
                                         ('88.1', 'a.eq', 'eq-1', '88.1/B', true, true),
                                         ('88.1', 'a.site', 'Hall', '88.1/A', false, true),
                                         ('88.1', 'a.site', 'Hall', '88.1/B', false, true)""")
            assert await migrate(conn, _older(tmp_path, "0010_codes_folded_key")) == [
                "0010_codes_folded_key"]
            rows = await conn.fetch("SELECT prefix, type, value, handle, slot FROM codes "
                                    "ORDER BY handle, type")
            assert [tuple(r) for r in rows] == [
                ("88.1", "a.eq", "EQ-1", "88.1/A", ""), ("88.1", "a.site", "Hall", "88.1/A", "88.1/A"),
                ("88.1", "a.eq", "eq-1", "88.1/B", ""), ("88.1", "a.site", "Hall", "88.1/B", "88.1/B")]
            indexes = await conn.fetch("SELECT indexname FROM pg_indexes WHERE tablename = 'codes'")
            assert [r[0] for r in indexes] == ["codes_unique"]
            with pytest.raises(asyncpg.UniqueViolationError):
                await conn.execute("INSERT INTO codes (prefix, type, value, handle, is_unique, "
                                   "is_public) VALUES ('88.1', 'a.eq', 'EQ-1', '88.1/C', true, true)")
            folded = await conn.fetch(
                """SELECT handle FROM codes WHERE type = 'a.eq' AND lower(value COLLATE "default")
                   COLLATE "C" = 'eq-1' ORDER BY handle""")
            assert [r[0] for r in folded] == ["88.1/A", "88.1/B"]
        finally:
            await conn.close()

    asyncio.run(go())


def test_codes_carry_what_a_lookup_answers_after_0011(pg_dsn: str, tmp_path: Path) -> None:
    """0011 on a database of 0010's version: each code row takes its record's spelling,
    a draft's codes stop being public, and an exact lookup (the fast path's query) then
    reads the code index alone."""
    from resolver.store import FIND_CODES

    async def go() -> None:
        dsn = await _fresh_database(pg_dsn)
        conn = await asyncpg.connect(dsn)
        try:
            await migrate(conn, _older(tmp_path, "0010_codes_folded_key"))
            await conn.execute("""INSERT INTO handles (handle, prefix, "values", spelling, state)
                                  VALUES ('88.1/A', '88.1', '[]', '88.1/a', 'active'),
                                         ('88.1/B', '88.1', '[]', NULL, 'draft'),
                                         ('88.1/C', '88.1', '[]', NULL, 'active')""")
            await conn.execute("""INSERT INTO codes (prefix, type, value, handle, is_unique,
                                                     is_public)
                                  VALUES ('88.1', 'a.eq', 'EQ-1', '88.1/A', true, true),
                                         ('88.1', 'a.eq', 'EQ-2', '88.1/B', true, true),
                                         ('88.1', 'a.eq', 'EQ-3', '88.1/C', true, false)""")
            assert await migrate(conn, _older(tmp_path, "0011_codes_index_only")) == [
                "0011_codes_index_only"]
            rows = await conn.fetch("SELECT handle, spelled, is_public FROM codes ORDER BY handle")
            assert [tuple(r) for r in rows] == [("88.1/A", "88.1/a", True),
                                                ("88.1/B", None, False),
                                                ("88.1/C", None, False)]
            await conn.execute("VACUUM ANALYZE codes")
            await conn.execute("SET enable_seqscan = off")
            args = (["88.1"], ["a.eq"], ["EQ-1"], 100)
            assert [r["spelled"] for r in await conn.fetch(FIND_CODES, *args)] == ["88.1/a"]
            assert await conn.fetch(FIND_CODES, ["88.1"], ["a.eq"], ["EQ-2"], 100) == []
            plan = "\n".join(r[0] for r in await conn.fetch("EXPLAIN " + FIND_CODES, *args))
            assert "Index Only Scan using codes_unique" in plan and "handles" not in plan, plan
        finally:
            await conn.close()

    asyncio.run(go())


def test_records_are_stored_once_after_0012(pg_dsn: str, tmp_path: Path) -> None:
    """0012 on a database of 0011's version, rows written as that version wrote them: the
    public JSON of a record that derives it from its stored JSON is emptied, every other
    row keeps its copy (private values, two timestamps, text written through jsonb, a
    tombstone, a row from before 0002), and resolution reads the same bytes for each."""
    import orjson

    from resolver.core import codec, lifecycle
    from resolver.store import fetch_publics
    from resolver.pg.pool import init_connection

    def values(ts: int, perms: str = "1110", second_ts: int | None = None) -> list[dict]:
        return codec.parse_values([
            {"index": 1, "type": "URL", "data": "https://example.com/a?x=\"timestamp\":1"},
            {"index": 2, "type": "order.status", "data": "made", "permissions": perms}], ts) \
            if second_ts is None else [*values(ts)[:1], {**values(second_ts)[1], "index": 2}]

    plain, private, two = values(1700000000), values(1700000000, "1100"), \
        values(1700000000, second_ts=1700000001)
    rows = {"88.1/PLAIN": (codec.encode_stored(plain), "active"),
            "88.1/PRIVATE": (codec.encode_stored(private), "active"),
            "88.1/TWO": (codec.encode_stored(two), "active"),
            "88.1/GONE": ((orjson.dumps(plain), lifecycle.public_view(
                plain, "retired", {"at": "2026-01-01T00:00:00Z", "epoch": 1767225600})),
                "retired")}

    async def go() -> None:
        dsn = await _fresh_database(pg_dsn)
        conn = await asyncpg.connect(dsn)
        await init_connection(conn)
        try:
            await migrate(conn, _older(tmp_path, "0011_codes_index_only"))
            for key, ((stored, public), state) in rows.items():
                await conn.execute("""INSERT INTO handles (handle, prefix, "values", public_json,
                                      state) VALUES ($1, '88.1', $2, $3, $4)""",
                                   key, stored, public, state)
            await conn.execute("""INSERT INTO handles (handle, prefix, "values", public_json)
                                  VALUES ('88.1/JSONB', '88.1', $1::jsonb::json, $2),
                                         ('88.1/OLD', '88.1', $1, NULL)""",
                               orjson.dumps(plain), codec.public_json(plain))
            keys = [*rows, "88.1/JSONB", "88.1/OLD"]
            before = await fetch_publics(conn, keys)
            assert await migrate(conn, _older(tmp_path, "0012_records_stored_once")) == [
                "0012_records_stored_once"]
            kept = {r["handle"]: r["public_json"] for r in await conn.fetch(
                "SELECT handle, public_json FROM handles")}
            assert [k for k, v in kept.items() if v == codec.DERIVED] == ["88.1/PLAIN"]
            assert kept["88.1/OLD"] is None
            after = await fetch_publics(conn, keys)
            assert after == before and len(after) == 6
            assert after["88.1/PLAIN"][0] == codec.public_json(plain)
        finally:
            await conn.close()

    asyncio.run(go())


def test_backup_tools_get_the_password_by_environment_only() -> None:
    from resolver.pg.backup import _split

    for dsn in ("postgresql://idres:s3cret@h:5/db", "postgresql://idres@h:5/db?password=s3cret",
                "postgresql://idres@h:5/db?sslmode=disable&PASSWORD=s3cret"):
        url, env = _split(dsn)
        assert "s3cret" not in url and env["PGPASSWORD"] == "s3cret", url
