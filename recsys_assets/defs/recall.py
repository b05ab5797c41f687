"""Recall routes, each fitted on both folds: ``validation`` (ranker training) and ``serving``."""


import time

import dagster as dg
import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys_assets import settings
from recsys_assets.defs.resources import StorageResource
from recsys_runtime.components import ItemTimeline
from recsys_runtime.content_index import ContentIndex
from recsys_runtime.sequential import SequentialModel
from recsys_training.components_fit import (
    embedding_matrix,
    fit_collaborative,
    fit_covisitation,
    fit_sequential,
    fold_items,
)
from recsys_training.content import embed_items_incrementally, encoder_backend, load_encoder
from recsys_training.images import ImageVectors, embed_item_images
from recsys_training.popularity import item_timeline, popular_table
from recsys_training.sequential import SEQUENTIAL_DEFAULTS
from recsys_training.split import SERVING, Split


def _per_fold(split: dict[str, Split], fit) -> tuple[dict, dict]:
    out, seconds = {}, {}
    for name, fold in split.items():
        started = time.perf_counter()
        out[name] = fit(fold.train, fold_items(fold.train))
        seconds[name] = round(time.perf_counter() - started, 2)
    return out, seconds


def _sparse_metadata(matrices: dict[str, sp.csr_matrix], seconds: dict) -> dict:
    serving = matrices[SERVING]
    per_item = np.diff(serving.indptr)
    return {
        "dagster/row_count": int(serving.shape[0]),
        "nonzeros": int(serving.nnz),
        "items_with_neighbours": int((per_item > 0).sum()),
        "mean_neighbours": float(per_item.mean()) if len(per_item) else 0.0,
        "seconds_per_fold": seconds,
    }


@dg.asset(group_name="recall", kinds={"scipy"})
def collaborative_index(context: dg.AssetExecutionContext, interactions_split: dict[str, Split]) -> dict[str, sp.csr_matrix]:
    """EASE (lambda 500) item-item weights on the most interacted items, pruned per item."""
    matrices, seconds = _per_fold(interactions_split, fit_collaborative)
    context.add_output_metadata(_sparse_metadata(matrices, seconds))
    return matrices


@dg.asset(group_name="recall", kinds={"scipy"})
def covisitation_index(context: dg.AssetExecutionContext, interactions_split: dict[str, Split]) -> dict[str, sp.csr_matrix]:
    """Items consumed close together by the same users, decayed by their time distance."""
    matrices, seconds = _per_fold(interactions_split, fit_covisitation)
    context.add_output_metadata(_sparse_metadata(matrices, seconds))
    return matrices


@dg.asset(group_name="recall", kinds={"pytorch"})
def item_embeddings(context: dg.AssetExecutionContext, raw_items: pd.DataFrame, storage: StorageResource) -> pd.DataFrame:
    """all-MiniLM-L6-v2 vectors of item text; only items whose text changed are encoded again."""
    cache = storage.path("features", "item_embeddings.parquet")
    previous = pd.read_parquet(cache) if cache.exists() else None
    started = time.perf_counter()
    backends = []

    weights = settings.text_encoder_weights()

    def encoder():
        loaded = load_encoder(settings.text_encoder_cache(), weights)
        backends.append(encoder_backend(loaded))
        return loaded

    table, encoded = embed_items_incrementally(raw_items, previous, encoder, weights)
    table.to_parquet(cache)
    context.add_output_metadata({"dagster/row_count": len(table), "encoded": encoded,
                                 "encoder": backends[0] if backends else "none (every text reused)",
                                 "encoder_weights": weights,
                                 "reused": len(table) - encoded, "dimension": table.shape[1] - 1,
                                 "seconds": round(time.perf_counter() - started, 2)})
    return table


class ImageConfig(dg.Config):
    """Where the CLIP model is (CLIP_MODEL_PATH); empty skips the image route."""

    clip_model_path: str = settings.clip_model_path()


@dg.asset(group_name="recall", kinds={"pytorch"})
def item_image_vectors(context: dg.AssetExecutionContext, config: ImageConfig, raw_items: pd.DataFrame) -> ImageVectors:
    """CLIP vectors of the items' images for the image route, from a local model, offline; the
    route is skipped (with the reason, here and in the bundle manifest) without images or a model."""
    started = time.perf_counter()
    found = embed_item_images(raw_items, config.clip_model_path)
    if found.skipped:
        context.log.info(f"image route skipped: {found.skipped}")
        context.add_output_metadata({"image_route": f"skipped: {found.skipped}"})
        return found
    reasons = found.rejected["reason"].value_counts().to_dict()
    context.add_output_metadata({
        "image_route": f"on ({found.model})", "dagster/row_count": len(found.vectors),
        "images_rejected": len(found.rejected), "rejected_by_reason": dg.MetadataValue.json(reasons),
        "rejected_examples": dg.MetadataValue.md(found.rejected.head(5).to_markdown(index=False))
        if len(found.rejected) else "none",
        "seconds": round(time.perf_counter() - started, 2),
    })
    if len(found.rejected):
        context.log.warning(f"{len(found.rejected)} item images not usable: {reasons}")
    return found


