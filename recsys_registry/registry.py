"""The model registry: a JSON mirror of champion/challenger and promotion history, kept in step
with an MLflow registered model (aliases ``champion`` / ``challenger``) when MLflow is reachable.

The JSON file alone is enough for a service to find and roll back models; MLflow adds tracking
and the UI. Every method here is plain Python (no Dagster).
"""

from __future__ import annotations

import calendar
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

CHAMPION = "champion"
CHALLENGER = "challenger"


class RegistryError(RuntimeError):
    """A registry operation cannot be done; the message says why."""


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass
class RegistryFile:
    """``models/model_registry.json``: versions by bundle version, aliases, promotion history."""

    path: Path
    data: dict = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> RegistryFile:
        path = Path(path)
        data = json.loads(path.read_text()) if path.exists() else {}
        data.setdefault("versions", {})
        data.setdefault("aliases", {})
        data.setdefault("history", [])
        return cls(path, data)

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.data, indent=2, sort_keys=True))
        tmp.replace(self.path)

    @property
    def champion(self) -> str | None:
        return self.data["aliases"].get(CHAMPION)

    @property
    def challenger(self) -> str | None:
        return self.data["aliases"].get(CHALLENGER)

    def version(self, version: str) -> dict:
        try:
            return self.data["versions"][version]
        except KeyError:
            known = ", ".join(sorted(self.data["versions"])) or "none"
            raise RegistryError(f"unknown model version {version!r} (known: {known})") from None

    def add_version(self, version: str, entry: dict) -> None:
        sequence = 1 + max((v.get("sequence", 0) for v in self.data["versions"].values()), default=0)
        self.data["versions"][version] = {"registered_at": _now(), "sequence": sequence, **entry}

    def set_alias(self, alias: str, version: str | None, action: str, reason: str) -> None:
        previous = self.data["aliases"].get(alias)
        if version is None:
            self.data["aliases"].pop(alias, None)
        else:
            self.version(version)
            self.data["aliases"][alias] = version
        entry = self.data["versions"].get(version, {}) if version else {}
        self.data["history"].append({
            "time": _now(), "alias": alias, "action": action, "version": version, "previous": previous,
            "run_id": entry.get("run_id"), "mlflow_version": entry.get("mlflow_version"),
            "metrics": entry.get("metrics", {}), "reason": reason,
        })

    def waiting_challenger(self) -> tuple[str, float] | None:
        """(version, when it became challenger as a Unix time) while the challenger is not the champion."""
        version = self.challenger
        if version is None or version == self.champion:
            return None
        for event in reversed(self.data["history"]):
            if event["alias"] == CHALLENGER and event["version"] == version:
                return version, calendar.timegm(time.strptime(event["time"], "%Y-%m-%dT%H:%M:%SZ"))
        return None

    def previous_champion(self) -> str | None:
        """The champion before the current one that still has a bundle, from the history."""
        current = self.champion
        for event in reversed(self.data["history"]):
            if event["alias"] == CHAMPION and event["action"] in ("promote", "rollback") and event["previous"]:
                if event["previous"] != current and event["previous"] in self.data["versions"]:
                    return event["previous"]
        return None


class MlflowRegistry:
    """The MLflow side: a registered model whose versions point at the logged bundle artifacts."""

    def __init__(self, tracking_uri: str, model_name: str) -> None:
        import mlflow
        from mlflow.tracking import MlflowClient

        mlflow.set_tracking_uri(tracking_uri)
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        self.model_name = model_name

    def ensure_model(self) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(self.model_name)
        except MlflowException:
            self.client.create_registered_model(self.model_name, description="recsys recommender bundles")

    def create_version(self, run_id: str, artifact_uri: str, tags: dict) -> str:
        self.ensure_model()
        version = self.client.create_model_version(self.model_name, source=artifact_uri, run_id=run_id,
                                                   tags={k: str(v) for k, v in tags.items()})
        return str(version.version)

    def set_alias(self, alias: str, mlflow_version: str) -> None:
        self.client.set_registered_model_alias(self.model_name, alias, mlflow_version)

    def delete_alias(self, alias: str) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.delete_registered_model_alias(self.model_name, alias)
        except MlflowException:
            pass

    def tag_version(self, mlflow_version: str, key: str, value: str) -> None:
        self.client.set_model_version_tag(self.model_name, mlflow_version, key, value)

    def delete_version(self, mlflow_version: str) -> None:
        self.client.delete_model_version(self.model_name, mlflow_version)


