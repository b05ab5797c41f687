import atexit
import os
import shutil
import tempfile

import pandas as pd
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# the tests run services, CLI runs and Dask workers beside the test process, and OpenMP threads
# that spin while they wait would take their cores (settings.share_cores_between_processes)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# the test data sets evaluate a few hundred users at most; tests of the minimum itself set it back
os.environ.setdefault("RECSYS_MIN_EVAL_USERS", "50")
# the pipelines in tests train the sequential route for two epochs: its path runs, its quality is
# tested in test_sequential.py
os.environ.setdefault("RECSYS_SEQUENTIAL_EPOCHS", "2")
# one ranker setting, not a choice of two, in the pipelines of tests: test_pipeline.py runs the
# choice, test_recommender.py tests it
os.environ.setdefault("RECSYS_RANKER_CHOICES", "rank_xendcg")
# early stopping after 25 rounds without a better fold ndcg: the test models stop before round 40, and the
# default patience of 100 would spend most of the cross-validation on rounds that are thrown away
os.environ.setdefault("RECSYS_RANKER_PATIENCE", "25")
if "RECSYS_RANKER_CACHE" not in os.environ:  # compiled rankers of test models stay out of ~/.cache
    os.environ["RECSYS_RANKER_CACHE"] = tempfile.mkdtemp(prefix="recsys-test-rankers-")
    atexit.register(shutil.rmtree, os.environ["RECSYS_RANKER_CACHE"], True)


def interactions(rows: list[tuple]) -> pd.DataFrame:
    """(user_id, item_id, timestamp[, value]) tuples as a canonical interactions frame."""
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "value"][: len(rows[0])])
    if "value" not in frame:
        frame["value"] = 1.0
    frame["event"] = "view"
    return frame.astype({"user_id": str, "item_id": str})


@pytest.fixture
def make_interactions():
    return interactions
