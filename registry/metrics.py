"""Registry metrics (resolver/README.md lists them with the resolver's): counters kept
as plain integers by the objects that own them, read when Prometheus scrapes."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from registry.api.common import RegistryContext


class RegistryCollector(Collector):
    def __init__(self, ctx: RegistryContext) -> None:
        self.ctx = ctx

    def collect(self) -> Iterator[CounterMetricFamily]:
        groups = self.ctx.groups
        yield CounterMetricFamily("idres_write_groups",
                                  "Transactions made for group commits of whole-record writes",
                                  value=groups.groups)
        yield CounterMetricFamily("idres_write_group_writes",
                                  "Whole-record writes those transactions carried",
                                  value=groups.writes)
        if self.ctx.bearers is not None:
            yield CounterMetricFamily("idres_auth_bearer_queries",
                                      "Queries made to look up bearer tokens (one per "
                                      "event-loop turn of requests that carry them)",
                                      value=self.ctx.bearers.queries)
