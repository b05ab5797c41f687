"""`recsys`: operate the model registry and run the pipeline from the command line."""

from __future__ import annotations

import argparse
import shutil
import sys
import time

from recsys_assets import settings
from recsys_delivery.rollout import RolloutError
from recsys_registry.registry import CHALLENGER, CHAMPION, RegistryError


def _registry():
    from recsys_assets.defs.tracking import MlflowResource

    resource = MlflowResource(tracking_uri=settings.mlflow_tracking_uri(), models_dir=str(settings.models_dir()))
    return resource.registry()


def _table(rows: list[dict], columns: list[str]) -> str:
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) if rows else len(c) for c in columns}
    line = "  ".join(c.ljust(widths[c]) for c in columns)
    body = ["  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join([line, "  ".join("-" * widths[c] for c in columns), *body])


def models_list(_: argparse.Namespace) -> int:
    registry = _registry()
    aliases = {v: k for k, v in registry.file.data["aliases"].items()}
    rows = []
    for version, entry in sorted(registry.file.data["versions"].items(), key=lambda kv: kv[1].get("sequence", 0)):
        metrics = entry.get("metrics", {})
        rows.append({"version": version, "alias": aliases.get(version, ""), "mlflow": entry.get("mlflow_version") or "-",
                     "mlflow_status": entry.get("mlflow_status", ""), "ndcg@10": f"{metrics.get('ndcg@10', 0):.4f}",
                     "recall@10": f"{metrics.get('recall@10', 0):.4f}", "quality": metrics.get("data_quality_score", ""),
                     "registered_at": entry.get("registered_at", "")})
    print(_table(rows, ["version", "alias", "mlflow", "mlflow_status", "ndcg@10", "recall@10", "quality", "registered_at"]))
    print(f"\n{len(rows)} versions; champion {registry.file.champion or '-'}, challenger {registry.file.challenger or '-'}")
    return 0


def models_promote(args: argparse.Namespace) -> int:
    registry = _registry()
    registry.promote(args.version, reason=args.reason)
    print(f"{args.version} is now {CHAMPION}")
    return 0


def models_rollback(args: argparse.Namespace) -> int:
    registry = _registry()
    current = registry.file.champion
    target = registry.rollback(reason=args.reason)
    print(f"{CHAMPION}: {current} -> {target}")
    return 0


def models_prune(args: argparse.Namespace) -> int:
    registry = _registry()
    doomed = registry.prune(args.keep, execute=not args.dry_run)
    verb = "would delete" if args.dry_run else "deleted"
    print(f"{verb} {len(doomed)} versions (kept the {args.keep} newest, {CHAMPION} and {CHALLENGER})")
    for version in doomed:
        print(f"  {version}")
    return 0


def models_cleanup(args: argparse.Namespace) -> int:
    registry = _registry()
    orphans = registry.orphaned_bundles(settings.models_dir() / "bundles")
    print(f"{len(orphans)} orphaned bundle directories" + (" (deleting)" if args.execute else " (dry run)"))
    for path in orphans:
        print(f"  {path}")
        if args.execute:
            shutil.rmtree(path)
    return 0


def report(args: argparse.Namespace) -> int:
    """The Markdown report of VERSION (default: the latest registered) from the gate's records."""
    import json
    from pathlib import Path

    from recsys_training.report import gate_report

    registry = _registry().file
    versions = registry.data["versions"]
    if not versions:
        print("error: no model version registered yet (run the pipeline)", file=sys.stderr)
        return 2
    version = args.version or max(versions, key=lambda v: versions[v].get("sequence", 0))
    entry = registry.version(version)
    gate_dir = settings.models_dir() / "gate" / version
    checks = {p.stem: json.loads(p.read_text()) for p in sorted(gate_dir.glob("*.json"))} if gate_dir.exists() else {}
    champion = registry.champion if registry.champion != version else registry.previous_champion()
    champion_metrics = registry.version(champion).get("metrics") if champion else None
    summary_path = settings.data_dir() / "evaluation" / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else None
    text = gate_report(version, checks, entry.get("metrics", {}), champion, champion_metrics, summary)
    if args.output:
        Path(args.output).write_text(text)
    print(text, end="")
    return 0 if checks and all(r["passed"] or not r.get("blocking", True) for r in checks.values()) else 1


def _rollout():
    from recsys_assets.defs.resources import RolloutResource, ServiceAdminResource

    url, token = settings.service_admin()
    if not url:
        raise RolloutError("RECSYS_SERVICE_URL is not set: no service to roll out to")
    return RolloutResource(**settings.rollout_settings()).rollout(settings.models_dir(),
                                                                 ServiceAdminResource(url=url, token=token))


def _print_rollout(state: dict | None) -> None:
    from recsys_delivery.rollout import stage_name

    if not state:
        print("no rollout yet")
        return
    stages = state["policy"]["stages"]
    print(f"rollout of {state['version']} against {state.get('baseline') or '-'}: {state['status']}, stage "
          f"{state['stage'] + 1} of {len(stages)} ({stage_name(stages[state['stage']])}; stages "
          f"{' -> '.join(stage_name(s) for s in stages)})")
    last = state.get("last")
    if last:
        print(f"last tick: {last['action']}: {last['reason']}")
    rows = [{"time": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(d["time"])), "stage": d["stage"],
             "action": d["action"], "reason": d["reason"]} for d in state["decisions"][-10:]]
    print(_table(rows, ["time", "stage", "action", "reason"]))


