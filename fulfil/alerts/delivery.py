"""One HTTP delivery of one alert to one destination, and what its answer means.

`Sender.send` builds the destination's request (`operators.alert_format`), posts it with httpx,
and classifies the outcome:

- `delivered`: the service accepted it (2xx, and for the bots that always answer 200, an
  `errcode`/`code` of 0);
- `retry`: worth trying again later — a network error or timeout, 408, 429, 5xx, or a bot's
  "too many requests" code; `retry_after_s` carries the service's own hint when it gives one;
- `rejected`: the service refused the request itself (other 4xx, another bot error code): sending
  it again would fail again, so the bridge logs it, counts it and moves on.

Errors never carry the URL (it holds tokens) or the secret.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from fulfil.alerts.config import Destination
from operators import alert_format as fmt

#: Bot error codes that mean "slow down" (retry), per service.
_RATE_CODES = {"feishu": {9499, 11232, 11233}, "dingtalk": {130101, 130102},
               "wecom": {45009, 45033}}


@dataclass(frozen=True, slots=True)
class Outcome:
    kind: str  # delivered | retry | rejected
    status: int | None = None
    detail: str = ""
    retry_after_s: float | None = None


def request_for(dest: Destination, alert: dict[str, Any], now_ms: int
                ) -> tuple[str, bytes, dict[str, str]]:
    """(url, body, headers) of one alert for one destination."""
    headers = {"Content-Type": "application/json", **dest.headers}
    url = dest.url
    if dest.kind == "pagerduty":
        body: Any = fmt.pagerduty(alert, dest.routing_key)
    elif dest.kind == "slack":
        body = fmt.slack(alert)
    elif dest.kind == "feishu":
        body = fmt.feishu(alert, secret=dest.secret or None, timestamp_s=now_ms // 1000,
                          locale=dest.locale)
    elif dest.kind == "dingtalk":
        body = fmt.dingtalk(alert, keyword=dest.keyword)
        url = fmt.dingtalk_url(url, dest.secret or None, now_ms)
    elif dest.kind == "wecom":
        body = fmt.wecom(alert)
    else:
        raw = orjson.dumps(alert)
        headers["X-Fulfil-Alert-Id"] = alert["alert_id"]
        if dest.secret:
            headers["X-Fulfil-Timestamp"] = str(now_ms)
            headers["X-Fulfil-Signature"] = fmt.webhook_signature(raw, dest.secret, now_ms)
        return url, raw, headers
    return url, orjson.dumps(body), headers


def classify(dest: Destination, status: int, text: str, retry_after: str | None) -> Outcome:
    """What an HTTP answer means for this kind of destination."""
    hint = _seconds(retry_after)
    if status in (408, 429) or status >= 500:
        return Outcome("retry", status, text[:200], hint)
    if not 200 <= status < 300:
        return Outcome("rejected", status, text[:200])
    if dest.kind in _RATE_CODES:
        try:
            answer = orjson.loads(text) if text else {}
        except orjson.JSONDecodeError:
            answer = {}
        code = answer.get("code", answer.get("errcode", answer.get("StatusCode", 0))) \
            if isinstance(answer, dict) else 0
        if code not in (0, None):
            kind = "retry" if code in _RATE_CODES[dest.kind] else "rejected"
            return Outcome(kind, status, text[:200], hint)
    return Outcome("delivered", status)


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


class Sender:
    """Posts alerts to one destination over one kept-alive HTTP client."""

    def __init__(self, dest: Destination) -> None:
        self.dest = dest
        self._client = httpx.Client(timeout=dest.timeout_s, follow_redirects=False)

    def send(self, alert: dict[str, Any]) -> Outcome:
        url, body, headers = request_for(self.dest, alert, time.time_ns() // 1_000_000)
        try:
            resp = self._client.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return Outcome("retry", None, type(exc).__name__)
        return classify(self.dest, resp.status_code, resp.text, resp.headers.get("Retry-After"))

    def close(self) -> None:
        self._client.close()
