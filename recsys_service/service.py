"""The service's state and the path of one recommendation request, built once at start-up."""

from __future__ import annotations

import hashlib
import itertools
import threading
import time
import uuid

import msgspec
from litestar.exceptions import NotFoundException

from recsys_runtime.candidates import route_names
from recsys_runtime.interleave import TEAMS, seed_of, team_draft
from recsys_runtime.recommender import Recommendation, Recommender
from recsys_service.activity import ActivityStore
from recsys_service.cache import LocalCache, RedisCache
from recsys_service.exposure import ExposureLog
from recsys_service.metrics import ServiceMetrics
from recsys_service.models import ModelManager, ReloadRefused
from recsys_service.platform_metrics import PlatformCollector
from recsys_service.served import Exposure, ServedList
from recsys_service.settings import ServiceSettings
from recsys_service.shadow import ShadowScorer

encode_json = msgspec.json.Encoder().encode
ARM_CODES = {"primary": "p", "candidate": "c", "interleave": "i"}
CODE_ARMS = {code: arm for arm, code in ARM_CODES.items()}
CLICKED_LISTS_REMEMBERED = 200_000


def arm_of(request_id: str | None) -> str | None:
    """The arm that served a request, from the last character of its id (no lookup, any replica)."""
    return CODE_ARMS.get(request_id[-1]) if request_id and len(request_id) == 32 else None


