"""Environment variables of the service, with their defaults (documented in the README)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _ranker_cache() -> Path:
    default = Path(_env("XDG_CACHE_HOME", str(Path.home() / ".cache"))) / "recsys" / "rankers"
    return Path(_env("RECSYS_RANKER_CACHE", str(default)))


def _mlflow_ui() -> str:
    tracking = _env("MLFLOW_TRACKING_URI", "")
    return tracking if tracking.startswith(("http://", "https://")) else "http://127.0.0.1:5000"


@dataclass(frozen=True)
class ServiceSettings:
    """RECSYS_MODELS_DIR (models/): registry file and bundles. RECSYS_BUNDLE: serve this bundle
    directory instead of the registry's champion. REDIS_URL: shared cache and rollout state
    (none: in-process). FEATURE_REDIS_URL: online user activity. RECSYS_ADMIN_TOKEN: bearer token
    of the admin endpoints (unset: admin disabled). RECSYS_CACHE_TTL (60 s), RECSYS_CACHE_SIZE
    (10000 lists). RECSYS_EXPOSURE_LOG (data/evaluation/exposure_log.jsonl),
    RECSYS_EXPOSURE_LOG_MAX_MB (50), RECSYS_EXPOSURE_FLUSH_SECONDS (0.05: how often the background
    thread appends what was logged; shutdown flushes the rest). RECSYS_STATE_POLL_SECONDS (2): how often a replica checks
    the shared rollout state. MLFLOW_TRACKING_URI: when set and there is no registry file, the
    champion is fetched through the MLflow alias. RECSYS_DATA_DIR (data/): where the pipeline's
    drift reports are read from for /metrics. RECSYS_USER_STATE_CACHE_MB (256): per loaded model,
    the users' history states kept for live requests (0: off). RECSYS_WARM_USERS (2000): states
    built for this many of the most active users when a model is loaded, before it serves (within
    the cache size). RECSYS_GC_FREEZE (1): move
    everything loaded at start-up out of Python's garbage collection passes. RECSYS_COMPILE_RANKER
    (1): rank with the LightGBM forest compiled to machine code (0: LightGBM's own predict).
    RECSYS_RANKER_CACHE ($XDG_CACHE_HOME/recsys/rankers, else ~/.cache/recsys/rankers): where
    compiled forests are kept. Input limits (a larger input gets a 4xx naming the field):
    RECSYS_MAX_ID_LENGTH (256 characters: item, user and request ids), RECSYS_MAX_CATEGORIES (20
    ``category`` values), RECSYS_MAX_EVENT_BYTES (4096: body of one /events request, else 413),
    RECSYS_ADMIN_RATE_LIMIT (30 requests per minute per client on the admin endpoints, else 429).
    The explorer page's links: RECSYS_DAGSTER_UI_URL (http://127.0.0.1:3000) and
    RECSYS_MLFLOW_UI_URL (MLFLOW_TRACKING_URI when it is an http address, else http://127.0.0.1:5000)."""

    models_dir: Path = field(default_factory=lambda: Path(_env("RECSYS_MODELS_DIR", str(PROJECT_ROOT / "models"))))
    bundle: str = field(default_factory=lambda: _env("RECSYS_BUNDLE", ""))
    redis_url: str = field(default_factory=lambda: _env("REDIS_URL", ""))
    feature_redis_url: str = field(default_factory=lambda: _env("FEATURE_REDIS_URL", ""))
    admin_token: str = field(default_factory=lambda: _env("RECSYS_ADMIN_TOKEN", ""))
    cache_ttl: int = field(default_factory=lambda: int(_env("RECSYS_CACHE_TTL", "60")))
    cache_size: int = field(default_factory=lambda: int(_env("RECSYS_CACHE_SIZE", "10000")))
    exposure_log: Path = field(default_factory=lambda: Path(_env(
        "RECSYS_EXPOSURE_LOG", str(PROJECT_ROOT / "data" / "evaluation" / "exposure_log.jsonl"))))
    exposure_log_max_mb: float = field(default_factory=lambda: float(_env("RECSYS_EXPOSURE_LOG_MAX_MB", "50")))
    exposure_flush_seconds: float = field(default_factory=lambda: float(_env("RECSYS_EXPOSURE_FLUSH_SECONDS", "0.05")))
    state_poll_seconds: float = field(default_factory=lambda: float(_env("RECSYS_STATE_POLL_SECONDS", "2")))
    mlflow_tracking_uri: str = field(default_factory=lambda: _env("MLFLOW_TRACKING_URI", ""))
    data_dir: Path = field(default_factory=lambda: Path(_env("RECSYS_DATA_DIR", str(PROJECT_ROOT / "data"))))
    user_state_cache_mb: float = field(default_factory=lambda: float(_env("RECSYS_USER_STATE_CACHE_MB", "256")))
    warm_users: int = field(default_factory=lambda: int(_env("RECSYS_WARM_USERS", "2000")))
    gc_freeze: bool = field(default_factory=lambda: _env("RECSYS_GC_FREEZE", "1") == "1")
    compile_ranker: bool = field(default_factory=lambda: _env("RECSYS_COMPILE_RANKER", "1") == "1")
    ranker_cache: Path = field(default_factory=_ranker_cache)
    max_id_length: int = field(default_factory=lambda: int(_env("RECSYS_MAX_ID_LENGTH", "256")))
    max_categories: int = field(default_factory=lambda: int(_env("RECSYS_MAX_CATEGORIES", "20")))
    max_event_bytes: int = field(default_factory=lambda: int(_env("RECSYS_MAX_EVENT_BYTES", "4096")))
    admin_rate_limit: int = field(default_factory=lambda: int(_env("RECSYS_ADMIN_RATE_LIMIT", "30")))
    dagster_ui_url: str = field(default_factory=lambda: _env("RECSYS_DAGSTER_UI_URL", "http://127.0.0.1:3000").rstrip("/"))
    mlflow_ui_url: str = field(default_factory=lambda: _env("RECSYS_MLFLOW_UI_URL", _mlflow_ui()).rstrip("/"))

    @property
    def registry_path(self) -> Path:
        return self.models_dir / "model_registry.json"

    @property
    def ranker_cache_dir(self) -> Path | None:
        """Where compiled forests are kept, None when the ranker is not compiled."""
        return self.ranker_cache if self.compile_ranker else None
