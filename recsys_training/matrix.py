"""Sparse user x item matrices with stable id <-> index maps."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from numba import njit

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


def rows_times(rows: sp.csr_matrix, matrix: sp.csr_matrix) -> np.ndarray:
    """``(rows @ matrix).toarray()``, summed straight into the dense result: each cell adds its
    products in scipy's order and dtype (the wider of the two), so the values are equal, without the
    sparse product's output structure (most of the cost when its rows are dense)."""
    rows, matrix = rows.tocsr(), matrix.tocsr()
    if rows.shape[1] != matrix.shape[0]:
        raise ValueError(f"rows have {rows.shape[1]} columns, the matrix {matrix.shape[0]} rows")
    dtype = np.result_type(rows.dtype, matrix.dtype)
    out = np.zeros((rows.shape[0], matrix.shape[1]), dtype)
    # the matrix's values are widened product by product (exactly, as scipy's upcast) rather than
    # copied whole for every batch of rows
    _rows_times(rows.indptr, rows.indices, rows.data.astype(dtype, copy=False), matrix.indptr, matrix.indices,
                matrix.data, out)
    return out


@njit(cache=True, nogil=True)
def _rows_times(row_indptr, row_indices, row_data, indptr, indices, data, out):
    for r in range(len(row_indptr) - 1):
        target = out[r]
        for position in range(row_indptr[r], row_indptr[r + 1]):
            j, value = row_indices[position], row_data[position]
            for entry in range(indptr[j], indptr[j + 1]):
                target[indices[entry]] += value * data[entry]
