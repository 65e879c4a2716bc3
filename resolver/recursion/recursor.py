"""Recursive resolution: follow referrals from the roots down to the authoritative node.

For each identifier the answer cache could not answer (``resolver/lookup.py`` asks,
``resolver/coalesce.py`` shares concurrent walks and caches their outcome):

* start from the deepest delegation cached for its prefix (by the referral's TTL), else
  from the configured roots (whose key is configured: the trust anchor);
* ask the servers of the current zone in turn (``timeout`` each; a server that does not
  answer, or answers with a bad signature, is skipped: failover);
* every answer and referral must be signed by the key the parent zone named for that
  server (``?cert=true``); what does not verify is never used;
* a verified answer is definitive, whether it holds values, no public value or says
  that the identifier does not exist: only when no server of a zone can be reached at
  all does the walk fail with :class:`UpstreamUnavailable`, which is when the resolver
  may serve a stale answer (RFC 8767).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson

from resolver.core import signing
from resolver.core.delegation import Delegation, Server
from resolver.core.errors import IdresError, UpstreamUnavailable
from resolver.core.identifier import parse
from resolver.recursion.walk import ROOT, Walk

Hops = list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Answered:
    """A verified answer of the authoritative node: the public values, or None when it
    says the identifier does not exist."""

    public: bytes | None


@dataclass
class Walked:
    """The outcome of :func:`resolve_verified`: the public values (None: not found) and
    every hop taken."""

    public: bytes | None
    trace: Hops = field(default_factory=list)


class Recursor:
    def __init__(self, roots: tuple[Server, ...], timeout: float = 2.0,
                 max_depth: int = 8) -> None:
        if not roots:
            raise ValueError("recursion needs at least one root server")
        self.root = Delegation(ROOT, roots, 0)
        self.timeout = timeout
        self.max_depth = max_depth
        self.delegations: dict[str, tuple[Delegation, float]] = {}
        self.session: aiohttp.ClientSession | None = None
        self.upstream_queries = 0

    async def start(self) -> None:
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=100, ttl_dns_cache=300),
            timeout=aiohttp.ClientTimeout(total=self.timeout))

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()

    def _start(self, key: str, hops: Hops) -> Delegation:
        now = time.monotonic()
        for p in parse(key).prefix.lineage():
            known = self.delegations.get(p.text)
            if known is not None:
                if known[1] > now:
                    hops.append({"delegation": p.text, "cache": "hit"})
                    return known[0]
                del self.delegations[p.text]
        return self.root

    async def walk(self, key: str, hops: Hops) -> bytes | None:
        """Walk the hierarchy for ``key``: the verified public values, or None when the
        authoritative node says it does not exist. Every hop is appended to ``hops``.

        :raises UpstreamUnavailable: no server of a zone on the way could be reached.
        :raises RecursionLimit: a referral loop or too deep a walk.
        :raises BadSignature: every server that answered failed verification.
        """
        walk = Walk(key, self._start(key, hops), self.max_depth)
        while True:
            outcome = await self._ask_zone(walk, hops)  # network op
            if isinstance(outcome, Delegation):
                walk.on_referral(outcome)
                self.delegations[outcome.prefix] = (outcome, time.monotonic() + outcome.ttl)
                continue
            if outcome is None:  # every server unreachable
                tried = ", ".join(s.url for s in walk.servers)
                raise UpstreamUnavailable(
                    f"no server of zone {walk.zone.prefix or 'root'} answered for {key} "
                    f"within {self.timeout:g} s (tried {tried})"
                )
            return outcome.public

    async def _ask_zone(self, walk: Walk, hops: Hops) -> Delegation | Answered | None:
        """The first verified outcome from the zone's servers: a referral or an answer;
        None when no server could be reached."""
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
            else:
                hop["result"] = "answer" if outcome.public is not None else "not found"
            return outcome
        if bad is not None:
            raise bad
        return None

    async def _ask(self, server: Server, key: str) -> Delegation | Answered:
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
            return Answered(None if values is None else orjson.dumps(values))
        raise signing.BadSignature(f"{server.url} answered HTTP {status}: {body[:200]!r}")


async def resolve_verified(handle: str, roots: tuple[Server, ...], timeout: float = 2.0,
                           max_depth: int = 8) -> Walked:
    """Resolve one identifier from ``roots`` down, verifying every referral and the
    answer against the keys the chain names (a client-side recursive resolution).

    :raises BadSignature, UpstreamUnavailable, RecursionLimit: see :meth:`Recursor.walk`.
    """
    recursor = Recursor(roots, timeout, max_depth)
    await recursor.start()
    try:
        hops: Hops = []
        return Walked(await recursor.walk(parse(handle).key, hops), hops)
    finally:
        await recursor.close()
