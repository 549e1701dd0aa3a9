"""Abnormal-order flags on the first decision (dataflows/router_flags.py), and holds by rule.

Most tests drive `Router.route` on a real Redis (no Kafka), as tests/test_dataflows/
test_router_rules.py does; the last runs the routing flow on the real broker: a duplicate across
channels is held by a rule and reaches `fulfil.approvals`, while a replay of the first order
carries no flag.
"""

from __future__ import annotations

import random
import time
from itertools import count
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from dataflows.connectors import RawMessage, list_partitions
from dataflows.router import Router
from fulfil import cli
from fulfil.config import Config, ConfigError, load_config
from operators.network import haversine_km, load_default
from operators.rules import compile_rules, empty_ruleset
from operators.watch.abnormal import OrderKeys, address_problem
from operators.watch.facts import NetInfo
from operators.watch.settings import AbnormalSettings
from state.ledger import InventoryUpdate, Ledger
from state.order_marks import MarkRequest
from state.redis_client import connect
from tests.test_dataflows.helpers import (
    FlowThread,
    order,
    publish,
    read_outputs,
    stock,
    wait_until,
)

NET = load_default()
SP_NODES = [n.id for n in NET.nodes if n.region == "SP"]
HOLD_DUPLICATES = """
version: flags
rules:
  - id: duplicate-review
    when: {order.flags: {any_in: [duplicate]}}
    then: {hold: {group: fraud-review, reason: likely duplicate}}
"""
_offsets = count()


def raw(event: dict) -> RawMessage:
    now = int(time.time() * 1000)
    return RawMessage("fulfil.orders", 0, next(_offsets), event["order_id"].encode(),
                      orjson.dumps(event), now, now)


def make_router(redis_url: str, rules: str | None = None, **abnormal: object) -> Router:
    client = connect(redis_url)
    Ledger(client).apply_inventory([InventoryUpdate(n, sku, 1, "snapshot", 500)
                                    for n in SP_NODES for sku in ("sku-a", "sku-b", "sku-q")])
    ruleset = compile_rules(rules, NET) if rules else empty_ruleset()
    return Router(Config(redis_url=redis_url, abnormal=abnormal), NET, client, lambda: ruleset)


def decisions(router: Router, *events: dict) -> dict[str, dict]:
    out = router.route([raw(e) for e in events])
    return {d["order_id"]: d for d in (orjson.loads(m.value) for _, m in out
                                       if m.topic.endswith("decisions"))}


def twin(order_id: str, customer: str, **kw: object) -> dict:
    """The same customer, items and address each time (only ids and channel differ)."""
    return order(order_id, [("sku-a", 1), ("sku-b", 2)], customer={"id": customer}, **kw)


def server_ms(client: Any) -> int:
    sec, usec = client.time()
    return sec * 1000 + usec // 1000


def patterns(decision: dict) -> list[str]:
    return [f["pattern"] for f in decision.get("flags", ())]


def test_a_duplicate_across_channels_is_flagged_on_its_first_decision(redis_url: str) -> None:
    router = make_router(redis_url)
    first = decisions(router, twin("o-1", "c-1"))["o-1"]
    second = decisions(router, twin("o-2", "c-1", channel="marketplace"))["o-2"]
    assert "flags" not in first and first["status"] == "routed"
    assert second["status"] == "routed" and patterns(second) == ["duplicate"]
    reason = second["flags"][0]["reason"]
    assert "o-1" in reason and "first on web, now on marketplace" in reason
    again = decisions(router, twin("o-1", "c-1"))["o-1"]  # replay: re-emitted, unflagged
    assert again == first
    other = decisions(router, twin("o-3", "c-2"))["o-3"]  # another customer: no duplicate
    assert "flags" not in other


def test_a_rule_holds_flagged_orders_and_later_versions_keep_the_flags(redis_url: str) -> None:
    router = make_router(redis_url, HOLD_DUPLICATES)
    decisions(router, twin("o-1", "c-1"))
    out = router.route([raw(twin("o-2", "c-1", channel="app"))])
    held = {m.topic.rsplit(".", 1)[-1]: orjson.loads(m.value) for _, m in out}
    assert held["decisions"]["status"] == "held" and patterns(held["decisions"]) == ["duplicate"]
    assert held["approvals"]["group"] == "fraud-review"
    approve = {"type": "order.approved", "event_id": "ok-o-2", "order_id": "o-2",
               "occurred_at": int(time.time() * 1000), "by": "ana"}
    routed = decisions(router, approve)["o-2"]
    assert (routed["status"], routed["version"]) == ("routed", 2)
    assert routed["flags"] == held["decisions"]["flags"]  # carried, not judged again


