"""Drift between a training reference window and a recent window of interactions.

Signals: PSI of item popularity and of category shares, KS of numeric behaviour features,
the share of interactions on items and by users the reference never saw, and the cosine shift
of the consumption-weighted item-embedding centroid. Each signal has a threshold; drift is
confirmed when at least ``min_signals`` signals exceed theirs.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

EPSILON = 1e-4


@dataclass(frozen=True)
class DriftThresholds:
    psi: float = 0.2  # the usual "significant shift" level of the population stability index
    ks: float = 0.1
    unseen_share: float = 0.1
    centroid_shift: float = 0.05  # 1 - cosine similarity
    min_signals: int = 2
    min_rows: int = 200


@dataclass
class Finding:
    source: str
    signal: str
    statistic: float
    threshold: float
    drifted: bool
    detail: dict = field(default_factory=dict)


@dataclass
class DriftReport:
    reference_window: tuple[int, int]
    current_window: tuple[int, int]
    reference_rows: int
    current_rows: int
    findings: list[Finding]
    confirmed: bool
    reason: str

    def drifted(self) -> list[Finding]:
        return [f for f in self.findings if f.drifted]

    def table(self) -> pd.DataFrame:
        return pd.DataFrame([{"signal": f.signal, "source": f.source, "statistic": round(f.statistic, 4),
                              "threshold": f.threshold, "drifted": f.drifted} for f in self.findings])

    def to_dict(self) -> dict:
        return asdict(self)


def psi(reference: np.ndarray, current: np.ndarray) -> float:
    """Population stability index of two count (or share) vectors over the same bins."""
    p = np.asarray(reference, dtype=np.float64)
    q = np.asarray(current, dtype=np.float64)
    p = np.maximum(p / max(p.sum(), 1e-12), EPSILON)
    q = np.maximum(q / max(q.sum(), 1e-12), EPSILON)
    return float(np.sum((q - p) * np.log(q / p)))


def popularity_bins(reference_items: pd.Series, current_items: pd.Series, top: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Counts over the ``top`` reference-popular items, every other item in one bin, new items in another."""
    head = reference_items.value_counts().index[:top]
    known = set(reference_items.unique())

    def counts(items: pd.Series) -> np.ndarray:
        in_head = items.value_counts().reindex(head, fill_value=0).to_numpy()
        new = int((~items.isin(known)).sum())
        return np.append(in_head, [len(items) - in_head.sum() - new, new])

    return counts(reference_items), counts(current_items)


def category_shares(items: pd.Series, catalog: pd.DataFrame) -> pd.Series:
    """Interaction counts per category (an item's categories are '|'-separated)."""
    categories = catalog.set_index("item_id")["categories"].fillna("").astype(str)
    exploded = categories.reindex(items.to_numpy()).fillna("(unknown)").str.split("|").explode()
    return exploded[exploded != ""].value_counts()


def numeric_features(interactions: pd.DataFrame, reference: pd.DataFrame) -> dict[str, np.ndarray]:
    """Per-interaction numbers whose distribution does not depend on the window's length: the
    consumed item's age and its popularity in the reference, and the interaction value."""
    items = interactions["item_id"].to_numpy()
    first_seen = reference.groupby("item_id")["timestamp"].min()
    counts = reference["item_id"].value_counts()
    age = interactions["timestamp"].to_numpy() - first_seen.reindex(items).fillna(
        interactions["timestamp"].min()).to_numpy()
    features = {
        "item_age_days_at_consumption": np.maximum(age, 0) / 86_400.0,
        "consumed_item_log_popularity": np.log1p(counts.reindex(items).fillna(0).to_numpy(dtype=np.float64)),
    }
    if "value" in interactions and interactions["value"].notna().any():
        features["value"] = interactions["value"].dropna().to_numpy(dtype=np.float64)
    return features


def centroid_shift(embeddings: pd.DataFrame, reference_items: pd.Series, current_items: pd.Series) -> float:
    """1 - cosine similarity of the consumption-weighted mean embeddings of the two windows."""
    def centroid(items: pd.Series) -> np.ndarray:
        counts = items.value_counts()
        counts = counts[counts.index.isin(embeddings.index)]
        if counts.empty:
            return np.zeros(embeddings.shape[1])
        return (embeddings.loc[counts.index].to_numpy() * counts.to_numpy()[:, None]).sum(axis=0) / counts.sum()

    a, b = centroid(reference_items), centroid(current_items)
    denominator = np.linalg.norm(a) * np.linalg.norm(b)
    return float(1.0 - a @ b / denominator) if denominator > 0 else 0.0


