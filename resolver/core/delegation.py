"""Delegations and the zone a node answers for: longest prefix wins. Pure.

A node knows the prefixes allocated in its registry (``local``) and the delegations
recorded for some of them. For an identifier's prefix, walk its lineage from the
nearest: a delegated prefix sends the client elsewhere (a referral), a local one is
answered here; when neither is found the identifier is foreign to this node (a
recursive node goes and asks the hierarchy). System prefixes (``0.*``, such as the
operators' identity handles) are always local.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from resolver.core.identifier import Prefix, parse_prefix

Kind = Literal["local", "delegated", "foreign"]


@dataclass(frozen=True, slots=True)
class Server:
    url: str                 # base URL of the node's HTTP API
    key: str                 # its Ed25519 public key, base64url
    binary: str | None = None  # "host:port" of its binary protocol, if any

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"url": self.url, "key": self.key}
        if self.binary:
            out["binary"] = self.binary
        return out

    @classmethod
    def from_json(cls, d: Any) -> Server:
        if not isinstance(d, dict) or not isinstance(d.get("url"), str) \
                or not isinstance(d.get("key"), str):
            raise ValueError("a server is {\"url\": str, \"key\": str, \"binary\"?: str}")
        binary = d.get("binary")
        return cls(d["url"].rstrip("/"), d["key"], binary if isinstance(binary, str) else None)


@dataclass(frozen=True, slots=True)
class Delegation:
    prefix: str
    servers: tuple[Server, ...]
    ttl: int

    def to_json(self) -> dict[str, Any]:
        return {"prefix": self.prefix, "servers": [s.to_json() for s in self.servers],
                "ttl": self.ttl}

    @classmethod
    def from_json(cls, d: Any) -> Delegation:
        if not isinstance(d, dict) or not isinstance(d.get("servers"), list) \
                or not d["servers"] or not isinstance(d.get("ttl"), int):
            raise ValueError("a delegation is {\"prefix\", \"servers\": [...], \"ttl\"}")
        return cls(parse_prefix(d["prefix"]).text, tuple(Server.from_json(s) for s in d["servers"]),
                   d["ttl"])


_MEMO_MAX = 65536


@dataclass
class Zone:
    """What this node answers for. Built whole and replaced whole when a prefix or a
    delegation changes (never changed in place), so classifications can be remembered."""

    local: set[str] = field(default_factory=set)
    delegations: dict[str, Delegation] = field(default_factory=dict)
    _memo: dict[str, tuple[Kind, Delegation | None]] = field(default_factory=dict, repr=False)

    def classify(self, prefix: Prefix) -> tuple[Kind, Delegation | None]:
        """Longest prefix wins: delegated, local, or foreign (nobody here knows it)."""
        known = self._memo.get(prefix.text)
        if known is None:
            known = self._classify(prefix)
            if len(self._memo) < _MEMO_MAX:
                self._memo[prefix.text] = known
        return known

    def _classify(self, prefix: Prefix) -> tuple[Kind, Delegation | None]:
        if prefix.text == "0" or prefix.text.startswith("0."):
            return "local", None
        for p in prefix.lineage():
            d = self.delegations.get(p.text)
            if d is not None:
                return "delegated", d
            if p.text in self.local:
                return "local", None
        return "foreign", None
