"""Great Expectations suites for the raw tables and feature views, and a 0-100 quality score."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pandas as pd

SANE_TIMESTAMPS = (631_152_000, None)  # 1990-01-01 .. now + 1 day
MAX_EXAMPLES = 5
TOLERANCE = 0.999  # row-level expectations pass while at most 0.1% of rows break them
CRITICAL, WARNING = "critical", "warning"
PENALTY = {CRITICAL: 20.0, WARNING: 5.0}
MAX_INTAKE_PENALTY = 20.0
ITEM_SCHEMA = {"item_id": "string", "title": "string"}
INTERACTION_SCHEMA = {"user_id": "string", "item_id": "string", "timestamp": "int64", "value": "float64"}


@dataclass(frozen=True)
class TableSpec:
    name: str
    frame: pd.DataFrame
    expectations: list


def _gx():
    import great_expectations as gx
    import great_expectations.expectations as gxe

    return gx, gxe


def items_expectations(previous_rows: int | None = None) -> list:
    """(expectation, severity) pairs for the catalog."""
    _, gxe = _gx()
    out = [(gxe.ExpectColumnToExist(column=c), CRITICAL) for c in ITEM_SCHEMA]
    out += [
        (gxe.ExpectColumnValuesToNotBeNull(column="item_id"), CRITICAL),
        (gxe.ExpectColumnValuesToBeUnique(column="item_id"), CRITICAL),
        (gxe.ExpectColumnValueLengthsToBeBetween(column="title", min_value=1, mostly=TOLERANCE), WARNING),
    ]
    if previous_rows:
        out.append((gxe.ExpectTableRowCountToBeBetween(min_value=int(previous_rows * 0.9)), WARNING))
    return out


def interactions_expectations(item_ids: list, previous_rows: int | None = None, max_value: float = 1e6) -> list:
    """(expectation, severity) pairs for the behaviour table."""
    _, gxe = _gx()
    now = int(time.time()) + 86_400
    out = [(gxe.ExpectColumnToExist(column=c), CRITICAL) for c in INTERACTION_SCHEMA]
    out += [(gxe.ExpectColumnValuesToNotBeNull(column=c), CRITICAL) for c in ("user_id", "item_id", "timestamp")]
    out += [
        (gxe.ExpectCompoundColumnsToBeUnique(column_list=["user_id", "item_id", "timestamp", "event"]), CRITICAL),
        (gxe.ExpectColumnValuesToBeInSet(column="item_id", value_set=item_ids, mostly=TOLERANCE), CRITICAL),
        (gxe.ExpectColumnValuesToBeBetween(column="timestamp", min_value=SANE_TIMESTAMPS[0], max_value=now,
                                           mostly=TOLERANCE), WARNING),
        (gxe.ExpectColumnValuesToBeBetween(column="value", min_value=-max_value, max_value=max_value,
                                           mostly=TOLERANCE), WARNING),
    ]
    # an append-only table never shrinks; a sudden drop means a broken extraction
    if previous_rows:
        out.append((gxe.ExpectTableRowCountToBeBetween(min_value=int(previous_rows * 0.9)), WARNING))
    return out


def item_view_expectations() -> list:
    _, gxe = _gx()
    return [
        (gxe.ExpectColumnValuesToBeBetween(column="interactions", min_value=0), WARNING),
        (gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="last_seen", column_B="first_seen", or_equal=True,
                                                     ignore_row_if="either_value_is_missing"), WARNING),
    ]


def user_view_expectations() -> list:
    _, gxe = _gx()
    return [
        (gxe.ExpectColumnValuesToBeBetween(column="interactions", min_value=1), WARNING),
        (gxe.ExpectColumnValuesToNotBeNull(column="recent_items"), WARNING),
        (gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="last_seen", column_B="first_seen", or_equal=True), WARNING),
    ]


def validate(tables: list[TableSpec]) -> list[dict]:
    """Run each table's suite on an ephemeral context; one result row per expectation."""
    gx, _ = _gx()
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(analytics_enabled=False, progress_bars=ProgressBarsConfig(globally=False),
                               store_backend_defaults=InMemoryStoreBackendDefaults())
    context = gx.get_context(mode="ephemeral", project_config=config)
    source = context.data_sources.add_pandas("recsys")
    rows = []
    for spec in tables:
        batch = source.add_dataframe_asset(spec.name).add_batch_definition_whole_dataframe("all")
        suite = context.suites.add(gx.ExpectationSuite(name=spec.name))
        severity = {}
        for expectation, level in spec.expectations:
            severity[suite.add_expectation(expectation).id] = level
        definition = context.validation_definitions.add(gx.ValidationDefinition(name=spec.name, data=batch, suite=suite))
        frame = spec.frame.reset_index() if spec.frame.index.name else spec.frame
        result = definition.run(batch_parameters={"dataframe": frame})
        for r in result.results:
            config = r.expectation_config
            level = severity[config.id]
            details = r.result or {}
            kwargs = {k: v for k, v in config.kwargs.items() if k not in ("batch_id", "value_set")}
            rows.append({
                "table": spec.name,
                "expectation": config.type,
                "severity": level,
                "kwargs": {k: (v if isinstance(v, (int, float, str, list, type(None))) else str(v)) for k, v in kwargs.items()},
                "success": bool(r.success),
                "unexpected_count": details.get("unexpected_count"),
                "unexpected_percent": details.get("unexpected_percent"),
                "observed_value": _plain(details.get("observed_value")),
                "examples": [_plain(v) for v in (details.get("partial_unexpected_list") or [])[:MAX_EXAMPLES]],
                "error": (r.exception_info or {}).get("exception_message") if not r.success else None,
            })
    return rows


def _plain(value):
    if isinstance(value, (str, int, float, bool, type(None))):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)


def penalty(row: dict) -> float:
    """Points a result costs: 0 when it passed, 20 for a critical failure, 5 for a warning."""
    return 0.0 if row["success"] else PENALTY[row["severity"]]


def quality_report(results: list[dict], accepted: dict[str, tuple[int, int]]) -> dict:
    """Score = 100 - penalties of failed expectations - rows rejected while parsing (up to 20
    points per table, 1 point per 0.1% rejected), floored at 0.

    ``accepted``: table -> (rows kept, rows rejected while parsing)."""
    intake = {t: kept / max(1, kept + rejected) for t, (kept, rejected) in accepted.items()}
    lost = sum(min(MAX_INTAKE_PENALTY, (1.0 - share) * 1000.0) for share in intake.values())
    score = max(0.0, 100.0 - sum(penalty(r) for r in results) - lost)
    return {
        "score": round(score, 2),
        "expectations": len(results),
        "failed": [r for r in results if not r["success"]],
        "results": results,
        "accepted_share": intake,
    }


def schema_problems(frame: pd.DataFrame, schema: dict[str, str]) -> list[str]:
    """Missing columns and columns whose dtype differs from the canonical one."""
    problems = []
    for column, dtype in schema.items():
        if column not in frame:
            problems.append(f"missing column {column}")
        elif str(frame[column].dtype) != dtype:
            problems.append(f"column {column} has dtype {frame[column].dtype}, expected {dtype}")
    return problems


def duplicate_keys(frame: pd.DataFrame, key: list[str]) -> pd.DataFrame:
    return frame[frame.duplicated(key, keep=False)]
