"""Request bodies (and signatures) of the alert bridge's receivers, from one `alert` record.

Pure: alert dict in, body dict out; the bridge (`fulfil/alerts/`) does the HTTP. The shapes follow
each service's documented request format (tests compare them with the real samples in
`../shared/payloads/`):

- PagerDuty Events API v2: `routing_key`, `event_action` (trigger | resolve), `dedup_key`, and
  for a trigger the `payload` (summary, source, severity, timestamp, component, group, class,
  custom_details), `links`, `client`. Every revision of an incident carries the same dedup_key,
  so re-sending one (at-least-once delivery) or sending an update never opens a second incident.
- Slack incoming webhook: `text` (notification fallback) and `blocks` (mrkdwn sections, fields).
- Feishu/Lark custom bot: `msg_type: post` rich text; signed with `timestamp` (seconds) and
  `sign` = base64(HMAC-SHA256(key=f"{timestamp}\\n{secret}", message="")).
- DingTalk custom bot: `msgtype: text`; signed in the URL: `timestamp` (ms) and `sign` =
  url-encoded base64(HMAC-SHA256(key=secret, message=f"{timestamp}\\n{secret}")).
- WeCom (企业微信) group bot: `msgtype: markdown`.
- Generic webhook: the alert record itself, optionally signed (`X-Fulfil-Signature`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote_plus

from schemas.enums import AlertStatus

_ICONS = {"critical": "🔴", "error": "🟠", "warning": "🟡", "info": "🔵", "resolve": "✅"}
MAX_SAMPLES_SHOWN = 5


def iso_ms(ms: int) -> str:
    """PagerDuty's timestamp style: 2015-07-17T08:42:58.315+0000."""
    dt = datetime.fromtimestamp(ms / 1000, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}+0000"


def _is_link(url: str) -> bool:
    return url.startswith(("https://", "http://"))


def headline(alert: dict[str, Any]) -> str:
    """'[CRITICAL] summary' or '[RESOLVED] summary'; marks updates."""
    if alert["status"] == AlertStatus.RESOLVE:
        return f"[RESOLVED] {alert['summary']}"
    update = " (update)" if alert.get("revision", 1) > 1 else ""
    return f"[{alert['severity'].upper()}]{update} {alert['summary']}"


def lines(alert: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) rows every chat format shows."""
    entity = alert.get("entity") or {}
    rows = [("Type", alert["type"]), ("Entity", f"{entity.get('kind')} {entity.get('id')}")]
    count = alert.get("affected_order_count", 0)
    if count:
        sample = ", ".join(alert.get("sample_order_ids", [])[:MAX_SAMPLES_SHOWN])
        rows.append(("Affected orders", f"{count}" + (f" (e.g. {sample})" if sample else "")))
    rows.append(("First seen", iso_ms(alert["first_seen"]).replace("+0000", "Z")))
    rows.append(("Incident", f"{alert['dedup_key']} r{alert['revision']}"))
    return rows


def _icon(alert: dict[str, Any]) -> str:
    key = "resolve" if alert["status"] == AlertStatus.RESOLVE else alert["severity"]
    return _ICONS.get(key, "")


# ---------------------------------------------------------------------- PagerDuty


def pagerduty(alert: dict[str, Any], routing_key: str, *, client_url: str | None = None
              ) -> dict[str, Any]:
    """Events API v2 body (POST https://events.pagerduty.com/v2/enqueue)."""
    action = "resolve" if alert["status"] == AlertStatus.RESOLVE else "trigger"
    body: dict[str, Any] = {"routing_key": routing_key, "event_action": action,
                            "dedup_key": alert["dedup_key"][:255]}
    if action == "resolve":
        return body
    entity = alert.get("entity") or {}
    details = {"alert_id": alert["alert_id"], "revision": alert["revision"],
               "affected_order_count": alert.get("affected_order_count", 0),
               "sample_order_ids": alert.get("sample_order_ids", []),
               "first_seen": iso_ms(alert["first_seen"]), **(alert.get("details") or {})}
    body["payload"] = {
        "summary": alert["summary"][:1024],
        "timestamp": iso_ms(alert["last_seen"]),
        "source": alert.get("source") or "fulfil",
        "severity": alert["severity"],
        "component": str(entity.get("id", ""))[:255],
        "group": str(entity.get("kind", ""))[:255],
        "class": alert["type"],
        "custom_details": details,
    }
    if _is_link(alert.get("runbook_url", "")):
        body["links"] = [{"href": alert["runbook_url"], "text": f"Runbook: {alert['type']}"}]
    body["client"] = "fulfil watchtower"
    if client_url:
        body["client_url"] = client_url
    return body


# ---------------------------------------------------------------------- Slack


def slack(alert: dict[str, Any]) -> dict[str, Any]:
    """Incoming-webhook body: a fallback `text` and Block Kit sections."""
    title = f"{_icon(alert)} *{headline(alert)}*"
    fields = [{"type": "mrkdwn", "text": f"*{k}*: {v}"} for k, v in lines(alert)]
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": title[:3000]}},
        {"type": "section", "fields": fields[:10]},
    ]
    runbook = alert.get("runbook_url", "")
    if _is_link(runbook):
        blocks.append({"type": "section",
                       "text": {"type": "mrkdwn", "text": f"<{runbook}|Runbook: {alert['type']}>"}})
    return {"text": headline(alert)[:3000], "blocks": blocks}


