"""A Dagster logger for the terminal: one line per finished step (its assets, seconds and key
number) with a progress count, warnings and failures in full. The whole event stream still goes
to the run's log in the instance (the UI); only the console is quiet."""

from __future__ import annotations

import logging
import sys
import time

import dagster as dg

# the metadata entry shown for an asset, first found wins; else its first number
KEY_METADATA = ("image_route", "dagster/row_count", "rows", "ndcg@10", "score", "passed", "version", "items", "users")


def key_number(metadata: dict) -> str:
    """``name value`` of the entry a person looks at first, or ''."""
    for name in KEY_METADATA:
        if name in metadata:
            return f"{name.removeprefix('dagster/')} {_plain(metadata[name])}"
    for name, value in metadata.items():
        raw = getattr(value, "value", value)
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            return f"{name} {_plain(value)}"
    return ""


def _plain(value) -> str:
    raw = getattr(value, "value", value)
    if isinstance(raw, float):
        return f"{raw:.4f}" if abs(raw) < 10 else f"{raw:,.1f}"
    if isinstance(raw, int) and not isinstance(raw, bool):
        return f"{raw:,}"
    return str(raw)


class ProgressHandler(logging.Handler):
    """Reads the DagsterEvent on each record and writes the finished steps to ``stream``."""

    def __init__(self, total_steps: int, stream=None) -> None:
        super().__init__(level=logging.DEBUG)
        self.total, self.stream = total_steps, stream or sys.stdout
        self.done = 0
        self.started: dict[str, float] = {}
        self.assets: dict[str, list[str]] = {}
        self.checks: dict[str, list[str]] = {}

    def _write(self, line: str) -> None:
        print(line, file=self.stream, flush=True)

    def emit(self, record: logging.LogRecord) -> None:
        meta = getattr(record, "dagster_meta", None) or {}
        event = meta.get("dagster_event")
        step = meta.get("step_key") or ""
        if event is None:
            if record.levelno >= logging.WARNING:
                self._write(f"  warning ({step or 'run'}): {meta.get('orig_message', record.getMessage())}")
            return
        kind = event.event_type
        if kind == dg.DagsterEventType.STEP_START:
            self.started[step] = time.perf_counter()
        elif kind == dg.DagsterEventType.ASSET_MATERIALIZATION:
            materialization = event.event_specific_data.materialization
            shown = key_number(dict(materialization.metadata))
            self.assets.setdefault(step, []).append(
                materialization.asset_key.to_user_string() + (f" ({shown})" if shown else ""))
        elif kind == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            evaluation = event.event_specific_data
            self.checks.setdefault(step, []).append(
                f"{evaluation.asset_key.to_user_string()}.{evaluation.check_name}"
                + ("" if evaluation.passed else " FAILED"))
            if not evaluation.passed:
                reason = evaluation.metadata.get("reason") or evaluation.metadata.get("problems")
                severity = "warning" if evaluation.severity == dg.AssetCheckSeverity.WARN else "blocking"
                self._write(f"  check failed ({severity}): {evaluation.asset_key.to_user_string()}."
                            f"{evaluation.check_name}: {getattr(reason, 'value', reason) or evaluation.description or ''}")
        elif kind in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE,
                      dg.DagsterEventType.STEP_SKIPPED):
            self.done += 1
            seconds = time.perf_counter() - self.started.pop(step, time.perf_counter())
            checks = self.checks.pop(step, [])
            what = ", ".join(self.assets.pop(step, []) or (["checks"] if checks else [step]))
            outcome = {dg.DagsterEventType.STEP_SUCCESS: "", dg.DagsterEventType.STEP_FAILURE: "  FAILED",
                       dg.DagsterEventType.STEP_SKIPPED: "  skipped"}[kind]
            line = f"[{self.done:>2}/{self.total}] {what}  {seconds:.1f} s{outcome}"
            if checks:
                line += f"  checks: {', '.join(checks)}"
            self._write(line)
            if kind == dg.DagsterEventType.STEP_FAILURE and event.step_failure_data.error is not None:
                self._write(event.step_failure_data.error.to_string())


@dg.logger(config_schema={"steps": dg.Field(int, default_value=0, description="steps in the run")},
           description="One line per finished step with a progress count; warnings and failures in full.")
def progress_logger(init_context: dg.InitLoggerContext) -> logging.Logger:
    logger = logging.Logger("recsys_progress", level=logging.DEBUG)
    logger.addHandler(ProgressHandler(init_context.logger_config["steps"]))
    return logger


def with_progress(job: dg.JobDefinition) -> tuple[dg.JobDefinition, dict]:
    """``job`` logging through ``progress_logger`` only, and the run config that counts its steps."""
    steps = len(job.graph.nodes)
    return job.with_logger_defs({"progress": progress_logger}), {"loggers": {"progress": {"config": {"steps": steps}}}}
