"""Business rules: compile errors name the line, and evaluation follows the documented
precedence (restrictions intersect, choices come from the highest-precedence rule)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fulfil.config import Config
from operators.candidates import LaneArrays
from operators.network import load_default
from operators.orders import order_from_created
from operators.planner import Planner, Unroutable
from operators.rules import FileError, compile_rules, order_facts

NET = load_default()
EXAMPLE = Path(__file__).resolve().parents[2] / "fulfil" / "data" / "rules" / "example.yaml"
T0 = 1795556252000  # 2026-11-24T21:37:32Z = 18:37 in Sao Paulo


def order(**over):
    ev = {"type": "order.created", "event_id": "e-1", "order_id": "o-1", "occurred_at": T0,
          "channel": "web", "customer": {"id": "c-1", "tier": "standard"}, "priority": 0,
          "promised_by": T0 + 5 * 86_400_000,
          "destination": {"postal_code": "01310", "region": "SP", "country": "BR"},
          "lines": [{"line_id": "1", "sku": "sku-a", "qty": 1}],
          "value": {"amount": 100.0, "currency": "BRL"}}
    ev.update(over)
    return order_from_created(ev)


def outcome(rules_text: str, o=None, region: str = "SP"):
    rs = compile_rules(rules_text, NET)
    o = o or order()
    return rs.evaluate(order_facts(o, region, rs), o.event_time)


def svc_names(mask) -> set[str]:
    return {s.id for s, ok in zip(NET.services, mask, strict=True) if ok}


def test_the_shipped_example_compiles_against_the_shipped_network() -> None:
    rs = compile_rules(EXAMPLE.read_text(), NET, str(EXAMPLE))
    assert rs.version.startswith("example-1@") and len(rs.rules) == 6
    assert [r.id for r in rs.rules][:3] == ["high-value-review", "risky-orders", "vip-express"]


def test_every_problem_is_reported_with_its_line() -> None:
    text = (
        "rules:\n"
        "  - id: a\n"
        "    when: {channel: {gte: 3}}\n"
        "    then: {restrict: {nodes: [N99]}, service_level: turbo}\n"
        "  - id: b\n"
        "    when: {colour: red}\n"
        "    then: {priority: 12}\n"
    )
    with pytest.raises(FileError) as err:
        compile_rules(text, NET, "bad.yaml")
    got = [(p.line, p.message.split(";")[0]) for p in err.value.problems]
    assert got == [
        (3, "channel is a text field: operator 'gte' does not apply"),
        (4, "restrict.nodes: unknown node(s) ['N99']"),
        (4, "service_level must be one of ['express', 'standard']"),
        (6, "unknown field 'colour'"),
        (7, "priority must be an integer 0..9"),
    ]
    assert "bad.yaml" in str(err.value)


def test_yaml_syntax_errors_name_the_line() -> None:
    with pytest.raises(FileError, match="line 3: not valid YAML"):
        compile_rules("rules:\n  - id: a\n    when: {channel: [web\n", NET)


def test_no_rule_matches_gives_the_empty_outcome() -> None:
    out = outcome("rules:\n  - {id: a, when: {channel: app}, then: {priority: 3}}\n")
    assert out.hit == () and out.hold is None and not out.restricts


def test_choices_come_from_the_highest_precedence_rule_and_tags_accumulate() -> None:
    text = """
rules:
  - {id: low, when: {channel: web}, then: {priority: 1, service_level: standard, tags: [a]}}
  - {id: high, precedence: 10, when: {order.value: {gte: 50}},
     then: {priority: 7, service_level: express, tags: [b]}}
"""
    out = outcome(text)
    assert out.hit == ("high", "low") and out.priority == 7 and out.tags == ("b", "a")
    assert svc_names(out.svc_ok) == {"correios/sedex", "jadlog/expresso", "loggi/express"}


def test_restrictions_intersect_and_the_smallest_split_limit_wins() -> None:
    text = """
rules:
  - {id: r1, when: {channel: web}, then: {restrict: {carriers: [correios, loggi]}, max_splits: 1}}
  - {id: r2, when: {lines.count: 1}, then: {restrict: {services: [pac, loggi/express]},
     forbid_splits: true}}
