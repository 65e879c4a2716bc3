"""Composition root: builds one idres process (database, pool, HTTP app, registry).

This and ``resolver/cli.py`` are the only resolver modules that import ``registry``.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import signal
import ssl
from functools import partial
from typing import Any

import asyncpg
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from aiohttp import web
from prometheus_client import CollectorRegistry

from registry import readlog, templates
from registry.api.common import RegistryContext, read_view
from registry.metrics import RegistryCollector
from registry.api.routes import add_routes
from resolver import metrics, usage
from resolver.cache import AnswerCache
from resolver.coalesce import within
from resolver import __version__
from resolver.config import Settings, StartupError
from resolver.core.delegation import Server, Zone
from resolver.core.identifier import Identifier
from resolver.core.signing import derived_key, public_key_text
from resolver.http.app import build_app
from resolver.http.body import read_body
from resolver.http.fast import FastHTTP
from resolver.http.fast_context import FastContext
from resolver.http.handler import BadInputLog, RequestHandler
from resolver.http.keys import LISTENER, TRAFFIC
from resolver.invalidate import Invalidator
from resolver.keys import load_or_create, load_or_create_rsa
from resolver.lookup import Resolver
from resolver.pg.pool import create_pool, database, migrate_dsn, redact
from resolver.replicas import Replicas
from resolver.core.hsdata import b64u, site_bytes
from resolver.core.site import native_site, site_info
from registry import sitehandles
from registry.native import NativeWrites
from resolver.native.admin import Administration
from resolver.native.tunnel import TUNNEL
from resolver.native.server import Native, NativeContext, NativeTCP, NativeUDP
from resolver.protocol.server import BinaryContext, BinaryProtocol
from resolver.recursion.recursor import Recursor
from resolver.traffic import ACCESS, AiohttpAccess

log = logging.getLogger("idres")


class Node:
    """One process: pool, cache, resolver, invalidation listener, HTTP application."""

    def __init__(self, settings: Settings, dsn: str, pool: asyncpg.Pool) -> None:
        self.settings = settings
        self.cache = AnswerCache(settings.cache_entries, settings.cache_bytes,
                                 settings.cache_max_ttl, settings.negative_ttl,
                                 stale_window=settings.stale_window,
                                 max_negative=settings.negative_entries)
        self.key = load_or_create(settings.key_file or settings.data_dir / "node_ed25519.pem")
        self.recursor = None
        if settings.roots:
            roots = tuple(Server(url.rstrip("/"), key)
                          for url, key in zip(settings.roots, settings.root_keys))
            self.recursor = Recursor(roots, settings.upstream_timeout, settings.max_depth)
        self.replicas = None
        if settings.replicas:     # misses read from replicas (resolver/replicas.py)
            cache = self.cache
            wait = min(1.0, settings.db_timeout / 2)
            self.replicas = Replicas(
                pool, settings.replicas, lambda: cache.clock() < cache.lease_until,
                lambda d: create_pool(d, 1, settings.pool_max, timeout=wait), wait,
                names=[redact(d) for d in settings.replicas])
        self.resolver = Resolver(pool, self.cache, Zone(), self.recursor, settings.recursive,
                                 self.key, settings.db_timeout, self.replicas)
        self.invalidator = Invalidator(dsn, self.resolver, settings.lease)
        if self.replicas is not None:
            self.invalidator.gate = self.replicas.gate
        cache = self.resolver.cache
        templates.PUBLISHED.usable = lambda: (cache.usable(), cache.epoch)
        self.invalidator.hooks += [self.resolver.sharing.on_keys, templates.PUBLISHED.forget]
        self.collector = CollectorRegistry()
        metrics.register(self.collector, self.resolver, self.invalidator)
        ctx = RegistryContext(pool, settings.max_body_bytes, settings.max_bulk_bytes,
                              settings.max_bulk_records, read_body, sync=self.invalidator,
                              bounded=lambda aw: within(aw, settings.db_timeout),
                              session_key=derived_key(self.key, b"idres http sessions"),
                              seal_key=derived_key(self.key, b"idres secret keys"))
        self.registry = ctx
        self.collector.register(RegistryCollector(ctx))
        self.read_log = partial(readlog.record, pool)   # (party, reads): every front end's
        self.app = build_app(settings, self.resolver, self.collector, self.key,
                             lambda app: add_routes(app, ctx), read_view, self.read_log)
        self.app[LISTENER] = self.invalidator
        # the native protocol's writes go through the registry (resolver/native/admin.py)
        self.native_admin = Administration(NativeWrites(ctx.db))
        self.counting: asyncio.Task[None] | None = None
        self.collector.register(metrics.TrafficCollector(self.app[TRAFFIC]))

    async def start(self) -> None:
        await self.invalidator.start()   # loads the zone too
        if self.replicas is not None:
            await self.replicas.start()
        self.counting = asyncio.get_running_loop().create_task(self._count())
        self.resolver.sharing.load_soon()  # readers and grants, for authorized answers
        if self.recursor is not None:
            await self.recursor.start()

    def _homed(self, ident: Identifier) -> bool:
        return self.resolver.zone.classify(ident.prefix)[0] == "local"

    async def _count(self) -> None:
        """Resolution counts to the database every few seconds (resolver/usage.py)."""
        while True:
            await asyncio.sleep(self.settings.stats_flush)
            await usage.flush(self.resolver.usage, self.resolver.pool, self._homed)

    async def close(self) -> None:
        if self.counting is not None:
            self.counting.cancel()
        await usage.flush(self.resolver.usage, self.resolver.pool, self._homed)
        await self.invalidator.close()
        if self.replicas is not None:
            await self.replicas.close()
        if self.recursor is not None:
            await self.recursor.close()


def _ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """:raises StartupError: the certificate or key cannot be read or do not match."""
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(settings.tls_cert, settings.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise StartupError(f"cannot load the TLS certificate {settings.tls_cert} with the key "
                           f"{settings.tls_key}: {exc}") from None
    return ctx


async def _listen(what: str, factory: Any, host: str, port: int, reuse_port: bool,
                  tls: ssl.SSLContext | None = None) -> asyncio.Server:
    """:raises StartupError: naming the address and why it cannot be bound."""
    try:
        return await asyncio.get_running_loop().create_server(
            factory, host, port, ssl=tls, backlog=1024, reuse_port=reuse_port)
    except OSError as exc:
        why = {errno.EADDRINUSE: "the port is already in use (another idres, or another "
                                 "program): choose another",
               errno.EACCES: "permission denied (ports under 1024 need privileges)",
               errno.EADDRNOTAVAIL: "this machine has no such address"}.get(
                   exc.errno or 0, exc.strerror or str(exc))
        raise StartupError(f"cannot listen for {what} on {host}:{port}: {why}") from None


def _tune_gc() -> None:
    """Keep the collector off the request path: everything built at start-up is frozen
    out of collection, and generation 0 collects after 100k allocations rather than
    700, since a bulk request allocates hundreds of thousands of short-lived dicts
    (measured: parsing 10k records took 0.25 s with the defaults, 0.15 s with these)."""
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)


async def _sweep(fast: FastContext, node: Node) -> None:
    settings = node.settings
    while True:
        await asyncio.sleep(1)
        fast.sweep()
        fast.resolver.coalescer.sweep()
        if settings.metrics_dir is not None:    # --workers: what a scrape of another reads
            try:
                metrics.snapshot(node.collector, settings.metrics_dir, settings.worker)
            except OSError as exc:
                log.warning("cannot write this worker's metrics: %s", exc)


class Listeners:
    """A node's open ports: HTTP (every connection starts on the fast path, aiohttp takes
    the rest) and, when configured, the binary protocol."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.runner = web.AppRunner(node.app, handle_signals=False, access_log_class=AiohttpAccess,
                                    access_log=ACCESS.logger if node.settings.access_log else None,
                                    shutdown_timeout=10)
        self.fast: FastContext | None = None
        self.http: asyncio.Server | None = None
        self.binary: asyncio.Server | None = None
        self.bctx: BinaryContext | None = None
        self.native: tuple[asyncio.Server, asyncio.DatagramTransport] | None = None
        self.nctx: NativeContext | None = None
        self.sweeper: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        """The HTTP port (the one the kernel chose when the settings say 0)."""
        assert self.http is not None
        return int(self.http.sockets[0].getsockname()[1])

    @property
    def binary_port(self) -> int:
        assert self.binary is not None
        return int(self.binary.sockets[0].getsockname()[1])

    async def open(self, binary_port: int | None = None) -> None:
        """Bind the ports (``binary_port``: the settings' unless given; 0 picks one)."""
        settings, node, loop = self.node.settings, self.node, asyncio.get_running_loop()
        await self.runner.setup()
        server = self.runner.server
        assert server is not None
        bad_input = BadInputLog()
        access = ACCESS.logger if settings.access_log else None

        def handed_over() -> RequestHandler:
            return RequestHandler(server, loop=loop, head_timeout=settings.head_timeout,
                                  bad_input=bad_input, access_log_class=AiohttpAccess,
                                  access_log=access, keepalive_timeout=75)

        fast = self.fast = FastContext(node.resolver, handed_over,
                                       head_timeout=settings.head_timeout, bad_input=bad_input,
                                       read_log=node.read_log, traffic=node.app[TRAFFIC],
                                       access=ACCESS if settings.access_log else None)
        self.http = await _listen("HTTP (--port)", lambda: FastHTTP(fast), settings.host,
                                  settings.port, settings.workers > 1, _ssl_context(settings))
        self.sweeper = loop.create_task(_sweep(fast, node))
        port = settings.binary_port if binary_port is None else binary_port
        if port or binary_port == 0:
            bctx = self.bctx = BinaryContext(node.resolver, settings.max_frame_bytes,
                                             node.read_log)
            self.binary = await _listen("the binary protocol (--binary-port)",
                                        lambda: BinaryProtocol(bctx), settings.host, port,
                                        settings.workers > 1)
        if settings.handle_port:
            await self._open_native(settings.handle_port)
        node.collector.register(metrics.FrontCollector(fast, self.bctx, self.nctx))

    @property
    def handle_port(self) -> int:
        assert self.native is not None
        return int(self.native[0].sockets[0].getsockname()[1])

    async def _open_native(self, port: int) -> None:
        """The Handle native protocol, TCP and UDP on one port (resolver/native/)."""
        settings, node = self.node.settings, self.node
        address = settings.site_address or (
            settings.host if settings.host not in ("0.0.0.0", "::", "") else "127.0.0.1")
        info = site_info(address, self.port, settings.tls_cert is not None,
                         public_key_text(node.key), f"idres {__version__}", handle_port=port)
        key = load_or_create_rsa(settings.key_file.with_suffix(".rsa.pem") if settings.key_file
                                 else settings.data_dir / "node_rsa.pem")
        numbers = key.public_key().public_numbers()
        site = native_site(info, {"kty": "RSA", "n": b64u(numbers.n), "e": b64u(numbers.e)})
        node.registry.site.value = site   # (prefix handles name it)

        def signer(data: bytes) -> tuple[str, bytes]:
            return "SHA-256", key.sign(data, padding.PKCS1v15(), hashes.SHA256())

        ctx = self.nctx = NativeContext(node.resolver, site_bytes(site), signer=signer,
                                        admin=node.native_admin)
        node.native_admin.signer = signer
        native = node.app[TUNNEL].native = Native(ctx)   # (HDL over HTTP too)
        tcp = await _listen("the Handle protocol (--handle-port)", lambda: NativeTCP(native),
                            settings.host, port, settings.workers > 1)
        try:
            udp, _ = await asyncio.get_running_loop().create_datagram_endpoint(
                lambda: NativeUDP(native), (settings.host, port),
                reuse_port=settings.workers > 1 or None)
        except OSError as exc:
            tcp.close()
            raise StartupError(f"cannot listen for the Handle protocol over UDP on "
                               f"{settings.host}:{port}: {exc.strerror or exc}") from None
        self.native = (tcp, udp)

    async def close(self) -> None:
        """Stop taking connections, let in-flight requests finish, close everything."""
        if self.http is not None:
            self.http.close()
        if self.sweeper is not None:
            self.sweeper.cancel()
        if self.native is not None and self.nctx is not None:
            self.native[0].close()
            self.native[1].close()
            for conn in list(self.nctx.connections):
                conn.transport.close()
        if self.binary is not None and self.bctx is not None:
            self.binary.close()
            for conn in list(self.bctx.connections):
                conn.close()
        if self.fast is not None:
            await self.fast.drain(timeout=10)
        await self.runner.cleanup()


