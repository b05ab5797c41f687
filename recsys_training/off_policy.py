"""Off-policy estimate of a ranking policy's clicks from logged lists, under a position-based model.

Position-based click model: P(click | item i at position k, request x) = theta_k * gamma(x, i), with
examination theta_k = k ** -eta. For a target policy that shows T_x, the value is the expected
clicks per list, V = E_x sum_j theta_j gamma(x, T_x[j]).

Each logged item carries its propensity rho_x(i): its expected examination under the logging
policy (sum over positions of P(i shown at l) * theta_l). A deterministic logger has
rho = theta_(logged position); an exploring one (say, epsilon-greedy shuffles) has more. Then

    IPS:  V_ips = 1/n sum_x sum_{i in L_x and T_x} c_x(i) * theta_(t(i)) / rho_x(i)
    norm: N     = 1/n sum_x sum_{i in L_x and T_x} theta_(l(i)) * theta_(t(i)) / rho_x(i) / S,

with S = sum_j theta_j. N has expectation 1 when every target item can be logged; the
self-normalised estimate is V_ips / N. With a deterministic logger it credits only target items
that were actually shown and assumes the others are as relevant as those (``overlap`` says how
much of the target's examination that covers). Confidence intervals: Poisson bootstrap over
requests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Estimate:
    value: float  # expected clicks per list under the target policy
    ci_low: float
    ci_high: float
    logged_value: float  # observed clicks per list of the logging policy
    difference_ci: tuple[float, float]  # target - logged
    overlap: float  # share of the target's examination mass on logged items
    requests: int

    def significantly_worse(self) -> bool:
        return self.difference_ci[1] < 0.0


def examination(positions: np.ndarray, eta: float = 1.0) -> np.ndarray:
    """theta_k = k ** -eta for 1-based positions."""
    return np.power(np.asarray(positions, dtype=np.float64), -eta)


def snips(logged: pd.DataFrame, target: pd.DataFrame, depth: int = 10, eta: float = 1.0,
          replicates: int = 300, seed: int = 0) -> Estimate:
    """``logged``: one row per shown item (request_id, item_id, position, clicked, and optionally
    propensity); ``target``: one row per item of the target list (request_id, item_id, position).
    Requests are those of ``logged``; positions are 1-based and cut at ``depth``."""
    logged = logged[logged["position"] <= depth]
    target = target[target["position"] <= depth]
    requests = pd.Index(logged["request_id"].unique())
    n = len(requests)
    if n == 0:
        raise ValueError("no logged requests to estimate from")
    theta_sum = float(examination(np.arange(1, depth + 1), eta).sum())
    if "propensity" in logged:
        propensity = logged["propensity"].fillna(pd.Series(examination(logged["position"], eta), index=logged.index))
    else:
        propensity = pd.Series(examination(logged["position"], eta), index=logged.index)
    shown = logged.assign(rho=propensity.to_numpy(), theta_l=examination(logged["position"], eta))
    matched = shown.merge(target.rename(columns={"position": "target_position"}), on=["request_id", "item_id"])
    theta_t = examination(matched["target_position"], eta)
    rows = requests.get_indexer(matched["request_id"])
    reward = np.bincount(rows, weights=matched["clicked"].to_numpy(np.float64) * theta_t / matched["rho"].to_numpy(),
                         minlength=n)
    norm = np.bincount(rows, weights=matched["theta_l"].to_numpy() * theta_t / matched["rho"].to_numpy(),
                       minlength=n) / theta_sum
    observed = np.bincount(requests.get_indexer(shown["request_id"]), weights=shown["clicked"].to_numpy(np.float64),
                           minlength=n)
    overlap = float(np.bincount(rows, weights=theta_t, minlength=n).sum() / (n * theta_sum))

    def value(weights: np.ndarray) -> np.ndarray:
        return (weights @ reward) / np.maximum(weights @ norm, 1e-12)

    weights = np.random.default_rng(seed).poisson(1.0, size=(replicates, n)).astype(np.float64)
    boot = value(weights)
    boot_logged = (weights @ observed) / np.maximum(weights.sum(axis=1), 1.0)
    estimate = float(value(np.ones((1, n)))[0])
    low, high = np.percentile(boot, [2.5, 97.5])
    diff_low, diff_high = np.percentile(boot - boot_logged, [2.5, 97.5])
    return Estimate(estimate, float(low), float(high), float(observed.mean()), (float(diff_low), float(diff_high)),
                    overlap, n)
