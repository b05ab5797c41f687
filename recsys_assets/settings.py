"""Environment variables of the pipeline, with their defaults (documented in the README)."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from recsys_training.ranker import (
    DEFAULT_CHOICES,
    DEFAULT_MAX_PAGES,
    DEFAULT_MAX_USERS,
    DEFAULT_NEGATIVE_FRACTION,
    DEFAULT_PATIENCE,
    DEFAULT_RACE_Z,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _path(name: str, default: Path) -> Path:
    return Path(os.environ.get(name, str(default))).expanduser().resolve()


def data_dir() -> Path:
    """RECSYS_DATA_DIR: raw tables, features, evaluation reports (default ``data/``)."""
    return _path("RECSYS_DATA_DIR", PROJECT_ROOT / "data")


def models_dir() -> Path:
    """RECSYS_MODELS_DIR: model bundles (default ``models/``)."""
    return _path("RECSYS_MODELS_DIR", PROJECT_ROOT / "models")


def source_kind() -> str:
    """RECSYS_SOURCE: sample | export | database | synthetic (default ``sample``)."""
    return os.environ.get("RECSYS_SOURCE", "sample")


def sample_dir() -> Path:
    """RECSYS_SAMPLE_DIR: the bundled MovieLens copy (default ``data/movielens-small``)."""
    return _path("RECSYS_SAMPLE_DIR", PROJECT_ROOT / "data" / "movielens-small")


def export_dir() -> str:
    """RECSYS_EXPORT_DIR: directory with items.* and interactions.* (source ``export``)."""
    return os.environ.get("RECSYS_EXPORT_DIR", "")


def database_url() -> str:
    """RECSYS_DATABASE_URL: SQLAlchemy URL (source ``database``)."""
    return os.environ.get("RECSYS_DATABASE_URL", "")


def items_table() -> str:
    """RECSYS_ITEMS_TABLE: table name or SELECT query (default ``items``)."""
    return os.environ.get("RECSYS_ITEMS_TABLE", "items")


def interactions_table() -> str:
    """RECSYS_INTERACTIONS_TABLE: table name or SELECT query (default ``interactions``)."""
    return os.environ.get("RECSYS_INTERACTIONS_TABLE", "interactions")


def synthetic_size() -> tuple[int, int, int]:
    """RECSYS_SYNTHETIC_USERS / _ITEMS / _INTERACTIONS (default 1000 / 2000 / 50000)."""
    return (int(os.environ.get("RECSYS_SYNTHETIC_USERS", "1000")),
            int(os.environ.get("RECSYS_SYNTHETIC_ITEMS", "2000")),
            int(os.environ.get("RECSYS_SYNTHETIC_INTERACTIONS", "50000")))


def seed() -> int:
    """RECSYS_SEED: seed of the synthetic source and of the ranker (default 0)."""
    return int(os.environ.get("RECSYS_SEED", "0"))


def mlflow_tracking_uri() -> str:
    """MLFLOW_TRACKING_URI: an MLflow server; default a SQLite store ``models/mlflow.db``."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{models_dir() / 'mlflow.db'}"


