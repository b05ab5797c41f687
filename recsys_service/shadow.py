"""The shadow model: scored off the request path on the served request, compared with the served list."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from recsys_runtime.recommender import Recommender
from recsys_service.agreement import overlap_at_k, rank_biased_overlap
from recsys_service.exposure import ExposureLog
from recsys_service.metrics import ServiceMetrics

MAX_PENDING = 100


class ShadowScorer:
    """One background thread; requests beyond ``MAX_PENDING`` waiting are not shadowed."""

    def __init__(self, metrics: ServiceMetrics, exposures: ExposureLog) -> None:
        self.metrics, self.exposures = metrics, exposures
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shadow")
        self.pending = 0

    def submit(self, shadow: Recommender, request_id: str, user_id, item_id, served: list[str]) -> None:
        if self.pending < MAX_PENDING:
            self.pending += 1
            self.pool.submit(self._score, shadow, request_id, user_id, item_id, served)

    def _score(self, shadow: Recommender, request_id: str, user_id, item_id, served: list[str]) -> None:
        try:
            started = time.perf_counter()
            other = shadow.recommend_many([user_id], [item_id], max(10, len(served)))[0].items
            elapsed = time.perf_counter() - started
            other = [str(i) for i in other]
            overlap, rbo = overlap_at_k(served, other), rank_biased_overlap(served, other)
            self.metrics.shadow_overlap.observe(overlap)
            self.metrics.shadow_rbo.observe(rbo)
            self.metrics.shadow_latency.observe(elapsed)
            self.exposures.write({"type": "shadow", "request_id": request_id, "time": time.time(),
                                  "model_version": shadow.version, "items": other, "overlap@10": overlap,
                                  "rbo": rbo, "latency_ms": elapsed * 1000})
        except Exception:  # noqa: BLE001 - the shadow never affects serving; a rollout reads the count
            self.metrics.shadow_errors.inc()
        finally:
            self.pending -= 1

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
