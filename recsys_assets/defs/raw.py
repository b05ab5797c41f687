"""Raw tables from the configured source; interactions are incremental behind a watermark."""


import time
from datetime import timedelta

import dagster as dg
import pandas as pd

from recsys_assets import settings
from recsys_assets.defs.resources import DataSourceResource, StorageResource
from recsys_training.raw_store import RawStore, merge_new

RAW_FRESHNESS = dg.FreshnessPolicy.time_window(
    fail_window=timedelta(hours=settings.raw_max_lag_hours()),
    warn_window=timedelta(hours=settings.raw_max_lag_hours() / 2),
)


def _save_rejects(storage: StorageResource, name: str, rejects: pd.DataFrame) -> str:
    path = storage.path("raw", f"{name}_rejects.parquet")
    rejects.astype("string").to_parquet(path, index=False)
    return str(path)


def _reject_summary(rejects: pd.DataFrame) -> dict:
    return rejects["reason"].value_counts().to_dict() if len(rejects) else {}


@dg.asset(group_name="raw", kinds={"pandas", "parquet"}, freshness_policy=RAW_FRESHNESS)
def raw_items(context: dg.AssetExecutionContext, source: DataSourceResource, storage: StorageResource) -> pd.DataFrame:
    """The catalog in the canonical schema (item_id, title, description, categories, tags)."""
    started = time.perf_counter()
    tables = source.read()
    items = tables.items.rows
    rejects_path = _save_rejects(storage, "items", tables.items.rejects)
    context.add_output_metadata({
        "source": source.describe(),
        "dagster/row_count": len(items),
        "rejected_rows": len(tables.items.rejects),
        "rejected_by_reason": _reject_summary(tables.items.rejects),
        "rejects_path": dg.MetadataValue.path(rejects_path),
        "preview": dg.MetadataValue.md(items.head(5).to_markdown(index=False)),
        "seconds": round(time.perf_counter() - started, 2),
    })
    return items


@dg.asset(group_name="raw", kinds={"pandas", "parquet"}, freshness_policy=RAW_FRESHNESS)
def raw_interactions(context: dg.AssetExecutionContext, source: DataSourceResource,
                     storage: StorageResource) -> dg.Output[pd.DataFrame]:
    """All interactions so far: new source rows at or after the watermark are appended; the
    table and its watermark are written only after the whole extraction succeeded."""
    started = time.perf_counter()
    store = RawStore(storage.path("raw", "interactions", "_").parent)
    existing, watermark = store.load()
    tables = source.read(since=watermark.max_timestamp if watermark else None)
    merged, new_rows = merge_new(existing, tables.interactions.rows, watermark)
    rejects_path = _save_rejects(storage, "interactions", tables.interactions.rejects)
    if new_rows or watermark is None:
        watermark = store.save(merged)
    context.log.info(f"{new_rows} new interactions; watermark {watermark}")
    return dg.Output(
        merged,
        data_version=dg.DataVersion(watermark.digest),
        metadata={
            "source": source.describe(),
            "dagster/row_count": len(merged),
            "new_rows": new_rows,
            "watermark_timestamp": watermark.max_timestamp,
            "users": int(merged["user_id"].nunique()),
            "items": int(merged["item_id"].nunique()),
            "rejected_rows": len(tables.interactions.rejects),
            "rejected_by_reason": _reject_summary(tables.interactions.rejects),
            "rejects_path": dg.MetadataValue.path(rejects_path),
            "seconds": round(time.perf_counter() - started, 2),
        },
    )
