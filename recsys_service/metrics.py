"""Prometheus metrics of the service, in a registry of its own."""

from __future__ import annotations

from collections import Counter as Tally

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily

ARMS = ("primary", "candidate", "interleave")
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 1.0)


class RouteItems:
    """Served items per recall route: a plain tally on the request path, a counter when scraped."""

    def __init__(self) -> None:
        self.tally: Tally = Tally()

    def add(self, routes) -> None:
        self.tally.update(routes)

    def collect(self):
        family = CounterMetricFamily("recsys_route_items", "Served items by recall route", labels=["route"])
        for route, count in sorted(self.tally.items()):
            family.add_metric([route], count)
        yield family


class ServiceMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self._children: dict = {}
        self.requests = Counter("recsys_requests_total", "Requests by endpoint and status", ["endpoint", "status"], registry=r)
        self.latency = Histogram("recsys_request_latency_seconds", "Request latency", ["endpoint"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.model_info = Gauge("recsys_model_info", "Loaded model versions by role", ["role", "version"], registry=r)
        self.rollout = Gauge("recsys_canary_rollout_share", "Share of users routed to the candidate", registry=r)
        self.fallbacks = Counter("recsys_fallbacks_total", "Popular-item fallbacks", ["endpoint", "reason"], registry=r)
        self.cache_hits = Counter("recsys_cache_hits_total", "Cache hits", ["backend"], registry=r)
        self.cache_misses = Counter("recsys_cache_misses_total", "Cache misses", ["backend"], registry=r)
        self.cache_errors = Counter("recsys_cache_errors_total", "Redis errors (served without Redis)", ["operation"],
                                    registry=r)
        self.shadow_overlap = Histogram("recsys_shadow_overlap_at_10", "Overlap@10 of shadow and served lists",
                                        buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0), registry=r)
        self.shadow_rbo = Histogram("recsys_shadow_rbo", "Rank-biased overlap (p=0.9) of shadow and served lists",
                                    buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0), registry=r)
        self.shadow_latency = Histogram("recsys_shadow_latency_seconds", "Shadow scoring latency",
                                        buckets=LATENCY_BUCKETS, registry=r)
        self.reloads = Counter("recsys_model_reloads_total", "Model reloads by mode and result", ["mode", "result"],
                               registry=r)
        self.route_items = RouteItems()
        r.register(self.route_items)
        self.route_failures = Counter("recsys_route_failures_total", "Recall routes cut off after an error", ["route"],
                                      registry=r)
        self.exposures = Counter("recsys_exposures_total", "Lists logged to the exposure log", ["arm"], registry=r)
        self.events = Counter("recsys_events_total", "Feedback events", ["type"], registry=r)
        # per arm, what a rollout compares: the candidate's numbers against the primary's
        self.arm_latency = Histogram("recsys_arm_latency_seconds", "Request latency by arm", ["arm"],
                                     buckets=LATENCY_BUCKETS, registry=r)
        self.arm_degraded = Counter("recsys_arm_degraded_total", "Lists served degraded, by arm and kind (error: the "
                                    "model raised or a route failed; fallback: any other fallback)", ["arm", "kind"],
                                    registry=r)
        self.arm_clicked_lists = Counter("recsys_arm_clicked_lists_total", "Served lists with at least one click, by arm",
                                         ["arm"], registry=r)
        self.shadow_errors = Counter("recsys_shadow_errors_total", "Shadow scorings that raised", registry=r)

    def initialise(self, routes: tuple[str, ...], cache_backend: str) -> None:
        """Label sets that must read 0 before anything happens, so alerts and dashboards see them."""
        for counter in (self.cache_hits, self.cache_misses):
            self.child(counter, cache_backend)
        for route in routes:
            self.route_failures.labels(route=route)
        for arm in ARMS:
            self.exposures.labels(arm=arm)
            self.arm_clicked_lists.labels(arm=arm)
            for kind in ("error", "fallback"):
                self.arm_degraded.labels(arm=arm, kind=kind)
        for mode in ("primary", "shadow", "stop_shadow", "interleave", "follow", "rollback"):
            for result in ("ok", "refused"):
                self.reloads.labels(mode=mode, result=result)

    def child(self, metric, *labels: str):
        """``metric.labels(*labels)``, memoised: label lookups are a measurable part of a request."""
        key = (metric, labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def set_models(self, roles: dict[str, str | None]) -> None:
        self.model_info.clear()
        for role, version in roles.items():
            if version:
                self.model_info.labels(role=role, version=version).set(1)
