"""Online evaluation from the service's exposure log: what was shown, what was clicked.

The log (JSON lines, rotated as ``exposure_log.jsonl.N``) holds three record types:
``exposure`` (a served list with positions), ``event`` (click / conversion / view against a
request id) and ``shadow`` (the shadow model's list for the same request and its agreement).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from recsys_runtime.bundle_checks import GateResult
from recsys_runtime.recommender import Recommender
from recsys_training.off_policy import examination, snips

SPARK = "▁▂▃▄▅▆▇█"
ADWIN_DELTA = 0.002


@dataclass
class ExposureLog:
    lists: pd.DataFrame  # one row per served list
    shown: pd.DataFrame  # one row per (request, item, position), with clicked / converted
    events: pd.DataFrame
    shadows: pd.DataFrame
    bad_lines: int


def log_files(path: Path) -> list[Path]:
    """The live log and its rotated parts, oldest first."""
    rotated = sorted(path.parent.glob(path.name + ".*"), key=lambda p: int(p.suffix[1:]) if p.suffix[1:].isdigit() else 0)
    return [*rotated, *([path] if path.exists() else [])]


def read_log(path: Path) -> ExposureLog:
    records, bad = [], 0
    for file in log_files(Path(path)):
        with file.open() as handle:
            for line in handle:
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    bad += 1  # a line cut by a crash mid-write
    frame = pd.DataFrame.from_records(records) if records else pd.DataFrame(columns=["type"])
    lists = frame[frame["type"] == "exposure"].reset_index(drop=True)
    events = frame[frame["type"] == "event"].reset_index(drop=True)
    shadows = frame[frame["type"] == "shadow"].reset_index(drop=True)
    for table, columns in ((lists, ["request_id", "time", "user_id", "item_id", "endpoint", "model_version", "arm",
                                    "items", "fallback"]),
                           (events, ["request_id", "time", "event", "item_id", "user_id"]),
                           (shadows, ["request_id", "model_version", "overlap@10", "rbo", "latency_ms"])):
        for column in columns:
            if column not in table:
                table[column] = pd.Series(dtype=object)
    shown = _shown(lists, events)
    return ExposureLog(lists, shown, events, shadows, bad)


def _shown(lists: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    columns = ["request_id", "time", "model_version", "endpoint", "arm", "item_id", "position", "team"]
    if lists.empty:
        return pd.DataFrame(columns=[*columns, "clicked", "converted"])
    exploded = lists[["request_id", "time", "model_version", "endpoint", "arm", "items"]].explode("items").dropna(
        subset=["items"])
    entries = pd.json_normalize(exploded["items"].tolist())
    shown = exploded.drop(columns="items").reset_index(drop=True).join(entries)
    if "team" not in shown:
        shown["team"] = pd.Series(None, index=shown.index, dtype=object)
    for kind, column in (("click", "clicked"), ("conversion", "converted")):
        hits = events.loc[events["event"] == kind, ["request_id", "item_id"]].drop_duplicates().assign(**{column: True})
        shown = shown.merge(hits, on=["request_id", "item_id"], how="left")
        shown[column] = shown[column].fillna(False).astype(bool)
    return shown


def exposure_metrics(log: ExposureLog, catalog_size: int, now: float, windows: dict[str, float | None],
                     depth: int = 10) -> dict:
    """Per window, per (model version, endpoint, arm): lists, impressions, clicks, CTR, list CTR,
    conversion, coverage and click rate by position; plus shadow agreement per version."""
    out: dict = {"windows": {}, "shadow": [], "lists": int(len(log.lists)), "bad_lines": log.bad_lines,
                 "arms": arm_comparison(log.shown), "interleaving": interleaving_preference(log.shown)}
    for name, seconds in windows.items():
        shown = log.shown if seconds is None else log.shown[log.shown["time"] >= now - seconds]
        groups = []
        for (version, endpoint, arm), part in shown.groupby(["model_version", "endpoint", "arm"], dropna=False):
            lists = part["request_id"].nunique()
            by_position = part[part["position"] <= depth].groupby("position")["clicked"].mean()
            groups.append({
                "model_version": version, "endpoint": endpoint, "arm": arm, "lists": int(lists),
                "impressions": int(len(part)), "clicks": int(part["clicked"].sum()),
                "conversions": int(part["converted"].sum()),
                "ctr": float(part["clicked"].mean()),
                "list_ctr": float(part.groupby("request_id")["clicked"].any().mean()),
                "conversion_rate": float(part.groupby("request_id")["converted"].any().mean()),
                "coverage": float(part["item_id"].nunique() / max(catalog_size, 1)),
                "ctr_by_position": {int(p): round(float(v), 5) for p, v in by_position.items()},
            })
        out["windows"][name] = groups
    if not log.shadows.empty:
        for version, part in log.shadows.groupby("model_version"):
            out["shadow"].append({"model_version": version, "requests": int(len(part)),
                                  "overlap@10": float(part["overlap@10"].mean()), "rbo": float(part["rbo"].mean()),
                                  "latency_p95_ms": float(np.percentile(part["latency_ms"], 95))})
    return out


def arm_comparison(shown: pd.DataFrame, z: float = 1.96) -> list[dict]:
    """Per endpoint where both arms served: the candidate's list click rate minus the primary's,
    with a normal-approximation 95% interval (lists are the independent units)."""
    if shown.empty:
        return []
    lists = shown.groupby(["endpoint", "arm", "request_id"])["clicked"].any().reset_index()
    out = []
    for endpoint, part in lists.groupby("endpoint"):
        rates = part.groupby("arm")["clicked"].agg(["mean", "size"])
        if not {"primary", "candidate"} <= set(rates.index):
            continue
        p1, n1 = rates.loc["primary", "mean"], rates.loc["primary", "size"]
        p2, n2 = rates.loc["candidate", "mean"], rates.loc["candidate", "size"]
        se = float(np.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2))
        out.append({"endpoint": endpoint, "primary_list_ctr": float(p1), "candidate_list_ctr": float(p2),
                    "difference": float(p2 - p1), "ci_low": float(p2 - p1 - z * se), "ci_high": float(p2 - p1 + z * se),
                    "primary_lists": int(n1), "candidate_lists": int(n2)})
    return out


def interleaving_preference(shown: pd.DataFrame, z: float = 1.96) -> list[dict]:
    """Per (endpoint, candidate version) of team-draft interleaved lists: each click is credited to
    the model that placed the item; a list is won by the model with more clicks on it. The
    preference is the mean of +1 (candidate won), -1 (primary won) and 0 (tie or no click) over the
    interleaved lists, with a normal-approximation 95% interval (lists are the units)."""
    part = shown[shown["arm"] == "interleave"] if not shown.empty else shown
    if part.empty:
        return []
    credit = part.assign(candidate=part["clicked"] & (part["team"] == "candidate"),
                         primary=part["clicked"] & (part["team"] == "primary"))
    per_list = credit.groupby(["endpoint", "model_version", "request_id"])[["candidate", "primary"]].sum()
    per_list["outcome"] = np.sign(per_list["candidate"] - per_list["primary"])
    out = []
    for (endpoint, version), lists in per_list.groupby(level=[0, 1]):
        outcome = lists["outcome"].to_numpy(dtype=float)
        n = len(outcome)
        mean, sd = float(outcome.mean()), float(outcome.std(ddof=1)) if n > 1 else 0.0
        half = z * sd / np.sqrt(n) if n > 1 else 1.0
        out.append({"endpoint": endpoint, "candidate_version": version, "lists": int(n),
                    "candidate_wins": int((outcome > 0).sum()), "primary_wins": int((outcome < 0).sum()),
                    "ties": int(((outcome == 0) & (lists["candidate"] + lists["primary"] > 0)).sum()),
                    "preference": mean, "ci_low": mean - half, "ci_high": mean + half})
    return out


def sparkline(values: list[float]) -> str:
    """A one-line bar chart for Markdown metadata."""
    if not values:
        return ""
    top = max(max(values), 1e-12)
    return "".join(SPARK[min(len(SPARK) - 1, int(v / top * (len(SPARK) - 1)))] for v in values)


def metrics_table(groups: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([{
        "version": g["model_version"], "endpoint": g["endpoint"], "arm": g["arm"], "lists": g["lists"],
        "clicks": g["clicks"], "ctr": round(g["ctr"], 4), "conversion": round(g["conversion_rate"], 4),
        "coverage": round(g["coverage"], 4),
        "ctr by position": sparkline([g["ctr_by_position"].get(p, 0.0) for p in range(1, 11)]),
    } for g in groups])


def logged_for_estimate(log: ExposureLog, eta: float = 1.0) -> pd.DataFrame:
    """The shown items in the estimator's layout. The service ranks deterministically, so an
    item's propensity is the examination of its position."""
    shown = log.shown
    return pd.DataFrame({"request_id": shown["request_id"], "item_id": shown["item_id"].astype(str),
                         "position": shown["position"].astype(int), "clicked": shown["clicked"].astype(bool),
                         "propensity": examination(shown["position"].astype(int).to_numpy(), eta)})