def split_windows(interactions: pd.DataFrame, reference_until: int | None,
                  window_seconds: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reference: interactions up to ``reference_until`` (what the champion was trained on);
    current: those after it. Without a reference time, the last ``window_seconds`` are current."""
    timestamps = interactions["timestamp"]
    cut = reference_until if reference_until is not None else int(timestamps.max()) - window_seconds
    return interactions[timestamps <= cut], interactions[timestamps > cut]


def drift_report(reference: pd.DataFrame, current: pd.DataFrame, catalog: pd.DataFrame,
                 embeddings: pd.DataFrame | None = None, thresholds: DriftThresholds = DriftThresholds()) -> DriftReport:
    """Compare two windows of interactions (canonical schema) signal by signal."""
    def window(frame: pd.DataFrame) -> tuple[int, int]:
        return (int(frame["timestamp"].min()), int(frame["timestamp"].max())) if len(frame) else (0, 0)

    if len(current) < thresholds.min_rows or len(reference) < thresholds.min_rows:
        return DriftReport(window(reference), window(current), len(reference), len(current), [], False,
                           f"not enough data: {len(reference)} reference and {len(current)} current rows "
                           f"(at least {thresholds.min_rows} each)")
    findings = []
    ref_bins, cur_bins = popularity_bins(reference["item_id"], current["item_id"])
    findings.append(Finding("interactions", "item_popularity_psi", psi(ref_bins, cur_bins), thresholds.psi,
                            False, {"bins": len(ref_bins)}))
    ref_cat = category_shares(reference["item_id"], catalog)
    cur_cat = category_shares(current["item_id"], catalog)
    index = ref_cat.index.union(cur_cat.index)
    findings.append(Finding("items", "category_psi", psi(ref_cat.reindex(index, fill_value=0).to_numpy(),
                                                         cur_cat.reindex(index, fill_value=0).to_numpy()),
                            thresholds.psi, False, {"categories": len(index)}))
    ref_numeric, cur_numeric = numeric_features(reference, reference), numeric_features(current, reference)
    for name in sorted(set(ref_numeric) & set(cur_numeric)):
        result = stats.ks_2samp(ref_numeric[name], cur_numeric[name])
        findings.append(Finding("features", f"{name}_ks", float(result.statistic), thresholds.ks, False,
                                {"p_value": float(result.pvalue)}))
    unseen_items = float((~current["item_id"].isin(set(reference["item_id"]))).mean())
    unseen_users = float((~current["user_id"].isin(set(reference["user_id"]))).mean())
    findings.append(Finding("interactions", "unseen_item_share", unseen_items, thresholds.unseen_share, False))
    findings.append(Finding("interactions", "unseen_user_share", unseen_users, thresholds.unseen_share, False))
    if embeddings is not None and len(embeddings):
        findings.append(Finding("embeddings", "consumed_centroid_shift",
                                centroid_shift(embeddings, reference["item_id"], current["item_id"]),
                                thresholds.centroid_shift, False))
    for finding in findings:
        finding.drifted = bool(finding.statistic > finding.threshold)
    drifted = [f.signal for f in findings if f.drifted]
    confirmed = len(drifted) >= thresholds.min_signals
    reason = (f"{len(drifted)} of {len(findings)} signals over threshold: {', '.join(drifted)}" if drifted
              else f"no signal over threshold ({len(findings)} checked)")
    return DriftReport(window(reference), window(current), len(reference), len(current), findings, confirmed, reason)


def write_finding(directory: Path, source: str, signal: str, statistic: float, threshold, window: dict,
                  detail: dict | None = None, stamp: str | None = None) -> Path:
    """``<stamp>-<source>-<signal>.json`` under ``directory``: one drift finding."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = stamp or time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    path = directory / f"{stamp}-{source}-{signal}.json"
    path.write_text(json.dumps({"source": source, "signal": signal, "statistic": statistic, "threshold": threshold,
                                "window": window, "detail": detail or {}, "written_at": stamp}, indent=2))
    return path


def write_findings(report: DriftReport, directory: Path, source: str) -> list[Path]:
    """One finding file per drifted signal and ``latest-<source>.json`` with the whole report."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    window = {"reference": report.reference_window, "current": report.current_window}
    written = [write_finding(directory, source, f.signal, f.statistic, f.threshold, window,
                             {"origin": f.source, **f.detail}, stamp) for f in report.drifted()]
    (directory / f"latest-{source}.json").write_text(json.dumps({**report.to_dict(), "written_at": stamp}, indent=2))
    return written
