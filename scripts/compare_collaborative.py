"""Which collaborative model to fit: each candidate's route alone on the validation fold.

For the sample (MovieLens, MiniLM vectors from the demo's cache) and the synthetic 10x set
(topic vectors), fit every model of ``COLLABORATIVE_MODELS`` on the validation fold's train part
and score the collaborative route alone (no ranker) on the validation held-out items, with the
protocol's metrics. The test part is never used. Output: data/bench/collaborative.json.

    python -m scripts.compare_collaborative [sample] [synthetic_10x]
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import pandas as pd

from recsys_runtime.recommender import Recommender
from recsys_service.settings import PROJECT_ROOT, ServiceSettings
from recsys_training import synthetic
from recsys_training.components_fit import COLLABORATIVE_MODELS, fit_components, fold_items
from recsys_training.metrics import evaluate_lists
from recsys_training.sources import load_movielens
from recsys_training.split import VALIDATION, protocol_folds
from scripts.bench_scale import SYNTHETIC


def _data(name: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    if name == "sample":
        tables = load_movielens(PROJECT_ROOT / "data" / "movielens-small")
        cache = ServiceSettings().data_dir / "features" / "item_embeddings.parquet"
        if not cache.exists():
            raise SystemExit(f"{cache} is missing: run `make demo` first")
        vectors = pd.read_parquet(cache).drop(columns="digest")
    else:
        tables = synthetic.generate(*SYNTHETIC[name], seed=0)
        vectors = synthetic.item_vectors(tables.items.rows, seed=0)
    interactions, items = tables.interactions.rows, tables.items.rows
    return interactions[interactions["item_id"].isin(items["item_id"])], items, vectors


def compare(name: str) -> dict:
    interactions, items, vectors = _data(name)
    fold = protocol_folds(interactions)[VALIDATION]
    truth = fold.test.groupby(fold.test["user_id"].astype(str))["item_id"].apply(lambda s: set(s.astype(str))).to_dict()
    users = sorted(truth)
    n_items = len(fold_items(fold.train))
    out = {"train_items": n_items, "validation_users": len(users)}
    for model in COLLABORATIVE_MODELS:
        started = time.perf_counter()
        components = fit_components(fold.train, items, vectors, {"collaborative_model": model})
        fit_seconds = time.perf_counter() - started
        lists = Recommender(components).recommend_variants(users, k=10, variants=("collaborative",))["collaborative"]
        metrics = evaluate_lists({u: r.items for u, r in zip(users, lists, strict=True)}, truth, n_items, 10)
        out[model] = {"fit_seconds_all_routes": round(fit_seconds, 1), "nonzeros": int(components.ease.nnz),
                      "items_with_neighbours": int((np.diff(components.ease.indptr) > 0).sum()),
                      **{k: round(v, 4) for k, v in metrics.items() if isinstance(v, float)}}
        print(name, model, out[model], flush=True)
    return out


def main() -> int:
    names = sys.argv[1:] or ["sample", "synthetic_10x"]
    path = ServiceSettings().data_dir / "bench" / "collaborative.json"
    report = json.loads(path.read_text()) if path.exists() else {}
    for name in names:
        report[name] = compare(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2))
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