def ctr_change_points(log: ExposureLog, delta: float = ADWIN_DELTA) -> list[dict]:
    """ADWIN (river) over the per-list click stream in time order: where the click rate changed."""
    from river.drift import ADWIN

    if log.lists.empty:
        return []
    clicked = log.shown.groupby("request_id")["clicked"].any()
    lists = log.lists.sort_values("time")
    stream = clicked.reindex(lists["request_id"]).fillna(False).astype(float).to_numpy()
    times = lists["time"].to_numpy()
    detector = ADWIN(delta=delta)
    changes, last = [], 0
    for i, value in enumerate(stream):
        detector.update(value)
        if detector.drift_detected:
            changes.append({"index": i, "time": float(times[i]), "before": float(stream[last:i].mean()) if i > last else None,
                            "window_mean_after": float(detector.estimation), "window": int(detector.width)})
            last = i
    return changes


def reconcile(service: dict[str, int], business: dict[str, int], tolerance: float = 0.02) -> list[dict]:
    """Counts per kind (exposure, click, conversion) from the service against the business events
    source; a relative difference above ``tolerance`` is flagged."""
    rows = []
    for kind in sorted(set(service) | set(business)):
        ours, theirs = int(service.get(kind, 0)), int(business.get(kind, 0))
        relative = abs(ours - theirs) / max(theirs, 1)
        rows.append({"kind": kind, "service": ours, "business": theirs, "difference": ours - theirs,
                     "relative": round(relative, 4), "flagged": bool(relative > tolerance)})
    return rows


