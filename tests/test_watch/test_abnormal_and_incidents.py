"""Abnormal-order checks (the pure functions the router can reuse), per-pattern aggregation, the
alert lifecycle (one trigger per incident, updates without re-paging, resolve) and thresholds."""

from __future__ import annotations

import copy

import orjson
import pytest

from operators.network import load_default
from operators.watch.abnormal import (
    ADDRESS,
    DUPLICATE,
    QUANTITY,
    FileHistory,
    Flag,
    QtyNorm,
    SeenOrder,
    address_problem,
    assess_order,
    fingerprint,
)
from operators.watch.facts import NetInfo
from operators.watch.incidents import apply, expire, metric_status
from operators.watch.patterns import AbnormalShard, DupCheck, PatternState, QtyCheck
from operators.watch.settings import SettingsError, load_settings, settings_from
from operators.watch.verdicts import Verdict
from schemas.validation import decode_and_validate

T0 = 1_795_556_252_000
NET = NetInfo(load_default())
S = settings_from({"abnormal": {"qty_min_history": 5, "qty_min": 20, "min_orders": 2,
                                "pattern_window_ms": 10_000}})
A = S.abnormal


def order(oid: str, *, channel: str = "web", customer: str = "c-1", qty: int = 1,
          dest: dict | None = None, ts: int = T0) -> dict:
    return {"type": "order.created", "order_id": oid, "occurred_at": ts, "channel": channel,
            "customer": {"id": customer}, "promised_by": ts + 86_400_000,
            "destination": dest or {"postal_code": "01310", "lat": -23.56, "lng": -46.65},
            "lines": [{"line_id": "1", "sku": "sku-1", "qty": qty},
                      {"line_id": "2", "sku": "sku-2", "qty": 1}]}


# ---------------------------------------------------------------------- pure checks


def test_same_customer_items_and_address_within_minutes_is_a_duplicate_across_channels():
    first, again = order("o-1", channel="web"), order("o-2", channel="marketplace", ts=T0 + 40_000)
    fp = fingerprint("c-1", first["lines"], first["destination"])
    assert fp == fingerprint("c-1", list(reversed(again["lines"])), again["destination"])
    seen = {fp: SeenOrder("o-1", "web", T0)}
    flags = assess_order(again, net=NET, sku_norms={}, customer_norm=None, seen=seen, cfg=A)
    assert [f.pattern for f in flags] == [DUPLICATE]
    assert "o-1" in flags[0].reason and "first on web, now on marketplace" in flags[0].reason
    late = order("o-3", ts=T0 + A.duplicate_window_ms + 1)
    assert assess_order(late, net=NET, sku_norms={}, customer_norm=None, seen=seen, cfg=A) == []
    other = order("o-4", customer="c-2", ts=T0 + 1000)
    assert assess_order(other, net=NET, sku_norms={}, customer_norm=None, seen=seen, cfg=A) == []


def test_quantity_far_outside_the_skus_or_customers_norm():
    norm = QtyNorm()
    for q in (1, 2, 1, 1, 2, 1):
        norm.update(q, T0)
    big = order("o-9", qty=500)
    flags = assess_order(big, net=NET, sku_norms={"sku-1": norm}, customer_norm=None, seen={},
                         cfg=A)
    assert [f.pattern for f in flags] == [QUANTITY] and "sku-1 x500" in flags[0].reason
    assert assess_order(order("o-8", qty=19), net=NET, sku_norms={"sku-1": norm},
                        customer_norm=None, seen={}, cfg=A) == []  # under qty_min
    customer = QtyNorm()
    for q in (3, 4, 2):
        customer.update(q, T0)
    flags = assess_order(order("o-7", qty=60), net=NET, sku_norms={}, customer_norm=customer,
                         seen={}, cfg=A)
    assert [f.pattern for f in flags] == [QUANTITY] and "largest line so far was x4" in \
        flags[0].reason


def test_undeliverable_and_inconsistent_addresses():
    assert address_problem({"postal_code": "01310", "lat": -23.56, "lng": -46.65}, NET, A) is None
    assert address_problem({"country": "BR"}, NET, A).startswith("undeliverable")
    why = address_problem({"postal_code": "01310", "region": "BA"}, NET, A)
    assert why.startswith("inconsistent: region BA") and "is in SP" in why
    why = address_problem({"postal_code": "01310", "lat": -3.1, "lng": -60.0}, NET, A)
    assert why.startswith("inconsistent: coordinates") and "km from postal code 01310" in why


