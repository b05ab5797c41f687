"""Positions of ids in a sorted id array."""

from __future__ import annotations

import numpy as np


def index_of(sorted_ids: np.ndarray, ids) -> np.ndarray:
    """The position of each of ``ids`` in ``sorted_ids`` (ascending strings), -1 where absent."""
    ids = np.asarray(ids).astype(str)
    if len(sorted_ids) == 0:
        return np.full(len(ids), -1, dtype=np.int64)
    pos = np.minimum(np.searchsorted(sorted_ids, ids), len(sorted_ids) - 1)
    return np.where(sorted_ids[pos] == ids, pos, -1)
