"""Drift signals, the online metrics from an exposure log, ADWIN, reconciliation, webhooks."""

import json

import numpy as np
import pandas as pd
import pytest

from recsys_training import notify, synthetic
from recsys_training.drift import DriftThresholds, drift_report, psi, split_windows, write_findings
from recsys_training.online_eval import (
    arm_comparison,
    ctr_change_points,
    exposure_metrics,
    read_log,
    reconcile,
    service_counts,
)
from tests.webhook_server import Webhook


@pytest.fixture(scope="module")
def windows():
    base = synthetic.generate(300, 400, 12_000, seed=7)
    later = synthetic.shifted_window(base, 4_000, seed=3)
    rows = base.interactions.rows
    early = rows.sample(frac=0.7, random_state=0)  # two samples of the same behaviour
    return base, later, early, rows.drop(early.index)


def test_psi_is_zero_for_equal_distributions_and_grows_with_shift():
    assert psi(np.array([10, 20, 30]), np.array([1, 2, 3])) == pytest.approx(0.0, abs=1e-12)
    assert psi(np.array([10, 20, 30]), np.array([30, 20, 10])) > 0.2 > psi(np.array([10, 20, 30]), np.array([11, 20, 29]))


def test_a_shifted_window_is_confirmed_and_a_stable_one_is_not(windows, tmp_path):
    base, later, early, late = windows
    embeddings = pd.DataFrame(np.random.default_rng(0).normal(size=(len(later.items.rows), 8)),
                              index=later.items.rows["item_id"])
    shifted = drift_report(base.interactions.rows, later.interactions.rows, later.items.rows, embeddings)
    assert shifted.confirmed, shifted.reason
    signals = {f.signal: f for f in shifted.findings}
    # 30% of draws go to new items; de-duplicating (user, item) pairs thins the repeated old ones
    assert 0.28 <= signals["unseen_item_share"].statistic <= 0.45
    assert signals["item_popularity_psi"].drifted
    stable = drift_report(early, late, base.items.rows, embeddings.iloc[:400])
    assert not stable.confirmed, stable.reason
    written = write_findings(shifted, tmp_path, "interactions")
    assert len(written) == len(shifted.drifted())
    finding = json.loads(written[0].read_text())
    assert {"source", "signal", "statistic", "threshold", "window"} <= set(finding)
    assert json.loads((tmp_path / "latest-interactions.json").read_text())["confirmed"] is True


def test_too_little_recent_data_is_no_verdict(windows):
    base, later, _, _ = windows
    report = drift_report(base.interactions.rows, later.interactions.rows.head(50), later.items.rows,
                          thresholds=DriftThresholds(min_rows=200))
    assert not report.confirmed and "not enough data" in report.reason


def test_split_windows_uses_the_champion_training_cut(windows):
    base, _, _, _ = windows
    rows = base.interactions.rows
    cut = int(rows["timestamp"].median())
    reference, current = split_windows(rows, cut, 0)
    assert reference["timestamp"].max() <= cut < current["timestamp"].min()
    assert len(reference) + len(current) == len(rows)


def _write_log(path, lists):
    with path.open("w") as handle:
        for record in lists:
            handle.write(json.dumps(record) + "\n")
        handle.write('{"type": "exposure", "request_id": "cut-off-mid-wri')  # a crash mid-line


def test_exposure_metrics_count_clicks_per_version_and_position(tmp_path):
    records = []
    for r in range(200):
        version = "v1" if r < 100 else "v2"
        items = [{"item_id": f"i{(r + p) % 30}", "position": p} for p in range(1, 6)]
        records.append({"type": "exposure", "request_id": f"r{r}", "time": 1000.0 + r, "user_id": f"u{r % 7}",
                        "item_id": None, "endpoint": "recommend_user", "model_version": version, "arm": "primary",
                        "items": items, "fallback": None})
        clicks = 1 if version == "v1" else 2  # v2 lists get a click at positions 1 and 2
        for p in range(1, clicks + 1):
            records.append({"type": "event", "event": "click", "request_id": f"r{r}", "item_id": items[p - 1]["item_id"],
                            "user_id": f"u{r % 7}", "time": 1000.5 + r})
    records.append({"type": "event", "event": "conversion", "request_id": "r150", "item_id": "i0", "user_id": "u3",
                    "time": 2000.0})  # i0 is not in r150's list: not a conversion of that list
    records.append({"type": "shadow", "request_id": "r1", "model_version": "v2", "overlap@10": 0.6, "rbo": 0.5,
                    "latency_ms": 3.0})
    _write_log(tmp_path / "exposure_log.jsonl", records)
    log = read_log(tmp_path / "exposure_log.jsonl")
    assert log.bad_lines == 1 and len(log.lists) == 200
    metrics = exposure_metrics(log, catalog_size=60, now=1200.0, windows={"all": None, "last_50s": 50})
    groups = {g["model_version"]: g for g in metrics["windows"]["all"]}
    assert groups["v1"]["ctr"] == pytest.approx(0.2) and groups["v2"]["ctr"] == pytest.approx(0.4)
    assert groups["v2"]["ctr_by_position"] == {1: 1.0, 2: 1.0, 3: 0.0, 4: 0.0, 5: 0.0}
    assert groups["v2"]["conversions"] == 0 and groups["v1"]["coverage"] == pytest.approx(30 / 60)
    recent = metrics["windows"]["last_50s"]
    assert [g["model_version"] for g in recent] == ["v2"] and recent[0]["lists"] == 50
    assert metrics["shadow"] == [{"model_version": "v2", "requests": 1, "overlap@10": 0.6, "rbo": 0.5,
                                  "latency_p95_ms": 3.0}]
    assert service_counts(log) == {"exposure": 200, "click": 300, "conversion": 1}


