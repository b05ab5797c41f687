"""Processes killed in the middle of a write: nothing complete is lost, nothing torn is read."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request

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