class Service:
    """Everything a request needs, built once at start-up."""

    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self.metrics = ServiceMetrics()
        self.metrics.registry.register(PlatformCollector(settings.registry_path, settings.data_dir / "drift_reports"))
        self.local_cache = LocalCache(settings.cache_ttl, settings.cache_size)
        self.redis = None
        self.cache = self.local_cache
        if settings.redis_url:
            self.cache = RedisCache(settings.redis_url, settings.cache_ttl, self.local_cache,
                                    lambda op: self.metrics.cache_errors.labels(operation=op).inc())
            self.redis = self.cache.client
        self.metrics.initialise(route_names(), self.cache.backend)
        self.features = None
        if settings.feature_redis_url:
            import redis

            self.features = redis.Redis.from_url(settings.feature_redis_url, socket_timeout=0.05,
                                                 socket_connect_timeout=0.05)
        self.models = ModelManager(settings.registry_path, settings.bundle, shared=self.redis,
                                   mlflow_uri=settings.mlflow_tracking_uri,
                                   user_state_cache_bytes=int(settings.user_state_cache_mb * 2**20),
                                   warm_users=settings.warm_users, ranker_cache=settings.ranker_cache_dir)
        self.exposures = ExposureLog(settings.exposure_log, int(settings.exposure_log_max_mb * 1e6),
                                     interval=settings.exposure_flush_seconds)
        self.shadow = ShadowScorer(self.metrics, self.exposures)
        self.activity = ActivityStore(self.features, self.redis,
                                      lambda: self.metrics.cache_errors.labels(operation="features").inc())
        # unique per process, no syscall; the 32nd character names the arm
        self._id_prefix, self._ids = uuid.uuid4().hex[:15], itertools.count()
        self._clicked: dict[str, None] = {}  # request ids with a click, oldest first, bounded
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None

    # --- life cycle ----------------------------------------------------------------------
    def start(self) -> None:
        self.models.start()
        self._publish_models()
        if self.redis is not None:
            self._poller = threading.Thread(target=self._poll_state, name="state-poller", daemon=True)
            self._poller.start()

    def stop(self) -> None:
        self._stop.set()
        self.shadow.close()
        self.exposures.close()

    def _poll_state(self) -> None:
        while not self._stop.wait(self.settings.state_poll_seconds):
            state = self.models.read_shared()
            if state:
                try:
                    if self.models.apply_state(state):
                        self.local_cache.clear()
                        self._publish_models()
                        self.metrics.reloads.labels(mode="follow", result="ok").inc()
                except ReloadRefused:
                    self.metrics.reloads.labels(mode="follow", result="refused").inc()

    def _publish_models(self) -> None:
        deployment = self.models.deployment
        self.metrics.set_models(deployment.roles())
        self.metrics.rollout.set(deployment.rollout)

    # --- serving -------------------------------------------------------------------------
    def serve(self, endpoint: str, item_id: str | None, user_id: str | None, top_n: int, categories: list[str] | None,
              explain: bool, exclude_seen: bool) -> bytes:
        """The JSON body of one recommendation request."""
        started = time.perf_counter()
        deployment = self.models.deployment
        arm, model = self.models.choose(user_id)
        request_id = f"{self._id_prefix}{next(self._ids):016x}{ARM_CODES[arm]}"
        if item_id is not None and model.components.position(item_id) < 0:
            self.metrics.requests.labels(endpoint=endpoint, status="404").inc()
            raise NotFoundException(detail=f"unknown item_id {item_id!r}", extra={"field": "item_id"})
        recent = self.activity.recent_items(user_id) if exclude_seen else []
        key = None
        if not explain:
            activity = hashlib.sha1("|".join(recent).encode()).hexdigest()[:12] if recent else "-"
            key = (f"recsys:list:{deployment.generation}:{model.version}:{arm}:{endpoint}:{item_id}:{user_id}:{top_n}:"
                   f"{','.join(sorted(categories or []))}:{activity}")
            hit = self.cache.get(key)
            if hit is not None:
                self.metrics.child(self.metrics.cache_hits, self.cache.backend).inc()
                self._after(endpoint, hit, request_id, started, user_id, item_id, deployment, cached=True)
                return hit.response(request_id, cached=True)
            self.metrics.child(self.metrics.cache_misses, self.cache.backend).inc()
        ask = (top_n, explain, recent, exclude_seen, categories)
        teams = None
        rec = self._recommend(model, user_id, item_id, *ask)
        if arm == "interleave":
            rec, teams = self._interleave(self._recommend(deployment.primary, user_id, item_id, *ask), rec, top_n,
                                          seed_of(user_id, item_id, endpoint))
        served = self._served(rec, model, arm, endpoint, explain, teams)
        if key is not None:
            self.cache.set(key, served)
        self._after(endpoint, served, request_id, started, user_id, item_id, deployment, cached=False)
        return served.response(request_id, cached=False)

    @staticmethod
    def _recommend(model: Recommender, user_id, item_id, top_n, explain, recent, exclude_seen,
                   categories) -> Recommendation:
        try:
            return model.recommend_many([user_id], [item_id], top_n, explain=explain, recent=[recent],
                                        exclude=[recent] if exclude_seen else None, categories=categories,
                                        exclude_seen=exclude_seen)[0]
        except Exception as error:  # noqa: BLE001 - a broken model degrades to popular items
            return model.popular_fallback(top_n, f"model error: {type(error).__name__}")

    @staticmethod
    def _interleave(primary: Recommendation, candidate: Recommendation, top_n: int,
                    seed: int) -> tuple[Recommendation, list[str]]:
        """One list drafted from both models' lists; each item keeps its own model's score and routes."""
        lists = (primary, candidate)
        picked, positions = team_draft(primary.items, candidate.items, top_n, seed)
        chosen = [(lists[t], p) for t, p in zip(picked, positions, strict=True)]
        contributions = None
        if primary.contributions is not None and candidate.contributions is not None:
            contributions = [rec.contributions[p] for rec, p in chosen]
        merged = Recommendation(items=[rec.items[p] for rec, p in chosen], scores=[rec.scores[p] for rec, p in chosen],
                                routes=[rec.routes[p] for rec, p in chosen], contributions=contributions,
                                fallback=candidate.fallback or primary.fallback,
                                failed_routes=tuple(sorted(set(primary.failed_routes) | set(candidate.failed_routes))))
        return merged, [TEAMS[t] for t in picked]

    def record_event(self, kind: str, request_id: str | None, item_id: str, user_id: str | None) -> None:
        """An event into the metrics, the exposure log and the user's activity; the first click on a
        list counts for its arm."""
        self.metrics.events.labels(type=kind).inc()
        self.exposures.write({"type": "event", "event": kind, "request_id": request_id, "item_id": item_id,
                              "user_id": user_id, "time": time.time()})
        arm = arm_of(request_id)
        if kind == "click" and arm is not None and request_id not in self._clicked:
            self._clicked[request_id] = None
            if len(self._clicked) > CLICKED_LISTS_REMEMBERED:
                del self._clicked[next(iter(self._clicked))]
            self.metrics.child(self.metrics.arm_clicked_lists, arm).inc()
        if user_id:
            self.activity.remember(user_id, item_id)

    def is_local(self) -> bool:
        """No network round trip on the request path (no Redis, no feature store): the work is CPU
        only, and in a one-worker service a thread hop adds to it without adding capacity."""
        return self.redis is None and self.features is None

    def is_lookup(self, item_id: str, categories: list[str] | None, explain: bool) -> bool:
        """A /similar request answered from memory alone (a stored list, no Redis round trip),
        which can run on the event loop without blocking it."""
        if not self.is_local() or explain or categories:
            return False
        return self.models.deployment.primary.stored_similar_row(item_id) >= 0

    @staticmethod
    def _served(rec: Recommendation, model: Recommender, arm: str, endpoint: str, explain: bool,
                teams: list[str] | None = None) -> ServedList:
        items = []
        for position, (item, score, routes) in enumerate(zip(rec.items, rec.scores, rec.routes, strict=True)):
            entry = {"item_id": str(item), "score": round(float(score), 6), "routes": routes}
            if teams is not None:
                entry["team"] = teams[position]
            if explain and rec.contributions is not None:
                entry["contributions"] = {k: round(v, 6) for k, v in rec.contributions[position].items()}
            items.append(entry)
        body = {"items": items, "model_version": model.version, "arm": arm, "endpoint": endpoint,
                "fallback": {"reason": rec.fallback} if rec.fallback else None, "failed_routes": list(rec.failed_routes)}
        ids = tuple(i["item_id"] for i in items)
        exposed = [{"item_id": i, "position": p} for p, i in enumerate(ids, 1)]
        if teams is not None:
            exposed = [{**entry, "team": team} for entry, team in zip(exposed, teams, strict=True)]
        return ServedList(body=encode_json(body), items=ids, routes=tuple(r for routes in rec.routes for r in routes),
                          fallback=rec.fallback, failed_routes=tuple(rec.failed_routes), model_version=model.version,
                          arm=arm, exposed=encode_json(exposed))

    def _after(self, endpoint: str, served: ServedList, request_id: str, started: float, user_id, item_id, deployment,
               cached: bool) -> None:
        m = self.metrics
        elapsed = time.perf_counter() - started
        m.child(m.latency, endpoint).observe(elapsed)
        m.child(m.arm_latency, served.arm).observe(elapsed)
        m.child(m.requests, endpoint, "200").inc()
        if served.failed_routes or (served.fallback or "").startswith("model error"):
            m.child(m.arm_degraded, served.arm, "error").inc()
        elif served.fallback:
            m.child(m.arm_degraded, served.arm, "fallback").inc()
        if served.fallback:
            m.child(m.fallbacks, endpoint, served.fallback).inc()
        for route in served.failed_routes:
            m.child(m.route_failures, route).inc()
        m.route_items.add(served.routes)
        m.child(m.exposures, served.arm).inc()
        self.exposures.write(Exposure(request_id, time.time(), user_id, item_id, endpoint, served, cached))
        if deployment.shadow is not None:
            self.shadow.submit(deployment.shadow, request_id, user_id, item_id, list(served.items))
