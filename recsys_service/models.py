"""Which models serve: champion, canary candidate, shadow; reloads swap them in atomically."""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, replace
from pathlib import Path

from recsys_registry.registry import RegistryFile
from recsys_runtime.bundle import BundleError, load_bundle
from recsys_runtime.bundle_checks import smoke_queries
from recsys_runtime.recommender import Recommender

STATE_KEY = "recsys:deployment"
RELOAD_MODES = ("primary", "shadow", "stop_shadow", "interleave")


class ReloadRefused(RuntimeError):
    """A bundle failed verification; the serving models are unchanged."""


@dataclass(frozen=True)
class Deployment:
    """An immutable snapshot: requests read one and never see a half-made change."""

    primary: Recommender
    candidate: Recommender | None = None
    rollout: float = 0.0
    shadow: Recommender | None = None
    previous: Recommender | None = None
    generation: int = 0
    interleave: bool = False  # the candidate's share gets one list drafted from both models

    def roles(self) -> dict[str, str | None]:
        return {"primary": self.primary.version, "candidate": self.candidate.version if self.candidate else None,
                "shadow": self.shadow.version if self.shadow else None}

    def state(self) -> dict:
        return {**self.roles(), "rollout": self.rollout, "interleave": self.interleave, "generation": self.generation}


