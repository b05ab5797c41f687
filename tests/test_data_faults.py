"""Faulty raw exports: each fault has one documented outcome, and none moves the watermark past
data that was not stored."""

import json

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from recsys_training import sources, synthetic
from recsys_training.schema import FUTURE_TOLERANCE_SECONDS, SchemaError, normalise_interactions, normalise_items
from recsys_training.sources import UnreadableFile
from tests.pipeline_helpers import materialised, materialize


@pytest.fixture(scope="module")
def tables():
    return synthetic.generate(100, 150, 4_000, seed=9)


def _export(directory, tables, interactions=None, items=None, suffix="csv"):
    directory.mkdir(parents=True, exist_ok=True)
    for name, frame in (("items", tables.items.rows if items is None else items),
                        ("interactions", tables.interactions.rows if interactions is None else interactions)):
        path = directory / f"{name}.{suffix}"
        frame.to_parquet(path) if suffix == "parquet" else frame.to_csv(path, index=False)
    return directory


def test_one_percent_garbage_rows_are_rejected_with_their_reasons_and_the_rest_loads(tmp_path, tables):
    rows = tables.interactions.rows.astype({"timestamp": object, "value": object}).copy()
    rng = np.random.default_rng(0)
    garbage = rng.choice(len(rows), len(rows) // 100, replace=False)
    kinds = np.arange(len(garbage)) % 4
    rows.iloc[garbage[kinds == 0], rows.columns.get_loc("user_id")] = None
    rows.iloc[garbage[kinds == 1], rows.columns.get_loc("item_id")] = ""
    rows.iloc[garbage[kinds == 2], rows.columns.get_loc("timestamp")] = "yesterday-ish"
    rows.iloc[garbage[kinds == 3], rows.columns.get_loc("value")] = "lots"
    loaded = sources.load_export(_export(tmp_path, tables, interactions=rows))
    assert len(loaded.interactions.rejects) == len(garbage)
    assert len(loaded.interactions.rows) + len(garbage) == len(rows)
    assert loaded.interactions.rejects["reason"].value_counts().to_dict() == {
        "missing user_id": (kinds == 0).sum(), "missing item_id": (kinds == 1).sum(),
        "invalid timestamp": (kinds == 2).sum(), "non-numeric value": (kinds == 3).sum()}


def test_duplicate_items_with_conflicting_titles_keep_the_later_row_and_reject_the_earlier(tables):
    items = tables.items.rows.copy()
    twin = items.iloc[[3]].assign(title="A later, corrected title")
    result = normalise_items(pd.concat([items, twin], ignore_index=True), "items.csv")
    kept = result.rows.set_index("item_id").loc[twin["item_id"].iloc[0], "title"]
    assert kept == "A later, corrected title" and len(result.rows) == len(items)
    assert result.rejects["reason"].tolist() == ["duplicate item_id (a later row wins)"]
    assert result.rejects["title"].tolist() == [items["title"].iloc[3]]


def test_timestamps_in_the_future_are_rejected_and_cannot_move_the_watermark(tmp_path, tables):
    rows = tables.interactions.rows.copy()
    now = float(rows["timestamp"].max()) + 10
    rows.loc[rows.index[:5], "timestamp"] = int(now + FUTURE_TOLERANCE_SECONDS + 3_600)
    result = normalise_interactions(rows, "interactions.csv", now=now)
    assert (result.rejects["reason"] == "timestamp in the future").sum() == 5
    assert result.rows["timestamp"].max() <= now
    run = materialize(tmp_path, selection=["raw_items", "raw_interactions"], kind="export",
                      export_dir=str(_export(tmp_path / "export", tables, interactions=rows.assign(
                          timestamp=rows["timestamp"].where(rows.index >= 5, 4_000_000_000)))))
    assert run.success
    watermark = json.loads((tmp_path / "data" / "raw" / "interactions" / "watermark.json").read_text())
    assert watermark["max_timestamp"] == int(tables.interactions.rows["timestamp"].iloc[5:].max())


def test_a_renamed_column_fails_the_run_naming_the_file_and_the_column(tmp_path, tables):
    renamed = tables.interactions.rows.rename(columns={"timestamp": "ts"})
    with pytest.raises(SchemaError, match=r"interactions\.csv: missing required column\(s\) timestamp"):
        sources.load_export(_export(tmp_path, tables, interactions=renamed))


@pytest.mark.parametrize("fault", ["empty", "header only", "truncated parquet"])
def test_an_empty_or_truncated_file_fails_the_run_naming_it_and_the_stored_data_stays(tmp_path, tables, fault):
    export = tmp_path / "export"
    suffix = "parquet" if "parquet" in fault else "csv"
    first = materialize(tmp_path, selection=["raw_items", "raw_interactions"], kind="export",
                        export_dir=str(_export(export, tables, suffix=suffix)))
    assert first.success
    mark = tmp_path / "data" / "raw" / "interactions" / "watermark.json"
    before = mark.read_text()
    broken = export / f"interactions.{suffix}"
    if fault == "empty":
        broken.write_bytes(b"")
    elif fault == "header only":
        broken.write_text("user_id,item_id,timestamp,event,value\n")
    else:
        broken.write_bytes(broken.read_bytes()[: broken.stat().st_size // 2])
    with pytest.raises(UnreadableFile, match=f"interactions.{suffix}"):
        sources.load_export(export)
    again = materialize(tmp_path, selection=["raw_items", "raw_interactions"], kind="export", export_dir=str(export))
    assert not again.success and "raw_interactions" not in materialised(again)
    failure = [e for e in again.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE][0]
    assert f"interactions.{suffix}" in str(failure.event_specific_data.error)
    assert mark.read_text() == before


def test_a_csv_cut_inside_its_last_row_loses_only_that_row_which_is_rejected(tmp_path, tables):
    export = _export(tmp_path, tables)
    path = export / "interactions.csv"
    text = path.read_text().rstrip("\n")
    start = text.rindex("\n") + 1
    user, item, stamp = text[start:].split(",")[:3]
    path.write_text(text[:start] + f"{user},{item},{stamp[:5]}")  # cut inside the last row's timestamp
    loaded = sources.load_export(export)
    assert len(loaded.interactions.rows) == len(tables.interactions.rows) - 1
    assert loaded.interactions.rejects["reason"].tolist() == ["unterminated last line (truncated file?)"]