def text_encoder_cache() -> Path | None:
    """RECSYS_ONNX_ENCODER (1) and RECSYS_ENCODER_CACHE ($XDG_CACHE_HOME/recsys/encoders, else
    ~/.cache/recsys/encoders): ``item_embeddings`` runs MiniLM with ONNX Runtime, its export kept
    in this directory; None (torch) when RECSYS_ONNX_ENCODER=0."""
    if os.environ.get("RECSYS_ONNX_ENCODER", "1") != "1":
        return None
    default = Path(os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache"))) / "recsys" / "encoders"
    return _path("RECSYS_ENCODER_CACHE", default)


def text_encoder_weights() -> str:
    """RECSYS_ENCODER_WEIGHTS: int8 or float32, the weights ONNX Runtime runs MiniLM with in
    ``item_embeddings`` (default int8: README, "Text encoder weights"); float32 when
    RECSYS_ONNX_ENCODER=0, as torch runs it."""
    if text_encoder_cache() is None:
        return "float32"
    return os.environ.get("RECSYS_ENCODER_WEIGHTS", "int8")


def ranker_cache() -> Path | None:
    """RECSYS_COMPILE_RANKER (1) and RECSYS_RANKER_CACHE ($XDG_CACHE_HOME/recsys/rankers, else
    ~/.cache/recsys/rankers): the evaluation and the gate rank with the forest compiled to machine
    code, as the service does, kept in this directory; None when RECSYS_COMPILE_RANKER=0."""
    if os.environ.get("RECSYS_COMPILE_RANKER", "1") != "1":
        return None
    default = Path(os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache"))) / "recsys" / "rankers"
    return _path("RECSYS_RANKER_CACHE", default)


def configure_libraries() -> None:
    """Library behaviour set through the environment, for this process only: MLflow gives up on an
    unreachable server at once (no retries, 5 s timeout) instead of retrying for minutes, and
    Hugging Face never reaches for the network (the MiniLM model is installed as a package)."""
    for name, value in (("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0"), ("MLFLOW_HTTP_REQUEST_TIMEOUT", "5"),
                        ("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1")):
        os.environ.setdefault(name, value)


def clip_model_path() -> str:
    """CLIP_MODEL_PATH: a CLIP model saved for sentence-transformers on local disk, for the image
    route (unset: the route is skipped; nothing is ever downloaded)."""
    return os.environ.get("CLIP_MODEL_PATH", "")


def exposure_log() -> str:
    """RECSYS_EXPOSURE_LOG: the service's exposure log the monitoring assets read (default
    ``data/evaluation/exposure_log.jsonl`` under RECSYS_DATA_DIR)."""
    return os.environ.get("RECSYS_EXPOSURE_LOG", "")


def feature_redis_url() -> str:
    """FEATURE_REDIS_URL: Redis the user feature view is synced to for the service (unset: not synced)."""
    return os.environ.get("FEATURE_REDIS_URL", "")


def similar_precompute_items() -> int:
    """RECSYS_SIMILAR_PRECOMPUTE_ITEMS: the bundle holds ranked "similar to X" lists for this many
    of the most popular items, served as a lookup; 0 turns it off (default 10000)."""
    return int(os.environ.get("RECSYS_SIMILAR_PRECOMPUTE_ITEMS", "10000"))


def ranker_max_users() -> int:
    """RECSYS_RANKER_MAX_USERS: the ranker learns from a seeded sample of this many validation
    users (with their /similar requests); 0 uses every user (default 2000: below it every user is
    used, above it the training rows stop growing with the user base)."""
    return int(os.environ.get("RECSYS_RANKER_MAX_USERS", str(DEFAULT_MAX_USERS)))


def ranker_max_pages() -> int:
    """RECSYS_RANKER_MAX_PAGES: at most this many next-item pages in the rankers' training
    requests; above it each sampled user gives fewer pages than ``pages_per_user`` (at least one).
    0: no limit. Default 8000: the sample (610 users x 5 pages) and the 1,500-user synthetic sets
    of ``scripts/synthetic_quality.py`` are below it."""
    return int(os.environ.get("RECSYS_RANKER_MAX_PAGES", str(DEFAULT_MAX_PAGES)))


def ranker_choices() -> list[str]:
    """RECSYS_RANKER_CHOICES: comma-separated LightGBM settings (``ranker.RANKER_CHOICES``) each
    ranker is cross-validated with, the better fitted; the default of ``ranking_model``'s
    ``choices`` (default rank_xendcg,lambdarank)."""
    value = os.environ.get("RECSYS_RANKER_CHOICES", ",".join(DEFAULT_CHOICES))
    return [name.strip() for name in value.split(",") if name.strip()]


def ranker_patience() -> int:
    """RECSYS_RANKER_PATIENCE: a ranker's cross-validation fold stops after this many rounds
    without a better out-of-fold ndcg@10 (default 100)."""
    return int(os.environ.get("RECSYS_RANKER_PATIENCE", str(DEFAULT_PATIENCE)))


def ranker_negative_fraction() -> float:
    """RECSYS_RANKER_NEGATIVE_FRACTION: the seeded share of negative candidate rows the rankers
    learn from, every positive kept (default 1.0, all of them; README, "Rankers")."""
    value = float(os.environ.get("RECSYS_RANKER_NEGATIVE_FRACTION", str(DEFAULT_NEGATIVE_FRACTION)))
    if not 0.0 < value <= 1.0:
        raise ValueError(f"RECSYS_RANKER_NEGATIVE_FRACTION={value}: use a share in (0, 1]")
    return value


def ranker_race_z() -> float | None:
    """RECSYS_RANKER_RACE_Z: a ranker choice whose first cross-validation fold is further behind
    the leader's than this (a paired z of the folds' per-query ndcg@10) fits no other fold and is
    not chosen; ``off`` cross-validates every choice on every fold (README, "Rankers")."""
    value = os.environ.get("RECSYS_RANKER_RACE_Z", "off" if DEFAULT_RACE_Z is None else str(DEFAULT_RACE_Z))
    if value.strip().lower() in ("off", "none", ""):
        return None
    if float(value) < 0:
        raise ValueError(f"RECSYS_RANKER_RACE_Z={value}: use a distance >= 0, or off")
    return float(value)


def sequential_route() -> bool:
    """RECSYS_SEQUENTIAL: train the sequential route (SASRec) and serve it; 0 leaves it out of the
    model (default 1)."""
    return os.environ.get("RECSYS_SEQUENTIAL", "1") != "0"


def sequential_epochs() -> int:
    """RECSYS_SEQUENTIAL_EPOCHS: passes of SASRec's training over the windows of the histories
    (default 40)."""
    return int(os.environ.get("RECSYS_SEQUENTIAL_EPOCHS", "40"))


def raw_max_lag_hours() -> float:
    """RECSYS_RAW_MAX_LAG_HOURS: raw tables older than this are shown stale (default 24)."""
    return float(os.environ.get("RECSYS_RAW_MAX_LAG_HOURS", "24"))


GATE_VARIABLES = {
    "RECSYS_MIN_NDCG_GAIN": ("min_ndcg_gain", float), "RECSYS_RECALL_TOLERANCE": ("recall_tolerance", float),
    "RECSYS_DETAIL_NEXT_TOLERANCE": ("detail_next_tolerance", float),
    "RECSYS_AUC_TOLERANCE": ("auc_relative_tolerance", float), "RECSYS_MIN_EVAL_USERS": ("min_eval_users", int),
    "RECSYS_MIN_QUALITY_SCORE": ("min_quality_score", float),
    "RECSYS_LATENCY_BUDGET_MS": ("latency_budget_ms", float), "RECSYS_LATENCY_REQUESTS": ("latency_requests", int),
    "RECSYS_OFF_POLICY_CHECK": ("off_policy_check", str),
    "RECSYS_OFF_POLICY_MIN_REQUESTS": ("off_policy_min_requests", int),
    "RECSYS_CHALLENGER_STALE_HOURS": ("challenger_stale_hours", float),
    "RECSYS_ALLOW_SMALL_EVAL": ("allow_small_eval", lambda value: value.strip().lower() in ("1", "true", "yes")),
    "RECSYS_BOOTSTRAP_RESAMPLES": ("bootstrap_resamples", int),
    "RECSYS_MAX_BUNDLE_MB": ("max_bundle_mb", float), "RECSYS_MAX_LOADED_MEMORY_MB": ("max_loaded_memory_mb", float),
}
DRIFT_VARIABLES = {
    "RECSYS_DRIFT_PSI": ("psi", float), "RECSYS_DRIFT_KS": ("ks", float),
    "RECSYS_DRIFT_UNSEEN_SHARE": ("unseen_share", float), "RECSYS_DRIFT_CENTROID_SHIFT": ("centroid_shift", float),
    "RECSYS_DRIFT_MIN_SIGNALS": ("min_signals", int), "RECSYS_DRIFT_MIN_ROWS": ("min_rows", int),
    "RECSYS_DRIFT_WINDOW_DAYS": ("window_days", float), "RECSYS_DRIFT_COOLDOWN_HOURS": ("cooldown_hours", float),
}

ROLLOUT_VARIABLES = {
    "RECSYS_ROLLOUT_ON_PROMOTION": ("on_promotion", str), "RECSYS_ROLLOUT_STAGES": ("stages", str),
    "RECSYS_ROLLOUT_MIN_LISTS": ("min_lists", int), "RECSYS_ROLLOUT_MIN_SECONDS": ("min_seconds", float),
    "RECSYS_ROLLOUT_MAX_ERROR_EXCESS": ("max_error_excess", float),
    "RECSYS_ROLLOUT_LATENCY_P99_MS": ("latency_p99_ms", float),
    "RECSYS_ROLLOUT_CLICK_TOLERANCE": ("click_tolerance", float), "RECSYS_ROLLOUT_ALPHA": ("alpha", float),
    "RECSYS_ROLLOUT_PLANNED_LISTS": ("planned_lists", int), "RECSYS_SERVICE_REPLICAS": ("replica_urls", str),
}


def _fields_from(variables: dict[str, tuple[str, type]]) -> dict:
    return {field: cast(os.environ[name]) for name, (field, cast) in variables.items() if name in os.environ}


def gate_settings() -> dict:
    """Fields of the ``promotion_gate`` resource set in the environment (the rest keep the
    resource's defaults): RECSYS_MIN_NDCG_GAIN (0: the lower end of the 95% paired bootstrap
    interval of the ndcg@10 difference must exceed it), RECSYS_RECALL_TOLERANCE (0.005: the recall@10
    difference's interval must not lie wholly below minus it), RECSYS_DETAIL_NEXT_TOLERANCE (0.005:
    against the champion, the next-item detail page's ndcg@10 difference must not lie wholly below
    minus it), RECSYS_BOOTSTRAP_RESAMPLES (2000),
    RECSYS_AUC_TOLERANCE (0.05), RECSYS_MIN_EVAL_USERS (200, absolute), RECSYS_ALLOW_SMALL_EVAL (0;
    1 lets fewer users through, recorded in the registry history), RECSYS_MAX_BUNDLE_MB (4096),
    RECSYS_MAX_LOADED_MEMORY_MB (8192), RECSYS_MIN_QUALITY_SCORE (90),
    RECSYS_LATENCY_BUDGET_MS (10), RECSYS_LATENCY_REQUESTS (1000), RECSYS_OFF_POLICY_CHECK (off |
    warn | block, default warn: the off-policy estimate of the challenger's clicks from the exposure
    log), RECSYS_OFF_POLICY_MIN_REQUESTS (1000: fewer logged lists skip it),
    RECSYS_CHALLENGER_STALE_HOURS (24: notify when a challenger waits longer)."""
    return _fields_from(GATE_VARIABLES)


def drift_settings() -> dict:
    """Fields of the ``drift_policy`` resource set in the environment: RECSYS_DRIFT_PSI (0.2),
    RECSYS_DRIFT_KS (0.1), RECSYS_DRIFT_UNSEEN_SHARE (0.1), RECSYS_DRIFT_CENTROID_SHIFT (0.05),
    RECSYS_DRIFT_MIN_SIGNALS (2), RECSYS_DRIFT_MIN_ROWS (200), RECSYS_DRIFT_WINDOW_DAYS (30: the
    recent window compared with the rest when there is no champion), RECSYS_DRIFT_COOLDOWN_HOURS
    (24: at most one drift-triggered retraining per this many hours)."""
    return _fields_from(DRIFT_VARIABLES)


def rollout_settings() -> dict:
    """Fields of the ``rollout`` resource set in the environment: RECSYS_ROLLOUT_ON_PROMOTION
    (rollout | reload: a new champion is rolled out in stages, or made primary at once),
    RECSYS_ROLLOUT_STAGES (``0,0.05,0.25,0.5,1``: shares of users on the candidate; 0 is shadow, 1
    primary), RECSYS_ROLLOUT_MIN_LISTS (1000 candidate lists per stage), RECSYS_ROLLOUT_MIN_SECONDS
    (600 per stage), RECSYS_ROLLOUT_MAX_ERROR_EXCESS (0.01), RECSYS_ROLLOUT_LATENCY_P99_MS (50),
    RECSYS_ROLLOUT_CLICK_TOLERANCE (0.02), RECSYS_ROLLOUT_ALPHA (0.05), RECSYS_ROLLOUT_PLANNED_LISTS
    (10000), RECSYS_SERVICE_REPLICAS (comma-separated base URLs whose /metrics are summed; default
    RECSYS_SERVICE_URL), RECSYS_ROLLOUT_TICK_SECONDS (see ``rollout_tick_seconds``)."""
    return _fields_from(ROLLOUT_VARIABLES)


def rollout_tick_seconds() -> int:
    """RECSYS_ROLLOUT_TICK_SECONDS: how often the rollout sensor judges the running stage (default 60)."""
    return int(os.environ.get("RECSYS_ROLLOUT_TICK_SECONDS", "60"))


EXECUTORS = ("in_process", "multiprocess", "dask", "k8s")


def executor(job_name: str) -> str:
    """RECSYS_EXECUTOR_<JOB> (e.g. RECSYS_EXECUTOR_TRAIN_AND_EVALUATE), else RECSYS_EXECUTOR: how a
    job's steps run: in_process (the default), multiprocess, dask (on RECSYS_DASK_SCHEDULER; the
    default when that is set) or k8s (each step a Kubernetes Job, with dagster-k8s)."""
    default = "dask" if dask_scheduler() else "in_process"
    value = os.environ.get(f"RECSYS_EXECUTOR_{job_name.upper()}", os.environ.get("RECSYS_EXECUTOR", default))
    if value not in EXECUTORS:
        raise ValueError(f"RECSYS_EXECUTOR for {job_name} is {value!r}: use one of {', '.join(EXECUTORS)}")
    if value == "dask" and not dask_scheduler():
        raise ValueError(f"RECSYS_EXECUTOR for {job_name} is dask: set RECSYS_DASK_SCHEDULER (tcp://host:port or local)")
    return value


def share_cores_between_processes() -> None:
    """For the processes this one starts (the multiprocess executor's steps, a local Dask cluster's
    workers): OpenMP threads (LightGBM, torch) sleep while they wait instead of spinning first
    (``OMP_WAIT_POLICY=PASSIVE`` unless set), so processes that share the cores do not take each
    other's time. A lone process keeps OpenMP's default, which is faster alone (README, "Shared
    cores")."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def dask_scheduler() -> str:
    """RECSYS_DASK_SCHEDULER: a Dask scheduler address (tcp://host:port), ``local`` for a
    distributed.LocalCluster of RECSYS_DASK_WORKERS processes, or unset (no Dask: steps and the
    ranker run in this process)."""
    return os.environ.get("RECSYS_DASK_SCHEDULER", "")


def dask_workers() -> int:
    """RECSYS_DASK_WORKERS: worker processes of a ``local`` cluster (default 2, one thread each)."""
    return int(os.environ.get("RECSYS_DASK_WORKERS", "2"))


def evaluation_workers() -> int:
    """RECSYS_EVAL_WORKERS: processes the evaluation's model lists are split over, each with the
    bundle loaded (default: the CPUs this process may use; 1 keeps it in process)."""
    return int(os.environ.get("RECSYS_EVAL_WORKERS", str(len(os.sched_getaffinity(0)))))


def evaluation_shards() -> int:
    """RECSYS_EVAL_SHARDS: user shards of the evaluation, each its own step (default 2; fixed when
    the definitions load, since the graph's steps are)."""
    shards = int(os.environ.get("RECSYS_EVAL_SHARDS", "2"))
    if shards < 1:
        raise ValueError(f"RECSYS_EVAL_SHARDS must be at least 1, got {shards}")
    return shards


def shard_retries() -> int:
    """RECSYS_SHARD_RETRIES: how often a failed shard step is retried, alone, before its run fails (default 1)."""
    return int(os.environ.get("RECSYS_SHARD_RETRIES", "1"))


def secret(name: str) -> dg.EnvVar | str:
    """A secret resource field: ``dg.EnvVar(name)`` when the variable is set (resolved at run time,
    never shown in the UI or stored with the run), else empty."""
    return dg.EnvVar(name) if os.environ.get(name) else ""


def retrain_cron() -> str:
    """RECSYS_RETRAIN_CRON: the nightly retraining schedule (default ``0 2 * * *``)."""
    return os.environ.get("RECSYS_RETRAIN_CRON", "0 2 * * *")


def automation_on() -> bool:
    """RECSYS_AUTOMATION: 1 starts the schedules and sensors with the daemon (default 0: off,
    as in the demo; they can be switched on in the UI)."""
    return os.environ.get("RECSYS_AUTOMATION", "0") == "1"


def webhook() -> tuple[str, str]:
    """RECSYS_WEBHOOK_URL (unset: no notifications) and RECSYS_WEBHOOK_STYLE (slack | wecom)."""
    return os.environ.get("RECSYS_WEBHOOK_URL", ""), os.environ.get("RECSYS_WEBHOOK_STYLE", "slack")


def service_admin() -> tuple[str, str]:
    """RECSYS_SERVICE_URL (unset: no reload on promotion) and RECSYS_ADMIN_TOKEN."""
    return os.environ.get("RECSYS_SERVICE_URL", ""), os.environ.get("RECSYS_ADMIN_TOKEN", "")


def business_events() -> str:
    """RECSYS_BUSINESS_EVENTS: CSV or Parquet of the business's own events (column ``kind``:
    exposure | click | conversion) to reconcile the service's counts with (unset: skipped)."""
    return os.environ.get("RECSYS_BUSINESS_EVENTS", "")
