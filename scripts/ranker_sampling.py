"""`python -m scripts.ranker_sampling`: what sampling the ranker's training users costs in quality
and saves in time, on the synthetic 10x set.

The ranker learns from every validation user's candidates (and their /similar requests). At 100x
that is 61,000 users and their candidates; this measures, on the 10x set (6,100 users), the
served model's user ndcg@10 and next-item detail ndcg@10 on the serving fold's test part against
the number of sampled training users, with the seconds of the candidates and of the fit. Item
vectors come from the generator's topics (as in `make bench-scale`), not MiniLM, so a run takes
minutes. Tuning reads the test part here only to report the cost of a setting chosen for
time, not to choose hyper-parameters. Output: data/bench/ranker_sampling.json (or BENCH_OUTPUT);
BENCH_SAMPLE_USERS lists the sizes (``all`` for every user).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from recsys_runtime.compiled_ranker import serving_ranker
from recsys_runtime.recommender import Recommender
from recsys_service.settings import ServiceSettings
from recsys_training import detail_next, synthetic
from recsys_training.components_fit import fit_components
from recsys_training.metrics import K, evaluate_lists
from recsys_training.ranker import train_ranker, training_set
from recsys_training.split import SERVING, VALIDATION, protocol_folds

USERS, ITEMS, INTERACTIONS = 6_100, 97_420, 1_008_360


def quality(recommender: Recommender, test, train) -> dict:
    """User-list ndcg@10 and recall@10, and next-item detail ndcg@10, of the served model."""
    truth = test.groupby(test["user_id"].astype(str))["item_id"].apply(lambda s: set(s.astype(str))).to_dict()
    users = sorted(truth)
    n_items = int(train["item_id"].nunique())
    user_lists = {u: r.items for u, r in zip(users, recommender.recommend_many(users, k=K), strict=True)}
    cases = detail_next.next_item_cases(test)
    next_lists = {u: r.items for u, r in zip(cases.users, recommender.recommend_many(
        list(cases.users), list(cases.queries), k=K), strict=True)}
    user = evaluate_lists(user_lists, truth, n_items, K)
    nxt = evaluate_lists(next_lists, cases.relevant, n_items, K)
    return {"user_ndcg@10": round(user["ndcg@10"], 4), "user_recall@10": round(user["recall@10"], 4),
            "detail_next_ndcg@10": round(nxt["ndcg@10"], 4)}


def main() -> int:
    sizes = [None if s == "all" else int(s) for s in
             os.environ.get("BENCH_SAMPLE_USERS", "all,3000,1500").split(",")]
    seeds = [int(s) for s in os.environ.get("BENCH_SAMPLE_SEEDS", "0").split(",")]
    output = Path(os.environ.get("BENCH_OUTPUT", "data/bench/ranker_sampling.json"))
    tables = synthetic.generate(USERS, ITEMS, INTERACTIONS, seed=0)
    catalog = tables.items.rows
    folds = protocol_folds(tables.interactions.rows)
    vectors = synthetic.item_vectors(catalog, seed=0)
    validation = fit_components(folds[VALIDATION].train, catalog, vectors)
    serving = fit_components(folds[SERVING].train, catalog, vectors)
    rows = []
    for size in sizes:
        for seed in (seeds if size is not None else [0]):
            started = time.perf_counter()
            data = training_set(validation, folds[VALIDATION].test, extra=("similar",), max_users=size, seed=seed)
            candidates_seconds = time.perf_counter() - started
            started = time.perf_counter()
            booster, info = train_ranker(data, seed=0)
            fit_seconds = time.perf_counter() - started
            recommender = Recommender(serving, serving_ranker(booster, ServiceSettings().ranker_cache_dir),
                                      version=f"sample-{size}")
            row = {"max_users": size or "all", "sample_seed": seed, "groups_with_positives": info["users"],
                   "rows": info["rows"], "rounds": info["rounds"], "fold_best_rounds": info["fold_best_rounds"],
                   "candidates_seconds": round(candidates_seconds, 1), "fit_seconds": round(fit_seconds, 1),
                   **quality(recommender, folds[SERVING].test, folds[SERVING].train)}
            print(json.dumps(row), flush=True)
            rows.append(row)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps({"dataset": {"users": USERS, "items": ITEMS, "interactions": INTERACTIONS,
                                              "item_vectors": "synthetic topics"}, "runs": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
