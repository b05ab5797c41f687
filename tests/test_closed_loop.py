"""The closed loop on synthetic data: a champion serves; behaviour shifts; drift is confirmed; the
drift sensor's run trains a better challenger that is promoted; the running service reloads it
with no failed request; the exposure metrics then report the new version. Then a deliberately
worse challenger is rejected and the champion stays."""

import json
from concurrent.futures import ThreadPoolExecutor

import dagster as dg
import numpy as np
import pytest

from recsys_assets.defs.automation import drift_retraining, notify_on_failure, reload_service_on_promotion
from recsys_assets.defs.resources import DriftPolicyResource, NotifierResource, RolloutResource, ServiceAdminResource
from recsys_registry.registry import RegistryFile
from recsys_service.settings import ServiceSettings
from recsys_training import synthetic
from tests.pipeline_helpers import checks, materialised, materialize, metadata, resources
from tests.running_service import RunningService
from tests.webhook_server import Webhook

TOKEN = "loop-token"
TRAIN = dg.AssetSelection.all() - dg.AssetSelection.groups("monitoring")
MONITOR = dg.AssetSelection.groups("raw", "monitoring")


def _write_export(directory, tables, interactions):
    directory.mkdir(parents=True, exist_ok=True)
    tables.items.rows.to_parquet(directory / "items.parquet")
    interactions.to_parquet(directory / "interactions.parquet")


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("loop")
    instance = dg.DagsterInstance.ephemeral()
    hook = Webhook()
    notifier = NotifierResource(url=hook.url)
    rng = np.random.default_rng(0)
    base = synthetic.generate(300, 400, 8_000, seed=7)
    export = tmp / "export"
    _write_export(export, base, base.interactions.rows)
    source = {"kind": "export", "export_dir": str(export)}
    out: dict = {"tmp": tmp, "hook": hook, "instance": instance}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RECSYS_LATENCY_REQUESTS", "200")
        mp.setenv("RECSYS_OFF_POLICY_MIN_REQUESTS", "50")
        mp.setenv("RECSYS_LATENCY_BUDGET_MS", "100")  # not what this test is about; other tests may load the CPU
        mp.setenv("RECSYS_DRIFT_COOLDOWN_HOURS", "24")
        out["first"] = materialize(tmp, instance=instance, selection=TRAIN, **source)

        settings = ServiceSettings(models_dir=tmp / "models", admin_token=TOKEN, data_dir=tmp / "data",
                                   exposure_log=tmp / "data" / "evaluation" / "exposure_log.jsonl")
        service = RunningService(settings)
        try:
            users = base.interactions.rows["user_id"].unique()
            items = base.items.rows["item_id"].to_numpy()
            out["failures_before"] = service.traffic(list(rng.choice(users, 120)), list(rng.choice(items, 120)), rng)

            # twice the history: users' recent behaviour is mostly the new one, in train and in test
            later = synthetic.shifted_window(base, 16_000, seed=3)
            _write_export(export, later, later.interactions.rows)  # the export now holds only the new rows
            out["monitor"] = materialize(tmp, instance=instance, selection=MONITOR, **source)

            context = dg.build_sensor_context(instance=instance, resources={"notifier": notifier,
                                                                                   "drift_policy": DriftPolicyResource()})
            out["request"] = drift_retraining(context)
            again = dg.build_sensor_context(instance=instance, cursor=context.cursor,
                                            resources={"notifier": notifier, "drift_policy": DriftPolicyResource()})
            out["monitor_again"] = materialize(tmp, instance=instance, selection=MONITOR, **source)
            out["cooldown"] = drift_retraining(again)

            out["retrain"] = materialize(tmp, instance=instance, selection=TRAIN, tags=out["request"].tags,
                                         **source)

            # reload the running service while it serves, through the promotion sensor
            new_users = later.interactions.rows["user_id"].unique()
            new_items = later.items.rows["item_id"].to_numpy()
            with ThreadPoolExecutor(max_workers=4) as pool:
                load = [pool.submit(RunningService.traffic, service, list(rng.choice(new_users, 60)),
                                    list(rng.choice(new_items, 60)), np.random.default_rng(k), 0.0)
                        for k in range(4)]
                promoted = dg.build_sensor_context(instance=instance, resources={
                    **{k: v for k, v in resources(tmp).items() if k in ("storage", "mlflow_tracking")},
                    "service_admin": ServiceAdminResource(url=service.url, token=TOKEN), "notifier": notifier,
                    "rollout": RolloutResource(on_promotion="reload")})
                out["reload"] = reload_service_on_promotion(promoted)
                out["failures_during_reload"] = sum(f.result() for f in load)
            out["ready"] = service.client.get("/ready").json()
            out["failures_after"] = service.traffic(list(rng.choice(new_users, 120)), list(rng.choice(new_items, 120)),
                                                    rng)
            service.client.get("/health")
        finally:
            service.stop()
        out["metrics"] = materialize(tmp, instance=instance, selection=["exposure_metrics"], **source)

        # a deliberately worse challenger: the same data, served with two candidates per recall route
        out["champion_before_worse"] = RegistryFile.load(tmp / "models" / "model_registry.json").champion
        out["worse"] = materialize(tmp, instance=instance, selection=TRAIN, **source,
                                   run_config={"ops": {"model_bundle": {"config": {"per_route": 2}}}})
        run = instance.get_run_by_id(out["worse"].run_id)
        failure = dg.build_run_status_sensor_context(
            sensor_name="notify_on_failure", dagster_instance=instance, dagster_run=run,
            dagster_event=out["worse"].get_run_failure_event(),
            resources={"notifier": notifier, "mlflow_tracking": resources(tmp)["mlflow_tracking"]})
        notify_on_failure(failure.for_run_failure())
    return out


