"""Data quality: Great Expectations suites, a 0-100 score, and blocking asset checks."""

import json

import dagster as dg
import pandas as pd

from recsys_assets.defs.raw import raw_interactions, raw_items
from recsys_assets.defs.resources import PromotionGateResource, StorageResource
from recsys_training import quality
from recsys_training.raw_store import INTERACTION_KEY

ITEM_KEY = ["item_id"]


def _previous_rows(storage: StorageResource) -> dict:
    path = storage.path("evaluation", "data_quality_report.json")
    if not path.exists():
        return {}
    return json.loads(path.read_text()).get("rows", {})


@dg.asset(group_name="quality", kinds={"greatexpectations"}, automation_condition=dg.AutomationCondition.eager())
def data_quality_report(context: dg.AssetExecutionContext, storage: StorageResource, raw_items: pd.DataFrame,
                        raw_interactions: pd.DataFrame, item_features: pd.DataFrame,
                        user_features: pd.DataFrame) -> dict:
    """Schema, nulls, keys, referential integrity, ranges, timestamp sanity and volume against the
    previous report, on the raw tables and the feature views; scored 0-100."""
    previous = _previous_rows(storage)
    tables = [
        quality.TableSpec("raw_items", raw_items, quality.items_expectations(previous.get("raw_items"))),
        quality.TableSpec("raw_interactions", raw_interactions, quality.interactions_expectations(
            raw_items["item_id"].astype(str).tolist(), previous.get("raw_interactions"))),
        quality.TableSpec("item_features", item_features, quality.item_view_expectations()),
        quality.TableSpec("user_features", user_features, quality.user_view_expectations()),
    ]
    results = quality.validate(tables)
    rejects = {name: _reject_count(storage, name) for name in ("items", "interactions")}
    report = quality.quality_report(results, {
        "raw_items": (len(raw_items), rejects["items"]),
        "raw_interactions": (len(raw_interactions), rejects["interactions"]),
    })
    report["rows"] = {"raw_items": len(raw_items), "raw_interactions": len(raw_interactions)}
    path = storage.path("evaluation", "data_quality_report.json")
    path.write_text(json.dumps(report, indent=2, default=str))
    failed = pd.DataFrame([{"table": r["table"], "expectation": r["expectation"], "column": r["kwargs"].get("column"),
                            "unexpected": r["unexpected_count"], "examples": str(r["examples"])[:80]}
                           for r in report["failed"]])
    context.add_output_metadata({
        "score": report["score"],
        "expectations": report["expectations"],
        "failed_expectations": len(report["failed"]),
        "failures": dg.MetadataValue.md(failed.to_markdown(index=False) if len(failed) else "none"),
        "path": dg.MetadataValue.path(str(path)),
    })
    return report


def _reject_count(storage: StorageResource, name: str) -> int:
    path = storage.path("raw", f"{name}_rejects.parquet")
    return len(pd.read_parquet(path)) if path.exists() else 0


def _schema_and_keys(frame: pd.DataFrame, schema: dict, key: list[str]) -> dg.AssetCheckResult:
    problems = quality.schema_problems(frame, schema)
    duplicates = quality.duplicate_keys(frame, key) if not problems else pd.DataFrame()
    if len(duplicates):
        problems.append(f"{len(duplicates)} rows share a key ({', '.join(key)})")
    return dg.AssetCheckResult(
        passed=not problems,
        metadata={"problems": "; ".join(problems) or "none", "rows": len(frame),
                  "duplicate_examples": dg.MetadataValue.md(duplicates.head(5).to_markdown(index=False))
                  if len(duplicates) else "none"},
    )


@dg.asset_check(asset=raw_items, blocking=True, description="Canonical columns and types; item_id unique.")
def raw_items_schema_and_keys(raw_items: pd.DataFrame) -> dg.AssetCheckResult:
    return _schema_and_keys(raw_items, quality.ITEM_SCHEMA, ITEM_KEY)


@dg.asset_check(asset=raw_interactions, blocking=True,
                description="Canonical columns and types; (user_id, item_id, timestamp, event) unique.")
def raw_interactions_schema_and_keys(raw_interactions: pd.DataFrame) -> dg.AssetCheckResult:
    return _schema_and_keys(raw_interactions, quality.INTERACTION_SCHEMA, INTERACTION_KEY)


@dg.asset_check(asset=data_quality_report, blocking=True,
                description="The quality score is at least RECSYS_MIN_QUALITY_SCORE (default 90).")
def quality_score_above_threshold(data_quality_report: dict, promotion_gate: PromotionGateResource) -> dg.AssetCheckResult:
    threshold = promotion_gate.min_quality_score
    score = data_quality_report["score"]
    worst = sorted(data_quality_report["failed"], key=quality.penalty, reverse=True)[:3]
    return dg.AssetCheckResult(
        passed=bool(score >= threshold),
        metadata={"score": score, "threshold": threshold,
                  "worst_failures": "; ".join(f"{r['table']}.{r['expectation']}({r['kwargs'].get('column', '')})"
                                              for r in worst) or "none"},
    )
