"""Fixtures of the channel tests: the real sample payloads from ../shared, read at test time."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from operators.channels import ChannelMapping, load_mapping

#: The exact ids of Shopify's documented sample (its copy in ../shared lost precision beyond
#: 2^53, see shopify_orders_create.source.txt); the admin_graphql_api_id fields keep them.
SHOPIFY_EXACT_IDS = {
    b"820982911946154500": b"820982911946154508",  # order
    b"115310627314723950": b"115310627314723954",  # customer
    b"487817672276298560": b"487817672276298554",  # line items
    b"789012345678901200": b"789012345678901234",
    b"890123456789012400": b"890123456789012345",
    b"976318377106520300": b"976318377106520349",
    b"315789986012684400": b"315789986012684393",
}


@pytest.fixture(scope="session")
def payloads_dir(shared_dir: Path) -> Path:
    return shared_dir / "payloads"


@pytest.fixture(scope="session")
def shopify_raw(payloads_dir: Path) -> bytes:
    """Shopify's orders/create sample with its real (> 2^53) ids restored, as a webhook body."""
    raw = (payloads_dir / "shopify_orders_create.json").read_bytes()
    for lossy, exact in SHOPIFY_EXACT_IDS.items():
        assert lossy in raw, f"the sample changed: {lossy!r} not found"
        raw = raw.replace(lossy, exact)
    return raw


@pytest.fixture(scope="session")
def woo_raw(payloads_dir: Path) -> bytes:
    return (payloads_dir / "woocommerce_order_v3.json").read_bytes()


@pytest.fixture(scope="session")
def shopify() -> ChannelMapping:
    return load_mapping("builtin:shopify")


@pytest.fixture(scope="session")
def woo() -> ChannelMapping:
    return load_mapping("builtin:woocommerce")


def with_changes(raw: bytes, **changes: object) -> bytes:
    """The payload with top-level fields replaced (exact ints kept: only used on Woo/small)."""
    data = orjson.loads(raw)
    data.update(changes)
    return orjson.dumps(data)
