"""Item-item co-occurrence within users' sequences, decayed by time distance."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys_training.schema import canonical_order
from recsys_training.sparse_topk import keep_top_k_per_row


def covisitation_matrix(
    train: pd.DataFrame,
    items: np.ndarray,
    window: int = 20,
    half_life_days: float = 30.0,
    top_k: int = 100,
) -> sp.csr_matrix:
    """Symmetric item x item weights over ``items`` (sorted ids).

    Each pair of items consumed by one user at most ``window`` positions apart adds
    ``0.5 ** (|dt| / half_life)``; the sum is normalised like a cosine
    (``w_ij / sqrt(n_i * n_j)``) and only the ``top_k`` neighbours of each item are kept.
    """
    ordered = canonical_order(train)
    user = ordered["user_id"].to_numpy()
    col = np.searchsorted(items, ordered["item_id"].to_numpy().astype(str))
    ts = ordered["timestamp"].to_numpy(dtype=np.float64)
    half_life = half_life_days * 86_400.0
    n = len(items)
    # summed one offset at a time: memory follows the distinct pairs, not window x interactions
    matrix = sp.csr_matrix((n, n))
    for offset in range(1, window + 1):
        same_user = user[offset:] == user[:-offset]
        a, b = col[:-offset][same_user], col[offset:][same_user]
        w = np.power(0.5, np.abs(ts[offset:] - ts[:-offset])[same_user] / half_life)
        step = sp.csr_matrix((np.concatenate([w, w]), (np.concatenate([a, b]), np.concatenate([b, a]))), shape=(n, n))
        matrix = matrix + step
    matrix.sum_duplicates()
    counts = np.bincount(col, minlength=n).astype(np.float64)
    norm = 1.0 / np.sqrt(np.maximum(counts, 1.0))
    matrix = sp.diags(norm) @ matrix @ sp.diags(norm)
    return keep_top_k_per_row(matrix.tocsr(), top_k).astype(np.float32)
