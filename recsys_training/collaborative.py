"""Collaborative recall: item-item weights, pruned to top-k per item: EASE over the most
interacted items, or cosine over every item."""

from __future__ import annotations

import numpy as np
import scipy.linalg as sl
import scipy.sparse as sp

from recsys_training.sparse_topk import dense_top_k_to_sparse, keep_top_k_per_row

MAX_ITEMS = 10_000


def ease_item_weights(matrix: sp.csr_matrix, lam: float = 500.0) -> np.ndarray:
    """Closed-form EASE weights (Steck 2019) via a float32 Cholesky inverse, zero diagonal."""
    gram = (matrix.T @ matrix).toarray().astype(np.float32)
    gram[np.diag_indices_from(gram)] += lam
    potrf, potri = sl.lapack.get_lapack_funcs(("potrf", "potri"), (gram,))
    chol, info = potrf(gram, lower=False, overwrite_a=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"Gram matrix is not positive definite (potrf info={info})")
    precision, info = potri(chol, lower=False, overwrite_c=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"Cholesky inverse failed (potri info={info})")
    upper = np.triu(precision)
    precision = upper + np.triu(precision, 1).T
    weights = precision / (-np.diag(precision))
    weights[np.diag_indices_from(weights)] = 0.0
    return weights


def ease_recall_matrix(
    matrix: sp.csr_matrix, lam: float = 500.0, top_k: int = 200, max_items: int = MAX_ITEMS
) -> sp.csr_matrix:
    """Item x item EASE weights, restricted to the ``max_items`` most interacted columns.

    Row ``i`` holds the ``top_k`` largest weights of "users who have i get score w for j",
    so ``history @ result`` scores every item like full EASE on the kept neighbourhoods.
    """
    n_items = matrix.shape[1]
    counts = np.asarray(matrix.sum(axis=0)).ravel()
    kept = np.sort(np.argsort(-counts, kind="stable")[: min(max_items, n_items)])
    weights = ease_item_weights(matrix[:, kept].tocsr(), lam)
    small = dense_top_k_to_sparse(weights, top_k).tocoo()
    full = sp.csr_matrix(
        (small.data, (kept[small.row], kept[small.col])), shape=(n_items, n_items), dtype=np.float32
    )
    full.sort_indices()
    return full


def item_cosine_matrix(matrix: sp.csr_matrix, top_k: int = 200, block: int = 4_096) -> sp.csr_matrix:
    """Item x item cosine of a binary user x item matrix over every item, pruned to the ``top_k``
    largest per row, computed ``block`` items at a time so memory stays bounded by a block's
    co-occurrences rather than the whole item-item product."""
    binary = matrix.tocsc().astype(np.float32)
    binary.data[:] = 1.0
    norms = np.sqrt(np.asarray(binary.sum(axis=0)).ravel())
    scaled = (binary @ sp.diags(1.0 / np.maximum(norms, 1.0)).astype(np.float32)).tocsc()
    scaled_t = scaled.T.tocsr()
    n_items = matrix.shape[1]
    parts = []
    for start in range(0, n_items, block):
        rows = scaled_t[start : start + block] @ scaled
        rows = rows.tocoo()
        keep = rows.row + start != rows.col
        rows = sp.csr_matrix((rows.data[keep], (rows.row[keep], rows.col[keep])), shape=rows.shape)
        parts.append(keep_top_k_per_row(rows, top_k))
    result = sp.vstack(parts).tocsr().astype(np.float32)
    result.sort_indices()
    return result
