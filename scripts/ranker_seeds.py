"""`python -m scripts.ranker_seeds`: the served model's quality over several ranker seeds, for
settings of the request path, on the data of the last `make demo`.

A change to how a ranker feature is computed, even in its last bit, retrains a different ranker,
and on the sample one seed's result moves by more than most such changes do. This fits the routes
once on the pipeline's stored folds (``data/assets``: interactions_split, raw_items,
item_embeddings; run `make demo` first), then for each setting and seed builds the validation
candidates, trains the ranker as the pipeline does (next-item requests without a user included)
and evaluates the served model on the serving fold (no baselines). Settings:
``BENCH_STATE_SUPPORT`` lists values of ``candidates.STATE_SUPPORT`` (the entries a user state
keeps of each summed neighbour list), ``BENCH_RANKER_PARAMS`` a JSON list of LightGBM parameter
overrides (default ``[{}]``); every pair of the two is a setting. ``BENCH_SEEDS``: the ranker
seeds. Output: data/bench/ranker_seeds.json (or BENCH_OUTPUT), with each setting's mean and
standard deviation, and the trees each model has (the compiled ranker's cost grows with them).
``BENCH_SEQUENTIAL``: a JSON object of the sequential route's settings (``SEQUENTIAL_DEFAULTS``
overrides) to fit it with the other routes; unset, the routes are fitted without it.
``BENCH_PAGES_PER_USER``: values of ``training_set``'s ``pages_per_user`` (default 1), each a
setting; the ranker of requests with a user learns from the first page only, as the pipeline's.
``BENCH_SIMILAR_RANKER=1``: a second ranker, for the requests without a user, learns from every
page, as the pipeline trains by default (``RankerConfig.similar_ranker``); 0 (default here): the
first ranker ranks every request. ``BENCH_PATIENCE``: values of the rankers' early-stopping
patience (default ``ranker.DEFAULT_PATIENCE``), each a setting; each run records its fit seconds.
``BENCH_NEGATIVE_FRACTION``: values of the share of negative candidate rows the rankers learn from
(default 1.0), each a setting. ``BENCH_CHOICES``: the LightGBM settings cross-validated per ranker
(default the pipeline's, ``ranker.DEFAULT_CHOICES``; before stop 32 this script fitted
``rank_xendcg`` alone); sets separated by ``;`` are each a setting (``rank_xendcg;lambdarank``:
each alone). Each run records both rankers' out-of-fold ndcg@10 per fold and their first fold's
race (``ranker.race_statistics``). ``BENCH_RACE_Z``: values of the race's distance (default
``ranker.DEFAULT_RACE_Z``; ``off``: every choice on every fold), each a setting.
"""

from __future__ import annotations

import functools
import json
import operator
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from recsys_runtime import candidates
from recsys_runtime.compiled_ranker import serving_ranker
from recsys_runtime.recommender import Recommender
from recsys_service.settings import ServiceSettings
from recsys_training.components_fit import fit_components
from recsys_training.evaluation import evaluate
from recsys_training.ranker import (
    DEFAULT_CHOICES,
    DEFAULT_MAX_PAGES,
    DEFAULT_MAX_USERS,
    DEFAULT_PATIENCE,
    DEFAULT_RACE_Z,
    train_rankers,
    training_set,
)
from recsys_training.split import SERVING, VALIDATION, Split

METRICS = {"user_ndcg@10": ("user", "model", "ndcg@10"), "user_recall@10": ("user", "model", "recall@10"),
           "detail_next_ndcg@10": ("detail_next", "model", "ndcg@10"),
           "similar_next_ndcg@10": ("detail_next", "similar", "ndcg@10"),
           "content_route_ndcg@10": ("user", "routes", "content", "ndcg@10")}


def stored_folds(assets: Path) -> tuple[dict[str, Split], pd.DataFrame, pd.DataFrame]:
    """The demo's folds, items and item embeddings, as its last run stored them."""
    folds = {name: Split(pd.read_parquet(assets / "interactions_split" / f"{name}.train.parquet"),
                         pd.read_parquet(assets / "interactions_split" / f"{name}.test.parquet"))
             for name in (VALIDATION, SERVING)}
    items = pd.read_parquet(assets / "raw_items" / "frame.parquet")
    embeddings = pd.read_parquet(assets / "item_embeddings" / "frame.parquet").drop(columns="digest")
    return folds, items, embeddings


