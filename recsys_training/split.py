"""Per-user temporal holdout, as defined in shared/EVALUATION.md."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from recsys_training.schema import canonical_order

MIN_USER_INTERACTIONS = 5
TEST_SHARE = 0.2


@dataclass(frozen=True)
class Split:
    """Train rows and held-out rows; both keep the columns of the input."""

    train: pd.DataFrame
    test: pd.DataFrame


def dedupe_interactions(interactions: pd.DataFrame) -> pd.DataFrame:
    """One row per (user_id, item_id): the earliest, ties broken by item order."""
    ordered = canonical_order(interactions)
    return ordered.drop_duplicates(["user_id", "item_id"], keep="first").reset_index(drop=True)


def temporal_holdout(
    interactions: pd.DataFrame,
    min_interactions: int = MIN_USER_INTERACTIONS,
    test_share: float = TEST_SHARE,
) -> Split:
    """Hold out the last ``max(1, round(test_share * n))`` interactions of each user.

    Users with fewer than ``min_interactions`` rows are dropped entirely. Test rows whose item
    never occurs in train are dropped (no model can rank them).
    """
    data = dedupe_interactions(interactions)
    sizes = data.groupby("user_id")["item_id"].transform("size")
    data = data[sizes >= min_interactions]
    data = canonical_order(data).reset_index(drop=True)
    n = data.groupby("user_id")["item_id"].transform("size").to_numpy()
    position = data.groupby("user_id").cumcount().to_numpy()
    n_test = np.maximum(1, np.rint(test_share * n).astype(int))
    is_test = position >= n - n_test
    train = data[~is_test].reset_index(drop=True)
    test = data[is_test]
    test = test[test["item_id"].isin(train["item_id"].unique())].reset_index(drop=True)
    return Split(train=train, test=test)


VALIDATION = "validation"
SERVING = "serving"


def protocol_folds(interactions: pd.DataFrame) -> dict[str, Split]:
    """``serving``: train/test of the protocol. ``validation``: the same cut applied to the
    serving train part, for ranker labels and tuning; it never sees a test row."""
    serving = temporal_holdout(interactions)
    return {VALIDATION: temporal_holdout(serving.train), SERVING: serving}
