"""The demo's console: one line per finished step, warnings and failed checks in full, no DEBUG
event stream; the run's own log in the instance still holds every event."""

import dagster as dg

from recsys_assets.progress import key_number, with_progress


@dg.asset
def upstream(context: dg.AssetExecutionContext) -> int:
    context.add_output_metadata({"dagster/row_count": 1234})
    return 1


@dg.asset
def downstream(context: dg.AssetExecutionContext, upstream: int) -> int:
    context.log.warning("3 rows rejected: unknown item in interactions.csv")
    context.log.info("an info line the console does not show")
    context.add_output_metadata({"ndcg@10": 0.16123})
    return upstream + 1


@dg.asset_check(asset=downstream, blocking=True)
def downstream_is_large(downstream: int) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=downstream > 5, metadata={"reason": f"{downstream} is not above 5"})


def test_one_line_per_step_with_warnings_and_failures_in_full(capsys):
    definitions = dg.Definitions(assets=[upstream, downstream], asset_checks=[downstream_is_large],
                                 jobs=[dg.define_asset_job("small")])
    job, run_config = with_progress(definitions.resolve_job_def("small"))
    instance = dg.DagsterInstance.ephemeral()
    result = job.execute_in_process(run_config=run_config, instance=instance, raise_on_error=False)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("[ 1/3] upstream (row_count 1,234)")
    assert "  warning (downstream): 3 rows rejected: unknown item in interactions.csv" in lines
    assert any(line.startswith("[ 2/3] downstream (ndcg@10 0.1612)") for line in lines)
    assert "  check failed (blocking): downstream.downstream_is_large: 2 is not above 5" in lines
    assert any(line.startswith("[ 3/3] checks ") and line.endswith("FAILED  checks: downstream.downstream_is_large FAILED")
               for line in lines)
    printed = "\n".join(lines)
    for noise in ("STEP_START", "LOADED_INPUT", "HANDLED_OUTPUT", "an info line"):
        assert noise not in printed
    kinds = {e.dagster_event.event_type for e in instance.all_logs(result.run_id) if e.dagster_event}
    assert {dg.DagsterEventType.STEP_START, dg.DagsterEventType.LOADED_INPUT,
            dg.DagsterEventType.HANDLED_OUTPUT} <= kinds  # the UI's run log keeps the whole stream


def test_the_key_number_prefers_row_counts_then_any_number():
    assert key_number({"note": "x", "dagster/row_count": dg.MetadataValue.int(9742)}) == "row_count 9,742"
    assert key_number({"note": "x", "seconds": 12.5}) == "seconds 12.5"
    assert key_number({"note": "x"}) == ""
