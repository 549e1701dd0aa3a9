"""Every construct of the mapping language, one behaviour per test, on small payloads."""

from __future__ import annotations

import re
import textwrap

import pytest

from operators.channels import compile_mapping
from operators.channels.paths import compile_path
from schemas.errors import ValidationError

HEAD = """\
fulfil_mapping: 1
channel: test
tables:
  statuses: {paid: paid, pending: awaiting-payment}
  tiers: {vip: vip, gold: gold}
  days: {express: 2, standard: 6}
fields:
"""
#: The base rules (a valid order); a test's own rules replace those of the same name.
BASE_FIELDS = {
    "order_id": "{path: id, as: string}",
    "event_id": '{compute: concat, args: [{ref: order_id}, ":c"]}',
    "occurred_at": "{path: at, time: iso8601}",
    "promised_by": "{compute: add_days, args: [{ref: occurred_at}, 3]}",
    "destination": "{postal_code: {path: zip}}",
    "lines": """
  each: items
  fields:
    line_id: {path: "@index", as: string}
    sku: {path: sku}
    qty: {path: q, as: integer}""",
}
BASE = {"id": 7, "at": "2024-05-01T10:00:00-03:00", "zip": "01310",
        "items": [{"sku": "a", "q": 1}]}
AT_MS = 1_714_568_400_000  # 2024-05-01T13:00:00Z


def mapping(extra: str = ""):
    """The base mapping with a test's rules (YAML, top-level fields) merged over it."""
    chunks = re.split(r"^(?=[a-z_]+:)", textwrap.dedent(extra).strip("\n") + "\n", flags=re.M)
    own = {c.split(":", 1)[0]: c for c in chunks if c.strip()}
    fields = {k: own.pop(k, f"{k}: {v}\n") for k, v in BASE_FIELDS.items()}  # in place
    body = "".join(fields.values()) + "".join(own.values())
    return compile_mapping(HEAD + textwrap.indent(body, "  "), "t.yaml")


def run(extra: str, **payload):
    return mapping(extra).apply({**BASE, **payload})


def test_base_mapping_builds_a_valid_order():
    event = run("")
    assert event == {"type": "order.created", "channel": "test", "order_id": "7",
                     "event_id": "7:c", "occurred_at": AT_MS, "promised_by": AT_MS + 3 * 86_400_000,
                     "destination": {"postal_code": "01310"},
                     "lines": [{"line_id": "0", "sku": "a", "qty": 1}],
                     "customer": {"tier": "standard"}, "priority": 0}


@pytest.mark.parametrize(("path", "expected"), [
    ("a.b[1]", 6), ("a.b[-1]", 6), ("a.b[5]", "MISSING"), ("a.x", "MISSING"),
    ("list[*].v", [1, 2]), ("list[k=two].v", 2), ('list[k="one"].v', 1), ('a["d.e"]', "dots"),
    ("a.n", "MISSING"), ("a.b.c", "MISSING"),
])
def test_paths(path, expected):
    doc = {"a": {"b": [5, 6], "d.e": "dots", "n": None},
           "list": [{"k": "one", "v": 1}, {"k": "two", "v": 2}]}
    got = compile_path(path).get(doc)
    assert (repr(got) if expected == "MISSING" else got) == expected


def test_root_path_and_index_inside_each():
    event = run("""
    tags:
      each: items
      item: {compute: format, template: "{0}#{1}@{2}", args: [{path: sku}, {path: "@index"},
              {path: $.zip}]}
    """, items=[{"sku": "a", "q": 1}, {"sku": "b", "q": 2}])
    assert event["tags"] == ["a#0@01310", "b#1@01310"]


def test_defaults_missing_if_and_null_is_missing():
    event = run("""
    customer:
      id: {path: cust, missing_if: [0, ""]}
      tier: {path: level, default: gold}
    priority: {path: prio, default: 4}
    """, cust=0, level=None)
    assert event["customer"] == {"tier": "gold"}
    assert event["priority"] == 4


def test_value_maps_modes_and_case():
    extra = """
    channel_status: {path: st, map: statuses, ignore_case: true}
    kept: {path: st, map: {x: y}, unmapped: keep}
    dropped: {path: st, map: {x: y}, unmapped: missing}
    inline: {path: n, map: {1: one, true: yes-text}}
    """
    event = run(extra, st="PAID", n=1)
    assert (event["channel_status"], event["kept"], event["inline"]) == ("paid", "PAID", "one")
    assert "dropped" not in event
    assert run(extra, st="paid", n="1")["inline"] == "one"  # tables compare by text
    with pytest.raises(ValidationError) as info:
        run(extra, st="refunded", n=1)
    err = info.value
    assert (err.field, err.rule) == ("st", "unmapped")
    assert "'refunded' is not in table 'statuses'" in err.message
    assert "mapping rule channel_status (t.yaml:19)" in err.message


