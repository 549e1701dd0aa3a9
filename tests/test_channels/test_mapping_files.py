"""Broken mapping files are rejected whole, every problem named with its line; no user text
is ever evaluated."""

from __future__ import annotations

import re

import pytest

from operators.channels import MappingFileError, compile_mapping, load_mapping

GOOD_HEAD = "fulfil_mapping: 1\nchannel: demo\nfields:\n"


def problems(text: str) -> list[tuple[int, str]]:
    with pytest.raises(MappingFileError) as info:
        compile_mapping(text, "broken.yaml")
    err = info.value
    assert str(err).startswith(f"{len(err.problems)} problem(s) in broken.yaml:")
    for p in err.problems:  # every line of the report is "file:line: rule: message"
        assert re.search(rf"^broken\.yaml:{p.line}: ", str(err), re.M)
    return [(p.line, p.message) for p in err.problems]


def test_every_problem_of_a_file_is_reported_with_its_line():
    text = GOOD_HEAD + """\
  order_id: {path: order.id, as: strin}
  event_id: {compute: eval, args: ["x"]}
  occurred_at: {path: create_time, time: epoch_s, tz: Mars/Base}
  customer:
    tier: {path: buyer.level, map: levels}
  promised_by: {ref: later_field}
  destination:
    postal_code: {path: "recipient..zip"}
  lines:
    each: items
    fields:
      sku: {path: sku_id, colour: red}
      qty: {path: quantity, unit: {from: kg, to: ms}}
      line_id: id
  later_field: {const: 1}
"""
    found = problems(text)
    lines = [line for line, _ in found]
    assert lines == [4, 5, 6, 8, 9, 11, 15, 16, 17]
    text_of = dict(found)
    assert "unknown type 'strin'" in text_of[4]
    assert "unknown function 'eval'; the functions are: concat, format" in text_of[5]
    assert "unknown time zone 'Mars/Base'" in text_of[6]
    assert "no table named 'levels'" in text_of[8]
    assert "not mapped above this rule" in text_of[9]
    assert "path 'recipient..zip'" in text_of[11]
    assert "unknown option 'colour'" in text_of[15]
    assert "cannot convert mass (kg) to duration (ms)" in text_of[16]
    assert "a rule must be a mapping such as {path: ...}" in text_of[17]


def test_yaml_syntax_errors_name_the_line():
    found = problems(GOOD_HEAD + "  order_id: [unclosed\n  event_id: {const: x}\n")
    assert len(found) == 1 and found[0][1].startswith("not valid YAML")
    assert "started at line 4" in found[0][1]


def test_duplicate_keys_are_problems_not_silently_last_wins():
    found = problems(GOOD_HEAD + "  order_id: {path: id}\n  order_id: {path: number}\n")
    assert found == [(5, "duplicate key 'order_id' (first at line 4); remove one")]


@pytest.mark.parametrize(("text", "line", "message"), [
    ("channel: x\nfields:\n  a: {const: 1}\n", 1, "must start with fulfil_mapping: 1"),
    ("fulfil_mapping: 2\nchannel: x\nfields:\n  a: {const: 1}\n", 1, "fulfil_mapping: 1"),
    ("fulfil_mapping: 1\nchannel: Shop Ify\nfields:\n  a: {const: 1}\n", 2, "lower-case name"),
    ("fulfil_mapping: 1\nchannel: x\nemits: order.cancelled\nfields:\n  a: {const: 1}\n", 3,
     "emits must be one of order.created"),
    ("fulfil_mapping: 1\nchannel: x\nfeilds:\n  a: {const: 1}\n", 3, "unknown top-level key"),
    (GOOD_HEAD + "  type: {const: order.cancelled}\n", 4, "type is set by emits"),
    (GOOD_HEAD + "  a: {path: x, const: 1}\n", 4, "exactly one source"),
    (GOOD_HEAD + "  a: {path: x, tz: UTC}\n", 4, "tz only applies with time"),
    (GOOD_HEAD + "  a: {path: x, map: {}}\n", 4, "non-empty mapping"),
    (GOOD_HEAD + "  a: {path: x, map: {b: c}, unmapped: drop}\n", 4, "unmapped must be one of"),
    (GOOD_HEAD + "  a: {path: x, time: '%Q nonsense'}\n", 4, "not a strptime pattern"),
    (GOOD_HEAD + "  a: {path: x, time: dd/mm/yyyy}\n", 4, "unknown time format"),
    (GOOD_HEAD + "  a: {path: x, round: -1}\n", 4, "round takes a number"),
    (GOOD_HEAD + "  a: {path: x, keep_if_matches: '[unclosed'}\n", 4, "regular expression"),
    (GOOD_HEAD + "  a: {path: x, when: {path: y}}\n", 4, "needs one of equals"),
    (GOOD_HEAD + "  a: {path: x, when: {path: y, in: 3}}\n", 4, "in takes a list"),
    (GOOD_HEAD + "  a: {path: x, when: {equals: BR}}\n", 4, "needs a source: one of path"),
    (GOOD_HEAD + "  a: {path: x, when: {any: []}}\n", 4, "non-empty list of conditions"),
    (GOOD_HEAD + "  a:\n    each: items\n", 4, "each needs fields"),
    (GOOD_HEAD + "  a: {compute: format, template: '{0.__class__}', args: [{path: x}]}\n", 4,
     "lone '{'"),
    (GOOD_HEAD + "  a: {compute: format, template: '{3}', args: [{path: x}]}\n", 4,
     "uses {3} but there are 1 args"),
    (GOOD_HEAD + "  a: {compute: __import__, args: ['os']}\n", 4, "unknown function"),
    (GOOD_HEAD + "  a: {compute: add_days, args: [1]}\n", 4, "two args"),
    (GOOD_HEAD + "  a: {compute: concat, args: [1], table: t}\n", 4, "takes no 'table'"),
    (GOOD_HEAD + "  a: {path: 'x[', as: string}\n", 4, "bad bracket"),
])
def test_each_kind_of_mistake_is_named(text, line, message):
    found = problems(text)
    assert any(at == line and message in what for at, what in found), found


def test_the_shipped_mappings_compile():
    for name in ("shopify", "woocommerce"):
        mapping = load_mapping(f"builtin:{name}")
        assert mapping.channel == name and mapping.emits == "order.created"


def test_an_unreadable_file_is_a_mapping_file_error(tmp_path):
    with pytest.raises(MappingFileError, match="cannot read the file"):
        load_mapping(tmp_path / "nope.yaml")
