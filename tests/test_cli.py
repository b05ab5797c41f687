"""The command line's report of a run's asset checks, for every outcome."""

import dagster as dg

from recsys_assets.cli import check_report


@dg.asset
def upstream() -> int:
    return 1


@dg.asset(deps=[upstream])
def downstream() -> int:
    return 2


@dg.asset_check(asset=upstream)
def fine() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=True)


@dg.asset_check(asset=upstream)
def drifted() -> dg.AssetCheckResult:  # a warning without reason or problems metadata
    return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.WARN)


@dg.asset_check(asset=upstream, blocking=True)
def broken() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=False, metadata={"reason": "schema changed"})


@dg.asset_check(asset=downstream)
def never_reached() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=True)


def test_every_check_outcome_is_reported():
    result = dg.materialize([upstream, downstream, fine, drifted, broken, never_reached],
                            raise_on_error=False, instance=dg.DagsterInstance.ephemeral())
    assert sorted(check_report(result)) == sorted([
        "check passed: upstream.fine",
        "check failed (warning): upstream.drifted",
        "check failed (blocking): upstream.broken: schema changed",
        "check skipped: downstream.never_reached",
    ])
