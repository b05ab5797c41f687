"""The compiled request-path loops against the numpy formulations they replaced."""

import numpy as np
import pytest

from recsys_runtime import kernels
from recsys_runtime.sparse import Accumulator, SparseRow


def _numpy_best(items, scores, n, blocked):
    keep = (scores > 0) & ~np.isin(items, blocked)
    items, scores = items[keep], scores[keep]
    order = np.lexsort((items, -scores))[:n]
    return items[order], scores[order]


@pytest.mark.parametrize("seed", range(5))
def test_best_positions_equal_a_lexsort_with_ties_and_blocked_items(seed):
    rng = np.random.default_rng(seed)
    items = rng.permutation(500)[:300].astype(np.int64)
    scores = rng.integers(-2, 6, len(items)).astype(np.float32)  # many ties and non-positive scores
    blocked = np.sort(rng.choice(500, 40, replace=False))
    for n in (0, 1, 7, 50, 400):
        positions = kernels.best_positions(items, scores, n, blocked)
        expected_items, expected_scores = _numpy_best(items, scores, n, blocked)
        assert items[positions].tolist() == expected_items.tolist(), n
        assert np.array_equal(scores[positions], expected_scores)


def test_pick_equals_each_routes_best_then_unique_and_or_of_route_bits():
    rng = np.random.default_rng(3)
    proposals = [(rng.choice(200, size, replace=False), rng.integers(-1, 4, size).astype(np.float32))
                 for size in (30, 0, 50, 10)]
    proposals.append((np.arange(20), np.log1p(np.arange(20, 0, -1)).astype(np.float64)))  # float64 scores too
    sizes = [12, 5, 20, 10, 3]
    blocked = np.sort(rng.choice(200, 15, replace=False))
    items, bits = Accumulator(200).pick(proposals, sizes, blocked)
    picks = [_numpy_best(np.asarray(i), s, n, blocked)[0] for (i, s), n in zip(proposals, sizes, strict=True)]
    assert items.tolist() == np.unique(np.concatenate(picks)).tolist()
    for item, mask in zip(items, bits, strict=True):
        assert mask == sum(1 << r for r, pick in enumerate(picks) if item in pick)
    again, _ = Accumulator(200).pick(proposals[:1], sizes[:1], blocked)  # the scratch was left clean
    assert again.tolist() == np.sort(picks[0]).tolist()


def test_lookup_reads_the_support_and_zero_elsewhere():
    row = SparseRow(np.array([2, 5, 9], np.int32), np.array([0.5, -1.0, 3.0], np.float32), 12)
    assert row.at(np.arange(12)).tolist() == [0, 0, 0.5, 0, 0, -1.0, 0, 0, 0, 3.0, 0, 0]
    assert SparseRow.empty(12).at(np.array([1, 2])).tolist() == [0.0, 0.0]


@pytest.mark.parametrize("bound", [1, 50, 3_000, 5_000_000])  # one pass, several passes, 3 passes of 11 bits
def test_sort_ids_equals_a_sort(bound):
    rng = np.random.default_rng(bound)
    for n in (0, 10, 63, 64, 1_000):
        ids = rng.integers(0, bound, n).astype(np.int32)
        assert kernels.sort_ids(ids, bound).tolist() == np.sort(ids).tolist()


def test_weighted_row_sum_adds_row_after_row_in_float32():
    rng = np.random.default_rng(4)
    vectors = rng.standard_normal((500, 48)).astype(np.float32)
    for n in (0, 1, 37, 200):
        rows = rng.integers(0, 500, n)
        weights = rng.random(n).astype(np.float32)
        expected = np.zeros(48, np.float32)
        for row, weight in zip(rows, weights, strict=True):
            expected += vectors[row] * weight
        total = kernels.weighted_row_sum(vectors, rows, weights)
        assert np.array_equal(total, expected)
        assert np.allclose(total, (vectors[rows].astype(np.float64) * weights[:, None]).sum(axis=0), atol=1e-4)


@pytest.mark.parametrize("seed", range(5))
def test_strongest_positions_keep_the_best_positive_scores_with_ties_to_the_lower_item(seed):
    rng = np.random.default_rng(seed)
    items = np.sort(rng.choice(1_000, 400, replace=False))
    scores = rng.integers(-2, 8, len(items)).astype(np.float32)  # many ties and non-positive scores
    for k in (1, 7, 50, 390, 400):
        positions = kernels.strongest_positions(items, scores, k)
        expected = np.sort(kernels.best_positions(items, scores, k, np.empty(0, np.int64)))
        assert positions.tolist() == expected.tolist(), k