def test_quantity_far_above_the_skus_norm_is_flagged_after_history(redis_url: str) -> None:
    router = make_router(redis_url, qty_min_history=10, qty_min=20, norm_flush_ms=0)
    big = order("o-big0", [("sku-b", 100)], customer={"id": "c-big0"})
    assert "flags" not in decisions(router, big)["o-big0"]  # no norm yet: nothing to compare
    usual = [order(f"o-n{i}", [("sku-q", 1 + i % 2)], customer={"id": f"c-n{i}"})
             for i in range(12)]
    assert not any("flags" in d for d in decisions(router, *usual).values())
    flagged = decisions(router, order("o-big", [("sku-q", 100)], customer={"id": "c-big"}))
    assert patterns(flagged["o-big"]) == ["quantity"]
    assert "sku-q x100" in flagged["o-big"]["flags"][0]["reason"]


def test_a_burst_of_one_outlier_is_flagged_every_time_not_learned_as_the_norm(
    redis_url: str
) -> None:
    # 30 ordinary lines of 1-3, then the same line of 80 units five times, each in its own
    # batch: judged against a norm the burst itself never joins (before, the 3rd passed)
    router = make_router(redis_url, qty_min_history=30, qty_min=20, norm_flush_ms=0)
    usual = [order(f"o-n{i}", [("sku-q", 1 + i % 3)], customer={"id": f"c-n{i}"})
             for i in range(30)]
    assert not any("flags" in d for d in decisions(router, *usual).values())
    for k in range(5):
        got = decisions(router, order(f"o-big{k}", [("sku-q", 80)], customer={"id": f"c-b{k}"}))
        assert patterns(got[f"o-big{k}"]) == ["quantity"], k
    # ordinary lines still teach the norm: a large but ordinary-sized line later is no outlier
    later = [order(f"o-m{i}", [("sku-q", 20 + i % 5)], customer={"id": f"c-m{i}"})
             for i in range(40)]
    decisions(router, *later)
    calm = decisions(router, order("o-25", [("sku-q", 25)], customer={"id": "c-25"}))
    assert "flags" not in calm["o-25"]


def test_a_line_far_above_the_customers_largest_is_flagged(redis_url: str) -> None:
    router = make_router(redis_url, qty_min=20, customer_min_orders=3)
    usual = [order(f"o-u{i}", [line], customer={"id": "c-u"})  # not twins: no duplicate
             for i, line in enumerate([("sku-a", 1), ("sku-a", 2), ("sku-b", 2)])]
    assert not any("flags" in d for d in decisions(router, *usual).values())
    big = decisions(router, order("o-u-big", [("sku-b", 40)], customer={"id": "c-u"}))
    assert patterns(big["o-u-big"]) == ["quantity"]
    assert "largest line so far was x2" in big["o-u-big"]["flags"][0]["reason"]
    other = decisions(router, order("o-v-big", [("sku-b", 40)], customer={"id": "c-v"}))
    assert "flags" not in other["o-v-big"]  # a new customer: no norm to compare with


def test_an_inconsistent_address_is_flagged_and_still_routed(redis_url: str) -> None:
    router = make_router(redis_url)
    odd = order("o-odd", [("sku-a", 1)])
    odd["destination"]["region"] = "AM"  # postal code 01310 is in SP
    d = decisions(router, odd)["o-odd"]
    assert patterns(d) == ["address"] and d["status"] == "routed"
    assert "inconsistent" in d["flags"][0]["reason"]


def test_the_address_distance_shortcut_flags_exactly_what_the_haversine_does() -> None:
    """The check skips the trigonometry when a cheap upper bound is under the limit; the
    flags must be those of the full great-circle distance, near the limit too."""
    net, cfg = NetInfo(NET), AbnormalSettings()
    lat0, lng0, _ = net.postal_place("01310")
    rnd = random.Random(7)
    flagged = 0
    for _ in range(3000):
        lat = lat0 + rnd.uniform(-2.0, 2.0)
        lng = lng0 + rnd.uniform(-2.0, 2.0)
        why = address_problem({"postal_code": "01310", "lat": lat, "lng": lng}, net, cfg)
        assert (why is not None) == (haversine_km(lat, lng, lat0, lng0) > cfg.address_max_km)
        flagged += why is not None
    assert 0 < flagged < 3000  # both sides of the limit were tried