def test_first_champion_serves_and_logs_exposures(loop):
    assert loop["first"].success
    assert loop["failures_before"] == 0


def test_shifted_behaviour_confirms_drift_and_writes_findings(loop):
    drift = metadata(loop["monitor"], "drift_report")
    assert drift["drift_confirmed"] is True, drift["reason"]
    assert "unseen_item_share" in drift["reason"] and "item_popularity_psi" in drift["reason"]
    findings = list((loop["tmp"] / "data" / "drift_reports").glob("*-interactions-*.json"))
    assert {json.loads(f.read_text())["signal"] for f in findings} >= {"unseen_item_share", "item_popularity_psi"}


def test_the_drift_sensor_requests_retraining_once_per_cooldown(loop):
    request = loop["request"]
    assert isinstance(request, dg.RunRequest)
    assert request.tags["recsys/trigger"] == "drift" and "unseen_item_share" in request.tags["recsys/drift_reason"]
    assert isinstance(loop["cooldown"], dg.SkipReason) and "cool-down" in loop["cooldown"].skip_message
    assert any(t.startswith("*Drift confirmed: retraining*") for t in loop["hook"].texts())


def test_the_retrained_challenger_is_better_and_promoted(loop):
    retrain, first = loop["retrain"], loop["first"]
    assert retrain.success, checks(retrain)
    assert retrain.dagster_run.tags["recsys/trigger"] == "drift"
    v1, v2 = metadata(first, "challenger")["version"], metadata(retrain, "challenger")["version"]
    assert RegistryFile.load(loop["tmp"] / "models" / "model_registry.json").champion == v2 != v1
    gain = [e for e in retrain.get_asset_check_evaluations() if e.check_name == "beats_champion"][0]
    assert gain.metadata["champion_ndcg@10_diff_low"].value > 0
    off_policy = [e for e in retrain.get_asset_check_evaluations() if e.check_name == "off_policy_clicks"][0]
    assert "lists" in off_policy.metadata and off_policy.metadata["lists"].value >= 50


def test_the_service_reloads_the_new_champion_without_a_failed_request(loop):
    v2 = metadata(loop["retrain"], "challenger")["version"]
    assert f"service reloaded: {v2}" in loop["reload"].skip_reason.skip_message
    assert loop["ready"]["primary"] == v2
    assert loop["failures_during_reload"] == 0 and loop["failures_after"] == 0
    assert any(t.startswith(f"*Promoted {v2} to champion*") for t in loop["hook"].texts())


def test_exposure_metrics_report_the_new_version(loop):
    v1, v2 = (metadata(loop[k], "challenger")["version"] for k in ("first", "retrain"))
    exposure = metadata(loop["metrics"], "exposure_metrics")
    assert set(exposure["versions"]) >= {v1, v2}
    report = json.loads((loop["tmp"] / "data" / "evaluation" / "exposure_metrics.json").read_text())
    groups = {g["model_version"]: g for g in report["windows"]["all"]}
    assert groups[v2]["lists"] >= 120 and groups[v1]["clicks"] > 0
    assert "no_click_rate_drop" in checks(loop["metrics"])


def test_a_worse_challenger_is_rejected_and_the_champion_stays(loop):
    worse = loop["worse"]
    assert not worse.success
    assert checks(worse)["beats_champion"] is False
    assert "champion" not in materialised(worse)
    registry = RegistryFile.load(loop["tmp"] / "models" / "model_registry.json")
    assert registry.champion == loop["champion_before_worse"] == metadata(loop["retrain"], "challenger")["version"]
    rejected = [t for t in loop["hook"].texts() if t.startswith("*Challenger rejected")]
    assert rejected and "beats_champion" in rejected[0]


def test_training_outcomes_and_champion_changes_are_prometheus_counters(loop):
    from prometheus_client import CollectorRegistry, generate_latest

    from recsys_service.platform_metrics import PlatformCollector

    registry = CollectorRegistry()
    registry.register(PlatformCollector(loop["tmp"] / "models" / "model_registry.json", loop["tmp"] / "data"))
    text = generate_latest(registry).decode()
    assert 'recsys_retraining_runs_total{outcome="promoted",trigger="manual"} 1.0' in text  # the first model
    assert 'recsys_retraining_runs_total{outcome="promoted",trigger="drift"} 1.0' in text
    assert 'recsys_retraining_runs_total{outcome="rejected",trigger="manual"} 1.0' in text  # the worse one
    assert 'recsys_champion_changes_total{action="promote"} 2.0' in text
