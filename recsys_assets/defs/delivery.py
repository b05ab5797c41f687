"""The staged rollout of a promoted model: a sensor judges the running stage every tick through
the service's admin API and numbers; each decision is a materialization of the ``rollout`` asset,
a registry history entry, MLflow tags of the version and, when it changes something, a webhook."""

import dagster as dg

from recsys_assets import settings
from recsys_assets.defs.resources import NotifierResource, RolloutResource, ServiceAdminResource, StorageResource
from recsys_assets.defs.tracking import MlflowResource
from recsys_delivery.rollout import HOLD, ROLLBACK, Decision, Rollout, stage_name

DELIVERY = "delivery"

rollout_asset = dg.AssetSpec(
    "rollout", group_name=DELIVERY, kinds={"json"},
    description="The staged rollout of a candidate (models/rollout.json): shadow, canary shares, primary. Written by "
                "the drive_rollout sensor and `recsys rollout`; each decision is a materialization with its numbers.")


def decision_event(state: dict, decision: Decision) -> dg.AssetMaterialization:
    """A rollout decision as a materialization of ``rollout``, with the numbers it was judged on."""
    numbers = decision.numbers
    clicks = numbers.get("click_difference", {})
    errors = numbers.get("error_excess", {})
    rows = [("stage", stage_name(_share(state))), ("status", state["status"]), ("decision", decision.action),
            ("reason", decision.reason), ("candidate lists", numbers.get("candidate_lists", numbers.get("shadow_scored"))),
            ("click difference", f"{clicks.get('estimate', 0):+.4f} [{clicks.get('low', -1):+.4f}, "
                                 f"{clicks.get('high', 1):+.4f}]" if clicks else "-"),
            ("error excess", f"{errors.get('estimate', 0):+.4f} [{errors.get('low', -1):+.4f}, "
                             f"{errors.get('high', 1):+.4f}]" if errors else "-"),
            ("candidate p99 ms", numbers.get("latency_p99_ms"))]
    table = "| | |\n|---|---|\n" + "\n".join(f"| {k} | {'-' if v is None else v} |" for k, v in rows)
    return dg.AssetMaterialization(
        asset_key="rollout", description=decision.reason,
        metadata={"version": state["version"], "baseline": state.get("baseline") or "none",
                  "stage": stage_name(_share(state)), "status": state["status"], "decision": decision.action,
                  "summary": dg.MetadataValue.md(table), "numbers": dg.MetadataValue.json(numbers)})


def _share(state: dict) -> float:
    return float(state["policy"]["stages"][state["stage"]])


def record(mlflow_tracking: MlflowResource, notifier: NotifierResource, state: dict, decision: Decision) -> None:
    """A decision that changed something: registry history, MLflow tags, webhook; a rollback also
    returns the registry's champion alias to the model the service went back to."""
    registry = mlflow_tracking.registry()
    stage = stage_name(_share(state))
    registry.record_rollout(state["version"], decision.action, stage, decision.reason)
    if decision.action == ROLLBACK and registry.file.champion == state["version"]:
        registry.rollback(reason=f"rollout rolled back at {stage}: {decision.reason}")
    notifier.send(f"Rollout of {state['version']}: {decision.action} ({stage}, {state['status']})", [decision.reason])


@dg.sensor(default_status=dg.DefaultSensorStatus.RUNNING if settings.automation_on() else dg.DefaultSensorStatus.STOPPED,
           minimum_interval_seconds=settings.rollout_tick_seconds())
def drive_rollout(context: dg.SensorEvaluationContext, rollout: RolloutResource, service_admin: ServiceAdminResource,
                  storage: StorageResource, mlflow_tracking: MlflowResource, notifier: NotifierResource):
    """Judges the running rollout stage once per tick and advances, holds or rolls back."""
    driver: Rollout = rollout.rollout(storage.models_dir, service_admin)
    decision = driver.tick()
    if decision is None:
        return dg.SkipReason("no rollout running")
    state = driver.state()
    if decision.action != HOLD:
        record(mlflow_tracking, notifier, state, decision)
    context.log.info(f"rollout of {state['version']}: {decision.action}: {decision.reason}")
    return dg.SensorResult(asset_events=[decision_event(state, decision)])