def rollout_command(args: argparse.Namespace) -> int:
    """start VERSION, status, pause, resume, abort: the state file the drive_rollout sensor ticks."""
    driver = _rollout()
    if args.command == "status":
        _print_rollout(driver.state())
        return 0
    if args.command == "start":
        state = driver.start(args.version)
    else:
        state = getattr(driver, args.command)()
    decision = state["decisions"][-1]
    _registry().record_rollout(state["version"], args.command, decision["stage"], decision["reason"])
    _print_rollout(state)
    return 0


def pipeline_run(args: argparse.Namespace) -> int:
    import dagster as dg

    from recsys_assets.definitions import defs

    definitions = defs()
    selection = args.select or None
    job = definitions.resolve_job_def(args.job)
    result = job.execute_in_process(instance=dg.DagsterInstance.get(), asset_selection=[
        dg.AssetKey(s) for s in selection] if selection else None, raise_on_error=False)
    for line in check_report(result):
        print(line)
    print(f"run {result.run_id}: {'success' if result.success else 'FAILED'}")
    return 0 if result.success else 1


def check_report(result) -> list[str]:
    """One line per asset check of a run: passed, failed (warning or blocking, with its reason or
    problems when the check recorded them) or skipped (planned, never evaluated)."""
    import dagster as dg

    lines, evaluated = [], set()
    for check in result.get_asset_check_evaluations():
        name = f"{check.asset_key.to_user_string()}.{check.check_name}"
        evaluated.add(name)
        if check.passed:
            lines.append(f"check passed: {name}")
            continue
        kind = "warning" if check.severity == dg.AssetCheckSeverity.WARN else "blocking"
        detail = (check.metadata or {}).get("reason", (check.metadata or {}).get("problems"))
        detail = getattr(detail, "value", detail)
        lines.append(f"check failed ({kind}): {name}" + (f": {detail}" if detail not in (None, "") else ""))
    run = result.dagster_run
    planned = (run.asset_check_selection or result.job_def.asset_check_selection
               or result.job_def.asset_layer.asset_graph.asset_check_keys)
    for key in sorted(planned, key=lambda k: (k.asset_key.to_user_string(), k.name)):
        name = f"{key.asset_key.to_user_string()}.{key.name}"
        if name not in evaluated and (not run.asset_selection or key.asset_key in run.asset_selection):
            lines.append(f"check skipped: {name}")
    return lines


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="recsys", description=__doc__)
    groups = top.add_subparsers(dest="group", required=True)
    models = groups.add_parser("models", help="the model registry").add_subparsers(dest="command", required=True)
    models.add_parser("list", help="versions, aliases and metrics").set_defaults(func=models_list)
    promote = models.add_parser("promote", help="make VERSION the champion")
    promote.add_argument("version")
    promote.add_argument("--reason", default="manual promotion")
    promote.set_defaults(func=models_promote)
    rollback = models.add_parser("rollback", help="back to the previous champion")
    rollback.add_argument("--reason", default="manual rollback")
    rollback.set_defaults(func=models_rollback)
    prune = models.add_parser("prune", help="delete old versions (never champion or challenger)")
    prune.add_argument("--keep", type=int, required=True)
    prune.add_argument("--dry-run", action="store_true")
    prune.set_defaults(func=models_prune)
    cleanup = models.add_parser("cleanup", help="bundle directories no version points at")
    mode = cleanup.add_mutually_exclusive_group(required=True)
    mode.add_argument("--dry-run", action="store_true")
    mode.add_argument("--execute", action="store_true")
    cleanup.set_defaults(func=models_cleanup)
    report_parser = groups.add_parser("report", help="Markdown report of a version's gate checks, metrics, latency "
                                                     "and cost (exit 1 when a blocking check failed)")
    report_parser.add_argument("--version", help="default: the latest registered version")
    report_parser.add_argument("--output", help="also write the report to this file")
    report_parser.set_defaults(func=report)
    rollout = groups.add_parser("rollout", help="the staged rollout the drive_rollout sensor ticks").add_subparsers(
        dest="command", required=True)
    start = rollout.add_parser("start", help="roll VERSION out against the service's primary, stage by stage")
    start.add_argument("version")
    start.set_defaults(func=rollout_command)
    for name, text in (("status", "the running rollout, its last tick and decisions"), ("pause", "stop judging"),
                       ("resume", "judge again; the stage counts from now"),
                       ("abort", "stop and return the service to the baseline")):
        rollout.add_parser(name, help=text).set_defaults(func=rollout_command)
    pipeline = groups.add_parser("pipeline", help="the asset graph").add_subparsers(dest="command", required=True)
    run = pipeline.add_parser("run", help="run a job (default train_and_evaluate), or --select assets of it")
    run.add_argument("--job", default="train_and_evaluate", choices=["train_and_evaluate", "monitor"])
    run.add_argument("--select", nargs="*", help="asset names")
    run.set_defaults(func=pipeline_run)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    settings.configure_libraries()
    try:
        return args.func(args)
    except (RegistryError, RolloutError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
