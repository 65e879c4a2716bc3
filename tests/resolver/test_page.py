"""A page for people and a linkset for link-following clients, on the proxy path; every
other client gets what it got before (resolver/page.py)."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from resolver import page
from tests.conftest import Tenant
from tests.registry.test_templates import template

BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8"
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


@pytest.mark.parametrize("accept,link_type,expected", [
    (BROWSER, None, page.HTML),
    ("text/html", None, page.HTML),
    ("*/*", None, None),                       # curl, requests, pyhandle
    (None, None, None),
    ("application/json", None, None),
    ("application/json, text/html;q=0.5", None, None),
    ("text/html;q=0.5, application/json", None, None),
    ("text/*, application/json;q=0.1", None, page.HTML),
    ("application/linkset+json", None, page.LINKSET),
    ("application/linkset+json, text/html", None, page.LINKSET),
    ("text/html;q=abc, */*;q=0.1", None, None),   # a malformed q counts as 0
    ("*/*", "linkset", page.LINKSET),
    ("text/html", "LINKSET", page.LINKSET),
    ("text/html;q=0" + ",x" * 100_000, None, None),  # read only so far: still answered
])
def test_negotiation(accept: str | None, link_type: str | None, expected: str | None) -> None:
    assert page.preferred(accept, link_type) == expected


def _record(t: Tenant, suffix: str, values: list[dict[str, Any]]) -> str:
    r = requests.put(t.handle_url(suffix), json=values, headers=t.op.bearer)
    assert r.status_code == 201, r.text
    return f"{t.url}/{t.prefix}/{suffix}"


def test_a_browser_gets_a_page_and_other_clients_what_they_got_before(tenant: Tenant) -> None:
    tpl = template(tenant, "TPL-PAGE", [
        {"type": "URL", "datatype": "url", "description": "where the order is tracked"},
        {"type": "order.note", "description": "a note for the line <b>operator</b>"},
        {"type": "order.secret", "classification": "private"}])
    r = requests.put(tenant.handle_url("ORDER-1") + "?template=" + tpl, headers=tenant.op.bearer,
                     json=[{"index": 1, "type": "URL", "data": "https://mes.example/order/1?a=1&b=2"},
                           {"index": 2, "type": "order.note", "data": HOSTILE},
                           {"index": 3, "type": "order.secret", "data": "s"}])
    assert r.status_code == 201, r.text
    url = f"{tenant.url}/{tenant.prefix}/ORDER-1"
    # clients as before: a redirect to the URL, JSON with ?noredirect; both vary on Accept
    plain = requests.get(url, allow_redirects=False)
    assert plain.status_code == 302 and plain.headers["Location"].startswith("https://mes.")
    assert plain.headers["Vary"] == "Accept"
    as_json = requests.get(url + "?noredirect", allow_redirects=False)
    assert as_json.status_code == 200 and as_json.json()["values"][1]["data"]["value"] == HOSTILE
    # a browser following a link is sent on too; with ?noredirect it gets the page
    assert requests.get(url, headers={"Accept": BROWSER}, allow_redirects=False
                        ).status_code == 302
    r = requests.get(url + "?noredirect", headers={"Accept": BROWSER})
    assert r.status_code == 200 and r.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "script-src" not in r.headers["Content-Security-Policy"]
    assert "default-src 'none'" in r.headers["Content-Security-Policy"]
    html = r.text
    assert "<script" not in html and "onerror=alert" not in html.replace("onerror=alert(1)&gt;", "")
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert '<a href="https://mes.example/order/1?a=1&amp;b=2">' in html
    assert "where the order is tracked" in html                   # the template's words
    assert "a note for the line &lt;b&gt;operator&lt;/b&gt;" in html
    assert "order.secret" not in html                               # not public: not shown
    assert f"<h1>{tenant.prefix}/ORDER-1</h1>" in html
    # HEAD: the same status and type, no body
    head = requests.head(url + "?noredirect", headers={"Accept": BROWSER})
    assert head.status_code == 200 and head.headers["Content-Type"].startswith("text/html")


def test_pages_for_missing_and_retired_identifiers(tenant: Tenant) -> None:
    missing = requests.get(f"{tenant.url}/{tenant.prefix}/NOPE<i>", headers={"Accept": BROWSER})
    assert missing.status_code == 404 and missing.headers["Content-Type"].startswith("text/html")
    assert "Not found" in missing.text and "NOPE&lt;i&gt;" in missing.text
    assert requests.get(f"{tenant.url}/{tenant.prefix}/NOPE").json()["responseCode"] == 100
    url = _record(tenant, "OLD", [{"index": 1, "type": "x", "data": "y"}])
    assert requests.post(f"{tenant.url}/api/lifecycle/{tenant.prefix}/OLD", headers=tenant.op.bearer,
                         json={"state": "retired", "reason": "scrapped <hall B>"}).status_code == 200
    gone = requests.get(url, headers={"Accept": BROWSER})
    assert gone.status_code == 410 and "retired" in gone.text
    assert "scrapped &lt;hall B&gt;" in gone.text
    assert requests.get(url).status_code == 410 and requests.get(url).json()["values"]


def test_a_linkset_instead_of_a_redirect(tenant: Tenant) -> None:
    url = _record(tenant, "LINKED", [
        {"index": 1, "type": "URL", "data": "https://mes.example/l"},
        {"index": 2, "type": "doc.url", "data": "http://docs.example/l.pdf"},
        {"index": 3, "type": "x", "data": "not a link"}])
    for r in (requests.get(url, headers={"Accept": page.LINKSET}, allow_redirects=False),
              requests.get(url + "?linkType=linkset", allow_redirects=False)):
        assert r.status_code == 200, r.text
        assert r.headers["Content-Type"].startswith("application/linkset+json")
        [ctx] = r.json()["linkset"]
        assert ctx["anchor"] == url and ctx["cite-as"] == [{"href": url}]
        assert [i["href"] for i in ctx["item"]] == ["https://mes.example/l",
                                                    "http://docs.example/l.pdf"]
        assert ctx["describedby"][0]["href"] == f"{tenant.url}/api/handles/{tenant.prefix}/LINKED"
    # the API path is not negotiated: JSON for everyone
    api = requests.get(tenant.handle_url("LINKED"), headers={"Accept": BROWSER})
    assert api.headers["Content-Type"].startswith("application/json")


def test_links_to_identifiers_stay_on_this_node() -> None:
    html = page.record_page("88.1/A", [{"index": 1, "type": "HS_ALIAS", "ttl": 1, "data": {
        "format": "string", "value": "/evil.example/x"}}], {}, None).decode()
    assert 'href="/evil.example/x"' in html and 'href="//' not in html
    ls = page.linkset("http://n", "88.1/A", [{"index": 1, "type": "HS_ALIAS", "data": {
        "format": "admin", "value": {"handle": "x", "index": 1}}}], None)
    assert b"successor-version" not in ls          # (a non-string alias is no link)
