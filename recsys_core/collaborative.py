"""Collaborative recall: EASE item-item weights over the most interacted items, pruned."""

from __future__ import annotations

import numpy as np
import scipy.linalg as sl
import scipy.sparse as sp

from recsys_core.sparse_topk import dense_top_k_to_sparse

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
