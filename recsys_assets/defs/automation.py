"""Schedules and sensors that close the loop: drift starts retraining, a promotion reloads the
service, failures, rejections, drift and a waiting challenger are sent to the webhook."""

import json
import time

import dagster as dg

from recsys_assets import settings
from recsys_assets.defs import jobs
from recsys_assets.defs.delivery import decision_event
from recsys_assets.defs.gate import GATE_CHECKS
from recsys_assets.defs.resources import (
    DriftPolicyResource,
    NotifierResource,
    PromotionGateResource,
    RolloutResource,
    ServiceAdminResource,
    StorageResource,
)
from recsys_assets.defs.tracking import MlflowResource
from recsys_delivery.rollout import ADVANCE, PAUSED, RUNNING, Decision, stage_name
from recsys_registry.registry import RegistryFile


def _status() -> dg.DefaultSensorStatus:
    return dg.DefaultSensorStatus.RUNNING if settings.automation_on() else dg.DefaultSensorStatus.STOPPED


def _schedule_status() -> dg.DefaultScheduleStatus:
    return dg.DefaultScheduleStatus.RUNNING if settings.automation_on() else dg.DefaultScheduleStatus.STOPPED


nightly_retrain = dg.ScheduleDefinition(
    name="nightly_retrain", job=jobs.train_and_evaluate, cron_schedule=settings.retrain_cron(),
    default_status=_schedule_status(), tags={"recsys/trigger": "schedule"},
    description="Retrain, evaluate and gate every night (RECSYS_RETRAIN_CRON, default 02:00).",
)

hourly_monitoring = dg.ScheduleDefinition(
    name="hourly_monitoring", job=jobs.monitor, cron_schedule="15 * * * *", default_status=_schedule_status(),
    description="Ingest new raw data, check drift, update the online metrics.",
)

keep_monitoring_current = dg.AutomationConditionSensorDefinition(
    "keep_monitoring_current", target=jobs.MONITORING | dg.AssetSelection.groups("features", "quality"),
    default_status=_status(),
    description="When raw data arrive: the feature views, the online feature store, the quality report and "
                "the drift report follow (eager automation conditions). Models follow drift or the schedule.",
)


@dg.sensor(job=jobs.train_and_evaluate, default_status=_status(), minimum_interval_seconds=60)
def drift_retraining(context: dg.SensorEvaluationContext, notifier: NotifierResource,
                     drift_policy: DriftPolicyResource):
    """A new drift report that confirms drift requests the retraining job, at most once per
    RECSYS_DRIFT_COOLDOWN_HOURS, with the drifted signals in the run tags. The cursor keeps the
    last report seen and the time of the last retraining it started."""
    state = json.loads(context.cursor) if context.cursor else {}
    records = context.instance.fetch_materializations(dg.AssetKey("drift_report"), limit=1).records
    if not records:
        return dg.SkipReason("no drift report yet")
    record = records[0]
    if record.storage_id <= state.get("report", -1):
        return dg.SkipReason("no new drift report")
    state["report"] = record.storage_id
    metadata = record.asset_materialization.metadata
    reason = metadata["reason"].value if "reason" in metadata else ""
    if not (metadata.get("drift_confirmed") and metadata["drift_confirmed"].value):
        context.update_cursor(json.dumps(state))
        return dg.SkipReason(f"no confirmed drift: {reason}")
    now, last = time.time(), float(state.get("last_trigger", 0.0))
    cooldown = drift_policy.cooldown_hours * 3_600
    if now - last < cooldown:
        context.update_cursor(json.dumps(state))
        return dg.SkipReason(f"drift confirmed ({reason}) within the cool-down; next retraining allowed after "
                             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(last + cooldown))}")
    state["last_trigger"] = now
    context.update_cursor(json.dumps(state))
    notifier.send("Drift confirmed: retraining", [reason])
    return dg.RunRequest(run_key=f"drift-{record.storage_id}",
                         tags={"recsys/trigger": "drift", "recsys/drift_reason": reason[:250]})


