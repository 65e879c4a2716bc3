"""What every registry handler needs: its context, the caller, the body."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from aiohttp import web

from registry.accounts import authenticate, authenticate_reader
from registry.bearers import Bearers
from registry.sitehandles import Site
from registry.permissions import Principal
from registry.sharing import refuse_reader, view_of
from registry.store import Db
from registry.store.group import WriteGroups
from resolver.core import codec
from resolver.core.channel import CommitSync, NoSync
from resolver.core.errors import AuthenticationFailed, AuthenticationNeeded, ServiceUnavailable
from resolver.core.identifier import Identifier, parse_raw
from resolver.core.sharing import View

JSON = "application/json"
# reads a request body within a byte limit (and checks its media type): the node's
BodyReader = Callable[[web.Request, int], Awaitable[bytes]]


@dataclass(frozen=True)
class RegistryContext:
    """Everything the registry gets from the node that mounts it."""

    pool: asyncpg.Pool
    max_body_bytes: int
    max_bulk_bytes: int
    max_bulk_records: int
    read_body: BodyReader
    sync: CommitSync = NoSync()
    # awaits a database read for at most the node's --db-timeout (TimeoutError after);
    # reads are not bounded without it
    bounded: Callable[[Awaitable[Any]], Awaitable[Any]] = lambda aw: aw
    # whole-record writes of this node, committed in groups (registry/store/group.py)
    groups: WriteGroups = field(default_factory=WriteGroups)
    # bearer tokens of one loop turn looked up together (registry/bearers.py)
    bearers: Bearers | None = None
    # signs the challenges of "Authorization: Handle" (registry/challenges.py); the node
    # derives it from its key, so that every worker checks the others' challenges
    session_key: bytes = b""
    seal_key: bytes = b""       # (registry/secrets.py seal, also derived from the node's key)
    # this node's site, once its ports are open (registry/sitehandles.py)
    site: Site = field(default_factory=Site)

    def __post_init__(self) -> None:
        if self.bearers is None:
            object.__setattr__(self, "bearers", Bearers(self.pool))

    @property
    def db(self) -> Db:
        return Db(self.pool, self.sync, self.groups, self.seal_key)


REGISTRY = web.AppKey("registry", RegistryContext)


def context(request: web.Request) -> RegistryContext:
    return request.app[REGISTRY]


async def json_body(request: web.Request, limit: int) -> Any:
    """The request body as JSON, at most ``limit`` bytes.

    :raises PayloadTooLarge, UnsupportedMediaType, BadRequest: from the reader and parser.
    """
    return codec.parse_json(await context(request).read_body(request, limit))  # network op


async def principal(request: web.Request) -> Principal:
    """The authenticated caller.

    :raises AuthenticationNeeded: no credentials (HTTP 401, responseCode 402).
    :raises AuthenticationFailed: wrong or malformed credentials (HTTP 403).
    """
    header = request.headers.get("Authorization")
    if not header:
        raise AuthenticationNeeded(
            "this operation needs credentials: HTTP Basic with INDEX:HANDLE and the secret, "
            "or Authorization: Bearer <token>"
        )
    if header[:7].lower() == "handle ":
        from registry.api import sessions  # (it imports this module)
        return await sessions.authenticate(request, header)  # network op
    try:
        ctx = context(request)
        return await authenticate(ctx.pool, header, ctx.bearers)  # network op
    except AuthenticationFailed:
        reader = await authenticate_reader(context(request).pool, header)  # network op
        if reader is not None:
            raise refuse_reader(reader) from None
        raise


def identifier(request: web.Request) -> tuple[str, Identifier]:
    """(identifier as written, parsed) from ``/api/handles/<raw>``; remembered for errors."""
    text, ident = parse_raw(request.rel_url.raw_path[len("/api/handles/"):])
    request["handle"] = text
    return text, ident


def ok(status: int = 200, handle: str | None = None, **fields: object) -> web.Response:
    return web.Response(body=codec.encode_message(1, handle, **fields), status=status,
                        content_type=JSON, charset="utf-8")


async def read_view(request: web.Request, ident: Identifier | None) -> View:
    """Read hook for the resolver: what the credentials of a read may see of ``ident``
    (None: of any identifier, for a batch). An operator sees everything readable under
    the prefixes it owns; any other operator or a reader (application identity) the
    public values and the shared values its grants cover. Wrong, revoked or expired
    credentials are an error (401); a database that does not answer within the node's
    --db-timeout, 503."""
    ctx = context(request)
    try:
        view: View = await ctx.bounded(_view(ctx.pool, request.headers.get("Authorization", ""),
                                             ctx.bearers))
    except TimeoutError:
        raise ServiceUnavailable() from None
    return view


async def _view(pool: asyncpg.Pool, header: str, bearers: Bearers | None) -> View:
    try:
        who = await authenticate(pool, header, bearers)  # network op
    except AuthenticationFailed:
        reader = await authenticate_reader(pool, header)  # network op
        if reader is None:
            raise
        async with pool.acquire() as conn:
            return await view_of(conn, f"reader:{reader}")  # network op
    async with pool.acquire() as conn:
        return await view_of(conn, f"operator:{who.name}", who)  # network op
