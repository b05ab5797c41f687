"""The Markdown quality report of a model version: its gate checks, its metrics beside the
champion's and the baselines', its latency and its cost (what `recsys report` prints and CI
appends to the job summary)."""

from __future__ import annotations

# (check, the number judged, how the threshold reads) for the checks whose numbers say it
_JUDGED = {
    "beats_champion": ("champion_ndcg@10_diff_low", "min_ndcg_gain", "ndcg@10 difference, 95% lower end > {}"),
    "enough_evaluated_users": ("evaluated", "needed", "evaluated users >= {}"),
    "trained_on_quality_data": ("score", "min_score", "data quality score >= {}"),
    "latency_within_budget": ("p95_ms", "budget_ms", "p95 ms < {}"),
    "cost_within_budget": ("loaded_memory_mb", "max_loaded_memory_mb", "MB after loading <= {}"),
}
CHECK_ORDER = ("beats_champion", "beats_baselines", "enough_evaluated_users", "trained_on_quality_data",
               "bundle_loads_and_answers", "latency_within_budget", "cost_within_budget", "off_policy_clicks")


def _number(value) -> str:
    if isinstance(value, float):
        return f"{value:+.4f}" if abs(value) < 1 else f"{value:,.1f}"
    return "" if value is None else f"{value}"


def _judged(check: str, numbers: dict) -> tuple[str, str]:
    if check == "beats_baselines":
        lows = {k[: -len("_ndcg@10_diff_low")]: v for k, v in numbers.items() if k.endswith("_ndcg@10_diff_low")}
        if not lows:
            return "", ""
        worst = min(lows, key=lows.get)
        return f"{_number(lows[worst])} ({worst})", f"ndcg@10 difference, 95% lower end > {numbers.get('min_ndcg_gain', 0)}"
    if check in _JUDGED:
        value, threshold, text = _JUDGED[check]
        if value in numbers:
            return _number(numbers[value]), text.format(numbers.get(threshold, "?"))
    return "", ""


def gate_report(version: str, checks: dict[str, dict], metrics: dict, champion: str | None,
                champion_metrics: dict | None, summary: dict | None) -> str:
    """``checks``: the gate's recorded outcomes by check name; ``metrics``: the version's registry
    metrics; ``summary``: its evaluation summary when still at hand (baselines and intervals)."""
    blocking_failed = [c for c, r in checks.items() if not r["passed"] and r.get("blocking", True)]
    verdict = "passed" if checks and not blocking_failed else "failed" if checks else "not run"
    lines = [f"# Model report: {version}", "",
             f"Gate **{verdict}**: {sum(r['passed'] for r in checks.values())} of {len(checks)} checks passed"
             + (f"; blocking failures: {', '.join(blocking_failed)}" if blocking_failed else "") + ".", "",
             "| check | outcome | value | threshold | reason |", "|---|---|---|---|---|"]
    for check in sorted(checks, key=lambda c: (CHECK_ORDER.index(c) if c in CHECK_ORDER else len(CHECK_ORDER), c)):
        record = checks[check]
        mark = "✅ pass" if record["passed"] else ("❌ fail" if record.get("blocking", True) else "⚠️ warn")
        value, threshold = _judged(check, record.get("numbers", {}))
        reason = str(record.get("reason", "")).replace("|", "/")
        lines.append(f"| {check} | {mark} | {value} | {threshold} | {reason} |")
    lines += ["", "## Metrics", "", f"| metric | {version} | champion ({champion or 'none'}) | difference |",
              "|---|---|---|---|"]
    for name in ("ndcg@10", "recall@10", "hr@10", "coverage@10", "detail_ndcg@10", "auc"):
        mine, theirs = metrics.get(name), (champion_metrics or {}).get(name)
        diff = f"{mine - theirs:+.4f}" if isinstance(mine, float) and isinstance(theirs, float) else ""
        lines.append(f"| {name} | {_number(mine).lstrip('+')} | {_number(theirs).lstrip('+')} | {diff} |")
    if summary is not None and summary.get("model_version") == version:
        lines += ["", "| user lists | ndcg@10 | recall@10 |", "|---|---|---|",
                  f"| **model** | {summary['user']['model']['ndcg@10']:.4f} | {summary['user']['model']['recall@10']:.4f} |"]
        for name, values in summary["user"].get("baselines", {}).items():
            if "ndcg@10" in values:
                lines.append(f"| baseline: {name} | {values['ndcg@10']:.4f} | {values['recall@10']:.4f} |")
    latency = checks.get("latency_within_budget", {}).get("numbers", {})
    cost = checks.get("cost_within_budget", {}).get("numbers", {})
    lines += ["", "## Latency and cost", ""]
    if latency:
        lines.append(f"- in-process requests: p50 {latency.get('p50_ms', 0):.2f} ms, p95 {latency.get('p95_ms', 0):.2f} ms, "
                     f"p99 {latency.get('p99_ms', 0):.2f} ms (budget {latency.get('budget_ms', '?')} ms)")
    if cost:
        lines.append(f"- bundle {cost.get('bundle_mb', 0):.1f} MB on disk (budget {cost.get('max_bundle_mb', '?')}); "
                     f"{cost.get('loaded_memory_mb', 0):.0f} MB after loading (budget {cost.get('max_loaded_memory_mb', '?')})")
    if not latency and not cost:
        lines.append("- not measured (the bundle checks did not run)")
    return "\n".join(lines) + "\n"