def service_counts(log: ExposureLog) -> dict[str, int]:
    counts = {"exposure": int(len(log.lists))}
    for kind in ("click", "conversion"):
        counts[kind] = int((log.events["event"] == kind).sum()) if not log.events.empty else 0
    return counts


def challenger_clicks(model: Recommender, log_path: Path, min_requests: int, depth: int = 10,
                      max_requests: int = 20_000) -> GateResult:
    """Passes unless the challenger's clicks per list, estimated off-policy from the most recent
    ``max_requests`` lists the current models served, are significantly below what those lists got."""
    log = read_log(log_path)
    lists = log.lists[log.lists["fallback"].isna()].sort_values("time").tail(max_requests)
    if len(lists) < min_requests:
        return GateResult(True, f"skipped: {len(lists)} logged lists, fewer than {min_requests}", {"lists": len(lists)})
    users = [None if pd.isna(u) else str(u) for u in lists["user_id"]]
    anchors = [None if pd.isna(i) else str(i) for i in lists["item_id"]]
    recommended = model.recommend_many(users, anchors, depth)
    target = pd.DataFrame({
        "request_id": np.repeat(lists["request_id"].to_numpy(), [len(r.items) for r in recommended]),
        "item_id": [str(i) for r in recommended for i in r.items],
        "position": [p for r in recommended for p in range(1, len(r.items) + 1)],
    })
    logged = logged_for_estimate(log)
    estimate = snips(logged[logged["request_id"].isin(lists["request_id"])], target, depth=depth)
    numbers = {"estimated_clicks_per_list": estimate.value, "ci_low": estimate.ci_low, "ci_high": estimate.ci_high,
               "logged_clicks_per_list": estimate.logged_value, "difference_low": estimate.difference_ci[0],
               "difference_high": estimate.difference_ci[1], "overlap": estimate.overlap, "lists": estimate.requests}
    reason = (f"estimated {estimate.value:.4f} clicks per list (95% CI {estimate.ci_low:.4f}-{estimate.ci_high:.4f}) "
              f"vs {estimate.logged_value:.4f} served; overlap {estimate.overlap:.2f}")
    return GateResult(not estimate.significantly_worse(), reason, numbers)
