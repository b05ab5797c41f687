"""Materialising the project's graph in tests, with every resource in a temporary directory."""

from pathlib import Path

import dagster as dg

from recsys_assets import settings
from recsys_assets.definitions import defs
from recsys_assets.defs.online import FeatureStoreResource
from recsys_assets.defs.resources import (
    DaskResource,
    DataSourceResource,
    DriftPolicyResource,
    PromotionGateResource,
    StorageResource,
)
from recsys_assets.defs.tracking import MlflowResource
from recsys_assets.table_io import TableIOManager

SYNTHETIC = {"kind": "synthetic", "synthetic_users": 300, "synthetic_items": 400, "synthetic_interactions": 12_000,
             "seed": 7}


def resources(tmp: Path, tracking_uri: str | None = None, feature_redis_url: str = "", data_dir: Path | None = None,
              **source) -> dict:
    return {
        "feature_store": FeatureStoreResource(redis_url=feature_redis_url),
        "storage": StorageResource(data_dir=str(data_dir or tmp / "data"), models_dir=str(tmp / "models")),
        "source": DataSourceResource(**{**SYNTHETIC, **source}),
        "io_manager": TableIOManager(base_dir=str(tmp / "storage")),
        "mlflow_tracking": MlflowResource(tracking_uri=tracking_uri or f"sqlite:///{tmp / 'models' / 'mlflow.db'}",
                                          models_dir=str(tmp / "models")),
        "promotion_gate": PromotionGateResource(**settings.gate_settings()),
        "drift_policy": DriftPolicyResource(**settings.drift_settings()),
        "dask": DaskResource(),
    }


def graph() -> list:
    definitions = defs()
    return [*definitions.assets, *definitions.asset_checks]


def materialize(tmp: Path, instance=None, selection=None, tracking_uri: str | None = None, feature_redis_url: str = "",
                data_dir: Path | None = None, tags: dict | None = None, run_config: dict | None = None, **source):
    (tmp / "models").mkdir(parents=True, exist_ok=True)
    return dg.materialize(graph(), resources=resources(tmp, tracking_uri, feature_redis_url, data_dir, **source),
                          instance=instance, selection=selection, raise_on_error=False, tags=tags, run_config=run_config)


def metadata(result, key: str) -> dict:
    events = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == key]
    assert len(events) == 1, f"{key} materialised {len(events)} times"
    return {k: v.value for k, v in events[0].materialization.metadata.items()}


def materialised(result) -> set[str]:
    return {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}


def checks(result) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
