"""Schedules and the stale-challenger sensor (the drift, promotion and failure sensors run in the
closed-loop scenario)."""

import json
import time

import dagster as dg

from recsys_assets.defs.automation import nightly_retrain, stale_challenger
from recsys_assets.defs.resources import NotifierResource, PromotionGateResource
from recsys_assets.defs.tracking import MlflowResource
from tests.webhook_server import Webhook


def _registry(path, challenger_hours_ago: float) -> None:
    registered = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - challenger_hours_ago * 3_600))
    path.write_text(json.dumps({
        "versions": {"v1": {"path": "x"}, "v2": {"path": "y"}},
        "aliases": {"champion": "v1", "challenger": "v2"},
        "history": [{"time": registered, "alias": "challenger", "action": "register", "version": "v2",
                     "previous": None, "reason": "registered"}],
    }))


def test_nightly_retrain_runs_the_training_job_at_two_and_is_off_by_default():
    assert nightly_retrain.cron_schedule == "0 2 * * *"
    assert nightly_retrain.job_name == "train_and_evaluate"
    assert nightly_retrain.default_status == dg.DefaultScheduleStatus.STOPPED


def test_a_challenger_waiting_over_a_day_is_reported_once(tmp_path):
    hook = Webhook()
    resources = {"mlflow_tracking": MlflowResource(tracking_uri="sqlite:///unused.db", models_dir=str(tmp_path)),
                 "notifier": NotifierResource(url=hook.url), "promotion_gate": PromotionGateResource()}
    _registry(tmp_path / "model_registry.json", challenger_hours_ago=5)
    fresh = stale_challenger(dg.build_sensor_context(resources=resources))
    assert "waiting 5.0 h" in fresh.skip_message and hook.received == []
    _registry(tmp_path / "model_registry.json", challenger_hours_ago=30)
    context = dg.build_sensor_context(resources=resources)
    first = stale_challenger(context)
    assert first.skip_message.startswith("notified: v2") and hook.texts() == ["*Challenger v2 has waited 30 hours*\n"
                                                                             "• it was registered but never promoted: "
                                                                             "check its gate results or promote/reject it"]
    again = stale_challenger(dg.build_sensor_context(cursor=context.cursor, resources=resources))
    assert "waiting 30.0 h" in again.skip_message and len(hook.received) == 1
