"""The alert bridge end to end: real broker, real Redis, a real local HTTP server as receivers.

Routing by severity and type, every format and signature as the receiver sees it, retries while
a receiver is down (without holding back the others), and a restart after kill -9 that loses
nothing: every alert arrives, and only the one in flight per destination may arrive twice
(PagerDuty's dedup_key makes that repeat harmless).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from fulfil.alerts.bridge import Bridge
from fulfil.alerts.config import bridge_config
from operators.watch.incidents import apply
from operators.watch.settings import settings_from
from operators.watch.verdicts import Verdict
from tests.test_watch.helpers import create_topics, make_config, publish, wait_for
from tests.test_watch.receiver import Receiver

ROOT = Path(__file__).resolve().parents[2]
T0 = int(time.time() * 1000)
FAST_RETRY = {"initial_ms": 50, "max_ms": 300, "factor": 2.0, "jitter": 0.1}
S = settings_from({"runbook_base_url": "https://runbooks.example/fulfil/alerts.md",
                   "incidents": {"resolve_hold_ms": 0}})


def alerts_for(n: int, *, severity: str = "critical", type_: str = "lane-disruption",
               resolve_every: int = 0) -> list[dict[str, Any]]:
    """n incidents as the watchtower writes them (trigger, and a resolve every k-th)."""
    out = []
    for i in range(n):
        v = Verdict(f"{type_}/k{i}", type_, True, T0 + i, severity,
                    {"kind": "lane", "id": f"k{i}"}, f"incident {i}", {"i": i},
                    evidence_at=T0 + i, affected_count=i, sample_ids=(f"o-{i}",))
        inc, opened = apply(None, v, S, T0 + i)
        out += opened
        if resolve_every and i % resolve_every == 0:
            _, closed = apply(inc, Verdict(v.dedup_key, type_, False, T0 + i + 1), S, T0 + i)
            out += closed
    return out


@pytest.fixture
def cfg(bootstrap, redis_url, topic_prefix):
    c = make_config(bootstrap, topic_prefix, redis_url=redis_url)
    create_topics(c)
    return c


class BridgeThread:
    def __init__(self, cfg: Any, routes: Any, name: str = "t") -> None:
        self.bridge = Bridge(routes, cfg.kafka_common(), cfg.topic("alerts"),
                             redis.Redis.from_url(cfg.redis_url), "fx", name=name)
        self._t = threading.Thread(target=self.bridge.run, daemon=True)

    def __enter__(self) -> BridgeThread:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bridge.stop.set()
        self._t.join(30)
        assert not self._t.is_alive()
        assert all(w.error is None for w in self.bridge.workers)


def ids_of(requests: list[Any], kind: str) -> list[str]:
    if kind == "pd":
        return [r.json()["payload"]["custom_details"]["alert_id"] if "payload" in r.json()
                else f"resolve:{r.json()['dedup_key']}" for r in requests]
    return [r.headers["X-Fulfil-Alert-Id"] for r in requests]


def test_each_alert_reaches_its_routes_in_each_services_format(cfg, shared_dir):
    critical = alerts_for(2, resolve_every=1)  # two incidents, each triggered and resolved
    stock = alerts_for(1, severity="warning", type_="stock-out-ahead")
    publish(cfg, "alerts", critical + stock)
    with Receiver() as rx:
        routes = bridge_config({
            "destinations": {
                "pd": {"kind": "pagerduty", "url": rx.url("pd"), "routing_key": "RK"},
                "slack": {"kind": "slack", "url": rx.url("slack"), "rate_per_s": 50},
                "feishu": {"kind": "feishu", "url": rx.url("feishu"), "secret": "fs"},
                "dingtalk": {"kind": "dingtalk", "url": rx.url("dingtalk", "?access_token=T"),
                             "secret": "ds", "rate_per_s": 50},
                "wecom": {"kind": "wecom", "url": rx.url("wecom"), "rate_per_s": 50},
                "hook": {"kind": "webhook", "url": rx.url("hook"), "secret": "hs"}},
            "routes": [{"match": {"severity": ["critical", "error"]}, "to": ["pd"]},
                       {"match": {"type": ["stock-out-ahead"]}, "to": ["feishu"]},
                       {"to": ["slack", "dingtalk", "wecom", "hook"]}],
            "retry": FAST_RETRY}, env={})
        with BridgeThread(cfg, routes):
            wait_for(lambda: len(rx.accepted("pd")) == 4 and len(rx.accepted("hook")) == 5
                     and len(rx.accepted("dingtalk")) == 5 and len(rx.accepted("wecom")) == 5
                     and len(rx.accepted("slack")) == 5 and len(rx.accepted("feishu")) == 1,
                     what="every routed alert delivered")
        # PagerDuty: critical only, trigger then resolve on the same dedup_key
        pd = [r.json() for r in rx.accepted("pd")]
        actions: dict[str, list[str]] = {}
        for body in pd:
            actions.setdefault(body["dedup_key"], []).append(body["event_action"])
        assert actions == {"lane-disruption/k0": ["trigger", "resolve"],
                           "lane-disruption/k1": ["trigger", "resolve"]}
        assert all(b["routing_key"] == "RK" for b in pd)
        sample = orjson.loads((shared_dir / "payloads" / "pagerduty_events_v2_trigger.json")
                              .read_bytes())
        trigger = next(b for b in pd if b["event_action"] == "trigger")
        assert set(trigger) <= set(sample) and set(trigger["payload"]) <= set(sample["payload"])
        # Feishu: only the stock alert; its signature checks out as Feishu checks it
        fs = rx.accepted("feishu")[0].json()
        key = f"{fs['timestamp']}\nfs".encode()
        assert fs["sign"] == base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
        assert abs(int(fs["timestamp"]) - time.time()) < 3600 and fs["msg_type"] == "post"
        # DingTalk: signed in the query string, as its server verifies it
        for req in rx.accepted("dingtalk"):
            ts, sign = req.query["timestamp"][0], req.query["sign"][0]
            expected = hmac.new(b"ds", f"{ts}\nds".encode(), hashlib.sha256).digest()
            # parse_qs url-decodes once: an unencoded '+' in the base64 would arrive as ' '
            assert sign == base64.b64encode(expected).decode()
            assert req.query["access_token"] == ["T"] and req.json()["msgtype"] == "text"
        # generic webhook: the alert record itself, signed over timestamp and body
        for req in rx.accepted("hook"):
            ts = req.headers["X-Fulfil-Timestamp"]
            mac = hmac.new(b"hs", f"{ts}.".encode() + req.body, hashlib.sha256).hexdigest()
            assert req.headers["X-Fulfil-Signature"] == f"sha256={mac}"
        assert sorted(ids_of(rx.accepted("hook"), "hook")) == \
            sorted(a["alert_id"] for a in critical + stock)
        assert all(r.json()["msgtype"] == "markdown" for r in rx.accepted("wecom"))
        assert all(r.json()["blocks"] for r in rx.accepted("slack"))


def test_a_receiver_that_fails_and_recovers_gets_everything_and_holds_back_no_one(cfg):
    alerts = alerts_for(12)
    publish(cfg, "alerts", alerts)
    with Receiver() as rx:
        rx.set("hook", down=True)
        routes = bridge_config({
            "destinations": {"pd": {"kind": "pagerduty", "url": rx.url("pd"),
                                    "routing_key": "RK"},
                             "hook": {"kind": "webhook", "url": rx.url("hook")}},
            "routes": [{"to": ["pd", "hook"]}], "retry": FAST_RETRY}, env={})
        with BridgeThread(cfg, routes):
            # while the webhook is down, PagerDuty still gets every alert
            wait_for(lambda: len(rx.accepted("pd")) == 12, what="pd delivered while hook down")
            wait_for(lambda: len(rx.failed("hook")) >= 3, what="hook retried")
            assert rx.accepted("hook") == []
            rx.set("hook", down=False)  # the receiver recovers
            wait_for(lambda: len(rx.accepted("hook")) == 12, what="hook caught up")
        delivered = ids_of(rx.accepted("hook"), "hook")
    assert sorted(delivered) == sorted(a["alert_id"] for a in alerts)  # nothing lost ...
    assert len(set(delivered)) == len(delivered)  # ... and nothing accepted twice
    assert sorted(ids_of(rx.accepted("pd"), "pd")) == sorted(a["alert_id"] for a in alerts)
    # the position of each destination is committed only after delivery: both at the end
    stored = redis.Redis.from_url(cfg.redis_url).hgetall("fx:alert-bridge:t:hook")
    assert sum(int(v) for v in stored.values()) == 12


def test_restart_after_kill_loses_nothing_and_repeats_at_most_the_alert_in_flight(
        cfg, tmp_path):
    alerts = alerts_for(30)
    publish(cfg, "alerts", alerts)
    with Receiver() as rx:
        rx.set("hook", delay_s=0.03)
        rx.set("pd", delay_s=0.03)
        routes = tmp_path / "routes.yaml"
        routes.write_text(
            "destinations:\n"
            f"  pd: {{kind: pagerduty, url: '{rx.url('pd')}', routing_key: '${{PD_KEY}}',"
            " rate_per_s: 500, burst: 50}\n"
            f"  hook: {{kind: webhook, url: '{rx.url('hook')}', rate_per_s: 500, burst: 50}}\n"
            "routes:\n  - to: [pd, hook]\n"
            "retry: {initial_ms: 50, max_ms: 300}\n")
        argv = [sys.executable, "-m", "fulfil.cli", "alerts", "bridge", "--config", str(routes),
                "--kafka", cfg.kafka_bootstrap, "--redis", cfg.redis_url, "--topic-prefix",
                cfg.topic_prefix, "--name", "restart"]
        env = {**os.environ, "PD_KEY": "RK", "FULFIL_REDIS_PREFIX": "fx"}
        first = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda: len(rx.accepted("hook")) >= 8 and len(rx.accepted("pd")) >= 8,
                     what="some alerts delivered before the kill")
            first.send_signal(signal.SIGKILL)  # no clean shutdown: a crash
            first.wait(10)
            delivered_before = len(rx.accepted("hook"))
            assert delivered_before < 30, "the kill came too late to test anything"
            second = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL)
            try:
                want = {a["alert_id"] for a in alerts}
                wait_for(lambda: set(ids_of(rx.accepted("hook"), "hook")) == want
                         and set(ids_of(rx.accepted("pd"), "pd")) == want,
                         what="every alert delivered after the restart")
            finally:
                second.send_signal(signal.SIGTERM)
                assert second.wait(20) == 0
        finally:
            if first.poll() is None:
                first.kill()
        for kind in ("hook", "pd"):
            got = ids_of(rx.accepted(kind), kind)
            assert set(got) == {a["alert_id"] for a in alerts}
            assert len(got) - len(set(got)) <= 1  # at most the one in flight at the kill
        pd_keys = [r.json()["dedup_key"] for r in rx.accepted("pd")]
        assert set(pd_keys) == {a["dedup_key"] for a in alerts}  # a repeat is the same incident