def test_history_shard_flags_then_learns_and_forgets():
    shard = AbnormalShard()
    fp = "fp-1"
    assert shard.on_fact(DupCheck(T0, fp, "o-1", "web"), A) == []
    flags = shard.on_fact(DupCheck(T0 + 5000, fp, "o-2", "app"), A)
    assert flags and flags[0].pattern == DUPLICATE and flags[0].order_id == "o-2"
    assert shard.on_fact(DupCheck(T0 + 6000, fp, "o-2", "app"), A) == []  # the same order again
    for i in range(6):
        assert shard.on_fact(QtyCheck(T0, f"x-{i}", "sku", "sku-1", 1), A) == []
    assert shard.on_fact(QtyCheck(T0, "x-big", "sku", "sku-1", 400), A)[0].pattern == QUANTITY
    assert not shard.empty
    shard.on_timer(T0 + A.norm_ttl_ms + 10_000, A)
    assert shard.empty and shard.size() == 0


def test_a_burst_of_one_outlier_never_becomes_the_norm_in_any_history():
    """The watchtower's shard and the rules dry run's history, like the routers' (Redis):
    five lines of 80 after 30 of 1-3 are five outliers; ordinary lines still teach the norm."""
    shard, history = AbnormalShard(), FileHistory(NET, A)
    for i in range(A.qty_min_history):
        assert shard.on_fact(QtyCheck(T0, f"x-{i}", "sku", "sku-1", 1 + i % 3), A) == []
        assert history.assess(_line_order(f"x-{i}", 1 + i % 3)) == []
    for k in range(5):
        assert [f.pattern for f in shard.on_fact(
            QtyCheck(T0, f"big-{k}", "sku", "sku-1", 80), A)] == [QUANTITY], k
        assert [f.pattern for f in history.assess(_line_order(f"big-{k}", 80))] == [QUANTITY], k
    assert shard.norms[("sku", "sku-1")].n == A.qty_min_history
    assert history.skus["sku-1"].n == A.qty_min_history


def _line_order(order_id: str, qty: int) -> dict:
    return {"type": "order.created", "event_id": f"e-{order_id}", "order_id": order_id,
            "occurred_at": T0, "channel": "web", "customer": {"id": f"c-{order_id}"},
            "destination": {"lat": -23.55, "lng": -46.63, "postal_code": "01310"},
            "lines": [{"line_id": "1", "sku": "sku-1", "qty": qty}]}


def test_one_incident_per_pattern_opened_at_min_orders_and_resolved_after_a_quiet_window():
    st = PatternState(ADDRESS)
    assert st.add(Flag(ADDRESS, "o-1", T0, "undeliverable"), A) == []
    v = st.add(Flag(ADDRESS, "o-2", T0 + 100, "undeliverable"), A)
    assert v[0].active and v[0].affected_count == 2 and v[0].sample_ids == ("o-1", "o-2")
    assert v[0].dedup_key == "abnormal-orders/address"
    assert st.add(Flag(ADDRESS, "o-2", T0 + 200, "again"), A) == []  # counted once
    assert st.expire(T0 + 5000, A) == []
    v = st.expire(st.deadline(A), A)
    assert len(v) == 1 and not v[0].active and st.empty


# ---------------------------------------------------------------------- incidents


def verdict(active: bool, at: int, *, count: int = 0, severity: str = "error") -> Verdict:
    return Verdict("delivery-risk/correios|*|*|RJ", "delivery-risk", active, at, severity,
                   {"kind": "lane", "id": "correios|*|*|RJ"}, f"{count} orders at risk",
                   {"x": 1}, evidence_at=at, affected_count=count,
                   sample_ids=tuple(f"o-{i}" for i in range(min(count, 3))))


