"""Paired bootstrap intervals and the promotion decisions built on them."""

import numpy as np
import pytest

from recsys_training.bootstrap import paired_interval
from recsys_training.model_metrics import ModelMetrics
from recsys_training.promotion import (
    GateThresholds,
    PairedMetrics,
    beats_baselines,
    compare_with_champion,
    cost_ok,
    enough_users,
)

USERS = np.array([f"u{i:04d}" for i in range(400)])


def _paired(ndcg, recall=None) -> PairedMetrics:
    ndcg = np.asarray(ndcg, dtype=float)
    return PairedMetrics(USERS[: len(ndcg)], ndcg, ndcg.copy() if recall is None else np.asarray(recall, float))


def _metrics(paired: PairedMetrics) -> ModelMetrics:
    return ModelMetrics(ndcg=float(paired.ndcg.mean()), recall=float(paired.recall.mean()), hr=0.5, coverage=0.1,
                        detail_ndcg=0.1, detail_recall=0.1, evaluated_users=len(paired.users), auc=0.8)


def test_the_interval_covers_the_true_difference_with_the_width_of_its_standard_error():
    rng = np.random.default_rng(0)
    reference = rng.random(400)
    challenger = reference + rng.normal(0.01, 0.1, 400)
    interval = paired_interval(challenger, reference)
    assert interval.low < 0.01 < interval.high
    expected_width = 2 * 1.96 * (challenger - reference).std() / np.sqrt(400)
    assert interval.high - interval.low == pytest.approx(expected_width, rel=0.15)
    again = paired_interval(challenger, reference)
    assert (again.low, again.high) == (interval.low, interval.high)  # seeded: the gate is reproducible
    constant = paired_interval(reference + 0.05, reference)
    assert constant.low == pytest.approx(0.05) and constant.high == pytest.approx(0.05)


def test_a_challenger_within_the_noise_of_the_champion_is_not_promoted():
    rng = np.random.default_rng(1)
    champion = _paired(rng.random(400))
    noisy = _paired(champion.ndcg + rng.normal(0.002, 0.05, 400))  # +0.002 on average: what the old gate took
    result = compare_with_champion(_metrics(noisy), _metrics(champion), GateThresholds(), noisy, champion)
    assert not result.passed and "lower end" in result.reason
    assert result.numbers["champion_ndcg@10_diff_low"] < 0 < result.numbers["champion_ndcg@10_diff_high"]
    better = _paired(champion.ndcg + rng.normal(0.02, 0.05, 400))
    assert compare_with_champion(_metrics(better), _metrics(champion), GateThresholds(), better, champion).passed


def test_recall_wholly_below_the_tolerance_fails_even_when_ndcg_wins():
    champion = _paired(np.full(400, 0.2), np.full(400, 0.3))
    challenger = _paired(np.full(400, 0.25), np.full(400, 0.29))
    result = compare_with_champion(_metrics(challenger), _metrics(champion), GateThresholds(), challenger, champion)
    assert not result.passed and "recall@10" in result.reason
    within = _paired(np.full(400, 0.25), np.full(400, 0.297))
    assert compare_with_champion(_metrics(within), _metrics(champion), GateThresholds(), within, champion).passed


def test_a_challenger_clearly_worse_on_the_next_item_detail_page_is_not_promoted():
    champion, better = _paired(np.full(400, 0.2)), _paired(np.full(400, 0.25))
    champion_next = _paired(np.full(300, 0.15))
    worse_next, equal_next = _paired(np.full(300, 0.13)), _paired(np.full(300, 0.149))
    result = compare_with_champion(_metrics(better), _metrics(champion), GateThresholds(), better, champion,
                                   worse_next, champion_next)
    assert not result.passed and "detail_next ndcg@10 vs champion" in result.reason
    assert result.numbers["champion_detail_next_ndcg@10_diff"] == pytest.approx(-0.02)
    assert compare_with_champion(_metrics(better), _metrics(champion), GateThresholds(), better, champion,
                                 equal_next, champion_next).passed


def test_comparing_different_users_is_an_error():
    a = _paired(np.ones(10))
    b = PairedMetrics(np.array([f"x{i}" for i in range(10)]), np.ones(10), np.ones(10))
    with pytest.raises(ValueError, match="different users"):
        compare_with_champion(_metrics(a), _metrics(b), GateThresholds(), a, b)


def test_the_model_must_beat_most_popular_and_ease_when_ease_was_computed():
    rng = np.random.default_rng(2)
    model = _paired(rng.random(400) * 0.3 + 0.1)
    popular = _paired(model.ndcg - 0.05)
    ease_better = _paired(model.ndcg + 0.01)
    result = beats_baselines(model, {"most_pop": popular, "ease": ease_better}, GateThresholds())
    assert not result.passed and "ease" in result.reason and "most_pop" not in result.reason
    skipped = beats_baselines(model, {"most_pop": popular, "ease": None}, GateThresholds())
    assert skipped.passed and skipped.numbers["ease_skipped"] == 1
    assert not beats_baselines(model, {"most_pop": None, "ease": None}, GateThresholds()).passed


def test_a_small_data_set_does_not_waive_the_minimum_of_evaluated_users():
    assert not enough_users(16, GateThresholds()).passed  # 16 users: all there were, still too few
    overridden = enough_users(16, GateThresholds(allow_small_eval=True))
    assert overridden.passed and overridden.numbers["override"] == 1
    assert enough_users(200, GateThresholds()).passed


def test_cost_budgets():
    assert cost_ok(10.0, 400.0, GateThresholds()).passed
    over = cost_ok(10.0, 400.0, GateThresholds(max_loaded_memory_mb=300))
    assert not over.passed and "after loading" in over.reason
    assert not cost_ok(5_000.0, 400.0, GateThresholds()).passed


def test_the_memory_after_loading_is_the_loading_process_own_not_its_parents(tmp_path):
    from recsys_runtime.bundle_checks import bundle_size_mb, loaded_memory_mb
    from tests.bundles import build_bundle

    build_bundle(tmp_path / "v1", 1, "v1")
    ballast = np.ones(600_000_000 // 8)  # 600 MB resident here, in the parent
    measured = loaded_memory_mb(tmp_path / "v1")
    assert 50 < measured < 600, measured
    assert ballast[-1] == 1.0 and 0 < bundle_size_mb(tmp_path / "v1") < 50