def main() -> int:
    supports = [int(s) for s in os.environ.get("BENCH_STATE_SUPPORT", str(candidates.STATE_SUPPORT)).split(",")]
    seeds = [int(s) for s in os.environ.get("BENCH_SEEDS", "0,1,2,3,4").split(",")]
    output = Path(os.environ.get("BENCH_OUTPUT", "data/bench/ranker_seeds.json"))
    folds, items, embeddings = stored_folds(ServiceSettings().data_dir / "assets")
    sequential = json.loads(os.environ["BENCH_SEQUENTIAL"]) if os.environ.get("BENCH_SEQUENTIAL") else None
    validation = fit_components(folds[VALIDATION].train, items, embeddings, sequential_params=sequential)
    serving = fit_components(folds[SERVING].train, items, embeddings, sequential_params=sequential)
    ranker_params = json.loads(os.environ.get("BENCH_RANKER_PARAMS", "[{}]"))
    pages = [int(p) for p in os.environ.get("BENCH_PAGES_PER_USER", "1").split(",")]
    separate = os.environ.get("BENCH_SIMILAR_RANKER", "0") == "1"
    choice_sets = [tuple(c.split(",")) for c in os.environ.get("BENCH_CHOICES", ",".join(DEFAULT_CHOICES)).split(";")]
    fractions = [float(f) for f in os.environ.get("BENCH_NEGATIVE_FRACTION", "1.0").split(",")]
    patiences = [int(p) for p in os.environ.get("BENCH_PATIENCE", str(DEFAULT_PATIENCE)).split(",")]
    races = [None if z == "off" else float(z) for z in os.environ.get("BENCH_RACE_Z", str(DEFAULT_RACE_Z)).split(",")]
    cache = ServiceSettings().ranker_cache_dir
    report = {}
    for support, pages_per_user in ((s, p) for s in supports for p in pages):
        candidates.STATE_SUPPORT = support
        # the pipeline's caps (recall_candidates): the sample is below them, a 10x set is not
        data = training_set(validation, folds[VALIDATION].test, extra=("similar",), pages_per_user=pages_per_user,
                            max_users=DEFAULT_MAX_USERS, max_pages=DEFAULT_MAX_PAGES)
        for params, patience, fraction, choices, race in ((p, q, f, c, z) for p in ranker_params for q in patiences
                                                          for f in fractions for c in choice_sets for z in races):
            setting = (f"state_support={support} pages_per_user={pages_per_user} similar_ranker={int(separate)}"
                       f" patience={patience} negative_fraction={fraction} choices={','.join(choices)} race_z={race}"
                       f" params={json.dumps(params, sort_keys=True)} sequential={json.dumps(sequential, sort_keys=True)}")
            started = time.perf_counter()
            runs = []
            for seed in seeds:
                fit_started = time.perf_counter()
                rankers = train_rankers(data, seed=seed, params=params, similar_ranker=separate, patience=patience,
                                        negative_fraction=fraction, choices=choices, race_z=race)
                fit_seconds = round(time.perf_counter() - fit_started, 1)
                booster, info = rankers.user, rankers.user_info
                similar = serving_ranker(rankers.similar, cache) if rankers.similar is not None else None
                recommender = Recommender(serving, serving_ranker(booster, cache), similar_ranker=similar,
                                          version=f"seed-{seed}")
                summary = evaluate(recommender, folds[SERVING], with_baselines=False)
                run = {"seed": seed, "trees": info["rounds"], "fit_seconds": fit_seconds,
                       "user_fold_ndcg@10": info["fold_ndcg@10"],
                       "similar_fold_ndcg@10": rankers.similar_info["fold_ndcg@10"] if rankers.similar_info else None,
                       "user_choices": info["choices"], "user_race": info["race"],
                       "similar_choices": rankers.similar_info["choices"] if rankers.similar_info else None,
                       "similar_race": rankers.similar_info["race"] if rankers.similar_info else None}
                for name, path in METRICS.items():
                    run[name] = round(functools.reduce(operator.getitem, path, summary), 4)
                print(setting, json.dumps(run), flush=True)
                runs.append(run)
            report[setting] = {
                "runs": runs, "seconds": round(time.perf_counter() - started, 1),
                **{name: {"mean": round(float(np.mean([r[name] for r in runs])), 4),
                          "sd": round(float(np.std([r[name] for r in runs], ddof=1)), 4) if len(runs) > 1 else 0.0}
                   for name in (*METRICS, "trees", "fit_seconds")},
            }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps({"seeds": seeds, "settings": report}, indent=2))
    print(json.dumps({k: {m: v[m] for m in (*METRICS, "trees")} for k, v in report.items()}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
