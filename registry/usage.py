"""How often a prefix's identifiers are resolved and registered, for its owner
(``GET /api/stats/resolutions``, ``idres stats``): the counts the resolver adds every few
seconds (resolver/usage.py, migration 0013), over a time range, by hour or day, by
protocol and outcome; the most resolved identifiers; registrations (from the audit
trail, where every creation has its row). A prefix's counts include those of the prefixes
under it, and the totals other nodes reported for prefixes delegated to them.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import asyncpg

from registry.ownership import require
from registry.permissions import Principal
from resolver.core import signing
from resolver.core.errors import BadRequest, BadSignature, InsufficientPermissions
from resolver.core.identifier import Identifier, Prefix, parse_prefix

BUCKETS = ("hour", "day")
MAX_RANGE = timedelta(days=366)
TOP = 10
# the prefix and those under it ('P.'...): the keys of their identifiers lie in ['P.', 'P0')
_UNDER = "(prefix = $1 OR starts_with(prefix, $1 || '.'))"
SERIES = f"""SELECT date_trunc($4, hour, 'UTC') AS at, protocol, outcome, sum(n)::bigint AS n
             FROM prefix_resolutions WHERE {_UNDER} AND hour >= $2 AND hour < $3
             GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"""
TOP_HANDLES = """SELECT handle, sum(n)::bigint AS n FROM handle_resolutions
                 WHERE handle >= $1 || '.' AND handle < $1 || '0' AND day >= $2 AND day < $3
                 GROUP BY handle ORDER BY 2 DESC, 1 LIMIT $4"""
ONE_HANDLE = """SELECT day::timestamptz AS at, protocol, outcome, sum(n)::bigint AS n
                FROM handle_resolutions WHERE handle = $1 AND day >= $2 AND day < $3
                GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"""
REGISTRATIONS = """SELECT date_trunc($4, at, 'UTC') AS at, count(*) AS n FROM audit
                   WHERE action = 'create' AND handle >= $1 || '.' AND handle < $1 || '0'
                     AND at >= $2 AND at < $3 GROUP BY 1 ORDER BY 1"""


def time_range(start: str | None, end: str | None) -> tuple[datetime, datetime]:
    """``from`` and ``to`` (ISO 8601; a date is its midnight UTC); default the last 24
    hours.

    :raises BadRequest: not a time, ``to`` before ``from``, or over a year."""
    def when(text: str, what: str) -> datetime:
        try:
            got = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise BadRequest(f"{what} must be an ISO 8601 time, like 2026-12-01 or "
                             f"2026-12-01T08:00:00Z, not {text[:40]!r}") from None
        return (got if got.tzinfo else got.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)

    to = when(end, "to") if end else datetime.now(timezone.utc)
    since = when(start, "from") if start else to - timedelta(days=1)
    if to <= since:
        raise BadRequest("to must be later than from")
    if to - since > MAX_RANGE:
        raise BadRequest("ask for at most a year at a time")
    return since, to


def _series(rows: list[asyncpg.Record]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    series: dict[str, dict[str, Any]] = {}
    totals: dict[str, Any] = {"resolutions": 0, "hit": 0, "miss": 0, "not_found": 0,
                              "by_protocol": {}}
    for r in rows:
        at = r["at"].astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        point = series.setdefault(at, {"at": at, "resolutions": 0})
        point[r["outcome"]] = point.get(r["outcome"], 0) + r["n"]
        point["resolutions"] += r["n"]
        totals["resolutions"] += r["n"]
        totals[r["outcome"]] = totals.get(r["outcome"], 0) + r["n"]
        proto = totals["by_protocol"]
        proto[r["protocol"]] = proto.get(r["protocol"], 0) + r["n"]
    return list(series.values()), totals


def _end_day(to: datetime) -> Any:
    """The first day (UTC) after the range: the days counted per identifier are those
    that begin before ``to``."""
    return (to - timedelta(microseconds=1)).date() + timedelta(days=1)


async def resolutions(conn: asyncpg.Connection, who: Principal, prefix: Prefix,
                      ident: Identifier | None, start: str | None, end: str | None,
                      by: str) -> dict[str, Any]:
    """The counts under ``prefix`` (or of one identifier) over the range.

    :raises InsufficientPermissions: ``who`` does not administer the prefix.
    :raises BadRequest: a bad range or bucket."""
    if by not in BUCKETS:
        raise BadRequest(f"by must be one of {', '.join(BUCKETS)}")
    since, to = time_range(start, end)
    await require(conn, who, [prefix], "read the statistics of")
    out: dict[str, Any] = {"prefix": prefix.text, "from": since.isoformat(),
                           "to": to.isoformat(), "by": by}
    if ident is not None:
        rows = await conn.fetch(ONE_HANDLE, ident.key, since.date(), _end_day(to))  # network op
        out["identifier"] = ident.spelling
        out["series"], out["totals"] = _series(rows)
        return out
    rows = await conn.fetch(SERIES, prefix.text, since, to, by)  # network op
    out["series"], out["totals"] = _series(rows)
    top = await conn.fetch(TOP_HANDLES, prefix.text, since.date(), _end_day(to),
                           TOP)  # network op
    out["top"] = [{"handle": r["handle"], "resolutions": r["n"]} for r in top]
    made = await conn.fetch(REGISTRATIONS, prefix.text, since, to, by)  # network op
    out["registrations"] = {
        "total": sum(r["n"] for r in made),
        "series": [{"at": r["at"].astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "registered": r["n"]} for r in made]}
    return out


# --- reports up the node tree ------------------------------------------------------------
# A node reports its totals for a prefix delegated to it to the node that delegated it
# (`idres stats report P --to PARENT`): a statement signed with its node key (docs/trust.md),
# accepted by the parent only when a delegation of P or of an ancestor names that key. The
# parent keeps them per reporting key (`source`), replacing what the same hours said
# before: a report sent twice counts once.
PROTOCOLS, OUTCOMES = ("http", "batch", "binary"), ("hit", "miss", "not_found")
MAX_REPORT_ROWS = 100_000
OWN_TOTALS = f"""SELECT hour, prefix, protocol, outcome, sum(n)::bigint AS n
                 FROM prefix_resolutions WHERE {_UNDER} AND hour >= $2
                 GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4"""
DELEGATED_TO = "SELECT servers FROM delegations WHERE prefix = ANY($1::text[])"
# (an hour's counts only grow: a report replayed later never lowers them)
KEEP = """INSERT INTO prefix_resolutions AS t (hour, prefix, protocol, outcome, source, n)
          SELECT h, p, pr, o, $6, n FROM unnest($1::timestamptz[], $2::text[], $3::text[],
                                                $4::text[], $5::bigint[]) AS r(h, p, pr, o, n)
          ON CONFLICT (prefix, hour, protocol, outcome, source)
          DO UPDATE SET n = greatest(t.n, EXCLUDED.n)"""


async def own_totals(conn: asyncpg.Connection, prefix: Prefix, hours: int) -> list[list[Any]]:
    """This node's counts under ``prefix`` for the last ``hours`` (and what nodes under
    it reported), as report rows ``[hour, prefix, protocol, outcome, n]``."""
    since = datetime.now(timezone.utc) - timedelta(hours=hours)
    rows = await conn.fetch(OWN_TOTALS, prefix.text, since)  # network op
    return [[r["hour"].astimezone(timezone.utc).isoformat(), r["prefix"], r["protocol"],
             r["outcome"], r["n"]] for r in rows]


async def accept_report(conn: asyncpg.Connection, body: Any, now: int) -> dict[str, Any]:
    """Keep a child node's signed report.

    :raises BadRequest: not a report, or rows that are not counts under its prefix.
    :raises InsufficientPermissions: the signature does not verify or has expired, or no
        delegation of the prefix names the signing key."""
    if not isinstance(body, dict) or not isinstance(body.get("statement"), dict) \
            or not isinstance(body.get("signature"), dict):
        raise BadRequest('send {"statement": {"kind": "usage", "prefix", "rows"}, '
                         '"signature": {...}} as `idres stats report` makes it')
    statement, sig = body["statement"], body["signature"]
    if statement.get("kind") != "usage" or not isinstance(statement.get("rows"), list) \
            or not isinstance(sig.get("key"), str) or not isinstance(sig.get("sig"), str):
        raise BadRequest("not a usage report")
    prefix = parse_prefix(str(statement.get("prefix")))
    lineage = [p.text for p in prefix.lineage()]
    keys = {s.get("key") for r in await conn.fetch(DELEGATED_TO, lineage)  # network op
            for s in r["servers"] if isinstance(s, dict)}
    if sig["key"] not in keys:
        raise InsufficientPermissions(f"{prefix.text} is not delegated here to the node whose "
                                      "key signed this report")
    try:
        signing.verify(sig["key"], {**statement, "iat": sig.get("iat"), "exp": sig.get("exp")},
                       sig["sig"], now)
    except BadSignature as exc:
        raise InsufficientPermissions(f"the report is refused: {exc.message}") from None
    rows = statement["rows"]
    if len(rows) > MAX_REPORT_ROWS:
        raise BadRequest(f"at most {MAX_REPORT_ROWS:,} rows per report")
    cols: list[list[Any]] = [[], [], [], [], []]
    seen: set[tuple[Any, ...]] = set()
    for row in rows:
        ok = isinstance(row, list) and len(row) == 5 and isinstance(row[1], str) \
            and (row[1] == prefix.text or row[1].startswith(prefix.text + ".")) \
            and row[2] in PROTOCOLS and row[3] in OUTCOMES and type(row[4]) is int \
            and 0 <= row[4] < 2**62
        try:
            hour = datetime.fromisoformat(row[0]) if ok else None
        except (TypeError, ValueError):
            hour = None
        if hour is None or hour.tzinfo is None:
            raise BadRequest(f"a report row is [hour, prefix under {prefix.text}, protocol, "
                             f"outcome, count]: {str(row)[:120]}")
        if (hour, *row[1:4]) in seen:
            raise BadRequest(f"a report names each hour, prefix, protocol and outcome once: "
                             f"{str(row)[:120]}")
        seen.add((hour, *row[1:4]))
        for col, value in zip(cols, (hour, *row[1:])):
            col.append(value)
    await conn.execute(KEEP, *cols, sig["key"])  # network op
    return {"prefix": prefix.text, "rows": len(rows)}
