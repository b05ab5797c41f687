"""Sparse score vectors over the catalog: what a request's routes read instead of dense rows.

A request's collaborative or co-visitation scores are a weighted sum of the neighbour lists of
its history items. ``accumulate`` adds those lists up in work proportional to their total
length (history x neighbours per item), never to the catalog.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from recsys_runtime import kernels


@dataclass(frozen=True)
class SparseRow:
    """One request's scores over the catalog: ``values`` at ``items`` (ascending), zero elsewhere."""

    items: np.ndarray
    values: np.ndarray
    catalog_size: int

    @classmethod
    def empty(cls, catalog_size: int) -> SparseRow:
        return cls(np.empty(0, np.int32), np.empty(0, np.float32), catalog_size)

    def at(self, query: np.ndarray) -> np.ndarray:
        """The scores of ``query`` items (zero outside the support)."""
        return kernels.lookup(self.items, self.values, np.asarray(query))

    def max(self) -> float:
        """The largest score over the whole catalog, counting the zeros outside the support."""
        if not len(self.values):
            return 0.0
        top = float(self.values.max())
        return top if len(self.items) == self.catalog_size else max(top, 0.0)

    def plus(self, other: SparseRow) -> tuple[np.ndarray, np.ndarray]:
        """(items, values) of the element-wise sum with a short row (float32, as dense rows
        would add), in no particular order: the work is this row's copy plus ``other``'s lookups."""
        values = self.values.copy()
        if not len(other.items):
            return self.items, values
        if not len(self.items):
            return other.items, other.values
        pos = np.minimum(np.searchsorted(self.items, other.items), len(self.items) - 1)
        present = self.items[pos] == other.items
        values[pos[present]] += other.values[present]
        return (np.concatenate([self.items, other.items[~present]]),
                np.concatenate([values, other.values[~present]]))

    @property
    def nbytes(self) -> int:
        return self.items.nbytes + self.values.nbytes


class _Scratch:
    """Catalog-length work arrays, reused across requests (allocated once per concurrent caller,
    touched only where a request has entries, and cleared again after it)."""

    def __init__(self, size: int) -> None:
        self.sums = np.zeros(size, dtype=np.float64)
        self.touched = np.zeros(size, dtype=np.bool_)
        self.bits = np.zeros(size, dtype=np.uint8)


class Accumulator:
    """Weighted sums of CSR rows as ``SparseRow``s, and the union of the routes' picks; thread-safe (each
    caller borrows scratch). The work is proportional to the rows' entries."""

    def __init__(self, catalog_size: int) -> None:
        self.catalog_size = catalog_size
        self._free: list[_Scratch] = []
        self._lock = threading.Lock()

    def _borrow(self) -> _Scratch:
        with self._lock:
            if self._free:
                return self._free.pop()
        return _Scratch(self.catalog_size)

    def _give_back(self, scratch: _Scratch) -> None:
        with self._lock:
            self._free.append(scratch)

    def rows(self, matrix: sp.csr_matrix, rows: np.ndarray, weights: np.ndarray) -> SparseRow:
        """``sum_i weights[i] * matrix[rows[i]]``. Products in float32, sums in float64 in the
        order of ``rows`` then of each row's entries, rounded to float32 once."""
        scratch = self._borrow()
        try:
            items, values = kernels.accumulate_rows(
                matrix.indptr, matrix.indices, matrix.data, np.asarray(rows, dtype=np.int64),
                np.asarray(weights, dtype=np.float32), scratch.sums, scratch.touched)
        finally:
            self._give_back(scratch)
        return SparseRow(items, values, self.catalog_size)

    def pick(self, proposals: list[tuple[np.ndarray, np.ndarray]], sizes: list[int],
             blocked: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each route's ``best`` ``sizes[r]`` of its proposals (items, scores), then their distinct
        items, ascending, with a bitmask of the routes that picked each, in one compiled call."""
        lengths = np.array([len(items) for items, _ in proposals], dtype=np.int64)
        items = np.concatenate([np.asarray(items, dtype=np.int64) for items, _ in proposals])
        scores = np.concatenate([np.asarray(scores, dtype=np.float64) for _, scores in proposals])
        scratch = self._borrow()
        try:
            return kernels.pick_and_union(items, scores, lengths, np.asarray(sizes, dtype=np.int64), blocked,
                                          scratch.bits)
        finally:
            self._give_back(scratch)


def row_entries(matrix: sp.csr_matrix, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions in ``matrix.indices``/``data`` of the entries of ``rows``, row after row, and each
    row's entry count: a CSR row gather without scipy's per-call indexing."""
    starts = matrix.indptr[rows]
    lengths = (matrix.indptr[rows + 1] - starts).astype(np.int64)
    offsets = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(int(lengths.sum()))
    return offsets, lengths


def unique_sorted(values: np.ndarray) -> np.ndarray:
    """The distinct values, ascending (a sort: cheaper than ``np.unique`` on short arrays)."""
    ordered = np.sort(values)
    if len(ordered) < 2:
        return ordered
    return ordered[np.concatenate([[True], ordered[1:] != ordered[:-1]])]
