"""The promotion gate: every check a challenger must pass before ``champion`` moves, in one place.

All are blocking checks on ``challenger``; ``GATE_CHECKS`` names them for the sensors. The checks
that need the challenger's bundle share one step, so it is loaded and verified once per run.
"""

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import dagster as dg

from recsys_assets import settings
from recsys_assets.defs.resources import PromotionGateResource, StorageResource
from recsys_assets.defs.tracking import MlflowResource
from recsys_runtime import bundle_checks
from recsys_runtime.bundle import BundleError, load_bundle
from recsys_runtime.bundle_checks import GateResult
from recsys_training import promotion
from recsys_training.evaluation import evaluate
from recsys_training.model_metrics import ModelMetrics, RegisteredModel
from recsys_training.online_eval import challenger_clicks
from recsys_training.promotion import PairedMetrics
from recsys_training.ranker import TrainingSet, page_only_requests, ranking_auc, requests_of
from recsys_training.split import SERVING, Split

CHALLENGER = dg.AssetKey("challenger")
BUNDLE_CHECKS = ("bundle_loads_and_answers", "latency_within_budget", "cost_within_budget", "off_policy_clicks")
GATE_CHECKS = ("beats_champion", "beats_baselines", "enough_evaluated_users", "trained_on_quality_data",
               *BUNDLE_CHECKS)


def _record(mlflow_tracking: MlflowResource, challenger: RegisteredModel, check: str, result: GateResult,
            severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR) -> dg.AssetCheckResult:
    """The check's result, also a tag on the challenger's MLflow model version when there is one."""
    numbers = {k: v for k, v in result.numbers.items() if v is not None}
    if challenger.mlflow_version:
        try:
            mlflow_tracking.mlflow_registry().tag_version(
                challenger.mlflow_version, f"gate.{check}", ("passed: " if result.passed else "failed: ") + result.reason)
        except Exception:  # noqa: BLE001 - tags are a convenience; the check result is the record
            pass
    _write_outcome(Path(mlflow_tracking.models_dir), challenger.version, check, result, numbers, severity)
    if challenger.mlflow_run_id and numbers:
        try:
            mlflow_tracking.log_gate_numbers(challenger.mlflow_run_id, check, numbers)
        except Exception:  # noqa: BLE001 - as above
            pass
    return dg.AssetCheckResult(check_name=check, asset_key=CHALLENGER, passed=bool(result.passed),
                               severity=severity, description=result.reason,
                               metadata={"reason": result.reason, **numbers})


def _write_outcome(models_dir: Path, version: str, check: str, result: GateResult, numbers: dict,
                   severity: dg.AssetCheckSeverity) -> None:
    """``models/gate/<version>/<check>.json``: what ``recsys report`` reads (one file per check,
    so checks running in parallel processes never write the same file)."""
    directory = models_dir / "gate" / version
    directory.mkdir(parents=True, exist_ok=True)
    record = {"check": check, "passed": bool(result.passed), "blocking": severity == dg.AssetCheckSeverity.ERROR,
              "reason": result.reason, "numbers": numbers}
    tmp = directory / f"{check}.json.tmp"
    tmp.write_text(json.dumps(record, indent=2, default=float))
    tmp.replace(directory / f"{check}.json")


@dg.asset_check(asset=CHALLENGER, blocking=True,
                additional_ins={"interactions_split": dg.AssetIn(), "recall_candidates": dg.AssetIn(),
                                "evaluation_summary": dg.AssetIn()},
                description="Beats the champion on the same split, users and ranker labels: the 95% paired "
                            "bootstrap interval of the ndcg@10 difference lies above RECSYS_MIN_NDCG_GAIN (0), the "
                            "recall@10 difference's not wholly below -RECSYS_RECALL_TOLERANCE, AUC within 5%.")
def beats_champion(challenger: RegisteredModel, interactions_split: dict[str, Split], recall_candidates: TrainingSet,
                   evaluation_summary: dict, mlflow_tracking: MlflowResource,
                   promotion_gate: PromotionGateResource) -> dg.AssetCheckResult:
    registry = mlflow_tracking.registry(with_mlflow=False)
    champion_version = registry.file.champion
    champion, champion_users, champion_next = None, None, None
    if champion_version and champion_version != challenger.version:
        entry = registry.file.version(champion_version)
        try:
            model = load_bundle(entry["path"], ranker_cache=settings.ranker_cache())
            summary = evaluate(model, interactions_split[SERVING], with_baselines=False)
            # the user ranker's AUC, on the requests with a user, as the challenger's is measured
            with_user = requests_of(recall_candidates, ~page_only_requests(recall_candidates))
            champion = ModelMetrics.from_summary(summary, auc=ranking_auc(model.ranker, with_user))
            champion_users = PairedMetrics.from_summary(summary)
            champion_next = PairedMetrics.from_summary(summary, view="detail_next")
        except (BundleError, OSError) as error:
            result = GateResult(False, f"champion {champion_version} cannot be evaluated: {error}")
            return _record(mlflow_tracking, challenger, "beats_champion", result)
    result = promotion.compare_with_champion(challenger.metrics, champion, promotion_gate.thresholds(),
                                             PairedMetrics.from_summary(evaluation_summary), champion_users,
                                             PairedMetrics.from_summary(evaluation_summary, view="detail_next"),
                                             champion_next)
    return _record(mlflow_tracking, challenger, "beats_champion", result)


