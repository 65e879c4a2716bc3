"""One iterative resolution through the node hierarchy, sans-I/O (after dnspython's
``_Resolution``): which servers to ask, and what a referral means.

The walk starts at the deepest delegation already known for the identifier (or at the
configured roots). Every referral must name a prefix that covers the identifier and is
strictly longer than the zone that sent it; anything else is a loop. The number of
referrals is bounded.
"""

from __future__ import annotations

from resolver.core.delegation import Delegation, Server
from resolver.core.errors import RecursionLimit
from resolver.core.identifier import parse

ROOT = ""  # the zone of the configured roots: shorter than any prefix


class Walk:
    def __init__(self, key: str, start: Delegation, max_depth: int) -> None:
        self.key = key
        self.lineage = {p.text for p in parse(key).prefix.lineage()}
        self.zone = start
        self.depth = 0
        self.max_depth = max_depth

    @property
    def servers(self) -> tuple[Server, ...]:
        return self.zone.servers

    def on_referral(self, d: Delegation) -> None:
        """Follow a referral, or raise :class:`RecursionLimit` for a loop or too deep a walk."""
        if d.prefix not in self.lineage:
            raise RecursionLimit(
                f"referral to prefix {d.prefix} from zone {self.zone.prefix or 'root'} does not "
                f"cover {self.key}"
            )
        if self.zone.prefix != ROOT and len(d.prefix) <= len(self.zone.prefix):
            raise RecursionLimit(
                f"referral loop: zone {self.zone.prefix} refers {self.key} to {d.prefix}, "
                "which is not below it"
            )
        self.depth += 1
        if self.depth > self.max_depth:
            raise RecursionLimit(f"more than {self.max_depth} referrals to resolve {self.key}")
        self.zone = d