async def serve(settings: Settings) -> None:
    """Run until SIGINT or SIGTERM, then finish in-flight requests and stop cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    where = "the DSN given" if settings.dsn else f"embedded PostgreSQL in {settings.data_dir}"
    async with database(settings.dsn, settings.data_dir, create=True) as dsn:
        log.info("database: %s (%s)", redact(dsn), where)
        applied = await migrate_dsn(dsn, settings.case_sensitive)
        if applied:
            log.info("schema migrated: %s", ", ".join(applied))
        pool = await create_pool(dsn, settings.pool_min, settings.pool_max)
        node = Node(settings, dsn, pool)
        await node.start()
        listeners = Listeners(node)
        try:
            await listeners.open()
            _tune_gc()
            if listeners.binary is not None:
                log.info("binary protocol on %s:%d", settings.host, listeners.binary_port)
            if listeners.native is not None:
                log.info("Handle protocol on %s:%d (TCP and UDP)", settings.host,
                         listeners.handle_port)
                if settings.worker == 0:   # (one process writes them)
                    written = await sitehandles.sync(node.registry.db, node.registry.site)
                    log.info("prefix handles (0.NA/...) written: %d", written)
            scheme = "https" if settings.tls_cert else "http"
            log.info("idres listening on %s://%s:%d", scheme, settings.host, listeners.port)
            log.info("node key %s%s", public_key_text(node.key),
                     f"; recursive from {', '.join(settings.roots)}" if settings.recursive else "")
            if settings.tls_cert is None and settings.host not in ("127.0.0.1", "localhost", "::1"):
                log.warning("serving writes over plain HTTP on %s: credentials travel in clear; "
                            "use --tls-cert/--tls-key or a TLS proxy", settings.host)
            await stop.wait()
            log.info("shutting down: finishing in-flight requests")
        finally:
            await listeners.close()
            await node.close()
            await pool.close()
    log.info("stopped")
