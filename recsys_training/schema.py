"""The canonical tables every source is normalised to, with row-level validation.

items:        item_id*, title*, description, categories ("a|b"), tags ("a|b"), image (a local path or
              file URI; an export directory's relative paths are resolved against it)
interactions: user_id*, item_id*, timestamp* (epoch seconds or ISO 8601), event, value
(* required). Rows that fail typing are returned as rejects with the reason; nothing is
dropped silently. Interactions stamped more than ``FUTURE_TOLERANCE_SECONDS`` after the load
are rejected too ("timestamp in the future"): a clock error upstream must not move the watermark
ahead of the data.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

ITEM_COLUMNS = ("item_id", "title", "description", "categories", "tags", "image")
ITEM_REQUIRED = ("item_id", "title")
INTERACTION_COLUMNS = ("user_id", "item_id", "timestamp", "event", "value")
INTERACTION_REQUIRED = ("user_id", "item_id", "timestamp")
FUTURE_TOLERANCE_SECONDS = 86_400
UNTERMINATED = "_unterminated_last_line"  # set by a reader on the last row of a text file cut short


class SchemaError(ValueError):
    """A table lacks a required column; the message names the source and the column."""


@dataclass
class Normalised:
    rows: pd.DataFrame
    rejects: pd.DataFrame


def _require(frame: pd.DataFrame, required: tuple[str, ...], origin: str) -> None:
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise SchemaError(f"{origin}: missing required column(s) {', '.join(missing)}; "
                          f"found {', '.join(map(str, frame.columns)) or 'no columns'}")


def _ids(series: pd.Series) -> pd.Series:
    text = series.astype("string").str.strip()
    # "12.0" from float-typed CSV columns is the id 12.
    return text.str.replace(r"^(-?\d+)\.0$", r"\1", regex=True)


def _without_unterminated(frame: pd.DataFrame, origin: str, rejects: list) -> pd.DataFrame:
    """A row a reader flagged as its file's unterminated last line is rejected: the file was
    probably cut while it was written, so the row may be cut too."""
    if UNTERMINATED not in frame:
        return frame
    flagged = frame[UNTERMINATED].astype(bool)
    return _reject(frame.drop(columns=UNTERMINATED), flagged, "unterminated last line (truncated file?)", origin,
                   rejects)


def _reject(frame: pd.DataFrame, bad: pd.Series, reason: str, origin: str, rejects: list) -> pd.DataFrame:
    if bad.any():
        rejected = frame[bad].astype("string").copy()
        rejected["reason"] = reason
        rejected["source"] = origin
        rejects.append(rejected)
    return frame[~bad]


def parse_timestamps(values: pd.Series) -> pd.Series:
    """Epoch seconds (int64, nullable) from numbers or ISO 8601 strings; NA where unparseable."""
    numeric = pd.to_numeric(values, errors="coerce")
    parsed = numeric.copy()
    text_rows = numeric.isna() & values.notna()
    if text_rows.any():
        dates = pd.to_datetime(values[text_rows].astype(str), errors="coerce", utc=True, format="ISO8601")
        parsed.loc[text_rows] = (dates - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
    return parsed.round().astype("Int64")


def normalise_items(frame: pd.DataFrame, origin: str) -> Normalised:
    _require(frame, ITEM_REQUIRED, origin)
    rejects: list[pd.DataFrame] = []
    out = _without_unterminated(frame.copy(), origin, rejects)
    out["item_id"] = _ids(out["item_id"])
    out = _reject(out, out["item_id"].isna() | (out["item_id"] == ""), "missing item_id", origin, rejects)
    for column in ITEM_COLUMNS[1:]:
        if column not in out:
            out[column] = ""
        out[column] = out[column].astype("string").fillna("")
    duplicated = out["item_id"].duplicated(keep="last")
    out = _reject(out, duplicated, "duplicate item_id (a later row wins)", origin, rejects)
    return Normalised(out[list(ITEM_COLUMNS)].reset_index(drop=True), _concat(rejects))


def normalise_interactions(frame: pd.DataFrame, origin: str, now: float | None = None) -> Normalised:
    """``now``: the load's time in epoch seconds (default: the clock), for the future-timestamp rule."""
    _require(frame, INTERACTION_REQUIRED, origin)
    rejects: list[pd.DataFrame] = []
    out = _without_unterminated(frame.copy(), origin, rejects)
    out["user_id"] = _ids(out["user_id"])
    out["item_id"] = _ids(out["item_id"])
    out = _reject(out, out["user_id"].isna() | (out["user_id"] == ""), "missing user_id", origin, rejects)
    out = _reject(out, out["item_id"].isna() | (out["item_id"] == ""), "missing item_id", origin, rejects)
    stamps = parse_timestamps(out["timestamp"])
    out = _reject(out, stamps.isna(), "invalid timestamp", origin, rejects)
    stamps = stamps[stamps.notna()].astype(np.int64)
    limit = (time.time() if now is None else now) + FUTURE_TOLERANCE_SECONDS
    future = stamps > limit
    out = _reject(out, future, "timestamp in the future", origin, rejects)
    out["timestamp"] = stamps[~future]
    if "event" not in out:
        out["event"] = "interaction"
    out["event"] = out["event"].astype("string").fillna("interaction")
    if "value" not in out:
        out["value"] = 1.0
    values = pd.to_numeric(out["value"], errors="coerce")
    out = _reject(out, values.isna() & out["value"].notna(), "non-numeric value", origin, rejects)
    out["value"] = values[out.index].fillna(1.0).astype(np.float64)
    out = out[list(INTERACTION_COLUMNS)].astype({"user_id": "string", "item_id": "string"})
    return Normalised(out.reset_index(drop=True), _concat(rejects))


def _concat(rejects: list[pd.DataFrame]) -> pd.DataFrame:
    if not rejects:
        return pd.DataFrame({"reason": pd.Series(dtype="string"), "source": pd.Series(dtype="string")})
    return pd.concat(rejects, ignore_index=True)


def canonical_order(interactions: pd.DataFrame) -> pd.DataFrame:
    """Interactions by user, then time, then item id; stable, so equal keys keep their order.
    Every step that reads a history in order (split, features, routes, evaluation) uses it."""
    return interactions.sort_values(["user_id", "timestamp", "item_id"], kind="mergesort")
