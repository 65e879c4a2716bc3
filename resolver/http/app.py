"""The aiohttp application: routes, the error middleware, /metrics. No business logic."""

from __future__ import annotations

import asyncio
import logging
import time
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web
from aiohttp.web_exceptions import NotAppKeyWarning
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry

from resolver import __version__, reply
from resolver.native.tunnel import TUNNEL, Tunnel, tunnel
from resolver.config import Settings
from resolver.core import params, signing
from resolver.core.errors import (
    BadRequest,
    IdresError,
    MethodNotAllowed,
    NoSuchEndpoint,
    PayloadTooLarge,
    ServiceUnavailable,
    UnsupportedMediaType,
)
from resolver.core.site import site_info
from resolver.http import batch, handles
from resolver.http.keys import (
    LISTENER,
    METRICS,
    POOL,
    READ_AUTH,
    READ_LOG,
    RESOLVER,
    SETTINGS,
    SIGNER,
    TRAFFIC,
    ReadAuth,
)
from resolver.http.openapi import openapi
from resolver.http.respond import respond
from resolver.metrics import exposition
from resolver.lookup import Resolver
from resolver.sharing import ReadLog
from resolver.store import DATABASE_DOWN
from resolver.traffic import Traffic, request_id

log = logging.getLogger("idres.http")
# request["handle"] (the identifier a request is about, for its error replies and the
# access log) is set by the registry's handlers and read here; a str key serves both
# without either importing the other, so aiohttp's advice to use web.RequestKey, a
# warning the first time a process sets it, is not taken
warnings.filterwarnings("ignore", category=NotAppKeyWarning)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# aiohttp's own refusals under /api, as errors of the table
_HTTP_ERRORS: dict[int, type[IdresError]] = {
    400: BadRequest, 404: NoSuchEndpoint, 405: MethodNotAllowed, 413: PayloadTooLarge,
    415: UnsupportedMediaType,
}


def _error(request: web.Request, exc: IdresError) -> web.Response:
    # echo the identifier as decoded by the handler, else as the router matched it
    handle = request.get("handle") or request.match_info.get("handle")
    response = respond(reply.error(exc, handle))
    challenge = request.app.get("www_authenticate") if exc.http_status == 401 else None
    if challenge is not None:   # (the registry's: a Handle challenge-response session)
        response.headers.add("WWW-Authenticate", challenge(request))
    return response


def error_middleware(traffic: Traffic) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        echo, request["request_id"] = request_id(
            request.headers.get("X-Request-ID", "").encode("latin-1", "replace") or None)
        status = 500
        try:
            response = await _answer(request, handler)
            status = response.status
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            resource = request.match_info.route.resource
            traffic.route(resource.canonical if resource is not None else "unmatched",
                          request.method.encode()).observe(str(status).encode(),
                                                           time.perf_counter() - started)
        if echo is not None:
            response.headers["X-Request-ID"] = echo.decode()
        return response

    return middleware


