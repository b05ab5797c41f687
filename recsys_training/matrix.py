"""Sparse user x item matrices with stable id <-> index maps."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys_runtime.ids import index_of


@dataclass(frozen=True)
class InteractionMatrix:
    """Binary user x item matrix of a set of interactions, rows and columns sorted by id."""

    users: np.ndarray
    items: np.ndarray
    matrix: sp.csr_matrix

    @classmethod
    def from_interactions(cls, interactions: pd.DataFrame, items: np.ndarray | None = None) -> InteractionMatrix:
        """Build from ``user_id, item_id`` rows; ``items`` fixes the column set (others dropped)."""
        users = np.sort(interactions["user_id"].to_numpy().astype(str))
        users = np.unique(users)
        if items is None:
            items = np.unique(interactions["item_id"].to_numpy().astype(str))
        rows = np.searchsorted(users, interactions["user_id"].to_numpy().astype(str))
        item_ids = interactions["item_id"].to_numpy().astype(str)
        cols = index_of(items, item_ids)
        cols_valid = cols >= 0
        data = np.ones(int(cols_valid.sum()), dtype=np.float32)
        matrix = sp.csr_matrix((data, (rows[cols_valid], cols[cols_valid])), shape=(len(users), len(items)))
        matrix.sum_duplicates()
        matrix.data[:] = 1.0
        return cls(users=users, items=items, matrix=matrix)

    def item_index(self, item_ids: np.ndarray) -> np.ndarray:
        """Column index of each id, -1 where the id is unknown."""
        return index_of(self.items, item_ids)

    def user_index(self, user_ids: np.ndarray) -> np.ndarray:
        """Row index of each id, -1 where the id is unknown."""
        return index_of(self.users, user_ids)


def top_k_excluding(scores: np.ndarray, exclude: sp.csr_matrix, k: int) -> np.ndarray:
    """Column indices of the ``k`` best scores per row, excluding the non-zeros of ``exclude``."""
    scores = np.array(scores, dtype=np.float64, copy=True)
    rows, cols = exclude.nonzero()
    scores[rows, cols] = -np.inf
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)