def user_bucket(user_id: str | None) -> float:
    """A stable number in [0, 1) per user: the same user lands in the same arm at a given rollout."""
    if user_id is None:
        return 1.0
    digest = hashlib.sha256(str(user_id).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class ModelManager:
    def __init__(self, registry_path: Path, bundle: str = "", shared=None, mlflow_uri: str = "",
                 model_name: str = "recsys", user_state_cache_bytes: int | None = None, warm_users: int = 0,
                 ranker_cache: Path | None = None) -> None:
        self.registry_path = Path(registry_path)
        self.ranker_cache = ranker_cache
        self.user_state_cache_bytes, self.warm_users = user_state_cache_bytes, warm_users
        self.bundle = bundle
        self.mlflow_uri, self.model_name = mlflow_uri, model_name
        self.shared = shared  # a redis client, or None
        self._lock = threading.Lock()
        self._cache: dict[str, Recommender] = {}
        self.deployment: Deployment | None = None

    def _registry(self) -> RegistryFile:
        return RegistryFile.load(self.registry_path)

    def path_of(self, version: str | None) -> Path:
        """A registered version's bundle; None: the champion (or RECSYS_BUNDLE when set)."""
        if version is None and self.bundle:
            return Path(self.bundle)
        if self.mlflow_uri and not self.registry_path.exists():
            return self._download(version)
        registry = self._registry()
        version = version or registry.champion
        if version is None:
            raise ReloadRefused(f"no champion in {self.registry_path}")
        try:
            return Path(registry.version(version)["path"])
        except Exception as error:  # noqa: BLE001 - unknown version
            raise ReloadRefused(str(error)) from error

    def _download(self, version: str | None) -> Path:
        """The bundle of a registered MLflow version (by bundle version tag) or of the champion alias."""
        import mlflow
        from mlflow.tracking import MlflowClient

        try:
            mlflow.set_tracking_uri(self.mlflow_uri)
            uri = f"models:/{self.model_name}@champion"
            if version is not None:
                client = MlflowClient(tracking_uri=self.mlflow_uri, registry_uri=self.mlflow_uri)
                found = [v for v in client.search_model_versions(f"name='{self.model_name}'")
                         if v.tags.get("bundle_version") == version]
                if not found:
                    raise ReloadRefused(f"no MLflow version of {self.model_name} has bundle_version {version!r}")
                uri = f"models:/{self.model_name}/{found[0].version}"
            target = self.registry_path.parent / "downloaded" / (version or "champion")
            target.mkdir(parents=True, exist_ok=True)
            return Path(mlflow.artifacts.download_artifacts(uri, dst_path=str(target)))
        except ReloadRefused:
            raise
        except Exception as error:  # noqa: BLE001 - an unreachable registry refuses the reload
            raise ReloadRefused(f"cannot fetch {version or 'champion'} from MLflow: {error}") from error

    def load_verified(self, version: str | None) -> Recommender:
        """Load, check the checksums and answer the smoke queries, off the request path."""
        path = self.path_of(version)
        key = str(path.resolve())
        if key in self._cache:
            return self._cache[key]
        try:
            recommender = load_bundle(path, ranker_cache=self.ranker_cache)
            if self.user_state_cache_bytes is not None:
                recommender.user_states.budget_bytes = self.user_state_cache_bytes
        except (BundleError, OSError, ValueError) as error:
            raise ReloadRefused(f"bundle {path} refused: {error}") from error
        smoke = smoke_queries(recommender)
        if not smoke.passed:
            raise ReloadRefused(f"bundle {path} refused: {smoke.reason}")
        recommender.warm_user_states(self.warm_users)
        self._cache = {key: recommender, **{k: v for k, v in list(self._cache.items())[:3]}}
        return recommender

    def start(self) -> Deployment:
        state = self.read_shared()
        if state:
            self.apply_state(state)
        else:
            self.deployment = Deployment(primary=self.load_verified(None))
        return self.deployment

    def reload(self, mode: str, version: str | None, rollout: float | None) -> Deployment:
        """``primary``: replace the serving model (a canary when 0 < rollout < 1). ``shadow``:
        score the same requests in the background; ``stop_shadow``: stop that. ``interleave``: the
        ``rollout`` share of users get team-draft interleaved lists of the primary and ``version``.
        Verification failures raise ReloadRefused."""
        with self._lock:
            current = self.deployment
            if mode == "stop_shadow":
                self.deployment = replace(current, shadow=None, generation=current.generation + 1)
                self.write_shared(self.deployment)
                return self.deployment
            model = self.load_verified(version)
            if mode == "shadow":
                new = replace(current, shadow=model, generation=current.generation + 1)
            elif mode == "interleave":
                new = replace(current, candidate=model, rollout=1.0 if rollout is None else rollout, interleave=True,
                              generation=current.generation + 1)
            elif rollout is not None and 0.0 < rollout < 1.0:
                new = replace(current, candidate=model, rollout=rollout, interleave=False,
                              generation=current.generation + 1)
            else:
                new = Deployment(primary=model, previous=current.primary, shadow=current.shadow,
                                 generation=current.generation + 1)
            self.deployment = new
            self.write_shared(new)
            return new

    def rollback(self) -> Deployment:
        """Drop a canary if there is one; otherwise return to the previous primary (or the
        registry's previous champion)."""
        with self._lock:
            current = self.deployment
            if current.candidate is not None:
                new = replace(current, candidate=None, rollout=0.0, interleave=False, generation=current.generation + 1)
            else:
                target = current.previous
                if target is None:
                    previous = self._registry().previous_champion()
                    if previous is None:
                        raise ReloadRefused("nothing to roll back to")
                    target = self.load_verified(previous)
                new = Deployment(primary=target, previous=current.primary, shadow=current.shadow,
                                 generation=current.generation + 1)
            self.deployment = new
            self.write_shared(new)
            return new

    def choose(self, user_id: str | None) -> tuple[str, Recommender]:
        deployment = self.deployment
        if deployment.candidate is not None and user_bucket(user_id) < deployment.rollout:
            return ("interleave" if deployment.interleave else "candidate"), deployment.candidate
        return "primary", deployment.primary

    # --- state shared by replicas through Redis -------------------------------------------
    def write_shared(self, deployment: Deployment) -> None:
        if self.shared is None:
            return
        try:
            self.shared.set(STATE_KEY, json.dumps(deployment.state()))
        except Exception:  # noqa: BLE001 - replicas keep their own state while Redis is down
            pass

    def read_shared(self) -> dict | None:
        if self.shared is None:
            return None
        try:
            raw = self.shared.get(STATE_KEY)
        except Exception:  # noqa: BLE001
            return None
        return json.loads(raw) if raw else None

    def apply_state(self, state: dict) -> bool:
        """Follow another replica's change; True when something changed."""
        current = self.deployment
        if current is not None and state.get("generation", 0) <= current.generation:
            return False
        with self._lock:
            primary = self.load_verified(state["primary"])
            candidate = self.load_verified(state["candidate"]) if state.get("candidate") else None
            shadow = self.load_verified(state["shadow"]) if state.get("shadow") else None
            self.deployment = Deployment(primary=primary, candidate=candidate, rollout=float(state.get("rollout", 0.0)),
                                         shadow=shadow, previous=current.primary if current else None,
                                         generation=int(state.get("generation", 0)),
                                         interleave=bool(state.get("interleave", False)))
        return True
