"""Request bodies against the services' real documented samples (../shared/payloads), signing,
the routes file and the rate limiter — pure, no network."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any
from urllib.parse import unquote_plus

import orjson
import pytest

from fulfil.alerts.config import BridgeConfigError, bridge_config
from fulfil.alerts.delivery import classify, request_for
from fulfil.alerts.ratelimit import TokenBucket
from operators import alert_format as fmt
from operators.watch.incidents import apply
from operators.watch.settings import settings_from
from operators.watch.verdicts import Verdict
from schemas.enums import AlertSeverity, AlertStatus, AlertType
from schemas.validation import load_schema

T0 = 1_795_556_252_000


def make_alert(*, severity: str = "critical", resolve: bool = False, n: int = 0,
               runbook: str = "https://runbooks.example/fulfil/alerts.md") -> dict[str, Any]:
    s = settings_from({"runbook_base_url": runbook, "incidents": {"resolve_hold_ms": 0}})
    v = Verdict(f"lane-disruption/correios|*|*|RJ{n}", "lane-disruption", True, T0, severity,
                {"kind": "lane", "id": "correios|*|*|RJ", "carrier": "correios",
                 "dest_region": "RJ"}, f"correios: outage on lanes to RJ #{n}",
                {"status": "outage", "reason": "flood"}, evidence_at=T0, affected_count=12,
                sample_ids=("o-1", "o-2"), listed_ids=("o-1", "o-2"))
    inc, out = apply(None, v, s, T0 + 40)
    if resolve:
        _, out = apply(inc, Verdict(v.dedup_key, v.type, False, T0 + 9000), s, T0 + 9040)
    return out[0]


def shape_problems(mine: Any, sample: Any, path: str = "$", free: tuple[str, ...] = ()) -> list:
    """Where `mine` uses a key or a JSON type the sample does not have at that place.

    Lists: each element must fit one of the sample's elements. Paths in `free` are free-form
    objects (PagerDuty's custom_details) and only need to be objects.
    """
    if path in free:
        return [] if isinstance(mine, dict) else [f"{path}: not an object"]
    if isinstance(sample, dict):
        if not isinstance(mine, dict):
            return [f"{path}: not an object"]
        out = []
        for key, value in mine.items():
            if key not in sample:
                out.append(f"{path}.{key}: not in the documented sample")
            else:
                out += shape_problems(value, sample[key], f"{path}.{key}", free)
        return out
    if isinstance(sample, list):
        if not isinstance(mine, list):
            return [f"{path}: not an array"]
        out = []
        for i, item in enumerate(mine):
            fits = [shape_problems(item, s, f"{path}[]", free) for s in sample]
            if not any(not f for f in fits):
                out.append(f"{path}[{i}]: fits no sample element ({fits[0][:2]})")
        return out
    kinds = (str,) if isinstance(sample, str) else (bool,) if isinstance(sample, bool) else \
        (int, float)
    return [] if isinstance(mine, kinds) and not (kinds != (bool,) and isinstance(mine, bool)) \
        else [f"{path}: {type(mine).__name__} where the sample has {type(sample).__name__}"]


def sample(shared_dir, name: str) -> Any:
    return orjson.loads((shared_dir / "payloads" / f"{name}.json").read_bytes())


# ---------------------------------------------------------------------- bodies vs samples


def test_pagerduty_trigger_and_resolve_match_the_events_api_v2_sample(shared_dir):
    doc = sample(shared_dir, "pagerduty_events_v2_trigger")
    body = fmt.pagerduty(make_alert(), "R0UT1NGKEY")
    assert shape_problems(body, doc, free=("$.payload.custom_details",)) == []
    assert {"routing_key", "event_action", "dedup_key", "payload"} <= set(body)
    assert {"summary", "source", "severity", "timestamp"} <= set(body["payload"])
    assert body["event_action"] == "trigger" and body["payload"]["severity"] == "critical"
    assert body["dedup_key"] == "lane-disruption/correios|*|*|RJ0"
    assert len(body["payload"]["timestamp"]) == len(doc["payload"]["timestamp"])
    assert body["links"][0]["href"].startswith("https://")
    resolve = fmt.pagerduty(make_alert(resolve=True), "R0UT1NGKEY")
    assert resolve == {"routing_key": "R0UT1NGKEY", "event_action": "resolve",
                       "dedup_key": body["dedup_key"]}  # same key: closes the same incident


def test_slack_body_matches_the_incoming_webhook_sample(shared_dir):
    body = fmt.slack(make_alert())
    assert shape_problems(body, sample(shared_dir, "slack_incoming_webhook")) == []
    assert body["text"].startswith("[CRITICAL]") and body["blocks"][0]["type"] == "section"
    assert fmt.slack(make_alert(resolve=True))["text"].startswith("[RESOLVED]")


def test_feishu_post_matches_the_custom_bot_sample_and_is_signed(shared_dir):
    body = fmt.feishu(make_alert(), secret="s3cr3t", timestamp_s=1_700_000_000)
    unsigned = {k: v for k, v in body.items() if k not in ("timestamp", "sign")}
    assert shape_problems(unsigned, sample(shared_dir, "feishu_bot_webhook_post")) == []
    # Feishu's documented check: HMAC-SHA256 keyed by "timestamp\nsecret" over an empty
    # message, base64; the timestamp is in seconds and travels as a string.
    expected = base64.b64encode(hmac.new(b"1700000000\ns3cr3t", b"", hashlib.sha256).digest())
    assert body["timestamp"] == "1700000000" and body["sign"] == expected.decode()
    assert "timestamp" not in fmt.feishu(make_alert())  # a bot without a secret: unsigned


def test_dingtalk_text_matches_the_sample_and_the_url_is_signed(shared_dir):
    body = fmt.dingtalk(make_alert(), keyword="fulfil ")
    assert shape_problems(body, sample(shared_dir, "dingtalk_bot_webhook_text")) == []
    assert body["text"]["content"].startswith("fulfil ")
    url = fmt.dingtalk_url("https://oapi.dingtalk.com/robot/send?access_token=T", "SEC",
                           1700000000123)
    query = dict(p.split("=", 1) for p in url.split("?", 1)[1].split("&"))
    assert query["access_token"] == "T" and query["timestamp"] == "1700000000123"
    digest = hmac.new(b"SEC", b"1700000000123\nSEC", hashlib.sha256).digest()
    assert unquote_plus(query["sign"]) == base64.b64encode(digest).decode()
    assert "%" in query["sign"] or "+" not in query["sign"]  # url-encoded, not raw base64


def test_wecom_markdown_and_generic_webhook_signature():
    body = fmt.wecom(make_alert())
    assert set(body) == {"msgtype", "markdown"} and body["msgtype"] == "markdown"
    assert len(body["markdown"]["content"].encode()) <= 4096
    raw = b'{"a":1}'
    sig = fmt.webhook_signature(raw, "k", 42)
    assert sig == "sha256=" + hmac.new(b"k", b'42.{"a":1}', hashlib.sha256).hexdigest()


def test_every_alert_type_renders_in_every_format():
    for alert_type in AlertType:
        alert = {**make_alert(), "type": alert_type.value}
        for dest_kind in ("pagerduty", "slack", "feishu", "dingtalk", "wecom", "webhook"):
            cfg = bridge_config({"destinations": {"d": {"kind": dest_kind, "url":
                                                        "https://x.example/h",
                                                        "routing_key": "k", "secret": "s"}},
                                 "routes": [{"to": ["d"]}]}, env={})
            url, body, _ = request_for(cfg.destinations["d"], alert, T0)
            assert url.startswith("https://x.example/h") and orjson.loads(body)


def test_enums_match_the_alert_schema():
    schema = load_schema("alert")
    assert [t.value for t in AlertType] == schema["properties"]["type"]["enum"]
    assert [s.value for s in AlertSeverity] == schema["properties"]["severity"]["enum"]
    assert [s.value for s in AlertStatus] == schema["properties"]["status"]["enum"]


# ---------------------------------------------------------------------- answers, routes, pacing


def test_answers_are_classified_per_service():
    cfg = bridge_config({"destinations": {
        "f": {"kind": "feishu", "url": "https://f.example/h"},
        "s": {"kind": "slack", "url": "https://s.example/h"}}, "routes": [{"to": ["f", "s"]}]},
        env={})
    f, s = cfg.destinations["f"], cfg.destinations["s"]
    assert classify(s, 200, "ok", None).kind == "delivered"
    busy = classify(s, 503, "", "7")
    assert busy.kind == "retry" and busy.retry_after_s == 7
    assert classify(s, 429, "", None).kind == "retry"
    assert classify(s, 400, "invalid_payload", None).kind == "rejected"
    assert classify(f, 200, '{"code":0}', None).kind == "delivered"
    assert classify(f, 200, '{"code":9499,"msg":"too many"}', None).kind == "retry"
    assert classify(f, 200, '{"code":19021,"msg":"sign match fail"}', None).kind == "rejected"


def test_routes_file_expands_secrets_and_names_its_mistakes():
    data = {"destinations": {"pd": {"kind": "pagerduty", "routing_key": "${PD_KEY}"},
                             "chat": {"kind": "slack", "updates": False,
                                      "url": "https://hooks.slack.com/services/T/B/X"}},
            "routes": [{"match": {"severity": ["critical", "error"]}, "to": ["pd", "chat"]},
                       {"match": {"type": "stock-out-ahead"}, "to": "chat"}]}
    cfg = bridge_config(data, env={"PD_KEY": "abc"})
    assert cfg.destinations["pd"].routing_key == "abc"
    assert cfg.destinations["pd"].url == "https://events.pagerduty.com/v2/enqueue"
    assert cfg.targets({"severity": "critical", "type": "x", "status": "trigger"}) == {"pd", "chat"}
    assert cfg.targets({"severity": "warning", "type": "stock-out-ahead"}) == {"chat"}
    assert cfg.targets({"severity": "info", "type": "demand-surge"}) == set()
    shown = str(cfg.redacted())
    assert "abc" not in shown and "/T/B/X" not in shown
    with pytest.raises(BridgeConfigError, match="PD_KEY is not set"):
        bridge_config(data, env={})
    bad = {**data, "routes": [{"to": ["nowhere"]}]}
    with pytest.raises(BridgeConfigError, match=r"routes\[0\].to: unknown destination"):
        bridge_config(bad, env={"PD_KEY": "abc"})
    with pytest.raises(BridgeConfigError, match="kind must be one of"):
        bridge_config({"destinations": {"x": {"kind": "fax", "url": "https://a"}},
                       "routes": [{"to": ["x"]}]}, env={})


def test_token_bucket_paces_a_burst():
    now = [0.0]
    bucket = TokenBucket(rate_per_s=2.0, burst=2, clock=lambda: now[0])
    assert bucket.take() and bucket.take() and not bucket.take()
    assert bucket.wait_s() == pytest.approx(0.5)
    now[0] = 0.5
    assert bucket.wait_s() == 0 and bucket.take()
    now[0] = 100.0
    assert bucket.take() and bucket.take() and not bucket.take()  # never more than the burst
    with pytest.raises(ValueError):
        TokenBucket(0, 1)


def test_retry_backoff_grows_to_its_cap_with_jitter():
    cfg = bridge_config({"destinations": {"h": {"kind": "webhook", "url": "https://h"}},
                         "routes": [{"to": ["h"]}],
                         "retry": {"initial_ms": 100, "max_ms": 1000, "factor": 2.0,
                                   "jitter": 0.0}}, env={})
    assert [cfg.retry.delay_ms(a, 0.5) for a in (1, 2, 3, 4, 5, 9)] == \
        [100, 200, 400, 800, 1000, 1000]
