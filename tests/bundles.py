"""Small real bundles for service and ranker tests: synthetic data, fitted routes, a trained ranker."""

from pathlib import Path

import numpy as np
import pandas as pd

from recsys_runtime.bundle import save_bundle
from recsys_runtime.compiled_ranker import serving_ranker
from recsys_runtime.content_index import ContentIndex
from recsys_runtime.recommender import Recommender
from recsys_service.settings import ServiceSettings
from recsys_training import synthetic
from recsys_training.components_fit import fit_components
from recsys_training.content import EMBEDDING_DIM
from recsys_training.ranker import train_ranker, training_set
from recsys_training.split import protocol_folds


def build_bundle(target: Path, seed: int, version: str, precompute: bool = False, content_kind: str = "exact") -> None:
    tables = synthetic.generate(200, 300, 8_000, seed=seed)
    folds = protocol_folds(tables.interactions.rows)
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(len(tables.items.rows), EMBEDDING_DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    embeddings = pd.DataFrame(vectors, index=tables.items.rows["item_id"])
    validation = fit_components(folds["validation"].train, tables.items.rows, embeddings)
    booster, info = train_ranker(training_set(validation, folds["validation"].test), seed=seed)
    serving = fit_components(folds["serving"].train, tables.items.rows, embeddings)
    serving.content_index = ContentIndex(serving.embeddings, kind=content_kind)
    similar = None
    if precompute:  # as the pipeline does: ranked by the ranker the service will use
        recommender = Recommender(serving, serving_ranker(booster, ServiceSettings().ranker_cache_dir), version=version)
        recommender.precompute_similar(len(serving.items) // 2)
        similar = recommender.similar_table
    save_bundle(serving, booster, target, {"version": version, "ranker": info, "per_route": 100}, similar=similar,
                catalog=tables.items.rows)
