"""Processes killed in the middle of a write: nothing complete is lost, nothing torn is read."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from recsys_registry.registry import ModelRegistry
from recsys_service.exposure import ExposureLog
from recsys_training.online_eval import read_log
from scripts.bench_serving import free_port, wait_ready
from tests.bundles import build_bundle

RECORD = {"type": "exposure", "request_id": "", "time": 1.0, "user_id": "u1", "item_id": None,
          "endpoint": "recommend_user", "model_version": "v1", "arm": "primary",
          "items": [{"item_id": "i1", "position": 1}], "fallback": None}
_TORN_WRITER = """
import os, signal, sys
from pathlib import Path
from recsys_service.exposure import ExposureLog
RECORD = {RECORD}
log = ExposureLog(Path(sys.argv[1]), max_bytes=10**9)
for i in range(50):
    log.write(dict(RECORD, request_id=f"before{i}"))
log.flush()
with open(sys.argv[1], "ab") as handle:  # what a kill in the middle of a write leaves
    handle.write(b'{"type": "exposure", "request_id": "torn", "ite')
    handle.flush()
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_line_torn_by_a_killed_writer_is_skipped_and_counted_and_the_next_writer_loses_nothing(tmp_path):
    path = tmp_path / "exposure_log.jsonl"
    writer = _TORN_WRITER.replace("{RECORD}", repr(RECORD))
    killed = subprocess.run([sys.executable, "-c", writer, str(path)], capture_output=True, timeout=60)
    assert killed.returncode == -signal.SIGKILL and not path.read_bytes().endswith(b"\n")
    log = ExposureLog(path, max_bytes=10**9)
    for i in range(5):
        log.write(dict(RECORD, request_id=f"after{i}"))
    log.close()
    read = read_log(path)
    assert read.bad_lines == 1
    assert read.lists["request_id"].tolist() == [f"before{i}" for i in range(50)] + [f"after{i}" for i in range(5)]


def test_sigterm_drains_in_flight_requests_and_flushes_every_exposure(tmp_path):
    models = tmp_path / "models"
    build_bundle(models / "bundles" / "v1", 1, "v1")
    registry = ModelRegistry(models / "model_registry.json")
    registry.register("v1", {"path": str(models / "bundles" / "v1")})
    registry.promote("v1", "test")
    port, log = free_port(), tmp_path / "exposure_log.jsonl"
    env = {**os.environ, "RECSYS_MODELS_DIR": str(models), "RECSYS_EXPOSURE_LOG": str(log), "REDIS_URL": "",
           "RECSYS_WARM_USERS": "0", "RECSYS_EXPOSURE_FLUSH_SECONDS": "600"}  # only the shutdown writes
    server = subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory", "recsys_service.app:create_app",
                               "--port", str(port), "--log-level", "warning"], env=env)
    served, stop = [], threading.Event()

    def client(worker: int) -> None:
        n = 0
        while not stop.is_set():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/recommend/user/u{(worker * 7 + n) % 150}",
                                            timeout=10) as response:
                    served.append(json.loads(response.read())["request_id"])
            except OSError:
                return  # the server stopped accepting: the requests it answered are in `served`
            n += 1

    try:
        wait_ready(port, timeout=120)
        threads = [threading.Thread(target=client, args=(w,)) for w in range(4)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 60
        while len(served) < 300 and time.monotonic() < deadline:
            time.sleep(0.05)
        server.send_signal(signal.SIGTERM)  # while the clients keep sending
        # uvicorn shuts down gracefully, then re-raises the signal it caught as its exit status
        assert server.wait(timeout=60) in (0, -signal.SIGTERM)
    finally:
        stop.set()
        if server.poll() is None:
            server.kill()
    for thread in threads:
        thread.join(timeout=30)
    read = read_log(log)
    assert len(served) >= 300 and read.bad_lines == 0
    assert sorted(read.lists["request_id"]) == sorted(served)  # every answered request, once; none lost


_KILLED_STEP = """
import os, signal, sys
from pathlib import Path
import pandas as pd
def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)
step, root = sys.argv[1], Path(sys.argv[2])
if step == "bundle":  # killed while the new bundle's files are being written
    from recsys_runtime import bundle
    from tests.bundles import build_bundle
    real = bundle.sha256
    calls = []
    def hashing(path):
        calls.append(path)
        if len(calls) == 3:
            die()
        return real(path)
    bundle.sha256 = hashing
    build_bundle(root / "bundles" / "v2", 2, "v2")
elif step == "registry":  # killed after the new registry text is written, before it replaces the old
    from recsys_registry.registry import ModelRegistry
    Path.replace = die
    registry = ModelRegistry(root / "model_registry.json")
    registry.register("v2", {"path": str(root / "bundles" / "v1")})
elif step == "raw":  # killed between the table and the watermark
    from recsys_training.raw_store import RawStore
    real = Path.replace
    def table_only(self, target):
        result = real(self, target)
        if target.name == "interactions.parquet":
            die()
        return result
    Path.replace = table_only
    RawStore(root / "raw").save(pd.read_parquet(root / "all.parquet"))
"""


def _killed(step: str, root) -> int:
    done = subprocess.run([sys.executable, "-c", _KILLED_STEP, step, str(root)], capture_output=True, text=True,
                          timeout=300, check=False, cwd=Path(__file__).resolve().parent.parent)
    return done.returncode


def _registry_with_champion(root):
    build_bundle(root / "bundles" / "v1", 1, "v1")
    registry = ModelRegistry(root / "model_registry.json")
    registry.register("v1", {"path": str(root / "bundles" / "v1")})
    registry.promote("v1", "test")
    return registry


def test_a_pipeline_killed_while_writing_a_bundle_or_the_registry_leaves_the_champion_servable(tmp_path):
    from recsys_registry.registry import RegistryFile
    from recsys_runtime.bundle import load_bundle

    _registry_with_champion(tmp_path)
    before = (tmp_path / "model_registry.json").read_text()
    assert _killed("bundle", tmp_path) == -signal.SIGKILL
    assert not (tmp_path / "bundles" / "v2").exists()  # only the staging directory was written
    assert _killed("registry", tmp_path) == -signal.SIGKILL
    assert (tmp_path / "model_registry.json").read_text() == before  # the old registry, whole
    registry = RegistryFile.load(tmp_path / "model_registry.json")
    assert load_bundle(registry.version(registry.champion)["path"]).version == "v1"
    build_bundle(tmp_path / "bundles" / "v2", 2, "v2")  # the rerun recovers
    assert load_bundle(tmp_path / "bundles" / "v2").version == "v2"
    assert not (tmp_path / "bundles" / "v2.tmp").exists()


def test_extraction_killed_between_table_and_watermark_loses_nothing_and_stores_nothing_twice(tmp_path):
    from recsys_training import synthetic
    from recsys_training.raw_store import INTERACTION_KEY, RawStore, merge_new

    rows = synthetic.generate(50, 80, 2_000, seed=3).interactions.rows.sort_values("timestamp", kind="stable")
    first, rest = rows.iloc[:1_000], rows
    store = RawStore(tmp_path / "raw")
    store.save(first)
    rest.to_parquet(tmp_path / "all.parquet")
    assert _killed("raw", tmp_path) == -signal.SIGKILL
    table, watermark = store.load()
    assert len(table) == len(rows) and watermark.max_timestamp == int(first["timestamp"].max())  # mark not ahead
    merged, added = merge_new(table, rest, watermark)  # the next run re-reads from the old mark
    assert added == 0 and len(merged) == len(rows.drop_duplicates(INTERACTION_KEY))
