"""Tables travel between assets as Parquet and come back equal; other values are pickled."""

import os

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from recsys_assets.table_io import KEPT_STEP_RUNS, LAYOUT, ONLY_KEYS, PICKLE, STEPS, TableIOManager
from recsys_training.split import Split


def _frame(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"user_id": pd.array([f"u{i}" for i in rng.integers(0, 50, 40)], dtype="string"),
                         "item_id": [f"i{i}" for i in rng.integers(0, 90, 40)],
                         "timestamp": rng.integers(0, 10**9, 40), "value": rng.random(40)})


def _round_trip(tmp_path, key: str, value):
    manager = TableIOManager(base_dir=str(tmp_path))
    manager.handle_output(dg.build_output_context(asset_key=dg.AssetKey(key)), value)
    return manager.load_input(dg.build_input_context(asset_key=dg.AssetKey(key))), tmp_path / key


def test_a_frame_is_parquet_and_comes_back_exactly(tmp_path):
    frame = _frame(0).set_index("item_id")
    back, directory = _round_trip(tmp_path, "raw_items", frame)
    pd.testing.assert_frame_equal(back, frame, check_exact=True)
    assert (directory / "frame.parquet").exists() and not (directory / PICKLE).exists()


def test_folds_of_splits_are_parquet_per_fold_and_side(tmp_path):
    folds = {"serving": Split(_frame(1), _frame(2)), "validation": Split(_frame(3), _frame(4))}
    back, directory = _round_trip(tmp_path, "interactions_split", folds)
    assert set(back) == set(folds) and all(isinstance(s, Split) for s in back.values())
    for name, split in folds.items():
        pd.testing.assert_frame_equal(back[name].train, split.train, check_exact=True)
        pd.testing.assert_frame_equal(back[name].test, split.test, check_exact=True)
    assert sorted(p.name for p in directory.glob("*.parquet")) == [
        "serving.test.parquet", "serving.train.parquet", "validation.test.parquet", "validation.train.parquet"]


@pytest.mark.parametrize("value", [{"version": "v1", "metrics": {"ndcg@10": 0.2}}, np.arange(5), "models/v1"])
def test_anything_else_is_pickled(tmp_path, value):
    back, directory = _round_trip(tmp_path, "thing", value)
    assert (directory / PICKLE).exists() and not (directory / LAYOUT).exists()
    assert np.array_equal(back, value) if isinstance(value, np.ndarray) else back == value


def test_a_failed_write_leaves_the_previous_value(tmp_path):
    manager = TableIOManager(base_dir=str(tmp_path))
    manager.handle_output(dg.build_output_context(asset_key=dg.AssetKey("t")), _frame(5))
    broken = _frame(6)
    broken["value"] = [object()] * len(broken)  # Parquet cannot store it
    with pytest.raises(Exception):  # noqa: B017 - pyarrow's own error type
        manager.handle_output(dg.build_output_context(asset_key=dg.AssetKey("t")), broken)
    back = manager.load_input(dg.build_input_context(asset_key=dg.AssetKey("t")))
    pd.testing.assert_frame_equal(back, _frame(5), check_exact=True)


def test_loading_what_was_never_stored_names_the_asset(tmp_path):
    with pytest.raises(FileNotFoundError, match="no stored value of asset never_built"):
        TableIOManager(base_dir=str(tmp_path)).load_input(dg.build_input_context(asset_key=dg.AssetKey("never_built")))


_WRITER = """
import os, pickle, signal, sys
from pathlib import Path
import dagster as dg
import pandas as pd
from recsys_assets.table_io import TableIOManager

base, key, value, kill_at = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)
if kill_at == "while_writing":  # half the parquet file on disk, then killed
    real = pd.DataFrame.to_parquet
    def half(frame, path, *a, **k):
        real(frame, path, *a, **k)
        Path(path).write_bytes(Path(path).read_bytes()[: Path(path).stat().st_size // 2])
        die()
    pd.DataFrame.to_parquet = half
elif kill_at == "between_renames":  # the old value moved aside, the new one not yet in place
    real_rename = Path.rename
    def once(self, target):
        result = real_rename(self, target)
        die()
        return result
    Path.rename = once
frame = pd.DataFrame({"value": [value] * 200_000, "row": range(200_000)})
TableIOManager(base_dir=base).handle_output(dg.build_output_context(asset_key=dg.AssetKey(key)), frame)
"""


def _write_in_a_process(tmp_path, value: int, kill_at: str = "none") -> int:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _WRITER, str(tmp_path), "features", str(value), kill_at],
                          capture_output=True, text=True, timeout=120, check=False)
    return done.returncode


def _stored(tmp_path) -> pd.DataFrame:
    return TableIOManager(base_dir=str(tmp_path)).load_input(dg.build_input_context(asset_key=dg.AssetKey("features")))


@pytest.mark.parametrize("kill_at", ["while_writing", "between_renames"])
def test_a_write_killed_with_sigkill_leaves_the_previous_value_whole_and_the_next_write_works(tmp_path, kill_at):
    import signal

    assert _write_in_a_process(tmp_path, 1) == 0
    assert _write_in_a_process(tmp_path, 2, kill_at) == -signal.SIGKILL
    if kill_at == "between_renames":
        assert not (tmp_path / "features").exists()  # the kill really fell between the renames
    back = _stored(tmp_path)
    assert len(back) == 200_000 and set(back["value"]) == {1}
    assert _write_in_a_process(tmp_path, 3) == 0
    assert set(_stored(tmp_path)["value"]) == {3}
    assert sorted(p.name for p in tmp_path.iterdir() if ".previous-" in p.name) == []


def test_an_input_can_load_only_some_folds_of_a_stored_dict(tmp_path):
    @dg.asset
    def folds() -> dict:
        return {"serving": Split(_frame(1), _frame(2)), "validation": Split(_frame(3), _frame(4))}

    @dg.asset(ins={"folds": dg.AssetIn(metadata={ONLY_KEYS: ["serving"]})})
    def reader(folds: dict) -> int:
        assert set(folds) == {"serving"}
        pd.testing.assert_frame_equal(folds["serving"].test, _frame(2), check_exact=True)
        return 1

    @dg.asset(ins={"folds": dg.AssetIn(metadata={ONLY_KEYS: ["test"]})})
    def wrong(folds: dict) -> int:
        return 1

    manager = TableIOManager(base_dir=str(tmp_path))
    assert dg.materialize([folds, reader], resources={"io_manager": manager}).success
    failed = dg.materialize([folds, wrong], resources={"io_manager": manager}, raise_on_error=False)
    assert not failed.success
    assert "has no ['test']" in str(failed.get_step_failure_events()[0].event_specific_data.error)


def test_outputs_of_steps_inside_a_graph_asset_are_kept_by_run_for_the_newest_runs(tmp_path):
    manager = TableIOManager(base_dir=str(tmp_path))
    runs = [f"run{i}" for i in range(KEPT_STEP_RUNS + 2)]
    for number, run_id in enumerate(runs):
        output = dg.build_output_context(step_key="evaluation_summary.evaluation_shard_0", name="result",
                                         run_id=run_id)
        manager.handle_output(output, {"shard": number})
        os.utime(tmp_path / STEPS / run_id, (number, number))  # distinct ages, oldest first
        loaded = manager.load_input(dg.build_input_context(upstream_output=output))
        assert loaded == {"shard": number}
    assert sorted(d.name for d in (tmp_path / STEPS).iterdir()) == runs[-KEPT_STEP_RUNS:]
    assert not any(p.name == "evaluation_summary" for p in tmp_path.iterdir())