def test_split_then_map_takes_the_first_known_part():
    extra = "customer: {tier: {path: tags, split: ',', map: tiers, unmapped: missing}}\n"
    assert run(extra, tags="new, gold ,vip")["customer"]["tier"] == "gold"
    assert run(extra, tags="new")["customer"]["tier"] == "standard"


@pytest.mark.parametrize(("rule", "value", "ms"), [
    ("{time: iso8601}", "2024-05-01T13:00:00Z", AT_MS),
    ("{time: iso8601}", "2024-05-01T10:00:00.250-03:00", AT_MS + 250),
    ("{time: iso8601, tz: UTC}", "2024-05-01T13:00:00", AT_MS),
    ("{time: iso8601, tz: America/Sao_Paulo}", "2024-05-01T10:00:00", AT_MS),
    ("{time: iso8601, tz: '-0300'}", "2024-05-01 10:00:00", AT_MS),
    ("{time: epoch_s}", 1_714_568_400, AT_MS),
    ("{time: epoch_s}", "1714568400.5", AT_MS + 500),
    ("{time: epoch_ms}", AT_MS, AT_MS),
    ("{time: '%d/%m/%Y %H:%M', tz: '+00:00'}", "01/05/2024 13:00", AT_MS),
    ("{time: rfc2822}", "Wed, 01 May 2024 13:00:00 +0000", AT_MS),
])
def test_time_formats(rule, value, ms):
    assert run(f"occurred_at: {{path: t, {rule[1:-1]}}}\n", t=value)["occurred_at"] == ms


def test_a_time_without_offset_needs_tz():
    with pytest.raises(ValidationError) as info:
        run("occurred_at: {path: t, time: iso8601}\n", t="2024-05-01T13:00:00")
    assert info.value.rule == "time" and "has no UTC offset; set tz" in info.value.message


@pytest.mark.parametrize(("unit", "value", "grams"), [
    ("{from: kg, to: g}", "0.35", 350), ("{from: lb, to: g}", 1, 454), ("{from: oz, to: g}", 2, 57),
    ("{from: g, to: g}", 12.4, 12), ("{from: mg, to: g}", 1500, 2),
])
def test_units_and_rounding(unit, value, grams):
    extra = f"""
    lines:
      each: items
      fields:
        line_id: {{path: "@index", as: string}}
        sku: {{path: sku}}
        qty: {{path: q}}
        weight_g: {{path: w, unit: {unit}, round: 0}}
    """
    assert run(extra, items=[{"sku": "a", "q": 1, "w": value}])["lines"][0]["weight_g"] == grams


def test_durations_and_types():
    event = run("""
    promised_by: {compute: sum, args: [{ref: occurred_at}, {path: d, unit: {from: d, to: ms}}]}
    flag: {path: f, as: boolean}
    n: {path: s, as: number}
    """, d="1.5", f="yes", s="404.95")
    assert event["promised_by"] == AT_MS + 129_600_000
    assert event["flag"] is True and event["n"] == 404.95
    with pytest.raises(ValidationError) as info:
        run("lines: {each: items, fields: {line_id: {const: '1'}, sku: {path: sku}, "
            "qty: {path: q, as: integer}}}\n", items=[{"sku": "a", "q": 1.5}])
    err = info.value
    assert (err.field, err.rule) == ("items[0].q", "integer")
    assert "add round: 0" in err.message


def test_text_operations_and_keep_if_matches():
    extra = """
    destination:
      postal_code: {path: zip, text: [strip_separators], keep_if_matches: "[0-9]{2,9}"}
      country: {path: c, text: [trim, upper]}
      lat: {const: -23.5}
      lng: {const: -46.6}
    """
    assert run(extra, zip="01310-100", c=" br")["destination"] == {
        "postal_code": "01310100", "country": "BR", "lat": -23.5, "lng": -46.6}
    assert "postal_code" not in run(extra, zip="SW1A 1AA", c="gb")["destination"]
    assert run("x: {path: p, text: [digits]}\n", p="(11) 3333-4444")["x"] == "1133334444"


