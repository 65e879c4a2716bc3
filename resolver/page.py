"""What a person and a link-following client see on the proxy path. Sans-I/O.

* :func:`preferred`: content negotiation on ``Accept`` (RFC 9110 §12.5.1, q-values): a
  browser (``text/html`` preferred to JSON) gets a page; a client preferring
  ``application/linkset+json``, or asking ``?linkType=linkset``, gets the record's links as
  an RFC 9264 linkset, as resolvers for product identifiers answer (idis-facts §5); every
  other client (``*/*``, JSON) gets what it got before: JSON or a redirect.
* :func:`record_page`, :func:`missing_page`, :func:`gone_page`: HTML with no script, every
  text escaped (a value is never markup), links only for ``http``/``https`` URLs and for
  identifiers, a table with a caption and header cells (readable by screen readers).
* :func:`linkset`: ``{"linkset": [{"anchor": ..., "cite-as": ..., "describedby": ...,
  "item": [...], "type": ...}]}``, the relations FAIR Signposting uses for persistent
  identifiers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any
from urllib.parse import quote

import orjson

HTML = "text/html"
LINKSET = "application/linkset+json"
PAGE_HEADERS: tuple[tuple[str, str], ...] = (
    ("Content-Type", "text/html; charset=utf-8"),
    # no script, no frames, nothing fetched: the page is its own styles and links
    ("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; "
                                "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Vary", "Accept"),
)
LINKSET_HEADERS: tuple[tuple[str, str], ...] = (
    ("Content-Type", f"{LINKSET}; charset=utf-8"), ("Vary", "Accept"))
MAX_ACCEPT = 2048  # characters of Accept read, at most (a hostile header costs no more)


def _quality(accept: str, media: str) -> float:
    """The q-value ``accept`` gives ``media`` (the most specific range that matches)."""
    kind = media.split("/", 1)[0] + "/*"
    best, rank = 0.0, -1
    for part in accept[:MAX_ACCEPT].split(","):
        fields = part.strip().split(";")
        rng = fields[0].strip().lower()
        this = 2 if rng == media else 1 if rng == kind else 0 if rng == "*/*" else -1
        if this < rank or this < 0:
            continue
        q = 1.0
        for f in fields[1:]:
            name, _, value = f.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    q = min(1.0, max(0.0, float(value.strip())))
                except ValueError:
                    q = 0.0
        if this > rank or q > best:
            best, rank = q, this
    return best


def preferred(accept: str | None, link_type: str | None) -> str | None:
    """:data:`LINKSET`, :data:`HTML` or None (JSON or a redirect, as before)."""
    if link_type is not None and link_type.lower() in ("linkset", "all"):
        return LINKSET
    if not accept:
        return None
    other = _quality(accept, "application/json")
    linkset, html = _quality(accept, LINKSET), _quality(accept, HTML)
    if linkset > other and linkset >= html:
        return LINKSET
    if html > other:
        return HTML
    return None


def _shell(title: str, body: str) -> bytes:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>"
        "body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:60rem;padding:0 1rem;"
        "color:#1a1a1a}h1{font-size:1.5rem;word-break:break-all}"
        "table{border-collapse:collapse;width:100%}caption{text-align:left;font-weight:600;"
        "padding:.5rem 0}th,td{border:1px solid #bbb;padding:.4rem .6rem;text-align:left;"
        "vertical-align:top}td{word-break:break-word}th{background:#eee}"
        ".note{color:#444}small{color:#444;display:block}a{color:#0645ad}"
        "</style></head><body><main>" + body + "</main></body></html>\n").encode()


def _href(path: str) -> str:
    """A link to an identifier on this node (never to another host: ``//x`` is not one)."""
    return "/" + quote(path.lstrip("/"), safe="/")


def _cell(value: Mapping[str, Any]) -> str:
    data = value.get("data") or {}
    shown = data.get("value")
    if data.get("format") == "string" and isinstance(shown, str):
        if shown.startswith(("https://", "http://")) and not any(c.isspace() for c in shown):
            return f'<a href="{escape(shown)}">{escape(shown)}</a>'
        if value.get("type") == "HS_ALIAS":
            return f'<a href="{escape(_href(shown))}">{escape(shown)}</a>'
        return escape(shown)
    return f"<code>{escape(orjson.dumps(shown).decode())}</code>"


def record_page(requested: str, values: Sequence[Mapping[str, Any]],
                labels: Mapping[str, str], template: str | None) -> bytes:
    """The record of ``requested`` as a page: a table of index, type (with the template's
    description of the item, from ``labels``), value, TTL and timestamp."""
    rows = []
    for v in values:
        label = labels.get(str(v.get("type")))
        kind = escape(str(v.get("type"))) + (f"<small>{escape(label)}</small>" if label else "")
        rows.append(f"<tr><td>{escape(str(v.get('index')))}</td><td>{kind}</td>"
                    f"<td>{_cell(v)}</td><td>{escape(str(v.get('ttl', '')))}</td>"
                    f"<td>{escape(str(v.get('timestamp', '')))}</td></tr>")
    follows = (f'<p class="note">Follows the template <a href="{escape(_href(template))}">'
               f"{escape(template)}</a>.</p>") if template else ""
    table = ("<table><caption>Values of " + escape(requested) + "</caption><thead><tr>"
             '<th scope="col">Index</th><th scope="col">Type</th><th scope="col">Value</th>'
             '<th scope="col">TTL (s)</th><th scope="col">Timestamp</th></tr></thead><tbody>'
             + "".join(rows) + "</tbody></table>") if rows else \
        '<p class="note">This identifier has no public values.</p>'
    json_link = (f'<p><a href="{escape("/api/handles/" + quote(requested, safe="/"))}">'
                 "This record as JSON</a></p>")
    return _shell(f"{requested} (identifier)",
                  f"<h1>{escape(requested)}</h1>{follows}{table}{json_link}")


def missing_page(requested: str) -> bytes:
    """The page for an identifier that does not exist here."""
    return _shell(f"{requested}: not found",
                  f"<h1>Not found</h1><p>No identifier <strong>{escape(requested)}</strong> "
                  "is registered on this node. Check its spelling; an identifier is its "
                  "prefix, a slash, then its suffix (for example 88.100.7/ORDER-2024-0001).</p>")


def gone_page(requested: str, said: Mapping[str, Any]) -> bytes:
    """The page for a retired identifier: when and why (its tombstone)."""
    reason = said.get("reason") or ""
    why = f" Reason given: {escape(str(reason))}." if reason else ""
    return _shell(f"{requested}: retired",
                  f"<h1>{escape(requested)}</h1><p>This identifier was retired on "
                  f"{escape(str(said.get('retired') or 'an unknown date'))}.{why} It is kept, "
                  "and never given to another object.</p>")


def template_labels(template_values: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """Item type → description, from a template's own record (``idres.template``)."""
    for v in template_values:
        if v.get("type") != "idres.template":
            continue
        try:
            definition = orjson.loads((v.get("data") or {}).get("value") or "{}")
        except orjson.JSONDecodeError:
            return {}
        items = definition.get("items") if isinstance(definition, dict) else None
        return {str(i["type"]): str(i["description"]) for i in items or ()
                if isinstance(i, dict) and i.get("type") and i.get("description")}
    return {}


def linkset(base: str, requested: str, values: Sequence[Mapping[str, Any]],
            template: str | None) -> bytes:
    """The record's links as an RFC 9264 linkset: ``cite-as`` its URL on this node,
    ``describedby`` its Handle JSON, ``item`` each URL value (titled with its type and
    index), ``type`` the JSON Schema of its template."""
    path = quote(requested, safe="/")
    ctx: dict[str, Any] = {"anchor": f"{base}/{path}",
                           "cite-as": [{"href": f"{base}/{path}"}],
                           "describedby": [{"href": f"{base}/api/handles/{path}",
                                            "type": "application/json"}]}
    items = [{"href": v["data"]["value"], "title": f"{v.get('type')} (index {v.get('index')})"}
             for v in values if isinstance(v.get("data"), dict)
             and v["data"].get("format") == "string" and isinstance(v["data"].get("value"), str)
             and v["data"]["value"].startswith(("https://", "http://"))]
    if items:
        ctx["item"] = items
    alias = [v["data"]["value"] for v in values if v.get("type") == "HS_ALIAS"
             and isinstance(v.get("data"), dict) and isinstance(v["data"].get("value"), str)]
    if alias:
        ctx["successor-version"] = [{"href": base + _href(a)} for a in alias]
    if template:
        ctx["type"] = [{"href": f"{base}/api/schemas/{quote(template, safe='/')}",
                        "type": "application/schema+json"}]
    return orjson.dumps({"linkset": [ctx]})
