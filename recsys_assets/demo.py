"""`make demo`: materialise the whole graph on the configured source, one line per finished step,
then the evaluation tables."""

from __future__ import annotations

import json
import logging
import sys
import time
import warnings
from pathlib import Path

import dagster as dg

from recsys_assets import settings
from recsys_assets.definitions import defs
from recsys_assets.progress import with_progress
from recsys_training.evaluation import markdown_table


def _quiet_console() -> None:
    """The console shows the progress lines: no beta notices, no INFO from MLflow, no weight-loading bars."""
    import transformers

    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    transformers.utils.logging.disable_progress_bar()


def main() -> int:
    _quiet_console()
    instance = dg.DagsterInstance.get()
    started = time.perf_counter()
    job, run_config = with_progress(defs().resolve_job_def("train_and_evaluate"))
    print(f"train_and_evaluate: {run_config['loggers']['progress']['config']['steps']} steps on "
          f"{settings.source_kind()} data; every event is in the run's log (make ui)", flush=True)
    result = job.execute_in_process(instance=instance, raise_on_error=False, run_config=run_config)
    checks = result.get_asset_check_evaluations()
    failed_checks = [c for c in checks if not c.passed]
    materialised = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    if "evaluation_summary" not in materialised:
        for check in failed_checks:
            print(f"FAILED check {check.asset_key.to_user_string()}.{check.check_name}", file=sys.stderr)
        print("The run failed before evaluation; see the UI (make ui) or the log above.", file=sys.stderr)
        return 1
    summary = json.loads((settings.data_dir() / "evaluation" / "summary.json").read_text())
    print(f"\nRun {result.run_id} finished in {time.perf_counter() - started:.0f} s "
          f"on {summary['dataset']['evaluated_users']} evaluated users.\n")
    print(markdown_table(summary, "user"), "\n")
    print(markdown_table(summary, "detail"), "\n")
    print(markdown_table(summary, "detail_next"), "\n")
    print(f"ranking AUC (validation labels, out of fold): {summary['ranking_auc']:.4f}")
    print(f"checks:  {len(checks) - len(failed_checks)} of {len(checks)} passed")
    for check in failed_checks:
        reason = check.metadata.get("reason") or check.metadata.get("problems")
        print(f"  FAILED {check.asset_key.to_user_string()}.{check.check_name}: {reason.value if reason else ''}")
    outcome = "promoted to champion" if "champion" in materialised else "not promoted (see the failed checks)"
    print(f"model:   {summary['model_version']} {outcome}; `recsys models list` shows the registry")
    print(f"bundle:  {summary['bundle']}")
    image_route = json.loads((Path(summary["bundle"]) / "manifest.json").read_text()).get("image_route", {})
    print("images:  " + (f"image route skipped: {image_route['skipped']}" if "skipped" in image_route
                         else f"image route on ({image_route.get('model')}, {image_route.get('items_with_vectors')} "
                              "items with vectors)"))
    print(f"summary: {settings.data_dir() / 'evaluation' / 'summary.json'}")
    print("next:    make ui  (assets, metadata and runs at http://127.0.0.1:3000)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