async def _answer(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The handler's answer, or the Handle JSON of its error."""
    try:
        response = await handler(request)
    except IdresError as exc:
        response = _error(request, exc)
    except web.HTTPRequestEntityTooLarge:
        response = _error(request, PayloadTooLarge())
    except web.HTTPException as exc:
        kind = _HTTP_ERRORS.get(exc.status)
        if kind is None or not request.path.startswith("/api"):
            raise
        message = "no such endpoint" if exc.status == 404 else exc.reason
        response = _error(request, kind(message))
    except DATABASE_DOWN as exc:
        log.warning("database unavailable: %s: %s", type(exc).__name__, exc)
        response = _error(request, ServiceUnavailable())
    except Exception:
        # a defect: the log has the traceback; the client, Handle JSON that says so
        # and nothing of the server's insides
        log.exception("internal error answering %s %s", request.method, request.path)
        response = _error(request, IdresError("internal error (the server's log says more)"))
    return _pretty(request, response)


async def _common_headers(request: web.Request, response: web.StreamResponse) -> None:
    """On every aiohttp response what the fast path's replies carry (Server, CORS)."""
    response.headers["Server"] = reply.SERVER[1]
    for name, value in reply.CORS:
        response.headers.setdefault(name, value)


def _pretty(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    """``?pretty``: a JSON body indented by two spaces, as the Handle.Net server does."""
    if "pretty" not in request.rel_url.query or not isinstance(response, web.Response) \
            or response.content_type != "application/json" \
            or not isinstance(response.body, bytes) or not response.body:
        return response
    try:
        if not params.flag("pretty", request.rel_url.query.getall("pretty"), False):
            return response
    except IdresError:
        return response
    headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
    return web.Response(body=orjson.dumps(orjson.loads(response.body),
                                          option=orjson.OPT_INDENT_2),
                        status=response.status, headers=headers)


async def preflight(request: web.Request) -> web.Response:
    """``OPTIONS`` on any path: a CORS preflight (with ``Origin``) gets the methods and
    headers a browser application may use; a plain OPTIONS the ``Allow`` list."""
    if "Origin" in request.headers:
        return web.Response(status=200, headers=reply.PREFLIGHT)
    return web.Response(status=200, headers={"Allow": "GET, HEAD, POST, PUT, DELETE, OPTIONS"})


async def site(request: web.Request) -> web.Response:
    """``GET /api/site``: this node's site information, in the Handle.Net server's shape."""
    settings = request.app[SETTINGS]
    address = settings.host
    if address in ("0.0.0.0", "::", ""):  # bound everywhere: the address this request reached
        sock = request.transport.get_extra_info("sockname") if request.transport else None
        address = str(sock[0]) if sock else "127.0.0.1"
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    port = int(sockname[1]) if sockname else settings.port
    info = site_info(settings.site_address or address, port, settings.tls_cert is not None,
                     signing.public_key_text(request.app[SIGNER]), f"idres {__version__}",
                     handle_port=settings.handle_port)
    return respond(reply.message(200, 1, site=info))


async def index(request: web.Request) -> web.Response:
    return respond(reply.message(200, 1, service="idres", version=__version__,
                                 api="/api/handles/{prefix}/{suffix}"))


async def node_info(request: web.Request) -> web.Response:
    """This node: its public key (for the parent's delegation) and its role."""
    resolver = request.app[RESOLVER]
    return respond(reply.message(
        200, 1, publicKey=signing.public_key_text(request.app[SIGNER]), version=__version__,
        recursive=resolver.recursive, roots=[s.to_json() for s in resolver.recursor.root.servers]
        if resolver.recursor else []))


def cache_state(request: web.Request) -> tuple[str, str | None]:
    """("on" | "off", why it is off): "disabled" by configuration, or the invalidation
    listener's state ("disconnected": no LISTEN connection; "lapsed": connected but its
    heartbeat is late, so the cache's lease ran out)."""
    cache = request.app[RESOLVER].cache
    if not cache.enabled:
        return "off", "disabled"
    if cache.usable():
        return "on", None
    listener = request.app.get(LISTENER)
    return "off", listener.state if listener is not None else "no listener"


async def health(request: web.Request) -> web.Response:
    """``GET /healthz`` for load balancers and container health checks: 503 when the
    database does not answer within 2 s (the process still answers from its cache,
    marked stale); 200 with ``status`` "degraded" while the cache is off for another
    reason than the configuration (invalidations not proven received), else "ok"."""
    cache, why = cache_state(request)
    fields: dict[str, Any] = {"cache": cache} if why is None else {"cache": cache, "reason": why}
    try:
        # shielded: on a silent connection, cancelling the query can itself hang
        await asyncio.wait_for(asyncio.shield(request.app[POOL].fetchval("SELECT 1")),
                               2)  # network op
    except DATABASE_DOWN:
        return respond(reply.message(503, 3, status="unavailable", database="unreachable",
                                     **fields))
    status = "degraded" if why not in (None, "disabled") else "ok"
    replicas = request.app[RESOLVER].replicas
    if replicas is not None:   # a replica down: its reads go to the primary, degraded
        described = replicas.describe()
        fields["replicas"] = described
        if any(not r["up"] and not r["primary"] for r in described):
            status = "degraded"      # (a standby promoted is the primary now, not broken)
    return respond(reply.message(200, 1, status=status, database="ok", **fields))


async def metrics(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    body = exposition(request.app[METRICS], settings.metrics_dir, settings.worker)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def build_app(
    settings: Settings, resolver: Resolver, collector: CollectorRegistry, signer: Any,
    registry_routes: Callable[[web.Application], None] | None = None,
    read_auth: ReadAuth | None = None,
    read_log: ReadLog | None = None,
) -> web.Application:
    """Assemble the application: resolution routes, then the registry's, then the proxy."""
    traffic = Traffic()
    app = web.Application(
        middlewares=[error_middleware(traffic)],
        client_max_size=settings.max_bulk_bytes,
    )
    app.on_response_prepare.append(_common_headers)
    app[SETTINGS] = settings
    app[POOL] = resolver.pool
    app[RESOLVER] = resolver
    app[SIGNER] = signer
    app.router.add_get("/api/node", node_info)
    app.router.add_get("/api/site", site)
    app.router.add_route("OPTIONS", r"/{any:[\s\S]*}", preflight)
    app[METRICS] = collector
    app[TRAFFIC] = traffic
    app[READ_AUTH] = read_auth or handles.anonymous_reads_only
    app[READ_LOG] = read_log or handles.no_read_log
    app.router.add_get("/", index)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", health)
    app.router.add_get(r"/api/handles/{handle:[\s\S]+}", handles.get_handle)
    app.router.add_post("/api/resolve", batch.resolve_batch)
    app.router.add_get("/api/openapi.json", openapi)
    if registry_routes is not None:
        registry_routes(app)
    app[TUNNEL] = Tunnel()   # HDL over HTTP, once the native protocol is on (resolver/node.py)
    app.router.add_get(r"/{handle:[\s\S]+}", handles.proxy)
    app.router.add_post(r"/{handle:[\s\S]+}", tunnel)
    return app
