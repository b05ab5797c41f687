"""`make bench-scale`: request cost and memory of the runtime at three catalog sizes.

Data sets: the demo's champion on the sample, a synthetic 10x set (6,100 users, 97,420 items,
~1M interactions) and a synthetic set with 1M catalog items (users and interactions as for 10x).
The synthetic bundles are built here (or reused when present under data/bench/scale/) with item
vectors from the generator's topics plus noise instead of MiniLM: the serving path does not
depend on how the vectors were made, and encoding a million texts would take hours on 2 cores.

Per data set, in process (as the promotion gate measures): 1,000 sampled detail requests of
distinct users with an empty state cache (a user's first request), then one more detail request
of each of them (a repeat, served from the user's cached state), the state bytes per user, and
the gate's own latency check with its default budget. Then through uvicorn (one worker, the
bundle loaded and warmed, no response cache hits worth counting: a fresh Zipf stream): the
service's RSS and the closed-loop requests/s of /recommend/detail and /recommend/user with wrk.
Output: data/bench/serving_scale.json (or BENCH_OUTPUT). BENCH_SCALE_DATASETS picks a subset.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from recsys_registry.registry import RegistryFile
from recsys_runtime import bundle_checks
from recsys_runtime.bundle import load_bundle, read_manifest, save_bundle
from recsys_runtime.compiled_ranker import serving_ranker
from recsys_runtime.recommender import Recommender
from recsys_service.settings import ServiceSettings
from recsys_training import promotion, synthetic
from recsys_training.components_fit import collaborative_description, fit_components
from recsys_training.ranker import (
    DEFAULT_CHOICES,
    DEFAULT_MAX_PAGES,
    DEFAULT_MAX_USERS,
    DEFAULT_PAGES_PER_USER,
    train_rankers,
    training_set,
)
from recsys_training.split import SERVING, VALIDATION, protocol_folds
from scripts.bench_serving import free_port, paths_file, pinned, server_command, wait_ready, wrk

SYNTHETIC = {  # users, catalog items, requested interactions
    "synthetic_10x": (6_100, 97_420, 1_008_360),
    "synthetic_1m_items": (6_100, 1_000_000, 1_008_360),
}
REQUESTS = 1_000
SIMILAR_PRECOMPUTE = 10_000
WRK_SECONDS = int(os.environ.get("BENCH_SECONDS", "15"))


def build_synthetic(name: str, target: Path) -> dict:
    """Train and save a bundle for one synthetic set as the pipeline does with its defaults: every
    route including the sequential one, the candidates of the validation users' lists and next-item
    pages, both rankers chosen among ``DEFAULT_CHOICES`` on the validation fold, the serving fold's
    routes in the bundle. Returns what it cost."""
    users, items, interactions = SYNTHETIC[name]
    started = time.perf_counter()
    tables = synthetic.generate(users, items, interactions, seed=0)
    catalog = tables.items.rows
    folds = protocol_folds(tables.interactions.rows)
    vectors = synthetic.item_vectors(catalog, seed=0)
    validation = fit_components(folds[VALIDATION].train, catalog, vectors, sequential_params={})
    data = training_set(validation, folds[VALIDATION].test, extra=("similar",), pages_per_user=DEFAULT_PAGES_PER_USER,
                        max_users=DEFAULT_MAX_USERS, seed=0, max_pages=DEFAULT_MAX_PAGES)
    del validation
    rankers = train_rankers(data, seed=0, choices=DEFAULT_CHOICES)
    del data
    serving = fit_components(folds[SERVING].train, catalog, vectors, sequential_params={})
    cache = ServiceSettings().ranker_cache_dir
    recommender = Recommender(serving, serving_ranker(rankers.user, cache), version=name,
                              similar_ranker=serving_ranker(rankers.similar, cache))
    recommender.precompute_similar(SIMILAR_PRECOMPUTE)
    save_bundle(serving, rankers.user, target,
                {"version": name, "ranker": rankers.user_info, "similar_ranker": rankers.similar_info,
                 "per_route": 100, "catalog_items": int(len(catalog)), "item_vectors": "synthetic topics",
                 "collaborative": collaborative_description()},
                similar=recommender.similar_table, similar_ranker=rankers.similar)
    return {"build_seconds": round(time.perf_counter() - started, 1),
            "rankers": {"user": rankers.user_info["params"]["objective"],
                        "similar": rankers.similar_info["params"]["objective"]},
            "trees": {"user": rankers.user_info["rounds"], "similar": rankers.similar_info["rounds"]}}


def sample_bundle() -> Path:
    registry = RegistryFile.load(ServiceSettings().registry_path)
    if registry.champion is None:
        raise SystemExit("no champion: run `make demo` first")
    return Path(registry.version(registry.champion)["path"])


def in_process(path: Path, seed: int = 0) -> dict:
    recommender = load_bundle(path, ranker_cache=ServiceSettings().ranker_cache_dir)
    comp = recommender.components
    rng = np.random.default_rng(seed)
    n_users = len(comp.histories.users)
    users = comp.histories.users[rng.choice(n_users, min(REQUESTS, n_users), replace=False)]
    recommender.recommend_detail(str(comp.items[0]), user_id=str(comp.histories.users[0]))  # lazy set-up
    recommender.clear_user_states()

    def timed(anchors: np.ndarray) -> np.ndarray:
        out = np.empty(len(users))
        for i, (user, item) in enumerate(zip(users, anchors, strict=True)):
            started = time.perf_counter()
            recommender.recommend_detail(str(item), user_id=str(user))
            out[i] = (time.perf_counter() - started) * 1000
        return out

    first = timed(comp.items[rng.integers(0, len(comp.items), len(users))])
    states = [s.nbytes for s in recommender.user_states.values()]
    repeat = timed(comp.items[rng.integers(0, len(comp.items), len(users))])
    recommender.clear_user_states()
    check = bundle_checks.latency(recommender, REQUESTS, promotion.GateThresholds().latency_budget_ms)
    lengths = np.diff(comp.histories.indptr)
    return {
        "items": int(len(comp.items)),
        "users": int(n_users),
        "history_p50_p95": [float(v) for v in np.percentile(lengths, [50, 95])],
        "content_index": read_manifest(path).get("content_index", {"kind": "exact"}),
        "first_request_p50_ms": round(float(np.percentile(first, 50)), 3),
        "first_request_p95_ms": round(float(np.percentile(first, 95)), 3),
        "repeat_request_p50_ms": round(float(np.percentile(repeat, 50)), 3),
        "repeat_request_p95_ms": round(float(np.percentile(repeat, 95)), 3),
        "state_bytes_per_user": int(np.mean(states)) if states else 0,
        "state_bytes_p95": int(np.percentile(states, 95)) if states else 0,
        "gate_latency": {"passed": bool(check.passed), **{k: round(v, 3) for k, v in check.numbers.items()}},
        "bundle_mb": round(sum(p.stat().st_size for p in path.iterdir()) / 1e6, 1),
    }


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def through_service(path: Path) -> dict:
    comp = load_bundle(path).components
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        tmp = Path(tmp)
        streams = {kind: paths_file(tmp, kind, comp, n=200_000) for kind in ("detail", "user")}
        warm = {kind: paths_file(tmp, kind, comp, n=20_000, seed=1) for kind in ("detail", "user")}
        del comp
        port = free_port()
        env = {**os.environ, "RECSYS_BUNDLE": str(path), "RECSYS_MODELS_DIR": str(tmp / "models"),
               "RECSYS_EXPOSURE_LOG": str(tmp / "exposures.jsonl"), "REDIS_URL": ""}
        server = subprocess.Popen(pinned(server_command(port), 0), env=env)
        try:
            wait_ready(port, timeout=900)
            loaded = rss_mb(server.pid)
            result = {"rss_mb": loaded}
            for kind in ("detail", "user"):
                wrk(port, warm[kind], 3)
                run = wrk(port, streams[kind], WRK_SECONDS)
                result[f"{kind}_rps"] = run["rps"]
                result[f"{kind}_p99_ms"] = run["p99_ms"]
                result[f"{kind}_errors"] = run["errors"]
            result["rss_mb_after_load_test"] = rss_mb(server.pid)
        finally:
            server.terminate()
            server.wait(timeout=60)
    return result


def main() -> int:
    root = ServiceSettings().data_dir / "bench"
    output = Path(os.environ.get("BENCH_OUTPUT", root / "serving_scale.json"))
    chosen = os.environ.get("BENCH_SCALE_DATASETS", "sample,synthetic_10x,synthetic_1m_items").split(",")
    report = json.loads(output.read_text()) if output.exists() else {}
    for name in chosen:
        entry: dict = {}
        if name == "sample":
            path = sample_bundle()
        else:
            path = root / "scale" / name / "bundle"
            if not (path / "manifest.json").exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                entry.update(build_synthetic(name, path))
                print(f"{name}: built in {entry['build_seconds']} s", flush=True)
        entry.update(in_process(path))
        print(name, json.dumps(entry), flush=True)
        entry.update(through_service(path))
        report[name] = entry
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(report, indent=2))
        print(name, json.dumps(entry), flush=True)
    print(f"written to {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
