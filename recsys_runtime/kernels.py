"""Compiled loops of the request path (numba): sums of neighbour lists, the history's content
profile, best-n selection with the union of the routes' picks, sparse lookups, and the
per-candidate ranker features.

Each replaces numpy calls on arrays the size of a request's history and candidates, where
numpy's per-call overhead and gathered copies were most of the cost. Sums of neighbour lists,
selections and lookups give exactly what their numpy formulation gave (the tests keep it as a
reference); dot products sum in SIMD lanes and the profile row after row, so those may differ
from numpy's in the last bit, identically in training and serving. Catalog-length scratch arrays
are passed in, touched only at a request's entries and left cleared.
"""

from __future__ import annotations

import numpy as np
from numba import njit

RADIX_BITS = 11
INSERTION_SORT_MAX = 64  # best-n lists longer than this are sorted by two stable argsorts


@njit(cache=True, nogil=True)
def sort_ids(ids, bound):
    """Non-negative ids below ``bound``, ascending: an LSD radix sort of ``RADIX_BITS`` a pass,
    linear in ``len(ids)`` (a comparison sort of a few thousand ids cost more than the sums)."""
    n = len(ids)
    if n < 64:
        return np.sort(ids)
    source = ids.copy()
    target = np.empty_like(ids)
    buckets = 1 << RADIX_BITS
    counts = np.empty(buckets + 1, np.int64)
    shift = 0
    while shift == 0 or ((bound - 1) >> shift) > 0:
        counts[:] = 0
        for i in range(n):
            counts[((source[i] >> shift) & (buckets - 1)) + 1] += 1
        for b in range(buckets):
            counts[b + 1] += counts[b]
        for i in range(n):
            digit = (source[i] >> shift) & (buckets - 1)
            target[counts[digit]] = source[i]
            counts[digit] += 1
        source, target = target, source
        shift += RADIX_BITS
    return source


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
    support = sort_ids(support[:n], len(sums))
    values = np.empty(n, np.float32)
    for k in range(n):
        item = support[k]
        values[k] = np.float32(sums[item])
        sums[item] = 0.0
        touched[item] = False
    return support, values


@njit(cache=True, nogil=True)
def weighted_row_sum(vectors, rows, weights):
    """``sum_i weights[i] * vectors[rows[i]]`` in float32, added row after row, without gathering
    the rows."""
    total = np.zeros(vectors.shape[1], np.float32)
    for i in range(len(rows)):
        row = vectors[rows[i]]
        weight = weights[i]
        for k in range(len(total)):
            total[k] += row[k] * weight
    return total


@njit(cache=True, nogil=True)
def _contains(sorted_ids, value) -> bool:
    if len(sorted_ids) == 0:
        return False
    pos = np.searchsorted(sorted_ids, value)
    return pos < len(sorted_ids) and sorted_ids[pos] == value


@njit(cache=True, nogil=True)
def _ahead(items, scores, a, b) -> bool:
    """Whether position ``a`` ranks before ``b``: a higher score, or an equal one and a lower item."""
    return scores[a] > scores[b] or (scores[a] == scores[b] and items[a] < items[b])


@njit(cache=True, nogil=True)
def _sift_down(heap, size, items, scores):
    """Restores the heap whose root (``heap[0]``, the worst kept position) was replaced."""
    parent = 0
    while True:
        worst = parent
        for child in (2 * parent + 1, 2 * parent + 2):
            if child < size and _ahead(items, scores, heap[worst], heap[child]):
                worst = child
        if worst == parent:
            return
        heap[parent], heap[worst] = heap[worst], heap[parent]
        parent = worst


@njit(cache=True, nogil=True)
def best_positions(items, scores, n, blocked):
    """Positions of the ``n`` best positive-scored ``items`` not in ``blocked`` (sorted), best
    first, ties broken by the lower item index. One pass with a heap of the ``n`` best so far:
    only an entry that would enter it is searched for in ``blocked``."""
    if n <= 0:
        return np.empty(0, np.int64)
    heap = np.empty(n, np.int64)  # a heap whose root is the worst position kept
    size = 0
    for i in range(len(items)):
        if not scores[i] > 0:
            continue
        if size == n and not _ahead(items, scores, i, heap[0]):
            continue
        if _contains(blocked, items[i]):
            continue
        if size < n:
            child = size
            heap[size] = i
            size += 1
            while child > 0:  # sift up: a parent ranks after its children
                parent = (child - 1) // 2
                if not _ahead(items, scores, heap[parent], heap[child]):
                    break
                heap[parent], heap[child] = heap[child], heap[parent]
                child = parent
        else:
            heap[0] = i
            _sift_down(heap, size, items, scores)
    kept = heap[:size].copy()
    if size > INSERTION_SORT_MAX:
        kept = kept[np.argsort(items[kept], kind="mergesort")]
        return kept[np.argsort(-scores[kept], kind="mergesort")]
    for k in range(1, size):  # insertion sort, best first
        position = kept[k]
        j = k - 1
        while j >= 0 and _ahead(items, scores, position, kept[j]):
            kept[j + 1] = kept[j]
            j -= 1
        kept[j + 1] = position
    return kept


