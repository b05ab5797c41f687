"""Pruning helpers for item-item matrices."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from numba import njit


def keep_top_k_per_row(matrix: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Keep the ``k`` largest entries of each row; among equal values the lower column wins."""
    matrix = matrix.tocsr()
    matrix.sort_indices()
    lengths = np.diff(matrix.indptr)
    if lengths.size == 0 or lengths.max(initial=0) <= k:
        return matrix
    keep = _top_k_mask(matrix.indptr, matrix.data, k)
    indptr = np.concatenate([[0], np.cumsum(np.minimum(lengths, k))]).astype(matrix.indptr.dtype)
    return sp.csr_matrix((matrix.data[keep], matrix.indices[keep], indptr), shape=matrix.shape)


@njit(cache=True)
def _top_k_mask(indptr, data, k):
    """Which entries are among their row's ``k`` largest: a stable sort of each longer row, so
    ties go to the earlier (lower-column) entry. Entries stay in column order."""
    keep = np.ones(len(data), np.bool_)
    for row in range(len(indptr) - 1):
        start, end = indptr[row], indptr[row + 1]
        if end - start <= k:
            continue
        order = np.argsort(-data[start:end], kind="mergesort")
        keep[start:end] = False
        for j in order[:k]:
            keep[start + j] = True
    return keep


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
