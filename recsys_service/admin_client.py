"""A client of the service's admin API, for the pipeline and the benchmark."""

from __future__ import annotations

import json
import urllib.request


def reload_model(base_url: str, token: str, version: str, timeout: float = 120.0) -> dict:
    """POST /models/reload with ``version`` as primary; the new deployment state. Raises on an
    HTTP error (409: the bundle was refused and the old model keeps serving)."""
    request = urllib.request.Request(
        f"{base_url.rstrip('/')}/models/reload", method="POST", data=json.dumps({"version": version}).encode(),
        headers={"Authorization": f"Bearer {token}", "content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())
