"""Ranked "similar to X" lists computed ahead of time for the most popular items, served as a lookup."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass
class SimilarTable:
    """Row ``row_of[item]`` holds the item's ranked list (item indices, scores, route bits)."""

    row_of: np.ndarray
    items: np.ndarray
    scores: np.ndarray
    routes: np.ndarray
    lengths: np.ndarray

    @classmethod
    def empty(cls, n_items: int, rows: int, depth: int) -> SimilarTable:
        return cls(row_of=np.full(n_items, -1, dtype=np.int64), items=np.zeros((rows, depth), dtype=np.int64),
                   scores=np.zeros((rows, depth), dtype=np.float64), routes=np.zeros((rows, depth), dtype=np.uint8),
                   lengths=np.zeros(rows, dtype=np.int64))

    @property
    def depth(self) -> int:
        return self.items.shape[1]

    def store(self, row: int, anchor: int, items: np.ndarray, scores: list[float], route_bits: list[int]) -> None:
        n = len(items)
        self.row_of[anchor] = row
        self.items[row, :n] = items
        self.scores[row, :n] = scores
        self.routes[row, :n] = route_bits
        self.lengths[row] = n

    def lookup(self, row: int, k: int,
               allows: Callable[[np.ndarray], np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray] | None:
        """(item indices, positions in the row) of the best ``k`` stored items that ``allows``
        passes; None when a filter leaves fewer than ``k`` and the live ranking may hold more."""
        items = self.items[row, : self.lengths[row]]
        if allows is None:
            positions = np.arange(min(k, len(items)))
        else:
            positions = np.flatnonzero(allows(items))
            if len(positions) < k and self.lengths[row] == self.depth:
                return None
            positions = positions[:k]
        return items[positions], positions
