"""Environment variables of the pipeline, with their defaults (documented in the README)."""

from __future__ import annotations

import os
from pathlib import Path

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


def similar_precompute_items() -> int:
    """RECSYS_SIMILAR_PRECOMPUTE_ITEMS: the bundle holds ranked "similar to X" lists for this many
    of the most popular items, served as a lookup; 0 turns it off (default 10000)."""
    return int(os.environ.get("RECSYS_SIMILAR_PRECOMPUTE_ITEMS", "10000"))


def raw_max_lag_hours() -> float:
    """RECSYS_RAW_MAX_LAG_HOURS: raw tables older than this are shown stale (default 24)."""
    return float(os.environ.get("RECSYS_RAW_MAX_LAG_HOURS", "24"))


def gate_thresholds():
    """RECSYS_MIN_NDCG_GAIN (0.002), RECSYS_RECALL_TOLERANCE (0.005), RECSYS_AUC_TOLERANCE (0.05),
    RECSYS_MIN_EVAL_USERS (500), RECSYS_MIN_QUALITY_SCORE (90), RECSYS_LATENCY_BUDGET_MS (10),
    RECSYS_LATENCY_REQUESTS (1000)."""
    from recsys_core.gate import GateThresholds

    env = os.environ.get
    return GateThresholds(
        min_ndcg_gain=float(env("RECSYS_MIN_NDCG_GAIN", "0.002")),
        recall_tolerance=float(env("RECSYS_RECALL_TOLERANCE", "0.005")),
        auc_relative_tolerance=float(env("RECSYS_AUC_TOLERANCE", "0.05")),
        min_eval_users=int(env("RECSYS_MIN_EVAL_USERS", "500")),
        min_quality_score=float(env("RECSYS_MIN_QUALITY_SCORE", "90")),
        latency_budget_ms=float(env("RECSYS_LATENCY_BUDGET_MS", "10")),
        latency_requests=int(env("RECSYS_LATENCY_REQUESTS", "1000")),
    )
