"""Reference recommenders of shared/EVALUATION.md: most popular, item-kNN cosine, EASE."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from recsys_training.matrix import InteractionMatrix, top_k_excluding

EASE_MAX_ITEMS = 20_000
BATCH_CELLS = 20_000_000


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


def most_popular(data: InteractionMatrix, users: np.ndarray, k: int = 10) -> dict:
    popularity = np.asarray(data.matrix.sum(axis=0), dtype=np.float64)
    return rank_all(data, users, lambda h: np.repeat(popularity, h.shape[0], axis=0), k)
