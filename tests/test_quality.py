"""Great Expectations suites and the blocking data checks, on good and broken data."""

import numpy as np
import pandas as pd
import pytest

from recsys_assets.defs.quality import raw_interactions_schema_and_keys, raw_items_schema_and_keys
from recsys_training import quality
from recsys_training.schema import normalise_interactions, normalise_items

ITEMS = normalise_items(pd.DataFrame({"item_id": [str(i) for i in range(20)], "title": [f"t{i}" for i in range(20)]}),
                        "items").rows


def _interactions(n: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"user_id": [f"u{u}" for u in rng.integers(0, 30, n)],
                          "item_id": [str(i) for i in rng.integers(0, 20, n)],
                          "timestamp": 1_600_000_000 + np.arange(n), "value": rng.integers(1, 6, n).astype(float)})
    return normalise_interactions(frame, "interactions").rows


def _report(items: pd.DataFrame, interactions: pd.DataFrame, previous_rows: int | None = None) -> dict:
    results = quality.validate([
        quality.TableSpec("raw_items", items, quality.items_expectations()),
        quality.TableSpec("raw_interactions", interactions, quality.interactions_expectations(
            items["item_id"].tolist(), previous_rows)),
    ])
    return quality.quality_report(results, {"raw_interactions": (len(interactions), 0)})


def test_good_data_scores_100():
    report = _report(ITEMS, _interactions())
    assert report["score"] == 100.0 and report["failed"] == []
    assert report["expectations"] >= 15


def test_unknown_items_nulls_and_insane_timestamps_lower_the_score_with_examples():
    broken = _interactions()
    broken.loc[:59, "item_id"] = "ghost"  # 30% unknown items
    broken.loc[60:69, "timestamp"] = 5  # 1970
    report = _report(ITEMS, broken)
    failed = {(r["expectation"], r["kwargs"].get("column")): r for r in report["failed"]}
    unknown = failed[("expect_column_values_to_be_in_set", "item_id")]
    assert unknown["unexpected_count"] == 60 and unknown["examples"][0] == "ghost"
    assert failed[("expect_column_values_to_be_between", "timestamp")]["unexpected_count"] == 10
    assert report["score"] == 100 - 20 - 5  # a critical and a warning expectation failed


def test_a_handful_of_orphan_rows_is_tolerated():
    few = _interactions(2_000)
    few.loc[:1, "item_id"] = "ghost"  # 0.1%: within tolerance, reported but not failed
    assert _report(ITEMS, few)["score"] == 100.0


def test_volume_drop_against_the_previous_report_fails():
    report = _report(ITEMS, _interactions(100), previous_rows=1_000)
    assert any(r["expectation"] == "expect_table_row_count_to_be_between" for r in report["failed"])


def test_rejected_rows_count_against_the_score():
    results = quality.validate([quality.TableSpec("raw_items", ITEMS, quality.items_expectations())])
    clean = quality.quality_report(results, {"raw_interactions": (100, 0)})["score"]
    lossy = quality.quality_report(results, {"raw_interactions": (990, 10)})["score"]
    assert clean == 100.0 and lossy == pytest.approx(90.0)


def test_blocking_checks_fail_on_duplicate_keys_and_wrong_types():
    assert raw_items_schema_and_keys(ITEMS).passed
    duplicated = pd.concat([ITEMS, ITEMS.iloc[:2]])
    result = raw_items_schema_and_keys(duplicated)
    assert not result.passed and "4 rows share a key" in result.metadata["problems"].value
    interactions = _interactions()
    assert raw_interactions_schema_and_keys(interactions).passed
    wrong = interactions.astype({"timestamp": "string"})
    result = raw_interactions_schema_and_keys(wrong)
    assert not result.passed and "timestamp has dtype string" in result.metadata["problems"].value


@pytest.mark.parametrize("missing", ["title", "item_id"])
def test_blocking_check_names_missing_column(missing):
    result = raw_items_schema_and_keys(ITEMS.drop(columns=missing))
    assert not result.passed and f"missing column {missing}" in result.metadata["problems"].value
