"""Pruning helpers for item-item matrices."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def keep_top_k_per_row(matrix: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Keep the ``k`` largest entries of each row (vectorised over the CSR arrays)."""
    matrix = matrix.tocsr()
    matrix.sort_indices()
    lengths = np.diff(matrix.indptr)
    if lengths.size == 0 or lengths.max(initial=0) <= k:
        return matrix
    row_of = np.repeat(np.arange(matrix.shape[0]), lengths)
    order = np.lexsort((-matrix.data, row_of))
    rank = np.arange(len(order)) - np.repeat(matrix.indptr[:-1], lengths)
    keep = order[rank < k]
    pruned = sp.csr_matrix(
        (matrix.data[keep], (row_of[keep], matrix.indices[keep])), shape=matrix.shape
    )
    pruned.sort_indices()
    return pruned


def dense_top_k_to_sparse(weights: np.ndarray, k: int) -> sp.csr_matrix:
    """Sparse copy of a dense square matrix keeping the ``k`` entries of largest magnitude
    in each row (negative weights carry information too)."""
    n = weights.shape[0]
    k = min(k, weights.shape[1])
    idx = np.argpartition(-np.abs(weights), k - 1, axis=1)[:, :k]
    vals = np.take_along_axis(weights, idx, axis=1)
    rows = np.repeat(np.arange(n), k)
    matrix = sp.csr_matrix((vals.ravel(), (rows, idx.ravel())), shape=weights.shape)
    matrix.eliminate_zeros()
    matrix.sort_indices()
    return matrix