class ModelRegistry:
    """Both sides together. MLflow failures never lose a registration: the JSON side is written
    first and the MLflow step is recorded as pending in the version entry."""

    def __init__(self, registry_path: Path, mlflow_registry: MlflowRegistry | None = None) -> None:
        self.file = RegistryFile.load(registry_path)
        self.mlflow = mlflow_registry

    def register(self, version: str, entry: dict) -> None:
        self.file.add_version(version, entry)
        self.file.set_alias(CHALLENGER, version, "register", "new bundle evaluated")
        self.file.save()
        self._sync_alias(CHALLENGER, version)

    def promote(self, version: str, reason: str) -> None:
        if self.file.champion == version:
            raise RegistryError(f"{version} is already the champion")
        self.file.set_alias(CHAMPION, version, "promote", reason)
        if self.file.challenger == version:
            self.file.data["aliases"].pop(CHALLENGER, None)
        self.file.save()
        self._sync_alias(CHAMPION, version)
        if self.mlflow is not None and self.file.challenger is None:
            self.mlflow.delete_alias(CHALLENGER)

    def record_override(self, version: str, check: str, reason: str) -> None:
        """A gate check passed only by an explicit override: kept in the history with its reason."""
        self.file.data["history"].append({"time": _now(), "alias": None, "action": "override", "version": version,
                                          "check": check, "reason": reason})
        self.file.save()

    def record_rollout(self, version: str, action: str, stage: str, reason: str) -> None:
        """A rollout decision on ``version``: in the history, and as tags of its MLflow version."""
        self.file.data["history"].append({"time": _now(), "alias": None, "action": f"rollout_{action}",
                                          "version": version, "stage": stage, "reason": reason})
        self.file.save()
        mlflow_version = self.file.data["versions"].get(version, {}).get("mlflow_version")
        if self.mlflow is not None and mlflow_version:
            try:
                self.mlflow.tag_version(mlflow_version, "rollout.stage", stage)
                self.mlflow.tag_version(mlflow_version, "rollout.last_action", action)
            except Exception:  # noqa: BLE001 - the history above is the record; MLflow mirrors it
                pass

    def record_retraining(self, run_id: str, trigger: str, outcome: str, version: str | None = None) -> None:
        """How a training run ended (outcome: promoted, rejected or failed) and what started it."""
        self.file.data["history"].append({"time": _now(), "alias": None, "action": "retraining", "version": version,
                                          "run_id": run_id, "trigger": trigger, "outcome": outcome})
        self.file.save()

    def rollback(self, reason: str = "rollback") -> str:
        target = self.file.previous_champion()
        if target is None:
            raise RegistryError("no previous champion to roll back to")
        self.file.set_alias(CHAMPION, target, "rollback", reason)
        self.file.save()
        self._sync_alias(CHAMPION, target)
        return target

    def _sync_alias(self, alias: str, version: str) -> None:
        mlflow_version = self.file.version(version).get("mlflow_version")
        if self.mlflow is not None and mlflow_version:
            self.mlflow.set_alias(alias, mlflow_version)

    def prune(self, keep: int, execute: bool = True) -> list[str]:
        """Delete all but the ``keep`` newest versions; never the champion or the challenger."""
        protected = {self.file.champion, self.file.challenger}
        ordered = sorted(self.file.data["versions"].items(), key=lambda kv: kv[1].get("sequence", 0), reverse=True)
        doomed = [v for i, (v, _) in enumerate(ordered) if i >= keep and v not in protected]
        if execute:
            for version in doomed:
                entry = self.file.data["versions"].pop(version)
                shutil.rmtree(entry.get("path", ""), ignore_errors=True)
                if self.mlflow is not None and entry.get("mlflow_version"):
                    self.mlflow.delete_version(entry["mlflow_version"])
                self.file.data["history"].append({"time": _now(), "alias": None, "action": "prune", "version": version,
                                                  "previous": None, "reason": f"prune --keep {keep}"})
            self.file.save()
        return doomed

    def orphaned_bundles(self, bundles_dir: Path) -> list[Path]:
        """Bundle directories the registry does not know (failed or abandoned runs)."""
        known = {Path(e.get("path", "")).resolve() for e in self.file.data["versions"].values()}
        if not bundles_dir.exists():
            return []
        return sorted(p for p in bundles_dir.iterdir() if p.is_dir() and p.resolve() not in known)
