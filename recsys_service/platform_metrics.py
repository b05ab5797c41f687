"""Model and data state exported next to the service's own metrics, read from the registry file
and the drift reports at scrape time, so alert rules need only scrape the service."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from recsys_registry.registry import RegistryFile


class PlatformCollector:
    def __init__(self, registry_path: Path, drift_dir: Path) -> None:
        self.registry_path, self.drift_dir = Path(registry_path), Path(drift_dir)

    def collect(self):
        try:
            registry = RegistryFile.load(self.registry_path)
        except (OSError, ValueError):
            registry = None
        aliases = registry.data["aliases"] if registry else {}
        versions = registry.data["versions"] if registry else {}
        ndcg = GaugeMetricFamily("recsys_registry_ndcg_at_10", "Offline ndcg@10 of the registered model by alias",
                                 labels=["role", "version"])
        quality = GaugeMetricFamily("recsys_registry_data_quality_score",
                                    "Quality score (0-100) of the data the model was trained on", labels=["role", "version"])
        for role in ("champion", "challenger"):
            version = aliases.get(role)
            metrics = versions.get(version, {}).get("metrics", {}) if version else {}
            if metrics.get("ndcg@10") is not None:
                ndcg.add_metric([role, version], float(metrics["ndcg@10"]))
            if metrics.get("data_quality_score") is not None:
                quality.add_metric([role, version], float(metrics["data_quality_score"]))
        yield ndcg
        yield quality
        history = registry.data["history"] if registry else []
        runs = CounterMetricFamily("recsys_retraining_runs", "Training runs by trigger and outcome (registry history)",
                                   labels=["trigger", "outcome"])
        for (trigger, outcome), count in sorted(Counter((e.get("trigger") or "manual", e.get("outcome") or "unknown")
                                                        for e in history if e["action"] == "retraining").items()):
            runs.add_metric([trigger, outcome], count)
        yield runs
        changes = CounterMetricFamily("recsys_champion_changes", "Changes of the champion alias by action",
                                      labels=["action"])
        for action, count in sorted(Counter(e["action"] for e in history if e.get("alias") == "champion").items()):
            changes.add_metric([action], count)
        yield changes
        waiting = GaugeMetricFamily("recsys_challenger_waiting_seconds",
                                    "How long the current challenger has waited without promotion (0: none)")
        waiting_since = registry.waiting_challenger() if registry else None
        waiting.add_metric([], max(0.0, time.time() - waiting_since[1]) if waiting_since else 0.0)
        yield waiting
        confirmed = GaugeMetricFamily("recsys_drift_confirmed", "1 when the latest drift report confirms drift",
                                      labels=["source"])
        signals = GaugeMetricFamily("recsys_drift_signals_over_threshold", "Drift signals over their threshold",
                                    labels=["source"])
        for path in sorted(self.drift_dir.glob("latest-*.json")):
            try:
                report = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            source = path.stem.removeprefix("latest-")
            confirmed.add_metric([source], 1.0 if report.get("confirmed") else 0.0)
            signals.add_metric([source], float(sum(1 for f in report.get("findings", []) if f.get("drifted"))))
        yield confirmed
        yield signals