def test_an_orders_keys_fill_the_marks_request_field_for_field() -> None:
    assert MarkRequest._fields[3:] == OrderKeys._fields  # the flagger passes them by position


def test_the_duplicate_window_bounds_the_state(redis_url: str) -> None:
    router = make_router(redis_url, duplicate_window_ms=300)
    client = router.ledger._client
    decisions(router, twin("o-1", "c-1"))
    (key,) = client.keys("fulfil:{am:*}:cu:c-1")  # the customer's norm and fingerprints
    expiry = int(client.get(key).split(b"\x1e")[1].split(b"\x1f")[1])
    assert 0 < expiry - server_ms(client) <= 300
    wait_until(lambda: server_ms(client) > expiry, timeout=10)
    assert "flags" not in decisions(router, twin("o-2", "c-1"))["o-2"]  # outside the window
    assert b"o-1" not in client.get(key)  # and o-1's fingerprint is gone


def test_switched_off_nothing_is_flagged_or_stored(redis_url: str) -> None:
    router = make_router(redis_url, enabled=False)
    decisions(router, twin("o-1", "c-1"))
    assert "flags" not in decisions(router, twin("o-2", "c-1"))["o-2"]
    assert router.ledger._client.keys("fulfil:{am:*}") == []


def test_the_config_section_is_checked_at_the_edge(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_bytes(orjson.dumps({"abnormal": {"enabled": False, "qty_min": 50}}))
    assert load_config(path, env={}).abnormal == {"enabled": False, "qty_min": 50}
    path.write_bytes(orjson.dumps({"abnormal": {"duplicate_windw_ms": 5}}))
    with pytest.raises(ConfigError, match="duplicate_windw_ms"):
        load_config(path, env={})


# ---------------------------------------------------------------------------- the flow


def read_approvals(cfg: Config, until: int, timeout: float = 30.0) -> list[dict]:
    consumer = Consumer({"bootstrap.servers": cfg.kafka_bootstrap, "group.id": "t",
                         "enable.auto.commit": "false"})
    topic = cfg.topic("approvals")
    consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING)
                     for t, p in list_partitions(cfg.kafka_common(), [topic])])
    got: list[dict] = []
    deadline = time.monotonic() + timeout
    try:
        while len(got) < until and time.monotonic() < deadline:
            got += [orjson.loads(m.value()) for m in consumer.consume(100, 0.2) if not m.error()]
    finally:
        consumer.close()
    return got


def test_flow_holds_a_cross_channel_duplicate_and_not_a_replay(cfg: Config, tmp_path: Path
                                                                ) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(HOLD_DUPLICATES)
    with pytest.raises(SystemExit) as done:
        cli.main(["rules", "publish", str(rules), "--kafka", cfg.kafka_bootstrap,
                  "--topic-prefix", cfg.topic_prefix, "--by", "test"])
    assert done.value.code == 0
    publish(cfg, "inventory", [stock(n, s, 50) for n in SP_NODES[:2] for s in ("sku-a", "sku-b")])
    first = twin("o-web", "c-9")
    with FlowThread(cfg):
        ledger = Ledger(connect(cfg.redis_url), cfg.redis_prefix)
        wait_until(lambda: ledger.stock(SP_NODES[1], "sku-b")[0] == 50)
        publish(cfg, "orders", [first])
        read_outputs(cfg, lambda o: o.for_order("o-web"))
        publish(cfg, "orders", [twin("o-mkt", "c-9", channel="marketplace"), first])
        out = read_outputs(cfg, lambda o: o.for_order("o-mkt") and len(o.for_order("o-web")) >= 2)
    web, mkt = out.for_order("o-web"), out.for_order("o-mkt")
    assert [d["status"] for d in web] == ["routed", "routed"] and web[0] == web[1]
    assert not any("flags" in d for d in web)  # the replay is not its own duplicate
    assert [d["status"] for d in mkt] == ["held"] and patterns(mkt[0]) == ["duplicate"]
    assert mkt[0]["hold"]["rule"] == "duplicate-review"
    approvals = read_approvals(cfg, 1)
    assert [(a["order_id"], a["group"]) for a in approvals] == [("o-mkt", "fraud-review")]
