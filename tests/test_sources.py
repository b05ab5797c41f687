import json
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from recsys_assets import settings
from recsys_training import sources, synthetic
from recsys_training.schema import SchemaError, normalise_interactions
from tests.postgres import postgres_server

ITEMS = pd.DataFrame({"item_id": ["1", "2", "3"], "title": ["A", "B", "C"], "categories": ["x|y", "y", ""]})
INTERACTIONS = pd.DataFrame({
    "user_id": ["u1", "u1", "u2", "u2"],
    "item_id": ["1", "2", "2", "3"],
    "timestamp": [100, "2020-01-01T00:00:00Z", 300, 400],
    "event": ["view", "click", "view", "buy"],
    "value": [1.0, 2.0, 3.0, 4.0],
})


def test_bundled_sample_is_movielens_small():
    tables = sources.load_movielens(settings.sample_dir())
    assert len(tables.items.rows) == 9742
    rows = tables.interactions.rows
    # the shared copy carries one extra rating (user 999, item 999999) for an item not in the catalog
    assert len(rows) == 100837
    unknown = rows[~rows["item_id"].isin(tables.items.rows["item_id"])]
    assert unknown[["user_id", "item_id"]].values.tolist() == [["999", "999999"]]
    assert tables.interactions.rejects.empty
    toy_story = tables.items.rows.set_index("item_id").loc["1"]
    assert toy_story["categories"].startswith("Adventure|Animation") and "pixar" in toy_story["tags"]
    assert (settings.sample_dir() / "README.txt").exists()


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_export_directory_in_each_format(tmp_path: Path, fmt: str):
    frame = INTERACTIONS.astype({"timestamp": str})
    if fmt == "csv":
        ITEMS.to_csv(tmp_path / "items.csv", index=False)
        frame.to_csv(tmp_path / "interactions.csv", index=False)
    elif fmt == "jsonl":
        ITEMS.to_json(tmp_path / "items.jsonl", orient="records", lines=True)
        frame.to_json(tmp_path / "interactions.jsonl", orient="records", lines=True)
    else:
        ITEMS.to_parquet(tmp_path / "items.parquet")
        frame.to_parquet(tmp_path / "interactions.parquet")
    tables = sources.load_export(tmp_path)
    rows = tables.interactions.rows
    assert rows["timestamp"].tolist() == [100, 1577836800, 300, 400]
    assert rows["event"].tolist() == ["view", "click", "view", "buy"]
    assert tables.items.rows["description"].tolist() == ["", "", ""]


def test_bad_rows_are_rejected_with_reasons_and_counted():
    frame = pd.DataFrame({
        "user_id": ["u1", None, "u3", "u4", "u5"],
        "item_id": ["1", "2", None, "4", "5"],
        "timestamp": [1, 2, 3, "not a date", 5],
        "value": ["1", "2", "3", "4", "five"],
    })
    result = normalise_interactions(frame, "interactions.csv")
    assert result.rows["user_id"].tolist() == ["u1"]
    assert sorted(result.rejects["reason"]) == sorted(
        ["missing user_id", "missing item_id", "invalid timestamp", "non-numeric value"])
    assert set(result.rejects["source"]) == {"interactions.csv"}
    assert len(result.rows) + len(result.rejects) == len(frame)


def test_missing_column_names_file_and_column(tmp_path: Path):
    ITEMS.to_csv(tmp_path / "items.csv", index=False)
    INTERACTIONS.drop(columns="timestamp").to_csv(tmp_path / "interactions.csv", index=False)
    with pytest.raises(SchemaError, match=r"interactions\.csv: missing required column\(s\) timestamp"):
        sources.load_export(tmp_path)


def test_unsupported_format_is_named(tmp_path: Path):
    (tmp_path / "x.xml").write_text("<a/>")
    with pytest.raises(ValueError, match="x.xml: unsupported format"):
        sources.read_table(tmp_path / "x.xml")


def _load_into(url: str) -> None:
    engine = sa.create_engine(url)
    ITEMS.to_sql("catalog", engine, index=False, if_exists="replace")
    INTERACTIONS.assign(timestamp=[100, 200, 300, 400]).to_sql("events", engine, index=False, if_exists="replace")
    engine.dispose()


def _check_database(url: str) -> None:
    tables = sources.load_database(url, "catalog", "events")
    assert len(tables.items.rows) == 3 and len(tables.interactions.rows) == 4
    since = sources.load_database(url, "SELECT * FROM catalog", "SELECT * FROM events WHERE event <> 'buy'", since=200)
    assert since.interactions.rows["timestamp"].tolist() == [200, 300]


def test_sqlite_database(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    _load_into(url)
    _check_database(url)


def test_postgres_database():
    try:
        server = postgres_server()
        url = server.__enter__()
    except (FileNotFoundError, OSError) as error:
        pytest.skip(f"no PostgreSQL server binaries: {error}")
    try:
        _load_into(url)
        _check_database(url)
    finally:
        server.__exit__(None, None, None)


def test_synthetic_is_seeded_and_shaped():
    a = synthetic.generate(200, 300, 5_000, seed=3)
    b = synthetic.generate(200, 300, 5_000, seed=3)
    pd.testing.assert_frame_equal(a.interactions.rows, b.interactions.rows)
    rows = a.interactions.rows
    assert rows.groupby("user_id").size().min() >= 5
    counts = rows["item_id"].value_counts()
    # power-law popularity: the top 10% of items take far more than 10% of interactions
    assert counts.iloc[: len(counts) // 10].sum() / counts.sum() > 0.3
    assert json.dumps(a.items.rows.iloc[0].to_dict())  # every item field is plain text


def test_synthetic_heavy_users_stay_in_the_past_so_no_row_is_rejected():
    """Users with thousands of interactions used to run years past today and lose rows as future ones."""
    tables = synthetic.generate(60, 300, 40_000, seed=0)
    assert len(tables.interactions.rejects) == 0
    assert len(tables.interactions.rows) == 40_001
    horizon = 1_600_000_000 + synthetic.HORIZON_YEARS * 365 * 86_400
    assert tables.interactions.rows["timestamp"].max() <= horizon + 600
