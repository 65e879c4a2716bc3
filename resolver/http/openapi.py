"""The API description: OpenAPI 3.1 at ``GET /api/openapi.json``, made from the running
application itself, so it cannot drift from what is served.

* the paths and methods: the application's router (every route of the resolver and the
  registry), path parameters from its patterns;
* what each operation does: the first line of its handler's docstring;
* request bodies: the msgspec types the handlers decode them with (``@takes`` of
  resolver/core/described.py puts the type on the handler that calls ``msgspec.convert``
  with it: one definition validates and describes), their JSON Schema made by
  ``msgspec.json.schema_components``;
* query parameters: ``@takes`` too (name, JSON Schema, required);
* answers: the Handle JSON message every route answers with (``responseCode`` first, then
  ``handle``, ``message`` and the route's fields); the proxy path also answers redirects,
  an HTML page and an RFC 9264 linkset.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import Any

import msgspec
from aiohttp import web

from resolver import __version__

_PARAM = re.compile(r"\{(\w+)(?::[^}]*)?\}")
MESSAGE = {"type": "object", "required": ["responseCode"],
           "properties": {"responseCode": {"type": "integer"}, "handle": {"type": "string"},
                          "message": {"type": "string"}}}
JSON_ANSWER = {"description": "Handle JSON: responseCode 1 (or 200 with no values) on "
               "success, the Handle error code and a message otherwise",
               "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Message"}}}}


def _operation(method: str, path: str, handler: Callable[..., Any],
               bodies: dict[str, Any]) -> dict[str, Any]:
    meta: dict[str, Any] = getattr(handler, "__openapi__", {"body": None, "query": {},
                                                            "auth": "optional"})
    doc = inspect.getdoc(handler) or handler.__name__.replace("_", " ")
    op: dict[str, Any] = {
        "operationId": method.lower() + re.sub(r"[^A-Za-z0-9]+", "_", path)
        + ("slash" if path.endswith("/") else ""),
        "summary": doc.splitlines()[0][:120], "tags": [path.split("/")[2] if
                                                        path.startswith("/api/") else "resolve"],
        "parameters": [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                       for p in _PARAM.findall(path)]
        + [{"name": name, "in": "query", "required": required, "schema": schema}
           for name, (schema, required) in meta["query"].items()],
        "responses": {"default": JSON_ANSWER}}
    if meta.get("answer") is not None:
        op["responses"]["200"] = {"description": "the answer", "content": {
            "application/json": {"schema": meta["answer"]}}}
    if meta["body"] is not None:
        name = getattr(meta["body"], "__name__", "Body")
        bodies[name] = meta["body"]
        op["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": {"$ref": f"#/components/schemas/{name}"}}}}
    if meta["auth"] != "none":
        op["security"] = [{"bearer": []}, {"basic": []}] + (
            [{}] if meta["auth"] == "optional" else [])
    if path == "/{handle}":
        op["responses"].update({
            "301": {"description": "a replaced identifier: to its successor"},
            "302": {"description": "to the record's first URL value"},
            "410": {"description": "a retired identifier: its tombstone"}})
    return op


def build(app: web.Application) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``app``'s routes."""
    paths: dict[str, dict[str, Any]] = {}
    bodies: dict[str, Any] = {}
    for route in app.router.routes():
        method = route.method.upper()
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or _PARAM.sub(lambda m: "{" + m.group(1) + "}",
                                              info.get("formatter", ""))
        if method in ("HEAD", "OPTIONS", "*") or not path:
            continue
        paths.setdefault(path, {})[method.lower()] = _operation(method, path, route.handler,
                                                                bodies)
    _, components = msgspec.json.schema_components(
        list(bodies.values()), ref_template="#/components/schemas/{name}")
    return {
        "openapi": "3.1.0",
        "info": {"title": "idres", "version": __version__,
                 "description": "Identifier resolution and registry, compatible with the "
                                "Handle.Net REST API (README.md, docs/)."},
        "paths": dict(sorted(paths.items())),
        "components": {"schemas": {"Message": MESSAGE, **components},
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                                           "basic": {"type": "http", "scheme": "basic"}}}}


async def openapi(request: web.Request) -> web.Response:
    """The API description (OpenAPI 3.1)."""
    return web.json_response(build(request.app))
