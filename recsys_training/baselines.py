"""Reference recommenders of shared/EVALUATION.md: most popular, item-kNN cosine, EASE."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys_training.collaborative import ease_item_weights
from recsys_training.matrix import InteractionMatrix, top_k_excluding

EASE_MAX_ITEMS = 20_000
# the full-neighbourhood cosine holds up to sum(n_u^2) nonzeros (n_u: a user's train items); past
# this many it would take more memory than the rest of the pipeline, so item-kNN is skipped
ITEM_KNN_MAX_PAIRS = 400_000_000
BATCH_CELLS = 20_000_000
# past this many items the most-popular baseline reads one popularity order instead of ranking every item
DENSE_POPULAR_MAX_ITEMS = 20_000


def user_batch(n_items: int) -> int:
    """Users per dense (users x items) scoring batch, bounded in cells."""
    return max(1, BATCH_CELLS // max(1, n_items))


def cosine_similarity(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """Item-item cosine of a binary user x item matrix, full neighbourhood, zero diagonal."""
    norms = np.sqrt(np.asarray(matrix.sum(axis=0)).ravel())
    norms[norms == 0] = 1.0
    scaled = matrix @ sp.diags(1.0 / norms)
    sim = (scaled.T @ scaled).tocsr()
    sim.setdiag(0.0)
    sim.eliminate_zeros()
    return sim


def rank_all(
    data: InteractionMatrix, users: np.ndarray, score: Callable[[sp.csr_matrix], np.ndarray], k: int
) -> dict:
    rows = data.user_index(users)
    lists: dict = {}
    step = user_batch(data.matrix.shape[1])
    for start in range(0, len(rows), step):
        batch = rows[start : start + step]
        history = data.matrix[batch]
        scores = np.asarray(score(history))
        top = top_k_excluding(scores, history, k)
        for user, cols in zip(users[start : start + step], top, strict=True):
            lists[user] = data.items[cols].tolist()
    return lists


def most_popular(data: InteractionMatrix, users: np.ndarray, k: int = 10, pages: list | None = None) -> dict:
    """Per user the ``k`` most consumed train items it has not consumed (nor, given ``pages``, the
    item of its page). Up to ``DENSE_POPULAR_MAX_ITEMS`` items every item is ranked, as the
    reference numbers of shared/EVALUATION.md were (equal counts in ``argpartition``'s order);
    past it, ``most_popular_sparse``."""
    if data.matrix.shape[1] > DENSE_POPULAR_MAX_ITEMS:
        return most_popular_sparse(data, users, k, pages)
    popularity = np.asarray(data.matrix.sum(axis=0), dtype=np.float64)
    if pages is None:
        return rank_all(data, users, lambda h: np.repeat(popularity, h.shape[0], axis=0), k)
    return rank_for_pages(data, users, pages, lambda g: np.repeat(popularity, g.shape[0], 0), k)


def most_popular_sparse(data: InteractionMatrix, users: np.ndarray, k: int = 10, pages: list | None = None) -> dict:
    """``most_popular`` with equal counts in item order, from the head of one popularity order
    (``k`` plus the user's excluded items long), so its cost does not grow with the catalog."""
    matrix = data.matrix.tocsr()
    order = np.argsort(-np.asarray(matrix.sum(axis=0)).ravel(), kind="stable")
    rows = data.user_index(users)
    page_columns = data.item_index(np.array(pages)) if pages is not None else None
    lists: dict = {}
    for i, (user, row) in enumerate(zip(users, rows, strict=True)):
        excluded = matrix.indices[matrix.indptr[row]:matrix.indptr[row + 1]]
        if page_columns is not None:
            excluded = np.append(excluded, page_columns[i])
        head = order[: k + len(excluded)]
        lists[user] = data.items[head[~np.isin(head, excluded)][:k]].tolist()
    return lists


@dataclass(frozen=True)
class ReferenceModels:
    """The reference recommenders, fitted once on a train part for every protocol's baselines: the
    interaction matrix (most popular reads it), item-item cosine unless the users' co-occurring
    pairs are too many, and EASE (lambda 500) unless the catalog is too large."""

    data: InteractionMatrix
    cosine: sp.csr_matrix | None
    ease: np.ndarray | None
    ease_skipped: str = ""
    cosine_skipped: str = ""

    @classmethod
    def fit(cls, train: pd.DataFrame) -> ReferenceModels:
        data = InteractionMatrix.from_interactions(train)
        n_items = data.matrix.shape[1]
        skipped = f"{n_items} items > {EASE_MAX_ITEMS}" if n_items > EASE_MAX_ITEMS else ""
        pairs = cooccurring_pairs(data.matrix)
        cosine_skipped = f"{pairs:.3g} co-occurring pairs > {ITEM_KNN_MAX_PAIRS:.3g}" if pairs > ITEM_KNN_MAX_PAIRS else ""
        return cls(data,
                   None if cosine_skipped else cosine_similarity(data.matrix),
                   None if skipped else ease_item_weights(data.matrix, 500.0), skipped, cosine_skipped)


def cooccurring_pairs(matrix: sp.csr_matrix) -> int:
    """sum over users of (train items)^2: an upper bound on the item-item co-occurrence's nonzeros."""
    lengths = np.diff(matrix.tocsr().indptr).astype(np.int64)
    return int((lengths**2).sum())


def rank_for_pages(data: InteractionMatrix, users: np.ndarray, pages: list, score: Callable[[sp.csr_matrix], np.ndarray],
                   k: int, with_history: bool = False) -> dict:
    """Per user, the top ``k`` items for the page of item ``pages[i]`` by ``score`` of the page
    alone (as rows of one-hot vectors) or, ``with_history``, of the page plus the user's history;
    the page and the user's train items are never listed."""
    rows = data.user_index(users)
    columns = data.item_index(np.array(pages))
    lists = {}
    step = user_batch(data.matrix.shape[1])
    for start in range(0, len(rows), step):
        batch = slice(start, start + step)
        history = data.matrix[rows[batch]]
        page = sp.csr_matrix((np.ones(len(columns[batch])), (np.arange(len(columns[batch])), columns[batch])),
                             shape=history.shape)
        scores = np.asarray(score((history + page) if with_history else page), dtype=np.float64)
        top = top_k_excluding(scores, (history + page).tocsr(), k)
        for user, cols in zip(users[batch], top, strict=True):
            lists[user] = data.items[cols].tolist()
    return lists