def test_adwin_finds_the_moment_the_click_rate_drops(tmp_path):
    rng = np.random.default_rng(0)
    records = []
    for r in range(4000):
        records.append({"type": "exposure", "request_id": f"r{r}", "time": float(r), "model_version": "v1",
                        "endpoint": "similar", "arm": "primary", "items": [{"item_id": "a", "position": 1}]})
        if rng.random() < (0.3 if r < 2000 else 0.05):
            records.append({"type": "event", "event": "click", "request_id": f"r{r}", "item_id": "a", "time": r + 0.5})
    _write_log(tmp_path / "log.jsonl", records)
    changes = ctr_change_points(read_log(tmp_path / "log.jsonl"))
    assert changes, "no change detected"
    assert 2000 <= changes[0]["index"] <= 2400


def test_reconciliation_flags_differences_beyond_tolerance():
    rows = {r["kind"]: r for r in reconcile({"exposure": 1000, "click": 90}, {"exposure": 1005, "click": 120})}
    assert not rows["exposure"]["flagged"] and rows["click"]["flagged"] and rows["click"]["difference"] == -30


def test_webhook_posts_slack_and_wecom_json_to_a_real_server():
    hook = Webhook()
    try:
        assert notify.send(hook.url, "Promoted v2", ["ndcg@10 0.31"], "slack")
        assert notify.send(hook.url, "Drift", ["psi 0.4"], "wecom")
    finally:
        hook.close()
    assert hook.received[0] == {"text": "*Promoted v2*\n• ndcg@10 0.31"}
    assert hook.received[1]["msgtype"] == "markdown" and "psi 0.4" in hook.received[1]["markdown"]["content"]
    assert not notify.send("", "nothing", [])  # off unless configured
    assert not notify.send(hook.url, "server gone", [])  # a failing webhook is logged, never raised


def test_canary_arms_are_compared_with_an_interval():
    rng = np.random.default_rng(0)
    rows = []
    for r in range(4000):
        arm = "candidate" if r % 4 == 0 else "primary"
        clicked = rng.random() < (0.30 if arm == "candidate" else 0.20)
        rows.append({"request_id": f"r{r}", "endpoint": "similar", "arm": arm, "clicked": clicked,
                     "item_id": "a", "position": 1})
    (comparison,) = arm_comparison(pd.DataFrame(rows))
    assert comparison["candidate_lists"] == 1000 and comparison["primary_lists"] == 3000
    assert comparison["ci_low"] < 0.10 < comparison["ci_high"] and comparison["ci_low"] > 0
    primary_only = [row for row in rows if row["arm"] == "primary"]
    assert arm_comparison(pd.DataFrame(primary_only)) == []  # nothing to compare


def test_rotated_exposure_logs_are_read_whole(tmp_path):
    from recsys_service.exposure import ExposureLog

    path = tmp_path / "exposure_log.jsonl"
    log = ExposureLog(path, max_bytes=2_000)
    for r in range(300):
        log.write({"type": "exposure", "request_id": f"r{r}", "time": float(r), "model_version": "v1",
                   "endpoint": "similar", "arm": "primary", "items": [{"item_id": "a", "position": 1}]})
        if r % 20 == 19:
            log.flush()  # rotation happens between writes of a batch
    log.close()
    assert len(list(tmp_path.glob("exposure_log.jsonl.*"))) >= 3
    read = read_log(path)
    assert read.bad_lines == 0 and len(read.lists) == 300 and log.dropped == 0
    assert read.lists["request_id"].tolist() == [f"r{r}" for r in range(300)]


def test_the_click_rate_check_warns_on_drops_only():
    from recsys_assets.defs.monitoring import no_click_rate_drop

    drop = no_click_rate_drop({"ctr_change_points": [{"before": 0.3, "window_mean_after": 0.05}]})
    assert drop.passed is False and drop.severity.value == "WARN" and "0.300 to 0.050" in drop.description
    rise = no_click_rate_drop({"ctr_change_points": [{"before": 0.05, "window_mean_after": 0.3},
                                                     {"before": None, "window_mean_after": 0.1}]})
    assert rise.passed is True