@dg.asset(group_name="recall", kinds={"faiss"})
def content_index(context: dg.AssetExecutionContext, item_embeddings: pd.DataFrame,
                  interactions_split: dict[str, Split]) -> dict[str, ContentIndex]:
    """Nearest-neighbour index over the embeddings of each fold's items (faiss, or exact numpy
    when faiss is missing or USE_FAISS_RECALL=0), with each item's nearest items searched once as
    the content route's neighbour lists."""
    vectors = item_embeddings.drop(columns="digest")

    def build(train: pd.DataFrame, ids: np.ndarray) -> ContentIndex:
        index = ContentIndex(embedding_matrix(vectors, ids))
        index.neighbours()
        return index

    started = time.perf_counter()
    indexes, _ = _per_fold(interactions_split, build)
    serving = indexes[SERVING]
    context.add_output_metadata({"dagster/row_count": len(serving.vectors), "backend": serving.backend,
                                 "kind": serving.kind, "neighbour_entries": int(serving.neighbours().nnz),
                                 "seconds": round(time.perf_counter() - started, 2)})
    return indexes


@dg.asset(group_name="recall", kinds={"pandas"})
def popular_items(context: dg.AssetExecutionContext, interactions_split: dict[str, Split]) -> dict[str, ItemTimeline]:
    """Overall popularity and trending lists over time (what was popular at any moment)."""
    timelines, _ = _per_fold(interactions_split, item_timeline)
    serving = interactions_split[SERVING].train
    table = popular_table(serving, fold_items(serving), timelines[SERVING], top_n=10)
    context.add_output_metadata({"dagster/row_count": int(len(timelines[SERVING].counts)),
                                 "top_items": dg.MetadataValue.md(table.to_markdown(index=False))})
    return timelines


class SequentialConfig(dg.Config):
    """The sequential route: SASRec over each user's ordered history, trained per fold
    (``recsys_training.sequential``). ``enabled`` false (RECSYS_SEQUENTIAL=0) leaves the route and
    its features out of the model; the rest override ``SEQUENTIAL_DEFAULTS``. Large logs are
    sampled down to ``max_sequences`` training windows and train for at most ``max_steps``
    optimiser steps, so the training's cost is bounded whatever the log's size."""

    enabled: bool = settings.sequential_route()
    epochs: int = settings.sequential_epochs()
    dimension: int = SEQUENTIAL_DEFAULTS["dimension"]
    blocks: int = SEQUENTIAL_DEFAULTS["blocks"]
    max_length: int = SEQUENTIAL_DEFAULTS["max_length"]
    learning_rate: float = SEQUENTIAL_DEFAULTS["learning_rate"]
    negatives: int = SEQUENTIAL_DEFAULTS["negatives"]
    max_sequences: int = SEQUENTIAL_DEFAULTS["max_sequences"]
    max_steps: int = SEQUENTIAL_DEFAULTS["max_steps"]
    sparse_items: bool = SEQUENTIAL_DEFAULTS["sparse_items"]


@dg.asset(group_name="recall", kinds={"pytorch"})
def sequential_model(context: dg.AssetExecutionContext, config: SequentialConfig,
                     interactions_split: dict[str, Split]) -> dict[str, SequentialModel | None]:
    """SASRec over each fold's ordered histories: the sequential route's model and its ranker
    features (None per fold when the route is off)."""
    if not config.enabled:
        context.add_output_metadata({"sequential_route": "off (RECSYS_SEQUENTIAL=0)"})
        return {name: None for name in interactions_split}
    params = {**config.model_dump(exclude={"enabled"}), "seed": settings.seed()}
    models, seconds = _per_fold(interactions_split, lambda train, ids: fit_sequential(train, ids, params))
    trained = models[SERVING].params
    context.add_output_metadata({
        "sequential_route": "on", "dagster/row_count": int(len(models[SERVING].item_embeddings) - 1),
        "windows": trained["windows"], "steps": trained["steps"], "loss": trained["loss"],
        "final_train_loss": trained["final_train_loss"],
        "params": dg.MetadataValue.json(params), "seconds_per_fold": seconds,
    })
    return models
