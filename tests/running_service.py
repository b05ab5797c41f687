"""The Litestar app under uvicorn in a thread of the test process, on a free port: a real HTTP
service whose models a test can still reach."""

import socket
import threading
import time

import httpx
import numpy as np
import uvicorn

from recsys_service.app import create_app
from recsys_service.settings import ServiceSettings


class RunningService:
    """The Litestar app under uvicorn in a thread, on a free port."""

    def __init__(self, settings: ServiceSettings) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(create_app(settings), port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            assert time.monotonic() < deadline, "service did not start"
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self.port}"
        self.client = httpx.Client(base_url=self.url, timeout=30)

    def traffic(self, users: list[str], items: list[str], rng: np.random.Generator, click_rate: float = 0.3) -> int:
        """Detail-page requests, and clicks on some of the served items; returns failures."""
        failures = 0
        for user, item in zip(users, items, strict=True):
            response = self.client.get(f"/recommend/detail/{item}", params={"user_id": user})
            if response.status_code >= 500:
                failures += 1
            if response.status_code != 200:  # 404: an item the serving model does not know yet
                continue
            body = response.json()
            if body["items"] and rng.random() < click_rate:
                position = min(int(rng.geometric(0.4)), len(body["items"])) - 1
                self.client.post("/events", json={"request_id": body["request_id"], "user_id": user,
                                                  "item_id": body["items"][position]["item_id"]})
        return failures

    def stop(self) -> None:
        self.client.close()
        self.server.should_exit = True
        self.thread.join(timeout=30)