def test_one_trigger_per_incident_updates_do_not_repage_and_a_resolve_closes_it():
    s = settings_from({"incidents": {"update_min_interval_ms": 60_000, "update_change": 0.25,
                                     "resolve_hold_ms": 0}})
    inc, out = apply(None, verdict(False, T0), s, T0)
    assert inc is None and out == []  # nothing open, nothing to say
    inc, out = apply(None, verdict(True, T0, count=10), s, T0 + 5)
    assert [(a["status"], a["revision"]) for a in out] == [("trigger", 1)]
    first = out[0]
    assert first["alert_id"] == f"delivery-risk/correios|*|*|RJ:{T0}:r1"
    assert first["evidence_at"] == T0 and first["emitted_at"] == T0 + 5
    decode_and_validate("alert", orjson.dumps(first))
    inc, out = apply(inc, verdict(True, T0 + 1000, count=11), s, T0)
    assert out == []  # small change, too soon: no update
    inc, out = apply(inc, verdict(True, T0 + 61_000, count=11), s, T0)
    assert out == []  # no material change
    inc, out = apply(inc, verdict(True, T0 + 62_000, count=20), s, T0)
    assert [(a["status"], a["revision"], a["affected_order_count"]) for a in out] == \
        [("trigger", 2, 20)]
    assert metric_status(out[0]) == "update" and metric_status(first) == "trigger"
    inc, out = apply(inc, verdict(True, T0 + 63_000, count=20, severity="critical"), s, T0)
    assert [(a["revision"], a["severity"]) for a in out] == [(3, "critical")]  # escalation
    inc, out = apply(inc, verdict(False, T0 + 70_000), s, T0)
    assert inc is None and [(a["status"], a["revision"]) for a in out] == [("resolve", 4)]
    assert out[0]["first_seen"] == T0 and out[0]["last_seen"] == T0 + 70_000
    assert metric_status(out[0]) == "resolve"
    inc, out = apply(None, verdict(True, T0 + 80_000, count=1), s, T0)
    assert out[0]["revision"] == 1 and out[0]["first_seen"] == T0 + 80_000  # a new incident


def test_an_incident_nobody_talks_about_resolves_as_stale():
    s = settings_from({"incidents": {"stale_ms": 10_000}})
    inc, _ = apply(None, verdict(True, T0, count=1), s, T0)
    assert expire(inc, T0 + 9_999, s, T0) == (inc, [])
    inc, out = expire(inc, T0 + 10_000, s, T0)
    assert inc is None and out[0]["status"] == "resolve"
    assert out[0]["details"] == {"resolved_by": "stale"} and out[0]["entity"]["kind"] == "lane"
    decode_and_validate("alert", orjson.dumps(out[0]))


def test_alert_ids_are_stable_across_replays():
    s = settings_from({"incidents": {"resolve_hold_ms": 0}})
    runs = []
    for emitted in (T0, T0 + 999):
        inc, out = apply(None, verdict(True, T0, count=2), s, emitted)
        _, out2 = apply(inc, verdict(False, T0 + 5, count=0), s, emitted)
        runs.append([a["alert_id"] for a in out + out2])
    assert runs[0] == runs[1]


# ---------------------------------------------------------------------- thresholds


def test_thresholds_from_yaml_override_defaults_and_reject_typos(tmp_path):
    f = tmp_path / "watch.yaml"
    f.write_text("lateness_ms: 800\ndemand:\n  window_ms: 60000\n  surge_ratio: 2\n")
    s = load_settings(f)
    assert s.lateness_ms == 800 and s.demand.window_ms == 60_000 and s.demand.surge_ratio == 2.0
    assert s.stock == settings_from({}).stock  # untouched sections keep their defaults
    f.write_text("demand:\n  windw_ms: 1\n")
    with pytest.raises(SettingsError, match=r"unknown setting 'demand.windw_ms'"):
        load_settings(f)
    with pytest.raises(SettingsError, match=r"lane\.min_events must be int"):
        settings_from({"lane": {"min_events": "ten"}})
    with pytest.raises(SettingsError, match="must be >= 0"):
        settings_from({"stock": {"ttso_ms": -1}})
    j = tmp_path / "watch.json"
    j.write_bytes(orjson.dumps({"quality": {"max_rate": 0.05}}))
    assert load_settings(j).quality.max_rate == 0.05
    assert copy.deepcopy(load_settings(None)) == settings_from(None)


def test_a_condition_that_clears_and_returns_within_the_hold_stays_one_incident():
    s = settings_from({"incidents": {"resolve_hold_ms": 5_000, "update_min_interval_ms": 0}})
    inc, out = apply(None, verdict(True, T0, count=3), s, T0)
    assert [a["revision"] for a in out] == [1]
    inc, out = apply(inc, verdict(False, T0 + 1000), s, T0)
    assert out == [] and inc is not None  # clear, but held
    inc, out = apply(inc, verdict(True, T0 + 2000, count=3), s, T0)
    assert out == [] and inc.clear is None  # back within the hold: same incident, no page
    inc, out = apply(inc, verdict(False, T0 + 3000), s, T0)
    assert expire(inc, T0 + 7_999, s, T0) == (inc, [])
    inc, out = expire(inc, T0 + 8_000, s, T0)
    assert inc is None and [(a["status"], a["revision"]) for a in out] == [("resolve", 2)]
    assert out[0]["last_seen"] == T0 + 3000  # when it was seen to clear