def test_conditions_when_and_where():
    extra = """
    destination:
      postal_code: {path: zip}
      region: {path: st, when: {path: country, equals: BR}}
    lines:
      each: items
      where: {all: [{path: ship, present: true}, {not: {path: kind, in: [gift, service]}}]}
      fields:
        line_id: {path: "@index", as: string}
        sku: {path: sku}
        qty: {path: q}
    rich: {const: true, when: {any: [{path: total, matches: "[0-9]{4,}"}, {path: vip, equals: 1}]}}
    """
    items = [{"sku": "a", "q": 1, "ship": True}, {"sku": "b", "q": 1},
             {"sku": "c", "q": 1, "ship": True, "kind": "gift"}, {"sku": "d", "q": 2, "ship": 1}]
    event = run(extra, st="SP", country="BR", items=items, total="12000")
    assert event["destination"]["region"] == "SP" and event["rich"] is True
    assert [(x["line_id"], x["sku"]) for x in event["lines"]] == [("0", "a"), ("3", "d")]
    event = run(extra, st="KY", country="US", items=items, total="100", vip="0")
    assert "region" not in event["destination"] and "rich" not in event


def test_contract_failures_name_the_payload_element_after_where_skipped_some():
    extra = """
    lines:
      each: items
      where: {path: skip, present: false}
      fields:
        line_id: {path: id, as: string}
        sku: {path: sku}
        qty: {path: q}
    """
    items = [{"id": 1, "sku": "a", "q": 1, "skip": 1}, {"id": 2, "sku": "b", "q": 1},
             {"id": 3, "sku": "", "q": 1}]
    with pytest.raises(ValidationError) as info:
        run(extra, items=items)
    err = info.value
    assert (err.field, err.rule) == ("items[2].sku", "minLength")  # output lines[1].sku
    assert err.message.startswith("lines[1].sku must not be empty")
    assert "mapping rule lines.sku (t.yaml:" in err.message and "from items[2].sku" in err.message


def test_computed_functions():
    event = run("""
    a: {compute: concat, sep: "-", args: [{path: x}, 2, {path: "l[*]"}]}
    b: {compute: format, template: "{{{0}}}-{1}", args: [{path: x}, {path: y}]}
    c: {compute: sum, args: ["0.1", {path: y}, {path: "l[*]"}]}
    d: {compute: multiply, args: [{path: y}, "0.1"]}
    e: {compute: lookup, args: [{path: x}], table: {k: found}}
    f: {compute: coalesce, args: [{path: nope}, {path: x}]}
    g: {compute: count, args: [{path: l}]}
    h: {compute: concat, args: [{path: nope}, {path: x}]}
    i: {compute: lookup, args: [{path: y}], table: days, unmapped: missing}
    """, x="k", y="0.2", l=[1, 2])
    assert (event["a"], event["b"], event["c"], event["d"]) == ("k-2-1-2", "{k}-0.2", 3.3, 0.02)
    assert (event["e"], event["f"], event["g"]) == ("found", "k", 2)
    assert "h" not in event and "i" not in event  # a missing argument makes concat missing


def test_required_names_the_payload_field():
    with pytest.raises(ValidationError) as info:
        mapping("").apply({**BASE, "at": None})
    err = info.value  # the contract's "occurred_at is required", told as the payload's field
    assert (err.field, err.rule) == ("at", "required")
    assert err.message.endswith("[mapping rule occurred_at (t.yaml:10), from at]")
    m = mapping("x: {path: deep.er, required: true}\n")
    with pytest.raises(ValidationError) as info:
        m.apply(BASE)
    err = info.value
    assert (err.field, err.rule) == ("deep.er", "required")
    assert "mapping rule x (t.yaml:19)" in err.message  # the line after the base rules


def test_an_each_over_a_non_array_fails_with_the_field():
    with pytest.raises(ValidationError) as info:
        run("", items={"sku": "a"})
    assert (info.value.field, info.value.rule) == ("items", "array")


def test_constants_are_fresh_per_order():
    m = mapping("meta: {const: {a: [1]}}\n")
    first = m.apply(dict(BASE))
    first["meta"]["a"].append(2)
    assert m.apply(dict(BASE))["meta"] == {"a": [1]}


def test_a_computed_function_failing_names_its_rule_and_field():
    with pytest.raises(ValidationError) as info:
        run("total: {compute: sum, args: [{path: a}, {path: b}]}\n", a="1.5", b="abc")
    err = info.value
    assert (err.field, err.rule) == ("a", "number")  # the first field the rule reads
    assert "expected a number; got string 'abc'" in err.message
    assert "mapping rule total (t.yaml:" in err.message
    with pytest.raises(ValidationError, match="number out of range"):
        run("w: {path: g, unit: {from: kg, to: g}}\n", g="1e400")