# ---------------------------------------------------------------------- Feishu / Lark


def feishu_sign(timestamp_s: int, secret: str) -> str:
    """Feishu custom-bot signature: HMAC-SHA256 keyed by "timestamp\\nsecret" over nothing."""
    key = f"{timestamp_s}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()


def feishu(alert: dict[str, Any], *, secret: str | None = None, timestamp_s: int | None = None,
           locale: str = "zh_cn") -> dict[str, Any]:
    """`post` (rich text) body; signed when the bot has a secret."""
    content: list[list[dict[str, str]]] = [
        [{"tag": "text", "text": f"{k}: {v}"}] for k, v in lines(alert)]
    runbook = alert.get("runbook_url", "")
    if _is_link(runbook):
        content.append([{"tag": "text", "text": "Runbook: "},
                        {"tag": "a", "text": alert["type"], "href": runbook}])
    body: dict[str, Any] = {"msg_type": "post", "content": {"post": {locale: {
        "title": f"{_icon(alert)} {headline(alert)}"[:500], "content": content}}}}
    if secret:
        ts = int(timestamp_s if timestamp_s is not None else datetime.now(UTC).timestamp())
        body = {"timestamp": str(ts), "sign": feishu_sign(ts, secret), **body}
    return body


# ---------------------------------------------------------------------- DingTalk


def dingtalk_sign(timestamp_ms: int, secret: str) -> str:
    """DingTalk custom-bot signature, url-encoded, for the `sign` query parameter."""
    digest = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(),
                      hashlib.sha256).digest()
    return quote_plus(base64.b64encode(digest).decode())


def dingtalk_url(url: str, secret: str | None, timestamp_ms: int) -> str:
    """The webhook URL (it carries `access_token`) with `timestamp` and `sign` when signed."""
    if not secret:
        return url
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}timestamp={timestamp_ms}&sign={dingtalk_sign(timestamp_ms, secret)}"


def dingtalk(alert: dict[str, Any], *, keyword: str = "") -> dict[str, Any]:
    """`text` body; `keyword` is prepended for bots secured by a custom keyword."""
    text = "\n".join([f"{keyword}{_icon(alert)} {headline(alert)}",
                      *(f"{k}: {v}" for k, v in lines(alert))])
    if _is_link(alert.get("runbook_url", "")):
        text += f"\nRunbook: {alert['runbook_url']}"
    return {"msgtype": "text", "text": {"content": text[:20000]}}


# ---------------------------------------------------------------------- WeCom


def wecom(alert: dict[str, Any]) -> dict[str, Any]:
    """WeCom group-bot `markdown` body (content at most 4096 bytes)."""
    text = "\n".join([f"**{_icon(alert)} {headline(alert)}**",
                      *(f"> {k}: {v}" for k, v in lines(alert))])
    if _is_link(alert.get("runbook_url", "")):
        text += f"\n[Runbook: {alert['type']}]({alert['runbook_url']})"
    raw = text.encode()[:4096]
    return {"msgtype": "markdown", "markdown": {"content": raw.decode("utf-8", "ignore")}}


# ---------------------------------------------------------------------- generic webhook


def webhook_signature(body: bytes, secret: str, timestamp_ms: int) -> str:
    """`sha256=<hex>` of HMAC-SHA256(secret, f"{timestamp}." + body), like common webhook
    senders, so a receiver can check both origin and freshness."""
    mac = hmac.new(secret.encode(), f"{timestamp_ms}.".encode() + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"
