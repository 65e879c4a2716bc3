"""Typed application state (aiohttp AppKey)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client import CollectorRegistry

from resolver.config import Settings
from resolver.core.identifier import Identifier
from resolver.core.sharing import View
from resolver.invalidate import Invalidator
from resolver.lookup import Resolver
from resolver.sharing import ReadLog
from resolver.traffic import Traffic

POOL = web.AppKey("pool", asyncpg.Pool)
RESOLVER = web.AppKey("resolver", Resolver)
SIGNER = web.AppKey("signer", Ed25519PrivateKey)  # the node's key: signed answers
SETTINGS = web.AppKey("settings", Settings)
METRICS = web.AppKey("metrics", CollectorRegistry)
TRAFFIC = web.AppKey("traffic", Traffic)  # every request, by route (resolver/traffic.py)
LISTENER = web.AppKey("listener", Invalidator)  # set by the node: the cache's lease keeper
# credentials on a read → what may the caller see of the identifier (None: of any, for a
# batch)? The registry supplies it (resolver/core/sharing.py says what a View is)
ReadAuth = Callable[[web.Request, Identifier | None], Awaitable[View]]
READ_AUTH: web.AppKey[ReadAuth] = web.AppKey("read_auth")
# after a read that showed shared values to a party: the read log (resolver/sharing.py
# ReadLog; the node supplies it)
READ_LOG: web.AppKey[ReadLog] = web.AppKey("read_log")
