"""`fulfil channels check|topics` and `fulfil gateway` start-up failures, in-process."""

from __future__ import annotations

import orjson
import pytest

from fulfil.cli import main


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(argv)
    out, err = capsys.readouterr()
    return info.value.code, out, err


def test_check_prints_the_mapped_order(payloads_dir, capsys):
    code, out, _ = run(["channels", "check", "builtin:woocommerce",
                        str(payloads_dir / "woocommerce_order_v3.json")], capsys)
    assert code == 0
    event = orjson.loads(out)
    assert event["order_id"] == "woocommerce-727" and len(event["lines"]) == 2


def test_check_prints_the_exact_failure_and_exits_1(tmp_path, payloads_dir, capsys):
    payload = orjson.loads((payloads_dir / "woocommerce_order_v3.json").read_bytes())
    payload["line_items"][0]["quantity"] = "two"
    path = tmp_path / "p.json"
    path.write_bytes(orjson.dumps(payload))
    code, out, err = run(["channels", "check", "builtin:woocommerce", str(path)], capsys)
    assert code == 1 and out == ""
    assert "does not map (schema/number) at line_items[0].quantity" in err
    assert "expected a number; got string 'two'" in err
    assert "mapping rule lines.qty (woocommerce.yaml:" in err


def test_check_of_a_broken_mapping_lists_its_problems(tmp_path, capsys):
    broken = tmp_path / "m.yaml"
    broken.write_text("fulfil_mapping: 1\nchannel: x\nfields:\n  order_id: {path: id,"
                      " map: nowhere}\n")
    code, _, err = run(["channels", "check", str(broken)], capsys)
    assert code == 1
    assert f"{broken}:4: order_id: map: no table named 'nowhere'" in err
    code, out, _ = run(["channels", "check", "builtin:shopify"], capsys)
    assert code == 0 and "ok" in out


def test_topics_creates_the_channel_topics(bootstrap, topic_prefix, capsys):
    code, out, _ = run(["channels", "topics", "--kafka", bootstrap, "--topic-prefix",
                        topic_prefix], capsys)
    assert code == 0
    assert f"{topic_prefix}channel.shopify" in out and "created" in out


def test_gateway_refuses_to_start_without_its_secrets(bootstrap, redis_url, topic_prefix,
                                                      capsys, monkeypatch):
    monkeypatch.delenv("FULFIL_SHOPIFY_SECRET", raising=False)
    monkeypatch.setenv("FULFIL_WOOCOMMERCE_SECRET", "woo-secret-value")
    base = ["--kafka", bootstrap, "--redis", redis_url, "--topic-prefix", topic_prefix]
    code, _, err = run(["gateway", *base, "--port", "0"], capsys)
    assert code == 2
    assert "FULFIL_SHOPIFY_SECRET (its webhook secret) is not set" in err
    assert "woo-secret-value" not in err
