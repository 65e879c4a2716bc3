"""Metadata templates: declared, versioned, published, retired; every write path checked
against them; served as JSON Schema; a template is an identifier too."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
import requests

from tests.conftest import Server, Tenant, stored_values

ORDER_ITEMS = [
    {"type": "order.product", "required": True, "max_length": 80},
    {"type": "order.quantity", "datatype": "integer", "required": True, "minimum": 1},
    {"type": "order.due", "datatype": "date"},
    {"type": "order.status", "datatype": "enum", "values": ["released", "shipped", "closed"],
     "ttl": 60},
    {"type": "order.code", "unique": True, "pattern": "ORD-[0-9]{4}"},
    {"type": "order.price", "datatype": "decimal", "classification": "private"},
    {"type": "URL", "datatype": "url"},
]


def order(n: int, **over: str) -> list[dict[str, Any]]:
    values = {"order.product": "gearbox GX-200", "order.quantity": "500",
              "order.due": "2026-12-24", "order.status": "released",
              "order.code": f"ORD-{n:04d}", **over}
    return [{"index": i + 1, "type": t, "data": d} for i, (t, d) in enumerate(values.items())]


def template(t: Tenant, name: str, items: list[dict[str, Any]], publish: bool = True) -> str:
    h = f"{t.prefix}/{name}"
    r = requests.post(f"{t.url}/api/templates", headers=t.op.bearer,
                      json={"handle": h, "description": f"{name} records", "items": items})
    assert r.status_code == 201, r.text
    if publish:
        r = requests.post(f"{t.url}/api/templates/publish", headers=t.op.bearer,
                          json={"handle": h, "version": r.json()["version"]})
        assert r.status_code == 200, r.text
    return h


def put(t: Tenant, suffix: str, values: Any, tpl: str | None = None,
        query: str = "") -> requests.Response:
    body: Any = {"values": values}
    if tpl is not None:
        body["template"] = tpl
    return requests.put(t.handle_url(suffix) + query, json=body, headers=t.op.bearer)


def test_a_template_is_declared_published_read_and_resolved(tenant: Tenant) -> None:
    h = template(tenant, "META_ORDER", ORDER_ITEMS, publish=False)
    # a draft: its owner sees it, nobody else does
    assert requests.get(f"{tenant.url}/api/templates/{h}").status_code == 404
    mine = requests.get(f"{tenant.url}/api/templates/{h}", headers=tenant.op.bearer).json()
    assert mine["template"]["state"] == "draft" and mine["template"]["version"] == 1
    assert requests.get(f"{tenant.url}/api/handles/{h}").status_code == 404
    r = requests.post(f"{tenant.url}/api/templates/publish", headers=tenant.op.bearer,
                      json={"handle": h, "version": 1})
    assert r.status_code == 200 and r.json()["report"]["records"] == 0
    got = requests.get(f"{tenant.url}/api/templates/{h}").json()["template"]
    assert got["state"] == "published" and [i["type"] for i in got["items"]][:2] == [
        "order.product", "order.quantity"]
    # the template resolves like any identifier
    record = requests.get(f"{tenant.url}/api/handles/{h}").json()
    assert record["values"][0]["type"] == "idres.template"
    listed = requests.get(f"{tenant.url}/api/templates?prefix={tenant.prefix}").json()
    assert [x["handle"] for x in listed["templates"]] == [h.upper()]
    trail = requests.get(f"{tenant.url}/api/audit?handle={h}", headers=tenant.op.bearer).json()
    assert [e["action"] for e in trail["entries"]][:2] == ["template_publish", "template_create"]


def test_json_schema_describes_the_body_a_record_takes(tenant: Tenant) -> None:
    h = template(tenant, "META_SCHEMA", ORDER_ITEMS)
    r = requests.get(f"{tenant.url}/api/schemas/{h}")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/schema+json")
    schema = r.json()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    validator = jsonschema.Draft202012Validator(schema,
                                                format_checker=jsonschema.FormatChecker())
    assert validator.is_valid({"values": order(1)})
    assert validator.is_valid(order(1))                           # a bare array too
    assert not validator.is_valid({"values": order(1, **{"order.quantity": "many"})})
    assert not validator.is_valid({"values": order(1, **{"order.status": "lost"})})
    assert not validator.is_valid({"values": order(1)[1:]})      # order.product required
    assert not validator.is_valid({"values": [*order(1), {"index": 9, "type": "order.code",
                                                           "data": "ORD-0002"}]})  # single
    assert not validator.is_valid({"values": [*order(1), {"index": 9, "type": "other",
                                                           "data": "x"}]})


@pytest.mark.parametrize("items, fragment", [
    ([{"type": "a", "min_length": 5, "max_length": 2}], "is over max_length"),
    ([{"type": "a", "datatype": "integer", "minimum": 9, "maximum": 1}], "is over maximum"),
    ([{"type": "a", "pattern": "(a"}], "pattern is not a valid (RE2) expression"),
    ([{"type": "a", "pattern": "(a)\\1"}], "pattern is not a valid (RE2) expression"),
    ([{"type": "a", "datatype": "colour"}], "Invalid enum value 'colour'"),
    ([{"type": "a", "datatype": "enum"}], "needs its values"),
    ([{"type": "a"}, {"type": "A"}], "appears twice"),
    ([{"type": "a", "datatype": "reference", "template": "88.0.0/NO_SUCH"}], "does not exist"),
    ([{"type": "a", "unique": True, "many": True}], "cannot have many values"),
    ([{"type": "HS_ADMIN"}], "Handle System type"),
    ([{"type": "a", "colour": "red"}], "unknown field `colour`"),
    ([], "at least one item"),
])
def test_bad_templates_are_refused_naming_the_problem(tenant: Tenant, items: list[Any],
                                                      fragment: str) -> None:
    r = requests.post(f"{tenant.url}/api/templates", headers=tenant.op.bearer,
                      json={"handle": f"{tenant.prefix}/BAD", "items": items})
    assert r.status_code == 400 and fragment in r.text, r.text
    assert requests.get(f"{tenant.url}/api/templates/{tenant.prefix}/BAD",
                        headers=tenant.op.bearer).status_code == 404


def test_cycles_of_template_references_are_refused(tenant: Tenant) -> None:
    a = template(tenant, "META_A", [{"type": "x"}])
    b = template(tenant, "META_B", [{"type": "a", "datatype": "reference", "template": a}])
    r = requests.post(f"{tenant.url}/api/templates", headers=tenant.op.bearer, json={
        "handle": a, "items": [{"type": "b", "datatype": "reference", "template": b}]})
    assert r.status_code == 400 and "cycle" in r.text, r.text


def test_every_write_path_is_checked_with_every_problem_at_once(tenant: Tenant,
                                                                sql: Any) -> None:
    h = template(tenant, "META_CHECK", ORDER_ITEMS)
    assert put(tenant, "O-1", order(1), h).status_code == 201
    bad = order(2, **{"order.quantity": "0", "order.due": "tomorrow", "order.code": "X-1",
                      "order.status": "lost"})
    bad.append({"index": 9, "type": "unknown.thing", "data": "?"})
    r = put(tenant, "O-2", bad[1:], h)
    assert r.status_code == 400 and r.json()["responseCode"] == 202
    errors = r.json()["errors"]
    assert {"index": 2, "type": "order.quantity", "message": "must be an integer ≥ 1"} in errors
    assert {"index": 3, "type": "order.due", "message": "must be a date YYYY-MM-DD"} in errors
    assert {"index": 4, "type": "order.status",
            "message": "must be one of released, shipped, closed"} in errors
    assert {"index": 5, "type": "order.code", "message": "must match the pattern ORD-[0-9]{4}"} \
        in errors
    assert {"index": 9, "type": "unknown.thing", "message": "is not an item of the template"} \
        in errors
    assert {"type": "order.product", "message": "is required"} in errors
    assert stored_values(sql, f"{tenant.prefix}/O-2") is None
    # value-level writes keep the record conforming
    r = requests.put(tenant.handle_url("O-1") + "?index=2", headers=tenant.op.bearer,
                     json=[{"index": 2, "type": "order.quantity", "data": "-5"}])
    assert r.status_code == 400 and r.json()["errors"][0]["index"] == 2
    r = requests.delete(tenant.handle_url("O-1") + "?index=1", headers=tenant.op.bearer)
    assert r.status_code == 400 and "is required" in r.text
    assert len(stored_values(sql, f"{tenant.prefix}/O-1")) == 5
    r = requests.put(tenant.handle_url("O-1") + "?index=4", headers=tenant.op.bearer,
                     json=[{"index": 4, "type": "order.status", "data": "shipped"}])
    assert r.status_code == 200
    # bulk: every failing record named, nothing stored
    r = requests.post(f"{tenant.url}/api/bulk", headers=tenant.op.bearer, json=[
        {"handle": f"{tenant.prefix}/B-1", "template": h, "values": order(11)},
        {"handle": f"{tenant.prefix}/B-2", "template": h,
         "values": order(12, **{"order.quantity": "x"})},
        {"handle": f"{tenant.prefix}/B-3", "template": h, "values": order(13)[1:]}])
    assert r.status_code == 400, r.text
    failed = r.json()
    assert failed["failing"] == 2 and [x["record"] for x in failed["records"]] == [1, 2]
    assert failed["records"][1]["errors"] == [{"type": "order.product", "message": "is required"}]
    assert stored_values(sql, f"{tenant.prefix}/B-1") is None
    r = requests.post(f"{tenant.url}/api/bulk", headers=tenant.op.bearer, json=[
        {"handle": f"{tenant.prefix}/B-{n}", "template": h, "values": order(20 + n)}
        for n in range(5)])
    assert r.status_code == 201, r.text


def test_template_defaults_and_unknown_or_retired_templates(tenant: Tenant, sql: Any) -> None:
    h = template(tenant, "META_DEF", ORDER_ITEMS)
    values = [*order(30), {"index": 6, "type": "order.price", "data": "1850.00"}]
    assert put(tenant, "D-1", values, h).status_code == 201
    stored = {v["type"]: v for v in stored_values(sql, f"{tenant.prefix}/D-1")}
    assert stored["order.status"]["ttl"] == 60                 # the item's default TTL
    assert stored["order.price"]["permissions"] == "1100"      # private: not public
    public = requests.get(tenant.handle_url("D-1")).json()["values"]
    assert "order.price" not in [v["type"] for v in public]
    for name, fragment in [(f"{tenant.prefix}/META_NONE", "no published template"),
                           ("not an identifier", "is not an identifier")]:
        r = put(tenant, "D-2", order(31), name)
        assert r.status_code == 400 and fragment in r.text, r.text
    requests.post(f"{tenant.url}/api/templates/retire", headers=tenant.op.bearer,
                  json={"handle": h, "version": 1})
    r = put(tenant, "D-3", order(32), h)
    assert r.status_code == 400 and "no published template" in r.text
    r = requests.put(tenant.handle_url("D-1") + "?index=4", headers=tenant.op.bearer,
                     json=[{"index": 4, "type": "order.status", "data": "closed"}])
    assert r.status_code == 200, r.text                          # its records live on


def test_values_not_sent_keep_their_own_ttl_and_classification(tenant: Tenant, sql: Any) -> None:
    """A write that adds, replaces or removes some values applies the template's defaults
    to the values it sends only: a value made private stays private (and its TTL stays)
    when another value of the record is written or removed."""
    h = template(tenant, "META_KEEP", ORDER_ITEMS)
    values: list[dict[str, Any]] = order(40)
    values[0]["classification"] = "private"       # order.product: public by the template
    values[3]["ttl"] = 7                          # order.status: 60 by the template
    assert put(tenant, "K-1", values, h).status_code == 201

    def check() -> None:
        stored = {v["type"]: v for v in stored_values(sql, f"{tenant.prefix}/K-1")}
        assert stored["order.product"]["permissions"] == "1100"
        assert stored["order.status"]["ttl"] == 7
        public = requests.get(tenant.handle_url("K-1")).json()["values"]
        assert "order.product" not in [v["type"] for v in public]

    check()
    r = requests.put(tenant.handle_url("K-1") + "?index=3", headers=tenant.op.bearer,
                     json=[{"index": 3, "type": "order.due", "data": "2027-01-05"}])
    assert r.status_code == 200, r.text
    check()
    r = requests.delete(tenant.handle_url("K-1") + "?index=3", headers=tenant.op.bearer)
    assert r.status_code == 200, r.text
    check()
    r = requests.put(tenant.handle_url("K-1") + "?index=3", headers=tenant.op.bearer,
                     json=[{"index": 3, "type": "order.due", "data": "2027-01-06"}])
    stored = {v["type"]: v for v in stored_values(sql, f"{tenant.prefix}/K-1")}
    assert r.status_code == 200 and stored["order.due"]["permissions"] == "1110"
    check()


def test_versions_and_the_report_before_publishing(tenant: Tenant) -> None:
    h = template(tenant, "META_VER", ORDER_ITEMS)
    for n in range(3):
        assert put(tenant, f"V-{n}", order(40 + n), h).status_code == 201
    stricter = [dict(i, maximum=100) if i["type"] == "order.quantity" else i
                for i in ORDER_ITEMS]
    r = requests.post(f"{tenant.url}/api/templates", headers=tenant.op.bearer,
                      json={"handle": h, "items": stricter})
    assert r.status_code == 201 and r.json()["version"] == 2
    check = requests.get(f"{tenant.url}/api/templates/check?handle={h}&version=2",
                         headers=tenant.op.bearer).json()["report"]
    assert check["records"] == 3 and check["failing"] == 3
    assert check["examples"][0]["errors"][0]["message"] == "must be an integer ≤ 100"
    r = requests.post(f"{tenant.url}/api/templates/publish", headers=tenant.op.bearer,
                      json={"handle": h, "version": 2})
    assert r.status_code == 409 and r.json()["report"]["failing"] == 3
    r = requests.post(f"{tenant.url}/api/templates/publish", headers=tenant.op.bearer,
                      json={"handle": h, "version": 2, "force": True})
    assert r.status_code == 200
    # old records keep version 1; new ones follow version 2
    assert put(tenant, "V-NEW", order(50), h).status_code == 400
    assert put(tenant, "V-NEW", order(50, **{"order.quantity": "7"}), h).status_code == 201
    r = requests.put(tenant.handle_url("V-0") + "?index=4", headers=tenant.op.bearer,
                     json=[{"index": 4, "type": "order.status", "data": "shipped"}])
    assert r.status_code == 200, r.text
    listed = requests.get(f"{tenant.url}/api/records?template={h}",
                          headers=tenant.op.bearer).json()
    assert listed["totalCount"] == "4"
    assert {r["handle"].rsplit("/", 1)[1]: r["version"] for r in listed["records"]} == {
        "V-0": 1, "V-1": 1, "V-2": 1, "V-NEW": 2}
    one = requests.get(f"{tenant.url}/api/records?template={h}&version=2",
                       headers=tenant.op.bearer).json()
    assert [r["handle"] for r in one["records"]] == [f"{tenant.prefix}/V-NEW"]
    versions = requests.get(f"{tenant.url}/api/templates/{h}?versions=true").json()["versions"]
    assert [v["version"] for v in versions] == [1, 2]


def test_a_prefix_can_require_a_template(tenant: Tenant, server: Server) -> None:
    h = template(tenant, "META_REQ", ORDER_ITEMS)
    r = requests.put(f"{server.url}/api/prefixes/{tenant.prefix}", headers=tenant.op.bearer,
                     json={"template": h})
    assert r.status_code == 200, r.text
    r = requests.put(tenant.handle_url("R-1"), json=[{"index": 1, "type": "URL",
                                                      "data": "https://x"}],
                     headers=tenant.op.bearer)
    assert r.status_code == 400 and f"does not conform to template {h.upper()}" in r.text
    other = template(tenant, "META_OTHER", [{"type": "URL"}])
    r = put(tenant, "R-1", [{"index": 1, "type": "URL", "data": "https://x"}], other)
    assert r.status_code == 400 and "must follow template" in r.text
    assert put(tenant, "R-2", order(60)).status_code == 201      # the prefix's template
    r = requests.post(f"{tenant.url}/api/bulk", headers=tenant.op.bearer,
                      json=[{"handle": f"{tenant.prefix}/R-3", "values": order(61)[1:]}])
    assert r.status_code == 400 and r.json()["failing"] == 1
    # a bulk record naming no template follows the prefix's; its own TTLs stand, the
    # template's default fills only the value that gave none
    values = order(62)
    values[3]["ttl"] = 7
    r = requests.post(f"{tenant.url}/api/bulk", headers=tenant.op.bearer,
                      json=[{"handle": f"{tenant.prefix}/R-4", "values": values}])
    assert r.status_code == 201, r.text
    ttls = {v["type"]: v["ttl"] for v in requests.get(tenant.handle_url("R-4")).json()["values"]}
    assert ttls["order.status"] == 7 and ttls["order.product"] == 86400
    values = order(63)
    r = requests.post(f"{tenant.url}/api/bulk", headers=tenant.op.bearer,
                      json=[{"handle": f"{tenant.prefix}/R-5", "values": values}])
    ttls = {v["type"]: v["ttl"] for v in requests.get(tenant.handle_url("R-5")).json()["values"]}
    assert r.status_code == 201 and ttls["order.status"] == 60
    r = requests.put(f"{server.url}/api/prefixes/{tenant.prefix}", headers=tenant.op.bearer,
                     json={"template": None})
    assert r.status_code == 200
    assert requests.put(tenant.handle_url("R-1"), json=[{"index": 1, "type": "URL",
                                                         "data": "https://x"}],
                        headers=tenant.op.bearer).status_code == 201


@pytest.mark.parametrize("pattern,texts", [
    ("EQ-[0-9]{4}", ["EQ-0042", "EQ-42", "xEQ-0042", "EQ-00421", ""]),
    ("(a|b)*c", ["abac", "ab", "c", "ca"]),
    ("[\\p{Han}]+-[0-9]+", ["工厂-7", "工厂7", "-7"]),
    ("(?i)ord-.+", ["ORD-1", "ord-", "Ord-x"]),
])
def test_a_pattern_matches_the_same_texts_both_ways(pattern: str, texts: list[str]) -> None:
    """The direct use of the compiled RE2 object (the fast way) and the binding's public
    fullmatch agree: whole-text, UTF-8, flags."""
    import re2

    from registry.record_check import _pattern

    fast = _pattern(pattern)
    for text in texts:
        public = re2.compile(pattern).fullmatch(text) is not None
        assert (fast(text) is None) == public, (pattern, text)
