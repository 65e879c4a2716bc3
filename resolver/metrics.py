"""Resolver metrics, named ``idres_<subsystem>_<name>``, on a registry the node owns.

Hot-path counters are plain integers on the objects that own them (the cache, the
resolver, the listener); this collector reads them when Prometheus scrapes, so a
cache hit pays no lock.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, disable_created_metrics, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
)
from prometheus_client.registry import Collector

from resolver import __version__
from resolver.invalidate import Invalidator
from resolver.lookup import Resolver
from resolver.traffic import BOUNDS, Traffic

# the *_created series double every counter for a timestamp nobody graphs
disable_created_metrics()  # type: ignore[no-untyped-call]


class ResolverCollector(Collector):
    def __init__(self, resolver: Resolver, invalidator: Invalidator | None) -> None:
        self.resolver = resolver
        self.invalidator = invalidator

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        c = self.resolver.cache
        yield CounterMetricFamily("idres_cache_hits", "Resolutions answered from the cache",
                                  value=c.hits)
        yield CounterMetricFamily("idres_cache_misses", "Resolutions the cache could not answer",
                                  value=c.misses)
        ev = CounterMetricFamily("idres_cache_evictions", "Entries removed from the cache",
                                 labels=["reason"])
        ev.add_metric(["size"], c.evictions)
        ev.add_metric(["expired"], c.expirations)
        ev.add_metric(["invalidated"], c.invalidations)
        yield ev
        yield GaugeMetricFamily("idres_cache_entries", "Identifiers in the cache", value=len(c))
        yield GaugeMetricFamily("idres_cache_negative_entries",
                                "'Not found' answers in the cache (their own bound)",
                                value=c.negative_entries)
        yield GaugeMetricFamily("idres_cache_bytes", "Estimated bytes held by the cache",
                                value=c.bytes)
        yield CounterMetricFamily("idres_resolver_queries",
                                  "Database queries made to resolve identifiers",
                                  value=self.resolver.coalescer.queries)
        if self.invalidator is not None:
            yield CounterMetricFamily("idres_invalidate_notifications",
                                      "Invalidation notifications received",
                                      value=self.invalidator.notifications)
            yield GaugeMetricFamily("idres_invalidate_connected",
                                    "1 while the invalidation listener is connected",
                                    value=1 if self.invalidator.connected else 0)
            yield GaugeMetricFamily("idres_invalidate_lease_seconds",
                                    "Seconds left on the cache's lease (0: nothing cached is "
                                    "served fresh)", value=self.invalidator.lease_left)
            self.invalidator.lapsed()
            state = GaugeMetricFamily("idres_invalidate_state",
                                      "1 for the listener's state: listening (lease held), "
                                      "lapsed (heartbeat late), disconnected", labels=["state"])
            for name in ("listening", "lapsed", "disconnected"):
                state.add_metric([name], 1 if self.invalidator.state == name else 0)
            yield state
            yield CounterMetricFamily("idres_invalidate_lease_waits",
                                      "Writes that waited for a listener's lease to run out "
                                      "(it did not acknowledge, or the leases were unknown)",
                                      value=self.invalidator.lease_waits)
            yield CounterMetricFamily("idres_invalidate_reconnects",
                                      "LISTEN connections made again after a failure",
                                      value=self.invalidator.reconnects)
        yield CounterMetricFamily("idres_usage_dropped",
                                  "Resolutions not counted in the statistics: more distinct "
                                  "identifiers between two flushes than a process holds",
                                  value=self.resolver.usage.dropped)
        yield CounterMetricFamily("idres_usage_flushes", "Resolution counts added to the "
                                  "database", value=self.resolver.usage.flushed)
        yield CounterMetricFamily("idres_resolver_stale_answers",
                                  "Answers served stale because the authority (the database "
                                  "or another node) could not be reached",
                                  value=self.resolver.stale_answers)
        if self.resolver.replicas is not None:
            yield from replica_metrics(self.resolver.replicas)


def replica_metrics(replicas: Any) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
    """Each replica's state and reads, and the misses the primary answered instead."""
    up = GaugeMetricFamily("idres_replica_up", "1 while the replica answers its polls",
                           labels=["replica"])
    replayed = GaugeMetricFamily("idres_replica_replayed_bytes", "The WAL position the "
                                 "replica last reported having replayed", labels=["replica"])
    reads = CounterMetricFamily("idres_replica_reads", "Resolution misses and lookups by code the replica answered",
                                labels=["replica"])
    for r in replicas.replicas:
        up.add_metric([r.name], 1 if r.up else 0)
        replayed.add_metric([r.name], max(r.replayed, 0))
        reads.add_metric([r.name], r.reads)
    yield from (up, replayed, reads)
    primary = CounterMetricFamily("idres_replica_primary_reads", "Misses the primary answered "
                                  "because no replica could, by reason", labels=["reason"])
    for reason, count in replicas.to_primary.items():
        primary.add_metric([reason], count)
    yield primary


def register(registry: CollectorRegistry, resolver: Resolver,
             invalidator: Invalidator | None) -> None:
    registry.register(ResolverCollector(resolver, invalidator))


