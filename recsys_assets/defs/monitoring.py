"""Monitoring: drift against the champion's training data, online metrics from the exposure log,
and reconciliation with the business's own counts."""

import json
import time
from pathlib import Path

import dagster as dg
import pandas as pd

from recsys_assets import settings
from recsys_assets.defs.resources import DriftPolicyResource, StorageResource
from recsys_assets.defs.tracking import MlflowResource
from recsys_runtime.bundle import BundleError, trained_until
from recsys_training.drift import drift_report as compare_windows
from recsys_training.drift import split_windows, write_finding, write_findings
from recsys_training.online_eval import (
    ADWIN_DELTA,
    ctr_change_points,
    metrics_table,
    read_log,
    reconcile,
    service_counts,
)
from recsys_training.online_eval import (
    exposure_metrics as online_metrics,
)

MONITORING = "monitoring"

exposure_log = dg.AssetSpec(
    "exposure_log", group_name=MONITORING, kinds={"jsonl"},
    description="The service's exposure log (RECSYS_EXPOSURE_LOG): served lists, events and shadow lists, "
                "written by the service, not by Dagster; rotated as exposure_log.jsonl.N.")


class ExposureWindows(dg.Config):
    """Windows (name: seconds before the newest exposure) the online metrics are computed over,
    besides the whole log."""

    windows_seconds: dict[str, int] = {"last_hour": 3_600, "last_day": 86_400}


def _champion_cut(mlflow_tracking: MlflowResource) -> tuple[str | None, int | None]:
    """The champion's version and the time of the last interaction it was trained on."""
    registry = mlflow_tracking.registry(with_mlflow=False)
    version = registry.file.champion
    if version is None:
        return None, None
    try:
        return version, trained_until(registry.file.version(version)["path"])
    except (BundleError, OSError, KeyError):
        return version, None


@dg.asset(group_name=MONITORING, kinds={"json"}, automation_condition=dg.AutomationCondition.eager())
def drift_report(context: dg.AssetExecutionContext, storage: StorageResource, mlflow_tracking: MlflowResource,
                 drift_policy: DriftPolicyResource, raw_interactions: pd.DataFrame, raw_items: pd.DataFrame,
                 item_embeddings: pd.DataFrame) -> dict:
    """Interactions since the champion's training data ended against that training data (or the
    last RECSYS_DRIFT_WINDOW_DAYS against the rest when there is no champion): PSI of item
    popularity and categories, KS of numeric features, unseen item and user shares, shift of the
    consumed-embedding centroid. Drifted signals are written to data/drift_reports/."""
    champion, cut = _champion_cut(mlflow_tracking)
    reference, current = split_windows(raw_interactions, cut, int(drift_policy.window_days * 86_400))
    embeddings = item_embeddings.drop(columns="digest")
    report = compare_windows(reference, current, raw_items, embeddings, drift_policy.thresholds())
    written = write_findings(report, storage.path("drift_reports", "_").parent, "interactions")
    table = report.table()
    context.add_output_metadata({
        "drift_confirmed": report.confirmed, "reason": report.reason, "champion": champion or "none",
        "reference_rows": report.reference_rows, "current_rows": report.current_rows,
        "drifted_signals": len(report.drifted()), "findings_written": [str(p) for p in written],
        "signals": dg.MetadataValue.md(table.to_markdown(index=False) if len(table) else report.reason),
    })
    return {"confirmed": report.confirmed, "reason": report.reason, "champion": champion,
            "drifted": [f.signal for f in report.drifted()], "written": [str(p) for p in written]}


@dg.asset_check(asset=drift_report, description="No confirmed drift since the champion was trained (a warning).")
def no_confirmed_drift(drift_report: dict) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=not drift_report["confirmed"], severity=dg.AssetCheckSeverity.WARN,
                               description=drift_report["reason"], metadata={"drifted": ", ".join(drift_report["drifted"])})