@dg.asset_check(asset=CHALLENGER, blocking=True, additional_ins={"evaluation_summary": dg.AssetIn()},
                description="Beats most-popular, and EASE wherever EASE was computed, on the same users by the "
                            "same paired bootstrap rule as beats_champion; applies to the first model too.")
def beats_baselines(challenger: RegisteredModel, evaluation_summary: dict, mlflow_tracking: MlflowResource,
                    promotion_gate: PromotionGateResource) -> dg.AssetCheckResult:
    baselines = {name: PairedMetrics.from_summary(evaluation_summary, name) for name in promotion.GATED_BASELINES}
    result = promotion.beats_baselines(PairedMetrics.from_summary(evaluation_summary), baselines,
                                       promotion_gate.thresholds())
    return _record(mlflow_tracking, challenger, "beats_baselines", result)


@dg.asset_check(asset=CHALLENGER, blocking=True,
                description="At least RECSYS_MIN_EVAL_USERS (200) users evaluated, whatever the data set's size; "
                            "RECSYS_ALLOW_SMALL_EVAL=1 overrides, and the override is recorded in the registry.")
def enough_evaluated_users(challenger: RegisteredModel, mlflow_tracking: MlflowResource,
                           promotion_gate: PromotionGateResource) -> dg.AssetCheckResult:
    thresholds = promotion_gate.thresholds()
    result = promotion.enough_users(challenger.metrics.evaluated_users, thresholds)
    if result.passed and challenger.metrics.evaluated_users < thresholds.min_eval_users:
        registry = mlflow_tracking.registry(with_mlflow=False)
        registry.record_override(challenger.version, "enough_evaluated_users", result.reason)
    return _record(mlflow_tracking, challenger, "enough_evaluated_users", result)


@dg.asset_check(asset=CHALLENGER, blocking=True,
                description="The data it was trained on scored at least RECSYS_MIN_QUALITY_SCORE (90).")
def trained_on_quality_data(challenger: RegisteredModel, mlflow_tracking: MlflowResource,
                            promotion_gate: PromotionGateResource) -> dg.AssetCheckResult:
    result = promotion.quality_ok(challenger.metrics.data_quality_score, promotion_gate.thresholds())
    return _record(mlflow_tracking, challenger, "trained_on_quality_data", result)


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec("bundle_loads_and_answers", asset=CHALLENGER, blocking=True,
                          description="The bundle loads, matches its checksums and answers smoke queries."),
        dg.AssetCheckSpec("latency_within_budget", asset=CHALLENGER, blocking=True,
                          description="p95 of in-process requests under RECSYS_LATENCY_BUDGET_MS (10 ms)."),
        dg.AssetCheckSpec("cost_within_budget", asset=CHALLENGER, blocking=True,
                          description="Bundle size on disk under RECSYS_MAX_BUNDLE_MB and the peak memory of a "
                                      "process that loads it under RECSYS_MAX_LOADED_MEMORY_MB."),
        dg.AssetCheckSpec("off_policy_clicks", asset=CHALLENGER, blocking=True, additional_deps=["exposure_log"],
                          description="Off-policy (SNIPS, position-based) clicks of the challenger on the logged "
                                      "requests are not significantly below what was served (RECSYS_OFF_POLICY_CHECK: "
                                      "off, warn or block)."),
    ],
    ins={"challenger": dg.AssetIn(key=CHALLENGER)},
)
def challenger_bundle_checks(challenger: RegisteredModel, mlflow_tracking: MlflowResource, storage: StorageResource,
                             promotion_gate: PromotionGateResource) -> Iterator[dg.AssetCheckResult]:
    """Loads the challenger's bundle once and runs every check that needs it."""
    try:
        model = load_bundle(challenger.path, ranker_cache=settings.ranker_cache())
    except (BundleError, OSError, ValueError) as error:
        failed = GateResult(False, f"bundle does not load: {error}")
        for check in BUNDLE_CHECKS:
            yield _record(mlflow_tracking, challenger, check, failed)
        return
    yield _record(mlflow_tracking, challenger, "bundle_loads_and_answers", bundle_checks.smoke_queries(model))
    thresholds = promotion_gate.thresholds()
    latency = bundle_checks.latency(model, thresholds.latency_requests, thresholds.latency_budget_ms)
    yield _record(mlflow_tracking, challenger, "latency_within_budget", latency)
    try:
        cost = promotion.cost_ok(bundle_checks.bundle_size_mb(challenger.path),
                                 bundle_checks.loaded_memory_mb(challenger.path), thresholds)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as error:
        cost = GateResult(False, f"cost not measured: {error}")
    yield _record(mlflow_tracking, challenger, "cost_within_budget", cost)
    mode = promotion_gate.off_policy_check
    if mode == "off":
        clicks = GateResult(True, "disabled (RECSYS_OFF_POLICY_CHECK=off)")
    else:
        clicks = challenger_clicks(model, storage.exposure_log_path(), promotion_gate.off_policy_min_requests)
    severity = dg.AssetCheckSeverity.ERROR if mode == "block" else dg.AssetCheckSeverity.WARN
    yield _record(mlflow_tracking, challenger, "off_policy_clicks", clicks, severity)