@njit(cache=True, nogil=True)
def strongest_positions(items, scores, k):
    """Positions, ascending, of the ``k`` best positive scores (ties to the lower item) of a row
    whose ``items`` are ascending: one selection, no sort of the whole row."""
    positive = np.flatnonzero(scores > 0)
    if len(positive) <= k:
        return positive
    kth = -np.partition(-scores[positive], k - 1)[k - 1]
    above = 0
    for p in positive:
        above += scores[p] > kth
    ties = k - above  # entries equal to the k-th score to keep: the lowest items, which come first
    kept = np.empty(k, np.int64)
    m = 0
    for p in positive:
        if scores[p] > kth or (scores[p] == kth and ties > 0):
            if scores[p] == kth:
                ties -= 1
            kept[m] = p
            m += 1
    return kept


@njit(cache=True, nogil=True)
def pick_and_union(items, scores, lengths, sizes, blocked, bits_scratch):
    """Each route's ``sizes[r]`` best proposals (``best_positions`` of its slice of the
    concatenated ``items``/``scores``, ``lengths`` per route), then their distinct items,
    ascending, with a bitmask of the routes that picked each (bit = route position)."""
    union = np.empty(len(items), np.int64)
    n = 0
    start = 0
    for route in range(len(lengths)):
        end = start + lengths[route]
        chosen = best_positions(items[start:end], scores[start:end], sizes[route], blocked)
        bit = np.uint8(1 << route)
        for j in range(len(chosen)):
            item = items[start + chosen[j]]
            if bits_scratch[item] == 0:
                union[n] = item
                n += 1
            bits_scratch[item] |= bit
        start = end
    union = sort_ids(union[:n], len(bits_scratch))
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


@njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _dot(a, b) -> float:
    """``a . b`` in float32, summed in the SIMD lanes this CPU has (the compiler may reorder the
    sum: the same on every call on one machine, possibly different in the last bit on another)."""
    total = np.float32(0.0)
    for k in range(len(a)):
        total += a[k] * b[k]
    return total


@njit(cache=True, nogil=True)
def item_features(out, where, bit_columns, rows, cols, bits, profiles, anchors, lengths, as_of, embeddings,
                  keys, key_starts, key_stride, windows, log_counts, first_seen, mean_value, cat_indptr, cat_indices, cat_data,
                  user_categories, category_counts, day):
    """Writes each candidate's item and user-item features into ``out`` in one pass, at the columns
    ``where`` gives (in ``candidates.ITEM_FEATURES`` order, the trend windows in ``windows`` order),
    and its route bits at ``bit_columns``. Vectors are read in place, never gathered; a window
    count is two binary searches in the item's own run of the timeline's sorted keys
    (``key_starts``)."""
    n_windows = len(windows)
    for i in range(len(rows)):
        r, c = rows[i], cols[i]
        item_vector = embeddings[c]
        out[i, where[0]] = np.float32(_dot(profiles[r], item_vector))
        anchor = anchors[r]
        out[i, where[1]] = np.float32(_dot(embeddings[anchor], item_vector)) if anchor >= 0 else np.float32(0.0)
        out[i, where[2]] = log_counts[c]
        base = np.int64(c) * key_stride + as_of[r]
        own = keys[key_starts[c]:key_starts[c + 1]]  # this item's keys: a short, local search
        hi = np.searchsorted(own, base, side="right")
        for w in range(n_windows):
            lo = np.searchsorted(own, base - windows[w], side="right")
            out[i, where[3 + w]] = np.float32(np.log1p(np.float64(hi - lo)))
        out[i, where[3 + n_windows]] = np.float32((as_of[r] - first_seen[c]) / day)
        out[i, where[4 + n_windows]] = mean_value[c]
        affinity = 0.0
        for j in range(cat_indptr[c], cat_indptr[c + 1]):
            affinity += np.float64(cat_data[j]) * np.float64(user_categories[r, cat_indices[j]])
        out[i, where[5 + n_windows]] = np.float32(affinity / max(np.float64(category_counts[c]), 1.0))
        out[i, where[6 + n_windows]] = np.float32(np.log1p(np.float64(lengths[r])))
        for b in range(len(bit_columns)):
            out[i, bit_columns[b]] = np.float32((bits[i] >> b) & 1)
