"""Fit every recall component of a recommender on one set of training interactions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys_runtime.components import Components, Histories
from recsys_runtime.content_index import ContentIndex
from recsys_runtime.sequential import SequentialModel
from recsys_training.collaborative import ease_recall_matrix, item_cosine_matrix
from recsys_training.covisitation import covisitation_matrix
from recsys_training.matrix import InteractionMatrix
from recsys_training.popularity import item_timeline
from recsys_training.schema import canonical_order
from recsys_training.sequential import train_sequential

MAX_CATEGORIES = 128


def category_matrix(
    items: pd.DataFrame, item_ids: np.ndarray, max_categories: int = MAX_CATEGORIES
) -> tuple[sp.csr_matrix, list[str]]:
    """Multi-hot item x category matrix from the pipe-separated ``categories`` column."""
    table = items.assign(item_id=items["item_id"].astype(str)).set_index("item_id").reindex(item_ids)
    exploded = table["categories"].fillna("").astype(str).str.split("|").explode()
    exploded = exploded[exploded.str.len() > 0]
    top = exploded.value_counts().index[:max_categories].tolist()
    exploded = exploded[exploded.isin(top)]
    rows = np.searchsorted(item_ids, exploded.index.to_numpy().astype(str))
    cols = pd.Index(top).get_indexer(exploded.to_numpy())
    matrix = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(item_ids), len(top)))
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix, top


def histories(train: pd.DataFrame, item_ids: np.ndarray) -> Histories:
    ordered = canonical_order(train)
    users, starts = np.unique(ordered["user_id"].to_numpy().astype(str), return_index=True)
    indptr = np.append(starts, len(ordered)).astype(np.int64)
    return Histories(
        users=users,
        indptr=indptr,
        items=np.searchsorted(item_ids, ordered["item_id"].to_numpy().astype(str)).astype(np.int32),
        timestamps=ordered["timestamp"].to_numpy(dtype=np.int64),
    )


def fold_items(train: pd.DataFrame) -> np.ndarray:
    """The sorted item ids of one fold's training interactions: the column order of every route."""
    return np.unique(train["item_id"].to_numpy().astype(str))


COLLABORATIVE_MODELS = ("ease", "item_cosine")
# EASE over the most interacted items is the default: on the validation fold it beat a cosine over
# every item on the sample and on the synthetic 10x set (scripts/compare_collaborative.py)
COLLABORATIVE_DEFAULTS = {"collaborative_model": "ease", "ease_top_k": 100, "ease_lambda": 500.0,
                          "ease_max_items": 10_000}


def collaborative_description(params: dict | None = None) -> dict:
    """What the manifest and MLflow record about the collaborative model ``params`` fit."""
    p = {**COLLABORATIVE_DEFAULTS, **(params or {})}
    described = {"model": p["collaborative_model"], "top_k": p["ease_top_k"]}
    if p["collaborative_model"] == "ease":
        described.update({"lambda": p["ease_lambda"], "max_items": p["ease_max_items"]})
    return described


def fit_collaborative(train: pd.DataFrame, item_ids: np.ndarray, params: dict | None = None) -> sp.csr_matrix:
    """The collaborative route's item x item neighbour lists; ``params["collaborative_model"]``
    picks ``ease`` (default: EASE over the ``ease_max_items`` most interacted items) or
    ``item_cosine`` (cosine over every item)."""
    p = {**COLLABORATIVE_DEFAULTS, **(params or {})}
    data = InteractionMatrix.from_interactions(train, items=item_ids)
    if p["collaborative_model"] == "item_cosine":
        return item_cosine_matrix(data.matrix, top_k=p["ease_top_k"])
    if p["collaborative_model"] != "ease":
        raise ValueError(f"collaborative_model {p['collaborative_model']!r} is not one of {COLLABORATIVE_MODELS}")
    return ease_recall_matrix(data.matrix, lam=p["ease_lambda"], top_k=p["ease_top_k"], max_items=p["ease_max_items"])


def fit_covisitation(train: pd.DataFrame, item_ids: np.ndarray, params: dict | None = None) -> sp.csr_matrix:
    params = params or {}
    return covisitation_matrix(train, item_ids, window=params.get("covis_window", 20),
                               half_life_days=params.get("covis_half_life_days", 30.0),
                               top_k=params.get("covis_top_k", 100))


def fit_sequential(train: pd.DataFrame, item_ids: np.ndarray, params: dict | None = None) -> SequentialModel:
    """The sequential route's SASRec on the fold's ordered histories (``SEQUENTIAL_DEFAULTS``
    overridden by ``params``)."""
    return train_sequential(histories(train, item_ids), len(item_ids), params)


def embedding_matrix(embeddings: pd.DataFrame, item_ids: np.ndarray) -> np.ndarray:
    """Rows of ``embeddings`` (indexed by item_id) in ``item_ids`` order; zeros for unknown ids."""
    return embeddings.reindex(item_ids).fillna(0.0).to_numpy(dtype=np.float32)


def assemble_components(
    train: pd.DataFrame,
    items: pd.DataFrame,
    item_ids: np.ndarray,
    collaborative: sp.csr_matrix,
    covisitation: sp.csr_matrix,
    content_index: ContentIndex,
    timeline,
    image_vectors: pd.DataFrame | None = None,
    sequential: SequentialModel | None = None,
) -> Components:
    """The fold's components; ``image_vectors`` (indexed by item_id): the image route's vectors,
    none or empty for no image route; ``sequential``: the sequential route's model, if any."""
    value = np.zeros(len(item_ids), np.float32)
    if "value" in train:
        means = train.groupby(train["item_id"].astype(str))["value"].mean()
        value = means.reindex(item_ids).fillna(0.0).to_numpy(np.float32)
    categories, names = category_matrix(items, item_ids)
    return Components(
        items=item_ids,
        ease=collaborative,
        covisitation=covisitation,
        content_index=content_index,
        categories=categories,
        item_mean_value=value,
        timeline=timeline,
        histories=histories(train, item_ids),
        category_names=np.array(names, dtype=str),
        image_index=(ContentIndex(embedding_matrix(image_vectors, item_ids))
                     if image_vectors is not None and len(image_vectors) else None),
        sequential=sequential,
    )


def fit_components(
    train: pd.DataFrame,
    items: pd.DataFrame,
    embeddings: pd.DataFrame,
    params: dict | None = None,
    image_vectors: pd.DataFrame | None = None,
    sequential_params: dict | None = None,
) -> Components:
    """All recall components on ``train`` in one call; ``embeddings`` (and ``image_vectors``, for
    the image route) are indexed by item_id; ``sequential_params`` (None: no sequential route)
    trains the sequential route's model with those settings."""
    item_ids = fold_items(train)
    return assemble_components(
        train, items, item_ids,
        fit_collaborative(train, item_ids, params),
        fit_covisitation(train, item_ids, params),
        ContentIndex(embedding_matrix(embeddings, item_ids)),
        item_timeline(train, item_ids),
        image_vectors,
        fit_sequential(train, item_ids, sequential_params) if sequential_params is not None else None,
    )
