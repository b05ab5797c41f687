"""A client of the service's admin API and its /metrics, for the pipeline, the rollout and the benchmark."""

from __future__ import annotations

import json
import urllib.request


class ServiceClient:
    """One service (``base_url``, which a load balancer may spread over replicas) and the
    ``/metrics`` addresses of each of its replicas (default: the service's own)."""

    def __init__(self, base_url: str, token: str, replica_urls: tuple[str, ...] = (), timeout: float = 120.0) -> None:
        self.base_url, self.token, self.timeout = base_url.rstrip("/"), token, timeout
        self.replica_urls = tuple(u.rstrip("/") for u in replica_urls) or (self.base_url,)

    def _post(self, path: str, body: dict | None = None) -> dict:
        request = urllib.request.Request(
            f"{self.base_url}{path}", method="POST", data=json.dumps(body or {}).encode(),
            headers={"Authorization": f"Bearer {self.token}", "content-type": "application/json"})
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            return json.loads(response.read())

    def reload(self, version: str | None, mode: str = "primary", rollout: float | None = None) -> dict:
        """POST /models/reload; the new deployment state. Raises on an HTTP error (409: the bundle
        was refused and the old model keeps serving)."""
        return self._post("/models/reload", {"version": version, "mode": mode, "rollout": rollout})

    def rollback(self) -> dict:
        """POST /models/rollback: drops a canary, or returns to the previous primary."""
        return self._post("/models/rollback")

    def ready(self) -> dict:
        with urllib.request.urlopen(f"{self.base_url}/ready", timeout=self.timeout) as response:
            return json.loads(response.read())

    def metrics_texts(self) -> list[str]:
        """The Prometheus text of every replica."""
        texts = []
        for url in self.replica_urls:
            with urllib.request.urlopen(f"{url}/metrics", timeout=self.timeout) as response:
                texts.append(response.read().decode())
        return texts


def reload_model(base_url: str, token: str, version: str, timeout: float = 120.0) -> dict:
    """POST /models/reload with ``version`` as primary."""
    return ServiceClient(base_url, token, timeout=timeout).reload(version)