"""
    out = outcome(text)
    assert svc_names(out.svc_ok) == {"correios/pac", "loggi/express"}
    assert out.max_splits == 0 and out.restricts


def test_stop_ends_the_evaluation_and_effective_windows_use_event_time() -> None:
    text = """
rules:
  - {id: first, precedence: 5, stop: true, when: {channel: web}, then: {tags: [x]}}
  - {id: second, when: {channel: web}, then: {tags: [y]}}
  - {id: later, precedence: 9, effective: {from: 2027-01-01}, when: {channel: web},
     then: {tags: [z]}}
"""
    assert outcome(text).hit == ("first",)
    assert outcome(text, order(occurred_at=T0 + 400 * 86_400_000)).hit == ("later", "first")


def test_conditions_over_sets_time_and_missing_values() -> None:
    o = order(lines=[
        {"line_id": "1", "sku": "a", "qty": 3, "category": "toys", "tags": ["fragile"]},
        {"line_id": "2", "sku": "b", "qty": 30},
    ], risk=0.9)
    text = """
timezone: America/Sao_Paulo
rules:
  - {id: fragile, when: {sku.tags: {any_in: [fragile]}}, then: {tags: [f]}}
  - {id: toys-only, when: {sku.category: {all_in: [toys]}}, then: {tags: [t]}}
  - {id: afternoon, when: {time.hour: {between: [18, 19]}}, then: {tags: [h]}}
  - {id: bulky, when: {lines.max_qty: {gte: 30}, lines.units: 33}, then: {tags: [b]}}
  - {id: risky, when: {order.risk: {gt: 0.8}}, then: {tags: [r]}}
  - {id: no-customer, when: {customer.id: {exists: false}}, then: {tags: [n]}}
  - {id: not-sp, when: {not: {destination.region: SP}}, then: {tags: [s]}}
"""
    out = outcome(text, o)
    # The order has a customer id and ships to SP.
    assert out.hit == ("fragile", "toys-only", "afternoon", "bulky", "risky")
    assert outcome(text, o, region="RJ").hit[-1] == "not-sp"


def test_planner_honours_restrictions_and_reports_rules_as_the_reason() -> None:
    planner = Planner(NET, Config())
    rs = compile_rules("rules:\n  - {id: only-n01, when: {channel: web}, "
                       "then: {restrict: {nodes: [N01]}}}\n", NET)
    o = order()
    out = rs.evaluate(order_facts(o, "SP", rs), o.event_time)
    prep = planner.prepare([o, o], [out, rs.evaluate({}, o.event_time)])
    n = len(NET.nodes)
    atp = np.zeros((n, len(prep.skus)), dtype=np.int64)
    atp[1:, :] = 5  # every node but N01 holds the sku
    lanes = LaneArrays.healthy(len(NET.regions), len(NET.services))
    restricted, free = planner.plan(prep, atp, np.zeros(n, dtype=np.int64), lanes, T0)
    assert restricted == Unroutable("restricted-by-rules")
    assert not isinstance(free, Unroutable) and free.shipments[0].node != 0


@settings(max_examples=400, deadline=None)
@given(st.integers(0, 2_100_000_000_000),
       st.sampled_from(["America/Sao_Paulo", "Asia/Kolkata", "Australia/Adelaide",
                        "Pacific/Chatham", "Australia/Lord_Howe", "America/New_York"]))
def test_local_hour_and_weekday_match_zoneinfo(event_ms: int, zone: str) -> None:
    """The cached offset arithmetic agrees with a full conversion, DST switches included."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    rs = compile_rules(f"timezone: {zone}\nrules:\n  - {{id: a, when: {{channel: web}}, "
                       "then: {tags: [x]}}\n", NET)
    o = order(occurred_at=event_ms)
    facts = {"time.hour", "time.weekday"}
    got = order_facts(o, "SP", RuleSetWith(rs, facts))
    local = datetime.fromtimestamp(event_ms / 1000, ZoneInfo(zone))
    assert (got["time.hour"], got["time.weekday"]) == (
        local.hour, ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[local.weekday()])


def RuleSetWith(rs, fields):
    from dataclasses import replace

    return replace(rs, fields=frozenset(fields))
