"""Resources: where data comes from and where outputs go, configured from the environment."""

from pathlib import Path

import dagster as dg

from recsys_assets import settings
from recsys_assets.defs.online import FeatureStoreResource
from recsys_assets.defs.tracking import MlflowResource
from recsys_service.admin_client import reload_model
from recsys_training import notify, sources, synthetic


class StorageResource(dg.ConfigurableResource):
    """Directories for raw tables, features, reports and model bundles."""

    data_dir: str
    models_dir: str
    exposure_log: str = ""

    def path(self, *parts: str) -> Path:
        target = Path(self.data_dir).joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def exposure_log_path(self) -> Path:
        """The service's exposure log: ``exposure_log`` when set, else data/evaluation/exposure_log.jsonl."""
        return Path(self.exposure_log) if self.exposure_log else Path(self.data_dir) / "evaluation" / "exposure_log.jsonl"

    def bundles(self) -> Path:
        target = Path(self.models_dir) / "bundles"
        target.mkdir(parents=True, exist_ok=True)
        return target


class DataSourceResource(dg.ConfigurableResource):
    """Raw catalog and interactions from ``kind``: sample, export, database or synthetic."""

    kind: str = "sample"
    sample_dir: str = ""
    export_dir: str = ""
    database_url: str = ""
    items_table: str = "items"
    interactions_table: str = "interactions"
    synthetic_users: int = 1_000
    synthetic_items: int = 2_000
    synthetic_interactions: int = 50_000
    seed: int = 0

    def describe(self) -> str:
        where = {"sample": self.sample_dir, "export": self.export_dir, "database": self.database_url.split("@")[-1],
                 "synthetic": f"{self.synthetic_users}x{self.synthetic_items}, seed {self.seed}"}
        return f"{self.kind}: {where.get(self.kind, '?')}"

    def read(self, since: int | None = None) -> sources.RawTables:
        if self.kind == "sample":
            return sources.load_movielens(Path(self.sample_dir))
        if self.kind == "export":
            if not self.export_dir:
                raise ValueError("RECSYS_SOURCE=export needs RECSYS_EXPORT_DIR")
            return sources.load_export(Path(self.export_dir))
        if self.kind == "database":
            if not self.database_url:
                raise ValueError("RECSYS_SOURCE=database needs RECSYS_DATABASE_URL")
            return sources.load_database(self.database_url, self.items_table, self.interactions_table, since)
        if self.kind == "synthetic":
            return synthetic.generate(self.synthetic_users, self.synthetic_items, self.synthetic_interactions,
                                      seed=self.seed)
        raise ValueError(f"unknown source kind {self.kind!r}: use sample, export, database or synthetic")


class NotifierResource(dg.ConfigurableResource):
    """Webhook notifications (Slack or WeCom JSON); nothing is sent when ``url`` is empty."""

    url: str = ""
    style: str = "slack"

    def send(self, title: str, lines: list[str]) -> bool:
        return notify.send(self.url, title, lines, self.style)


class ServiceAdminResource(dg.ConfigurableResource):
    """The recommendation service's admin API, to reload a newly promoted champion."""

    url: str = ""
    token: str = ""

    def reload(self, version: str) -> dict:
        """POST /models/reload; raises on an HTTP error, returns {} when no service is configured."""
        return reload_model(self.url, self.token, version) if self.url else {}


def resources_from_environment() -> dict:
    users, items, interactions = settings.synthetic_size()
    data_dir = settings.data_dir()
    return {
        "storage": StorageResource(data_dir=str(data_dir), models_dir=str(settings.models_dir()),
                                   exposure_log=settings.exposure_log()),
        "source": DataSourceResource(
            kind=settings.source_kind(), sample_dir=str(settings.sample_dir()), export_dir=settings.export_dir(),
            database_url=settings.database_url(), items_table=settings.items_table(),
            interactions_table=settings.interactions_table(), synthetic_users=users, synthetic_items=items,
            synthetic_interactions=interactions, seed=settings.seed(),
        ),
        "io_manager": dg.FilesystemIOManager(base_dir=str(data_dir / "dagster_storage")),
        "feature_store": FeatureStoreResource(redis_url=settings.feature_redis_url()),
        "mlflow_tracking": MlflowResource(tracking_uri=settings.mlflow_tracking_uri(),
                                          models_dir=str(settings.models_dir())),
        "notifier": NotifierResource(url=settings.webhook()[0], style=settings.webhook()[1]),
        "service_admin": ServiceAdminResource(url=settings.service_admin()[0], token=settings.service_admin()[1]),
    }


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources=resources_from_environment())
