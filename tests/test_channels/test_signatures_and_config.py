"""Webhook signature schemes and channels.yaml: presets, rotation, secrets that never show."""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import replace

import pytest

from fulfil.channels_config import ChannelsConfigError, load_channels
from operators.channels import MappingFileError
from operators.channels.signatures import PRESETS

BODY = b'{"id": 820982911946154508}'


def shopify_header(secret: bytes, body: bytes) -> str:
    """Computed here independently, as Shopify documents it."""
    return base64.b64encode(hmac.new(secret, body, hashlib.sha256).digest()).decode()


def test_shopify_and_woocommerce_signatures_verify_the_raw_body():
    for name, header in (("shopify", "X-Shopify-Hmac-Sha256"),
                         ("woocommerce", "X-WC-Webhook-Signature")):
        scheme = PRESETS[name]
        good = {header: shopify_header(b"s3cret", BODY)}
        assert scheme.sign(b"s3cret", BODY) == good[header]
        assert scheme.verify((b"s3cret",), BODY, good)
        assert not scheme.verify((b"other",), BODY, good)
        assert not scheme.verify((b"s3cret",), BODY + b" ", good)  # bytes as received
        assert not scheme.verify((b"s3cret",), BODY, {})
        assert not scheme.verify((b"s3cret",), BODY, {header: "not base64 ☃"})


def test_rotation_accepts_any_configured_secret():
    scheme = PRESETS["shopify"]
    headers = {"X-Shopify-Hmac-Sha256": scheme.sign(b"new", BODY)}
    assert scheme.verify((b"old", b"new"), BODY, headers)
    assert not scheme.verify((), BODY, headers)


def test_generic_hmac_with_prefix_hex_and_sha512():
    scheme = replace(PRESETS["hmac"], header="X-Hub-Signature", prefix="sha512=",
                     digest="sha512")
    mac = hmac.new(b"k", BODY, hashlib.sha512).hexdigest()
    assert scheme.verify((b"k",), BODY, {"X-Hub-Signature": f"sha512={mac.upper()}"})
    assert not scheme.verify((b"k",), BODY, {"X-Hub-Signature": mac})  # prefix required
    with pytest.raises(ValueError, match="digest must be one of"):
        replace(scheme, digest="md5")


def test_the_shipped_channels_file(monkeypatch):
    cfg = load_channels()
    assert set(cfg.channels) == {"shopify", "woocommerce"}
    assert cfg.gateway.listen == "127.0.0.1" and cfg.gateway.durability == "acked"
    shop = cfg.channels["shopify"]
    assert shop.topic_name() == "channel.shopify"
    assert shop.scheme.webhook_id_header == "X-Shopify-Webhook-Id"
    assert shop.load_mapping().channel == "shopify"
    with pytest.raises(ChannelsConfigError, match="FULFIL_SHOPIFY_SECRET") as info:
        shop.secrets({})
    assert "is not set" in str(info.value)
    secrets = shop.secrets({"FULFIL_SHOPIFY_SECRET": "hush-hush"})
    assert secrets[0].reveal() == b"hush-hush"
    assert "hush" not in repr(secrets) and "hush" not in repr(shop)


def test_a_literal_secret_never_shows_in_reprs(tmp_path):
    path = tmp_path / "channels.yaml"
    path.write_text("channels:\n  tiktok:\n    mapping: builtin:shopify\n"
                    "    secret: do-not-print\n    signature: hmac\n"
                    "    signature_header: X-Tts-Signature\n")
    cfg = load_channels(path)
    assert "do-not-print" not in repr(cfg)
    assert cfg.channels["tiktok"].secrets({})[0].reveal() == b"do-not-print"
    assert cfg.channels["tiktok"].scheme.header == "X-Tts-Signature"


def test_channels_file_mistakes_name_the_line(tmp_path):
    path = tmp_path / "channels.yaml"
    path.write_text(
        "gateway:\n  port: high\n  durability: eventually\n"
        "channels:\n"
        "  Bad Name:\n    mapping: x.yaml\n"
        "  amazon:\n    signature: aws\n    mapping: a.yaml\n    secret_env: X\n"
        "  tiktok:\n    mapping: t.yaml\n    secret_env: Y\n    colour: red\n"
        "  douyin:\n    mapping: d.yaml\n"
    )
    with pytest.raises(MappingFileError) as info:
        load_channels(path)
    found = [(p.line, p.message) for p in info.value.problems]
    assert [line for line, _ in found] == [2, 3, 5, 8, 14, 15]
    assert "must be int" in found[0][1]
    assert "must be one of acked, enqueued" in found[1][1]
    assert "lower-case" in found[2][1]
    assert "signature must be one of shopify, woocommerce, hmac" in found[3][1]
    assert "unknown key 'colour'" in found[4][1]
    assert "needs secret_env" in found[5][1]
