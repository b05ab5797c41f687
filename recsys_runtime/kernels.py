"""Compiled loops of the request path (numba): sums of neighbour lists, best-n selection, the
union of the routes' picks and sparse lookups.

Each does what a handful of numpy calls did, with the same arithmetic in the same order (float32
products, float64 sums in input order), so results are identical to the numpy formulation the
tests keep as a reference. A request calls each a few times on arrays the size of its history's
neighbour lists, where numpy's per-call overhead was most of the cost. Catalog-length scratch
arrays are passed in, touched only at a request's entries and left cleared.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def accumulate_rows(indptr, indices, data, rows, weights, sums, touched):
    """``sum_i weights[i] * matrix[rows[i]]`` as (ascending items, float32 values): products in
    float32, sums in float64 in the order of ``rows`` then of each row's entries."""
    total = 0
    for i in range(len(rows)):
        total += indptr[rows[i] + 1] - indptr[rows[i]]
    support = np.empty(total, np.int32)
    n = 0
    for i in range(len(rows)):
        row = rows[i]
        weight = weights[i]
        for j in range(indptr[row], indptr[row + 1]):
            item = indices[j]
            if not touched[item]:
                touched[item] = True
                support[n] = item
                n += 1
            sums[item] += np.float64(data[j] * weight)
    support = np.sort(support[:n])
    values = np.empty(n, np.float32)
    for k in range(n):
        item = support[k]
        values[k] = np.float32(sums[item])
        sums[item] = 0.0
        touched[item] = False
    return support, values


@njit(cache=True, nogil=True)
def _contains(sorted_ids, value) -> bool:
    if len(sorted_ids) == 0:
        return False
    pos = np.searchsorted(sorted_ids, value)
    return pos < len(sorted_ids) and sorted_ids[pos] == value


@njit(cache=True, nogil=True)
def best_positions(items, scores, n, blocked):
    """Positions of the ``n`` best positive-scored ``items`` not in ``blocked`` (sorted), best
    first, ties broken by the lower item index."""
    keep = np.empty(len(items), np.int64)
    m = 0
    for i in range(len(items)):
        if scores[i] > 0 and not _contains(blocked, items[i]):
            keep[m] = i
            m += 1
    keep = keep[:m]
    if m > n > 0:
        negated = -scores[keep]
        kth = np.partition(negated, n - 1)[n - 1]
        keep = keep[negated <= kth]
    keep = keep[np.argsort(items[keep], kind="mergesort")]
    keep = keep[np.argsort(-scores[keep], kind="mergesort")]
    return keep[:n]


@njit(cache=True, nogil=True)
def union_with_bits(picks, lengths, bits_scratch):
    """The distinct items of the concatenated ``picks`` (``lengths`` per route), ascending, and
    for each a bitmask of the routes (bit = route position) that picked it."""
    union = np.empty(len(picks), np.int64)
    n = 0
    start = 0
    for route in range(len(lengths)):
        bit = np.uint8(1 << route)
        for j in range(start, start + lengths[route]):
            item = picks[j]
            if bits_scratch[item] == 0:
                union[n] = item
                n += 1
            bits_scratch[item] |= bit
        start += lengths[route]
    union = np.sort(union[:n])
    bits = np.empty(n, np.uint8)
    for k in range(n):
        bits[k] = bits_scratch[union[k]]
        bits_scratch[union[k]] = 0
    return union, bits


@njit(cache=True, nogil=True)
def lookup(items, values, query):
    """``values`` at each ``query`` item (``items`` ascending), zero outside them."""
    out = np.zeros(len(query), np.float32)
    if len(items) == 0:
        return out
    for i in range(len(query)):
        pos = np.searchsorted(items, query[i])
        if pos < len(items) and items[pos] == query[i]:
            out[i] = values[pos]
    return out
