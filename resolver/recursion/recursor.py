"""Recursive resolution: follow referrals from the roots down to the authoritative node.

For each identifier not answered from the cache:

* start from the deepest delegation cached for its prefix (by the referral's TTL), else
  from the configured roots (whose key is configured: the trust anchor);
* ask the servers of the current zone in turn (``timeout`` each; a server that does not
  answer, or answers with a bad signature, is skipped: failover);
* every answer and referral must be signed by the key the parent zone named for that
  server (``?cert=true``); what does not verify is never cached;
* answers enter the answer cache by their TTL (negative ones for ``negative_ttl``) and a
  stale store; when every server of a zone is unreachable, a stale answer no older than
  ``stale_window`` is served, marked stale (as DNS resolvers do, RFC 8767);
* concurrent lookups of one identifier share one walk.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson

from resolver.cache import AnswerCache, Entry
from resolver.core import codec, signing
from resolver.core.delegation import Delegation, Server
from resolver.core.errors import IdresError, UpstreamUnavailable
from resolver.core.identifier import key_starts, parse
from resolver.recursion.walk import ROOT, Walk


@dataclass
class Result:
    public: bytes | None
    entry: Entry | None = None
    stale: bool = False
    trace: list[dict[str, Any]] = field(default_factory=list)


class Recursor:
    def __init__(self, roots: tuple[Server, ...], cache: AnswerCache, timeout: float = 2.0,
                 max_depth: int = 8, stale_window: float = 86400.0,
                 stale_entries: int = 100_000) -> None:
        if not roots:
            raise ValueError("recursion needs at least one root server")
        self.root = Delegation(ROOT, roots, 0)
        self.cache = cache
        self.timeout = timeout
        self.max_depth = max_depth
        self.stale_window = stale_window
        self.stale_entries = stale_entries
        self.delegations: dict[str, tuple[Delegation, float]] = {}
        self.stale: OrderedDict[str, tuple[bytes | None, float]] = OrderedDict()
        self._flights: dict[str, asyncio.Future[Result]] = {}
        self.session: aiohttp.ClientSession | None = None
        self.upstream_queries = 0
        self.stale_answers = 0

    async def start(self) -> None:
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=100, ttl_dns_cache=300),
            timeout=aiohttp.ClientTimeout(total=self.timeout))

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()

    def walking_under(self, prefixes: Sequence[str]) -> list[asyncio.Future[Result]]:
        """The walks in flight for identifiers under ``prefixes``."""
        starts = key_starts(prefixes)
        return [f for k, f in self._flights.items() if k.startswith(starts)]

    async def resolve(self, key: str, trace: bool = False) -> Result:
        """Resolve ``key`` through the hierarchy (see module docstring).

        :raises UpstreamUnavailable: no server answered and nothing stale is kept.
        :raises RecursionLimit: a referral loop or too deep a walk.
        :raises BadSignature: every server that answered failed verification.
        """
        flight = self._flights.get(key)
        if flight is not None and not trace:
            result = await asyncio.shield(flight)
            return Result(result.public, result.entry, result.stale, [{"coalesced": True}])
        fut: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._flights[key] = fut
        try:
            result = await self._walk(key)
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()
            raise
        finally:
            del self._flights[key]
        fut.set_result(result)
        return result

    def _start(self, key: str, hops: list[dict[str, Any]]) -> Delegation:
        now = time.monotonic()
        for p in parse(key).prefix.lineage():
            known = self.delegations.get(p.text)
            if known is not None:
                if known[1] > now:
                    hops.append({"delegation": p.text, "cache": "hit"})
                    return known[0]
                del self.delegations[p.text]
        return self.root

    async def _walk(self, key: str) -> Result:
        hops: list[dict[str, Any]] = []
        walk = Walk(key, self._start(key, hops), self.max_depth)
        while True:
            outcome = await self._ask_zone(walk, hops)
            if isinstance(outcome, Delegation):
                walk.on_referral(outcome)
                self.delegations[outcome.prefix] = (outcome, time.monotonic() + outcome.ttl)
                continue
            if outcome is None:  # every server unreachable
                kept = self.stale.get(key)
                if kept is not None and time.monotonic() - kept[1] <= self.stale_window:
                    self.stale_answers += 1
                    hops.append({"stale": True, "age_s": round(time.monotonic() - kept[1], 1)})
                    return Result(kept[0], None, True, hops)
                tried = ", ".join(s.url for s in walk.servers)
                raise UpstreamUnavailable(
                    f"no server of zone {walk.zone.prefix or 'root'} answered for {key} "
                    f"within {self.timeout:g} s (tried {tried})"
                )
            public = outcome
            ttl = None if public is None else codec.min_ttl(public)
            entry = self.cache.put(key, public, ttl)
            self.stale[key] = (public, time.monotonic())
            self.stale.move_to_end(key)
            while len(self.stale) > self.stale_entries:
                self.stale.popitem(last=False)
            return Result(public, entry, False, hops)

    async def _ask_zone(self, walk: Walk, hops: list[dict[str, Any]]) -> Delegation | bytes | None:
        """The first verified outcome from the zone's servers: a referral, answer bytes
        (or None inside a tuple for not found); None when no server could be reached."""
        bad: IdresError | None = None
        for server in walk.servers:
            started = time.perf_counter()
            hop: dict[str, Any] = {"server": server.url, "zone": walk.zone.prefix or "root"}
            hops.append(hop)
            try:
                outcome = await self._ask(server, walk.key)  # network op
            except IdresError as exc:
                hop.update(result=f"rejected: {exc.message}", verified=False)
                bad = exc
                continue
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                hop.update(result=f"unreachable: {type(exc).__name__}")
                continue
            finally:
                hop["ms"] = round((time.perf_counter() - started) * 1000, 2)
            hop["verified"] = True
            if isinstance(outcome, Delegation):
                hop["result"] = f"referral to {outcome.prefix}"
                return outcome
            hop["result"] = "answer" if outcome[0] is not None else "not found"
            return outcome[0]
        if bad is not None:
            raise bad
        return None

    async def _ask(self, server: Server, key: str) -> Delegation | tuple[bytes | None]:
        assert self.session is not None
        self.upstream_queries += 1
        url = f"{server.url}/api/handles/{quote(key, safe='/')}?cert=true&recursive=false"
        async with self.session.get(url) as resp:  # network op
            body = await resp.read()
            status = resp.status
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise signing.BadSignature(f"{server.url} answered HTTP {status} without JSON") from None
        sig = data.get("signature") if isinstance(data, dict) else None
        if not isinstance(sig, dict):
            raise signing.BadSignature(f"{server.url} answered HTTP {status} without a signature")
        now = int(time.time())
        if status == 300 and isinstance(data.get("referral"), dict):
            ref = data["referral"]
            statement = {"kind": "referral", "handle": key, **ref,
                         "iat": sig.get("iat"), "exp": sig.get("exp")}
            signing.verify(server.key, statement, str(sig.get("sig")), now)
            try:
                return Delegation.from_json(ref)
            except (ValueError, IdresError) as exc:
                raise signing.BadSignature(f"malformed referral from {server.url}: {exc}") from None
        if status in (200, 404):
            values = data.get("values") if status == 200 else None
            statement = {"kind": "answer", "handle": key, "values": values,
                         "iat": sig.get("iat"), "exp": sig.get("exp")}
            signing.verify(server.key, statement, str(sig.get("sig")), now)
            return (None if values is None else orjson.dumps(values),)
        raise signing.BadSignature(f"{server.url} answered HTTP {status}: {body[:200]!r}")


async def resolve_verified(handle: str, roots: tuple[Server, ...], timeout: float = 2.0,
                           max_depth: int = 8) -> Result:
    """Resolve one identifier from ``roots`` down, verifying every referral and the
    answer against the keys the chain names (a client-side recursive resolution).

    :raises BadSignature, UpstreamUnavailable, RecursionLimit: see :meth:`Recursor.resolve`.
    """
    recursor = Recursor(roots, AnswerCache(max_entries=0), timeout, max_depth, stale_window=0)
    await recursor.start()
    try:
        return await recursor.resolve(parse(handle).key, trace=True)
    finally:
        await recursor.close()
