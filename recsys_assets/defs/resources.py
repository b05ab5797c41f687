"""Resources: where data comes from and where outputs go, configured from the environment."""

import dataclasses
from contextlib import contextmanager
from pathlib import Path

import dagster as dg

from recsys_assets import settings
from recsys_assets.defs.online import FeatureStoreResource
from recsys_assets.defs.tracking import MlflowResource
from recsys_assets.table_io import TableIOManager
from recsys_delivery.rollout import Rollout, RolloutPolicy
from recsys_delivery.service_client import ServiceClient, reload_model
from recsys_training import notify, promotion, sources, synthetic
from recsys_training.drift import DriftThresholds


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


_GATE = promotion.GateThresholds()
_DRIFT = DriftThresholds()
_ROLLOUT = RolloutPolicy()


class PromotionGateResource(dg.ConfigurableResource):
    """Thresholds of the promotion gate (defaults: ``GateThresholds``; RECSYS_* variables override
    them, see the README); shown in the launchpad and recorded with each run."""

    min_ndcg_gain: float = _GATE.min_ndcg_gain
    recall_tolerance: float = _GATE.recall_tolerance
    detail_next_tolerance: float = _GATE.detail_next_tolerance
    auc_relative_tolerance: float = _GATE.auc_relative_tolerance
    min_eval_users: int = _GATE.min_eval_users
    allow_small_eval: bool = _GATE.allow_small_eval
    bootstrap_resamples: int = _GATE.bootstrap_resamples
    min_quality_score: float = _GATE.min_quality_score
    latency_budget_ms: float = _GATE.latency_budget_ms
    latency_requests: int = _GATE.latency_requests
    max_bundle_mb: float = _GATE.max_bundle_mb
    max_loaded_memory_mb: float = _GATE.max_loaded_memory_mb
    off_policy_check: str = "warn"  # off | warn | block
    off_policy_min_requests: int = 1_000
    challenger_stale_hours: float = 24.0

    def thresholds(self) -> promotion.GateThresholds:
        return promotion.GateThresholds(**_values(self, promotion.GateThresholds))


class DriftPolicyResource(dg.ConfigurableResource):
    """When drift is confirmed (defaults: ``DriftThresholds``) and how often it may start a
    retraining; RECSYS_DRIFT_* variables override them."""

    psi: float = _DRIFT.psi
    ks: float = _DRIFT.ks
    unseen_share: float = _DRIFT.unseen_share
    centroid_shift: float = _DRIFT.centroid_shift
    min_signals: int = _DRIFT.min_signals
    min_rows: int = _DRIFT.min_rows
    window_days: float = 30.0
    cooldown_hours: float = 24.0

    def thresholds(self) -> DriftThresholds:
        return DriftThresholds(**_values(self, DriftThresholds))


def _values(resource: dg.ConfigurableResource, thresholds: type) -> dict:
    """The resource's values of the fields of the ``thresholds`` dataclass."""
    return {f.name: getattr(resource, f.name) for f in dataclasses.fields(thresholds)}


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


class DaskResource(dg.ConfigurableResource):
    """The Dask cluster heavy steps may use (RECSYS_DASK_SCHEDULER): a scheduler address,
    ``local`` for a LocalCluster of ``workers`` processes, or empty for none."""

    scheduler: str = ""
    workers: int = 2

    @contextmanager
    def client(self):
        """A client of the cluster; inside a task of the dask executor, one that secedes from the
        worker's thread pool so work the step submits can run on every worker."""
        from distributed import Client, LocalCluster, get_worker, worker_client

        try:
            get_worker()
        except ValueError:
            pass
        else:
            with worker_client() as client:
                yield client
            return
        if self.scheduler == "local":
            with LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True) as cluster, \
                    Client(cluster) as client:
                yield client
        else:
            with Client(self.scheduler) as client:
                yield client


class RolloutResource(dg.ConfigurableResource):
    """How a promoted champion reaches users (defaults: ``RolloutPolicy``; RECSYS_ROLLOUT_*
    variables override them). ``on_promotion``: ``rollout`` (staged, judged by the rollout sensor)
    or ``reload`` (primary at once). ``stages``: comma-separated shares of users on the candidate.
    ``replica_urls``: comma-separated replicas whose /metrics are summed (default: the service URL)."""

    on_promotion: str = "rollout"
    stages: str = ",".join(f"{s:g}" for s in _ROLLOUT.stages)
    min_lists: int = _ROLLOUT.min_lists
    min_seconds: float = _ROLLOUT.min_seconds
    max_error_excess: float = _ROLLOUT.max_error_excess
    latency_p99_ms: float = _ROLLOUT.latency_p99_ms
    click_tolerance: float = _ROLLOUT.click_tolerance
    alpha: float = _ROLLOUT.alpha
    planned_lists: int = _ROLLOUT.planned_lists
    replica_urls: str = ""

    def policy(self) -> RolloutPolicy:
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(RolloutPolicy) if f.name != "stages"}
        return RolloutPolicy(stages=tuple(float(s) for s in self.stages.split(",") if s.strip()), **values)

    def rollout(self, models_dir: Path, service_admin: "ServiceAdminResource") -> Rollout:
        replicas = tuple(u.strip() for u in self.replica_urls.split(",") if u.strip())
        client = ServiceClient(service_admin.url, service_admin.token, replicas)
        return Rollout(Path(models_dir) / "rollout.json", client, self.policy())


def resources_from_environment() -> dict:
    """Every resource, configured from the environment through ``settings``; secrets (database URL,
    webhook URL, admin token) as ``dg.EnvVar`` so the UI shows their names, never their values."""
    users, items, interactions = settings.synthetic_size()
    data_dir = settings.data_dir()
    _, webhook_style = settings.webhook()
    service_url, _ = settings.service_admin()
    return {
        "storage": StorageResource(data_dir=str(data_dir), models_dir=str(settings.models_dir()),
                                   exposure_log=settings.exposure_log()),
        "source": DataSourceResource(
            kind=settings.source_kind(), sample_dir=str(settings.sample_dir()), export_dir=settings.export_dir(),
            database_url=settings.secret("RECSYS_DATABASE_URL"), items_table=settings.items_table(),
            interactions_table=settings.interactions_table(), synthetic_users=users, synthetic_items=items,
            synthetic_interactions=interactions, seed=settings.seed(),
        ),
        "io_manager": TableIOManager(base_dir=str(data_dir / "assets")),
        "feature_store": FeatureStoreResource(redis_url=settings.feature_redis_url()),
        "mlflow_tracking": MlflowResource(tracking_uri=settings.mlflow_tracking_uri(),
                                          models_dir=str(settings.models_dir())),
        "notifier": NotifierResource(url=settings.secret("RECSYS_WEBHOOK_URL"), style=webhook_style),
        "service_admin": ServiceAdminResource(url=service_url, token=settings.secret("RECSYS_ADMIN_TOKEN")),
        "promotion_gate": PromotionGateResource(**settings.gate_settings()),
        "drift_policy": DriftPolicyResource(**settings.drift_settings()),
        "rollout": RolloutResource(**settings.rollout_settings()),
        "dask": DaskResource(scheduler=settings.dask_scheduler(), workers=settings.dask_workers()),
    }


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources=resources_from_environment())
