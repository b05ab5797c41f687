"""The off-policy estimator on simulated logs whose click model is known."""

import numpy as np
import pandas as pd
import pytest

from recsys_training.off_policy import examination, snips

POOL, DEPTH = 20, 10


def _world(n: int, seed: int):
    rng = np.random.default_rng(seed)
    relevance = rng.beta(1.0, 4.0, size=(n, POOL))  # gamma(x, i): click probability when examined
    logging_score = relevance + rng.normal(0, 0.15, size=(n, POOL))  # the champion: a noisy ranking
    return rng, relevance, logging_score


def _log(rng, relevance, logging_score, epsilon: float):
    """epsilon-greedy logging: with probability epsilon a uniform shuffle of the pool, else the
    champion's ranking; each shown item's propensity is its exact expected examination."""
    n = len(relevance)
    theta = examination(np.arange(1, DEPTH + 1))
    greedy = np.argsort(-logging_score, axis=1)
    shuffled = np.argsort(rng.random((n, POOL)), axis=1)
    explore = rng.random(n) < epsilon
    shown = np.where(explore[:, None], shuffled, greedy)[:, :DEPTH]
    greedy_rank = np.argsort(greedy, axis=1)  # position (0-based) of each item in the greedy list
    rows = np.repeat(np.arange(n), DEPTH)
    items = shown.ravel()
    positions = np.tile(np.arange(1, DEPTH + 1), n)
    greedy_pos = greedy_rank[rows, items]
    greedy_theta = np.where(greedy_pos < DEPTH, examination(np.minimum(greedy_pos, DEPTH - 1) + 1), 0.0)
    propensity = (1 - epsilon) * greedy_theta + epsilon * theta.sum() / POOL
    clicked = rng.random(len(items)) < examination(positions) * relevance[rows, items]
    return pd.DataFrame({"request_id": rows, "item_id": items, "position": positions, "clicked": clicked,
                         "propensity": propensity})


def _target(scores: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
    top = np.argsort(-scores, axis=1)[:, :DEPTH]
    n = len(scores)
    frame = pd.DataFrame({"request_id": np.repeat(np.arange(n), DEPTH), "item_id": top.ravel(),
                          "position": np.tile(np.arange(1, DEPTH + 1), n)})
    return frame, top


def _true_value(relevance: np.ndarray, top: np.ndarray) -> float:
    theta = examination(np.arange(1, DEPTH + 1))
    return float((np.take_along_axis(relevance, top, axis=1) * theta).sum(axis=1).mean())


@pytest.mark.parametrize("quality", ["better", "worse"])
def test_snips_recovers_the_true_click_rate_of_an_unseen_policy(quality):
    rng, relevance, logging_score = _world(30_000, seed=1)
    logged = _log(rng, relevance, logging_score, epsilon=0.3)
    noise = rng.normal(0, 0.05, relevance.shape)
    target, top = _target(relevance + noise if quality == "better" else -relevance + noise)
    truth = _true_value(relevance, top)
    estimate = snips(logged, target, depth=DEPTH)
    assert estimate.ci_low <= truth <= estimate.ci_high
    assert abs(estimate.value - truth) < 0.05 * truth
    # the logged click rate is what the champion got: far from the target's value either way
    if quality == "better":
        assert estimate.difference_ci[0] > 0 and truth > estimate.logged_value * 1.05
    else:
        assert estimate.significantly_worse() and truth < estimate.logged_value * 0.7


def test_the_logging_policy_estimates_its_own_observed_click_rate():
    rng, relevance, logging_score = _world(20_000, seed=2)
    logged = _log(rng, relevance, logging_score, epsilon=0.0)
    target, top = _target(logging_score)
    estimate = snips(logged, target, depth=DEPTH)
    assert estimate.overlap == pytest.approx(1.0)
    assert estimate.value == pytest.approx(estimate.logged_value, rel=1e-9)
    assert estimate.ci_low <= _true_value(relevance, top) <= estimate.ci_high


def test_confidence_intervals_cover_the_truth_across_seeds():
    covered = 0
    for seed in range(10):
        rng, relevance, logging_score = _world(5_000, seed=10 + seed)
        logged = _log(rng, relevance, logging_score, epsilon=0.5)
        target, top = _target(relevance + rng.normal(0, 0.1, relevance.shape))
        estimate = snips(logged, target, depth=DEPTH, replicates=200, seed=seed)
        covered += estimate.ci_low <= _true_value(relevance, top) <= estimate.ci_high
    assert covered >= 8  # nominal 95%: 8 of 10 or better (P(fewer) ~ 1% at the nominal rate)


def test_no_logged_requests_is_an_error():
    empty = pd.DataFrame({"request_id": [], "item_id": [], "position": [], "clicked": []})
    with pytest.raises(ValueError, match="no logged requests"):
        snips(empty, empty.drop(columns="clicked"))
