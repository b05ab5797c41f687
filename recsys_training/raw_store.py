"""Incremental raw tables on disk: append new interactions, keep a watermark, never half-write."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

INTERACTION_KEY = ["user_id", "item_id", "timestamp", "event"]


@dataclass(frozen=True)
class Watermark:
    """The latest timestamp stored and how many rows the table holds."""

    max_timestamp: int | None
    rows: int
    digest: str

    @classmethod
    def of(cls, interactions: pd.DataFrame) -> Watermark:
        if interactions.empty:
            return cls(None, 0, "empty")
        keys = pd.util.hash_pandas_object(interactions[INTERACTION_KEY], index=False)
        digest = hashlib.sha256(keys.sort_values().to_numpy().tobytes()).hexdigest()[:16]
        return cls(int(interactions["timestamp"].max()), int(len(interactions)), digest)


def merge_new(existing: pd.DataFrame | None, incoming: pd.DataFrame, watermark: Watermark | None) -> tuple[pd.DataFrame, int]:
    """Rows of ``incoming`` at or after the watermark that are not stored yet, appended."""
    if existing is None or existing.empty:
        merged = incoming.drop_duplicates(INTERACTION_KEY).reset_index(drop=True)
        return merged, len(merged)
    candidates = incoming
    if watermark is not None and watermark.max_timestamp is not None:
        candidates = incoming[incoming["timestamp"] >= watermark.max_timestamp]
    candidates = candidates.drop_duplicates(INTERACTION_KEY)
    stored_keys = pd.MultiIndex.from_frame(existing[INTERACTION_KEY].astype({"timestamp": "int64"}))
    incoming_keys = pd.MultiIndex.from_frame(candidates[INTERACTION_KEY].astype({"timestamp": "int64"}))
    new_rows = candidates[~incoming_keys.isin(stored_keys)]
    if new_rows.empty:
        return existing, 0
    return pd.concat([existing, new_rows], ignore_index=True), len(new_rows)


class RawStore:
    """``interactions.parquet`` plus ``watermark.json`` in one directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.table_path = self.directory / "interactions.parquet"
        self.watermark_path = self.directory / "watermark.json"

    def load(self) -> tuple[pd.DataFrame | None, Watermark | None]:
        if not self.table_path.exists() or not self.watermark_path.exists():
            return None, None
        return pd.read_parquet(self.table_path), Watermark(**json.loads(self.watermark_path.read_text()))

    def save(self, interactions: pd.DataFrame) -> Watermark:
        """Write the table, then the watermark; each through a temporary file and a rename."""
        self.directory.mkdir(parents=True, exist_ok=True)
        watermark = Watermark.of(interactions)
        tmp_table = self.table_path.with_suffix(".parquet.tmp")
        interactions.to_parquet(tmp_table, index=False)
        tmp_table.replace(self.table_path)
        tmp_mark = self.watermark_path.with_suffix(".json.tmp")
        tmp_mark.write_text(json.dumps(asdict(watermark)))
        tmp_mark.replace(self.watermark_path)
        return watermark
