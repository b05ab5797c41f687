"""Webhook notifications (Slack or WeCom incoming-webhook JSON); off unless a URL is configured."""

from __future__ import annotations

import json
import logging
import urllib.request

log = logging.getLogger(__name__)


def payload(title: str, lines: list[str], style: str = "slack") -> dict:
    """Slack: ``{"text": ...}`` (mrkdwn). WeCom: ``{"msgtype": "markdown", "markdown": {"content": ...}}``."""
    if style == "wecom":
        return {"msgtype": "markdown", "markdown": {"content": "\n".join([f"**{title}**", *[f"> {x}" for x in lines]])}}
    if style != "slack":
        raise ValueError(f"webhook style must be slack or wecom, not {style!r}")
    return {"text": "\n".join([f"*{title}*", *[f"• {x}" for x in lines]])}


def send(url: str, title: str, lines: list[str], style: str = "slack", timeout: float = 5.0) -> bool:
    """POST the message; False (and a log line) when no URL is set or the webhook fails. A
    notification never fails the run that sends it."""
    if not url:
        return False
    body = json.dumps(payload(title, lines, style)).encode()
    request = urllib.request.Request(url, data=body, method="POST", headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return 200 <= response.status < 300
    except OSError as error:
        log.warning("webhook %s failed: %s", url, error)
        return False
