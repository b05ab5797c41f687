"""Where raw catalog and behaviour data come from: sample, export directory, database, synthetic."""

from __future__ import annotations

import csv
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from recsys_training.schema import UNTERMINATED, Normalised, normalise_interactions, normalise_items

EXPORT_SUFFIXES = (".parquet", ".csv", ".jsonl", ".json")


class UnreadableFile(ValueError):
    """An export file that is empty, truncated or not in the format its suffix says; the
    message names the file. Nothing of it is stored, and the watermark does not move."""


def read_table(path: Path) -> pd.DataFrame:
    """CSV, JSON Lines (``.jsonl`` or ``.json``) or Parquet, by file suffix. A file that is empty,
    has no rows or cannot be parsed is an ``UnreadableFile`` naming it. The last row of a CSV cut
    while written (no final newline, fewer fields than the header) is flagged, and the schema
    rejects it."""
    suffix = path.suffix.lower()
    if suffix not in EXPORT_SUFFIXES:
        raise ValueError(f"{path}: unsupported format {suffix!r}; use one of {', '.join(EXPORT_SUFFIXES)}")
    if path.stat().st_size == 0:
        raise UnreadableFile(f"{path}: the file is empty")
    try:
        if suffix == ".csv":
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
        elif suffix == ".parquet":
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_json(path, lines=True, dtype=False)
    except (ValueError, OSError, pd.errors.ParserError) as error:  # pyarrow's ArrowInvalid is a ValueError
        raise UnreadableFile(f"{path}: cannot be read as {suffix[1:]} (truncated or corrupt?): {error}") from error
    if frame.empty:
        raise UnreadableFile(f"{path}: no rows")
    if suffix == ".csv" and _last_line_cut(path, len(frame.columns)):
        frame[UNTERMINATED] = np.arange(len(frame)) == len(frame) - 1
    return frame


def _last_line_cut(path: Path, columns: int) -> bool:
    """The file ends without a newline inside a row that has fewer fields than the header: it
    was cut while written. (Some exports, MovieLens' ratings.csv among them, just lack the final
    newline; their last row is whole.)"""
    with path.open("rb") as handle:
        handle.seek(max(0, path.stat().st_size - 65_536))
        tail = handle.read()
    if tail.endswith((b"\n", b"\r")):
        return False
    last = tail.splitlines()[-1].decode("utf-8", errors="replace")
    return len(next(csv.reader([last]), [])) < columns


def find_export_file(directory: Path, stem: str) -> Path:
    for suffix in EXPORT_SUFFIXES:
        candidate = directory / f"{stem}{suffix}"
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"{directory}: no {stem}.{{parquet,csv,jsonl,json}} found")


@dataclass
class RawTables:
    items: Normalised
    interactions: Normalised


def load_movielens(directory: Path) -> RawTables:
    """MovieLens ml-latest-small: movies (title, genres, user tags) and ratings as interactions."""
    movies_path, ratings_path, tags_path = (directory / f for f in ("movies.csv", "ratings.csv", "tags.csv"))
    movies = read_table(movies_path).rename(columns={"movieId": "item_id", "genres": "categories"})
    if tags_path.exists():
        tags = read_table(tags_path)
        joined = tags.groupby("movieId")["tag"].agg(lambda t: "|".join(sorted(set(t.dropna()))))
        movies["tags"] = movies["item_id"].map(joined).fillna("")
    movies["categories"] = movies.get("categories", "").replace("(no genres listed)", "")
    ratings = read_table(ratings_path).rename(
        columns={"userId": "user_id", "movieId": "item_id", "rating": "value"})
    ratings["event"] = "rating"
    return RawTables(normalise_items(movies, str(movies_path)),
                     normalise_interactions(ratings, str(ratings_path)))


def load_export(directory: Path) -> RawTables:
    """A directory with ``items.*`` and ``interactions.*`` in the canonical schema."""
    items_path = find_export_file(directory, "items")
    interactions_path = find_export_file(directory, "interactions")
    items = normalise_items(read_table(items_path), str(items_path))
    items.rows["image"] = resolve_images(items.rows["image"], directory)
    return RawTables(items, normalise_interactions(read_table(interactions_path), str(interactions_path)))


def resolve_images(images: pd.Series, directory: Path) -> pd.Series:
    """``image`` values as absolute local paths: relative ones against ``directory``, file URIs
    to paths; empty stays empty, and anything else (a web address) is kept as it is, for the
    image step to count as not local."""
    def one(value: str) -> str:
        if not value:
            return ""
        if value.startswith("file://"):
            return urllib.parse.unquote(urllib.parse.urlparse(value).path)
        if "://" in value:
            return value
        path = Path(value)
        return str(path if path.is_absolute() else (Path(directory) / path).resolve())

    return images.astype(str).map(one)


def load_database(url: str, items: str, interactions: str, since: int | None = None) -> RawTables:
    """Two tables (or SELECT queries) through SQLAlchemy; ``since`` pushes the watermark down."""
    import sqlalchemy as sa

    def as_query(source: str) -> str:
        return source if source.lstrip().lower().startswith("select") else f"SELECT * FROM {source}"

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            item_frame = pd.read_sql_query(sa.text(as_query(items)), conn)
            query = as_query(interactions)
            if since is not None:
                query = f"SELECT * FROM ({query}) AS source_rows WHERE timestamp >= :since"
                frame = pd.read_sql_query(sa.text(query), conn, params={"since": int(since)})
            else:
                frame = pd.read_sql_query(sa.text(query), conn)
    finally:
        engine.dispose()
    origin = f"{engine.url.render_as_string(hide_password=True)}"
    return RawTables(normalise_items(item_frame, f"{origin} [{items}]"),
                     normalise_interactions(frame, f"{origin} [{interactions}]"))