@dg.asset(group_name=MONITORING, kinds={"json"}, deps=[exposure_log])
def exposure_metrics(context: dg.AssetExecutionContext, config: ExposureWindows, storage: StorageResource,
                     raw_items: pd.DataFrame) -> dict:
    """Impressions, CTR, conversion, coverage and click rate by position per model version,
    endpoint and arm over the configured windows (default last hour and day) and all of the
    exposure log; shadow agreement per version; ADWIN change points of the click stream (each
    written to data/drift_reports/)."""
    log = read_log(storage.exposure_log_path())
    now = float(log.lists["time"].max()) if len(log.lists) else time.time()
    windows = {**{name: float(seconds) for name, seconds in config.windows_seconds.items()}, "all": None}
    metrics = online_metrics(log, len(raw_items), now, windows)
    changes = ctr_change_points(log)
    metrics["ctr_change_points"] = changes
    reports = storage.path("drift_reports", "_").parent
    for change in changes:
        write_finding(reports, "exposure_log", "ctr_adwin", change["window_mean_after"], f"ADWIN delta {ADWIN_DELTA}",
                      {"before_mean": change["before"], "width": change["window"], "time": change["time"]},
                      stamp=time.strftime("%Y%m%dT%H%M%S", time.gmtime(change["time"])))
    path = storage.path("evaluation", "exposure_metrics.json")
    path.write_text(json.dumps(metrics, indent=2))
    table = metrics_table(metrics["windows"]["all"])
    context.add_output_metadata({
        "lists": metrics["lists"], "bad_lines": metrics["bad_lines"], "path": dg.MetadataValue.path(str(path)),
        "versions": sorted({g["model_version"] for g in metrics["windows"]["all"]}),
        "ctr_change_points": len(changes),
        "by_version": dg.MetadataValue.md(table.to_markdown(index=False) if len(table) else "no exposures logged yet"),
        "shadow": dg.MetadataValue.json(metrics["shadow"]),
        "canary_vs_primary": dg.MetadataValue.md(pd.DataFrame(metrics["arms"]).round(4).to_markdown(index=False)
                                                  if metrics["arms"] else "no canary in the log"),
        "interleaving": dg.MetadataValue.md(pd.DataFrame(metrics["interleaving"]).round(4).to_markdown(index=False)
                                            if metrics["interleaving"] else "no interleaved lists in the log"),
    })
    return metrics


@dg.asset_check(asset=exposure_metrics, description="ADWIN found no drop of the click rate in the exposure log "
                                                  "(a warning; each change point is in data/drift_reports/).")
def no_click_rate_drop(exposure_metrics: dict) -> dg.AssetCheckResult:
    drops = [c for c in exposure_metrics["ctr_change_points"]
             if c["before"] is not None and c["window_mean_after"] < c["before"]]
    description = (f"{len(drops)} drop(s); latest from {drops[-1]['before']:.3f} to {drops[-1]['window_mean_after']:.3f}"
                   if drops else f"no drop among {len(exposure_metrics['ctr_change_points'])} change points")
    return dg.AssetCheckResult(passed=not drops, severity=dg.AssetCheckSeverity.WARN, description=description,
                               metadata={"drops": len(drops)})


@dg.asset(group_name=MONITORING, kinds={"json"}, deps=[exposure_log])
def metrics_reconciliation(context: dg.AssetExecutionContext, storage: StorageResource) -> list:
    """Exposures, clicks and conversions counted by the service (its exposure log) against the
    business events source (RECSYS_BUSINESS_EVENTS, column ``kind``); differences over 2% flagged."""
    ours = service_counts(read_log(storage.exposure_log_path()))
    source = settings.business_events()
    if not source:
        context.add_output_metadata({"status": "skipped: RECSYS_BUSINESS_EVENTS is not set", **ours})
        return []
    path = Path(source)
    events = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    if "kind" not in events:
        raise ValueError(f"{path}: the business events need a 'kind' column (exposure, click, conversion)")
    rows = reconcile(ours, events["kind"].value_counts().to_dict())
    storage.path("evaluation", "metrics_reconciliation.json").write_text(json.dumps(rows, indent=2))
    context.add_output_metadata({"flagged": sum(r["flagged"] for r in rows),
                                 "table": dg.MetadataValue.md(pd.DataFrame(rows).to_markdown(index=False))})
    return rows


@dg.asset_check(asset=metrics_reconciliation, description="Service and business counts agree within 2%.")
def counts_agree(metrics_reconciliation: list) -> dg.AssetCheckResult:
    flagged = [r["kind"] for r in metrics_reconciliation if r["flagged"]]
    return dg.AssetCheckResult(passed=not flagged, severity=dg.AssetCheckSeverity.WARN,
                               description=f"differences in {', '.join(flagged)}" if flagged else "counts agree")
