"""`python -m scripts.request_phases [BUNDLE]`: where a detail request's time goes, in process.

Loads a bundle (default: the registry's champion) with the compiled ranker, times one detail
request of each of up to 1,000 sampled users with an empty state cache (first requests), then one
more each (repeat requests, from the cached states), and wraps the request path's main functions
with timers to print each one's mean milliseconds per request. The wrappers add a little time of
their own: compare phases within one run, and runs as ratios (the machine is shared).
"""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from recsys_registry.registry import RegistryFile
from recsys_runtime import candidates, recommender
from recsys_runtime.bundle import load_bundle
from recsys_service.settings import ServiceSettings

REQUESTS = 1_000
PHASES = ((recommender, "user_state"), (recommender, "generate"), (recommender, "top_per_row"),
          (candidates, "_candidates_of"), (candidates, "candidate_features"), (candidates, "_profile"),
          (candidates, "sequence_vectors"), (candidates, "_sequential_features"))
METHODS = ("_requests", "score", "_lists")


def _timed(function, label: str, totals: dict):
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            totals[label] += time.perf_counter() - started
    return wrapper


def champion_path() -> Path:
    registry = RegistryFile.load(ServiceSettings().registry_path)
    if registry.champion is None:
        raise SystemExit("no champion: run `make demo` first, or name a bundle")
    return Path(registry.version(registry.champion)["path"])


def main() -> int:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else champion_path()
    model = load_bundle(path, ranker_cache=ServiceSettings().ranker_cache_dir)
    comp = model.components
    totals: dict[str, float] = defaultdict(float)
    for module, name in PHASES:
        setattr(module, name, _timed(getattr(module, name), name, totals))
    for name in METHODS:
        setattr(recommender.Recommender, name, _timed(getattr(recommender.Recommender, name), name, totals))
    accumulator = comp.accumulator
    accumulator.rows = _timed(accumulator.rows, "neighbour-list sums", totals)
    rng = np.random.default_rng(0)
    users = comp.histories.users[rng.choice(len(comp.histories.users), min(REQUESTS, len(comp.histories.users)),
                                            replace=False)]
    model.recommend_detail(str(comp.items[0]), user_id=str(users[0]))  # compile and set up
    model.clear_user_states()
    print(f"{path.name}: {len(comp.items):,} items, {len(users)} users")
    for kind in ("first", "repeat"):
        totals.clear()
        anchors = comp.items[rng.integers(0, len(comp.items), len(users))]
        latency = []
        for user, anchor in zip(users, anchors, strict=True):
            started = time.perf_counter()
            model.recommend_detail(str(anchor), user_id=str(user))
            latency.append((time.perf_counter() - started) * 1000)
        p50, p95 = np.percentile(latency, [50, 95])
        print(f"{kind} requests: p50 {p50:.3f} ms, p95 {p95:.3f} ms")
        for label, seconds in sorted(totals.items(), key=lambda kv: -kv[1]):
            print(f"  {label:22s} {seconds / len(users) * 1000:.3f} ms per request")
    states = [state.nbytes for state in model.user_states.values()]
    print(f"state bytes per user: mean {np.mean(states):,.0f}, max {max(states):,}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
