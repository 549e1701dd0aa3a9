"""The `order.flags` condition: abnormal-order flags set by routing, held by rule; checked at
compile time; computed over the orders file by the rules dry run (`fulfil rules test`)."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import orjson
import pytest

from fulfil import cli
from operators.network import load_default
from operators.orders import order_from_created
from operators.rules import FileError, compile_rules, order_facts

NET = load_default()
EXAMPLE = Path(__file__).resolve().parents[2] / "fulfil" / "data" / "rules" / "example.yaml"
T0 = 1795556252000
RULES = """
version: flags
rules:
  - id: dup
    precedence: 10
    when: {order.flags: {any_in: [duplicate]}}
    then: {hold: {group: fraud-review, reason: likely duplicate}}
  - id: any-flag
    when: {order.flags: {exists: true}}
    then: {tags: [flagged]}
  - id: clean
    when: {order.flags: {none_in: [duplicate, quantity, address]}}
    then: {tags: [clean]}
"""


def event(order_id: str, channel: str = "web", customer: str = "c-1") -> dict:
    return {"type": "order.created", "event_id": f"e-{order_id}", "order_id": order_id,
            "occurred_at": T0, "channel": channel, "customer": {"id": customer},
            "promised_by": T0 + 5 * 86_400_000,
            "destination": {"postal_code": "01310", "country": "BR"},
            "lines": [{"line_id": "1", "sku": "sku-a", "qty": 1}]}


def evaluate(rules, flags: list[str]):
    o = order_from_created(event("o-1"))
    if flags:
        o = replace(o, attrs={**o.attrs, "flags": [{"pattern": p, "reason": "r"}
                                                   for p in flags]})
    return rules.evaluate(order_facts(o, "SP", rules), T0)


def test_flags_hold_by_rule_and_exists_means_any_flag() -> None:
    rules = compile_rules(RULES, NET)
    held = evaluate(rules, ["duplicate"])
    assert held.hold is not None and held.hold.group == "fraud-review"
    assert held.tags == ("flagged",)
    other = evaluate(rules, ["address"])
    assert other.hold is None and other.tags == ("flagged",)
    clean = evaluate(rules, [])
    assert clean.hit == ("clean",) and clean.hold is None


def test_a_misspelt_flag_or_field_is_a_compile_error_with_a_suggestion() -> None:
    text = ("rules:\n  - id: a\n    when: {order.flags: {any_in: [duplicates]}}\n"
            "    then: {tags: [x]}\n  - id: b\n    when: {order.flag: [address]}\n"
            "    then: {tags: [y]}\n")
    with pytest.raises(FileError) as err:
        compile_rules(text, NET)
    messages = [str(p) for p in err.value.problems]
    assert any("line 3" in m and "did you mean 'duplicate'" in m for m in messages)
    assert any("line 6" in m and "did you mean 'order.flags'" in m for m in messages)


def test_the_examples_commented_flag_rules_compile_when_uncommented() -> None:
    lines = EXAMPLE.read_text().splitlines()
    start = next(i for i, ln in enumerate(lines) if "# - id: likely-duplicates" in ln)
    block = []
    for ln in lines[start:]:
        if not ln.strip().startswith("#"):
            break
        block.append(re.sub(r"^(\s*)# ?", r"\1", ln))
    text = "\n".join(lines[:start] + block + lines[start + len(block):])
    rules = compile_rules(text, NET, str(EXAMPLE))
    assert {"likely-duplicates", "abnormal-quantity-or-address"} <= {r.id for r in rules.rules}
    assert "order.flags" in rules.fields


def test_the_dry_run_flags_a_duplicate_within_the_file(tmp_path: Path, capsys) -> None:
    orders = tmp_path / "orders.jsonl"
    orders.write_bytes(b"\n".join(orjson.dumps(e) for e in [
        event("o-1"), event("o-2", channel="marketplace"), event("o-3", customer="c-2")]))
    new = tmp_path / "new.yaml"
    new.write_text(RULES)
    with pytest.raises(SystemExit) as done:
        cli.main(["rules", "test", str(new), str(orders)])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert "* o-2:" in text and "held:fraud-review [dup, any-flag]" in text
    assert "o-1:" not in text and "o-3:" not in text  # first of its kind, other customer
    assert '"newly held": 1' in text
