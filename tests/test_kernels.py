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


def test_union_with_bits_equals_unique_and_or_of_route_bits():
    rng = np.random.default_rng(3)
    picks = [rng.choice(200, size, replace=False) for size in (30, 0, 50, 10)]
    items, bits = Accumulator(200).union(picks)
    expected = np.unique(np.concatenate(picks))
    assert items.tolist() == expected.tolist()
    for item, mask in zip(items, bits, strict=True):
        assert mask == sum(1 << r for r, pick in enumerate(picks) if item in pick)
    again, _ = Accumulator(200).union(picks[:1])
    assert again.tolist() == np.sort(picks[0]).tolist()


def test_lookup_reads_the_support_and_zero_elsewhere():
    row = SparseRow(np.array([2, 5, 9], np.int32), np.array([0.5, -1.0, 3.0], np.float32), 12)
    assert row.at(np.arange(12)).tolist() == [0, 0, 0.5, 0, 0, -1.0, 0, 0, 0, 3.0, 0, 0]
    assert SparseRow.empty(12).at(np.array([1, 2])).tolist() == [0.0, 0.0]