class FrontCollector(Collector):
    """Counters of the HTTP fast path, the binary protocol and the Handle protocol."""

    def __init__(self, fast: Any, binary: Any | None, native: Any | None = None) -> None:
        self.fast = fast
        self.binary = binary
        self.native = native

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        yield CounterMetricFamily("idres_http_fast_requests",
                                  "Resolutions read by the HTTP fast path", value=self.fast.requests)
        yield CounterMetricFamily("idres_http_fast_authorized",
                                  "Readers' resolutions answered by the HTTP fast path from "
                                  "the cache and their grants", value=self.fast.authorized)
        yield CounterMetricFamily("idres_http_handoffs",
                                  "Connections handed from the fast path to aiohttp for good",
                                  value=self.fast.handoffs)
        yield CounterMetricFamily("idres_http_lent",
                                  "Requests lent from the fast path to aiohttp, the "
                                  "connection taken back after the answer",
                                  value=self.fast.lent)
        yield GaugeMetricFamily("idres_http_fast_connections",
                                "Connections held by the fast path",
                                value=len(self.fast.connections))
        if self.binary is not None:
            yield CounterMetricFamily("idres_binary_requests", "Binary-protocol requests",
                                      value=self.binary.requests)
            yield CounterMetricFamily("idres_binary_errors",
                                      "Binary-protocol frames answered with an error",
                                      value=self.binary.errors)
        if self.native is not None:
            yield CounterMetricFamily("idres_native_requests",
                                      "Handle native-protocol messages (TCP and UDP)",
                                      value=self.native.requests)
            yield CounterMetricFamily("idres_native_errors",
                                      "Handle native-protocol messages answered with an error "
                                      "or dropped as unreadable", value=self.native.errors)
            yield CounterMetricFamily("idres_native_busy",
                                      "UDP requests answered 'server too busy'",
                                      value=self.native.busy)
            yield GaugeMetricFamily("idres_native_connections",
                                    "TCP connections of the Handle native protocol",
                                    value=len(self.native.connections))


class TrafficCollector(Collector):
    """Every request of the process, whichever front end answered it (resolver/traffic.py),
    and what the process is."""

    def __init__(self, traffic: Traffic) -> None:
        self.traffic = traffic

    def collect(self) -> Iterator[Any]:
        info = InfoMetricFamily("idres_build", "The idres build a process runs",
                                labels=["version", "python"])
        info.add_metric([__version__, platform.python_version()], {})
        yield info
        counts = CounterMetricFamily("idres_requests", "HTTP requests answered, on every "
                                     "path (the fast path and aiohttp), by route, method and "
                                     "status", labels=["route", "method", "status"])
        hist = HistogramMetricFamily("idres_request_duration_seconds",
                                     "Time from a request's head to its answer, by route",
                                     labels=["route"])
        merged: dict[str, tuple[list[int], float]] = {}   # route -> its methods' latencies
        for route in list(self.traffic.routes.values()):
            for status, n in list(route.statuses.items()):
                counts.add_metric([route.name, route.method.decode(), status.decode()], n)
            into, seconds = merged.get(route.name, ([0] * len(route.buckets), 0.0))
            merged[route.name] = ([a + b for a, b in zip(into, route.buckets)],
                                  seconds + route.seconds)
        for name, (counted, seconds) in merged.items():
            cumulative, buckets = 0, []
            for bound, n in zip((*BOUNDS, float("inf")), counted):
                cumulative += n
                buckets.append((repr(bound) if bound != float("inf") else "+Inf", cumulative))
            hist.add_metric([name], buckets, seconds)
        yield counts
        yield hist


# --- --workers N: one /metrics for all of them ---------------------------------------------
# Each worker writes its metrics to a file of a folder the supervisor made, every second and
# before it answers a scrape; whichever worker a scrape reaches answers every fresh file,
# each sample labelled with its worker's number (docs: resolver/README.md, Metrics).
FRESH = 15.0   # seconds: an older file is a worker that is gone


def snapshot(registry: CollectorRegistry, folder: Path, worker: int) -> None:
    """Write this worker's metrics (atomically: a scrape never reads half a file)."""
    tmp = folder / f".worker-{worker}.tmp"
    tmp.write_bytes(generate_latest(registry))
    tmp.replace(folder / f"worker-{worker}.prom")


class Workers:
    """A collector of every worker's metrics, read from their files."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, Metric] = {}
        now = time.time()
        for path in sorted(self.folder.glob("worker-*.prom")):
            try:
                if now - path.stat().st_mtime > FRESH:
                    continue
                text = path.read_text()
            except OSError:
                continue          # (a worker replacing its file right now)
            worker = path.stem.partition("-")[2]
            for family in text_string_to_metric_families(text):
                into = merged.get(family.name)
                if into is None:
                    into = merged[family.name] = Metric(family.name, family.documentation,
                                                        family.type, family.unit)
                into.samples.extend(sample._replace(labels={**sample.labels, "worker": worker})
                                    for sample in family.samples)
        yield from merged.values()


def exposition(registry: CollectorRegistry, folder: Path | None, worker: int) -> bytes:
    """What ``/metrics`` answers: this process's metrics, or with workers all of theirs."""
    if folder is None:
        return bytes(generate_latest(registry))
    snapshot(registry, folder, worker)
    return bytes(generate_latest(Workers(folder)))