@dg.sensor(default_status=_status(), minimum_interval_seconds=30)
def reload_service_on_promotion(context: dg.SensorEvaluationContext, service_admin: ServiceAdminResource,
                                notifier: NotifierResource, rollout: RolloutResource, storage: StorageResource,
                                mlflow_tracking: MlflowResource):
    """A new champion materialization reaches the service (RECSYS_SERVICE_URL): as the start of a
    staged rollout (RECSYS_ROLLOUT_ON_PROMOTION=rollout, the default; ``drive_rollout`` takes it from
    there) or as the primary at once (``reload``). The cursor is the last champion event handled, so
    each promotion is acted on once."""
    records = context.instance.fetch_materializations(dg.AssetKey("champion"), limit=1).records
    if not records or (context.cursor and records[0].storage_id <= int(context.cursor)):
        return dg.SkipReason("no new champion")
    record = records[0]
    context.update_cursor(str(record.storage_id))
    metadata = record.asset_materialization.metadata
    version = metadata["version"].value
    lines = [f"previous: {metadata['previous'].value}", f"ndcg@10: {metadata['ndcg@10'].value:.4f}"]
    events = []
    try:
        if not service_admin.url:
            lines.append("no service configured")
        elif rollout.on_promotion == "rollout":
            driver = rollout.rollout(storage.models_dir, service_admin)
            running = driver.state()
            if running and running["status"] in (RUNNING, PAUSED):
                driver.abort(f"superseded by the promotion of {version}")
                lines.append(f"aborted the rollout of {running['version']}")
            state = driver.start(version)
            decision = Decision(ADVANCE, f"rollout started against {state['baseline']}")
            mlflow_tracking.registry().record_rollout(version, "start", stage_name(state["policy"]["stages"][0]),
                                                      decision.reason)
            events.append(decision_event(state, decision))
            lines.append(f"rollout started: {stage_name(state['policy']['stages'][0])} first")
        else:
            state = service_admin.reload(version)
            lines.append(f"service reloaded: {state.get('primary')}")
    except Exception as error:  # noqa: BLE001 - reported; a later promotion is handled as usual
        lines.append(f"service update failed: {error}")
        context.log.warning(f"updating the service to {version} failed: {error}")
    notifier.send(f"Promoted {version} to champion", lines)
    return dg.SensorResult(asset_events=events, skip_reason=None if events else "; ".join(lines))


def _failed_gate_checks(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    records = instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    failed = []
    for record in records:
        evaluation = record.dagster_event.event_specific_data
        if evaluation.check_name in GATE_CHECKS and not evaluation.passed:
            failed.append(f"{evaluation.check_name}: {evaluation.description or 'failed'}")
    return failed


@dg.run_failure_sensor(default_status=_status(), monitored_jobs=[jobs.train_and_evaluate, jobs.monitor])
def notify_on_failure(context: dg.RunFailureSensorContext, notifier: NotifierResource,
                      mlflow_tracking: MlflowResource):
    """A failed run: a gate that said no is a rejection (with its reasons), anything else a failure;
    a training run's outcome goes into the registry history (``recsys_retraining_runs_total``)."""
    run = context.dagster_run
    rejected = _failed_gate_checks(context.instance, run.run_id)
    if run.job_name != jobs.monitor.name:
        mlflow_tracking.registry(with_mlflow=False).record_retraining(
            run.run_id, run.tags.get("recsys/trigger", "manual"), "rejected" if rejected else "failed")
    if rejected:
        notifier.send(f"Challenger rejected (run {run.run_id[:8]})", rejected)
    else:
        notifier.send(f"Run {run.job_name} failed ({run.run_id[:8]})", [context.failure_event.message or "no message"])


@dg.sensor(default_status=_status(), minimum_interval_seconds=3_600)
def stale_challenger(context: dg.SensorEvaluationContext, mlflow_tracking: MlflowResource, notifier: NotifierResource,
                     promotion_gate: PromotionGateResource):
    """A challenger that has waited longer than RECSYS_CHALLENGER_STALE_HOURS without promotion:
    one notification per challenger."""
    registry = RegistryFile.load(mlflow_tracking.registry_path)
    waiting = registry.waiting_challenger()
    if waiting is None:
        return dg.SkipReason("no challenger waiting")
    version, since = waiting
    hours = (time.time() - since) / 3_600
    if hours < promotion_gate.challenger_stale_hours or context.cursor == version:
        return dg.SkipReason(f"challenger {version} waiting {hours:.1f} h")
    context.update_cursor(version)
    notifier.send(f"Challenger {version} has waited {hours:.0f} hours", [
        "it was registered but never promoted: check its gate results or promote/reject it"])
    return dg.SkipReason(f"notified: {version} waiting {hours:.1f} h")
