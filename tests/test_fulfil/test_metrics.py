"""`fulfil_build_info` names the running code and network; `serve` binds where it is told; a
batch-fed histogram exposes exactly what prometheus_client's own Histogram would."""

from __future__ import annotations

from urllib.request import urlopen

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import REGISTRY, CollectorRegistry, Histogram

from fulfil import metrics
from fulfil.infra import free_port
from operators.network import load_default


def test_build_info_names_the_package_and_the_network_it_routes_with() -> None:
    version = metrics.publish_build_info(None)
    assert version == load_default().version
    labels = {"version": metrics.package_version(), "network_version": version}
    assert REGISTRY.get_sample_value("fulfil_build_info", labels) == 1.0
    assert metrics.package_version() not in ("", "unknown")  # installed (make env)


def test_metrics_are_served_on_the_requested_address() -> None:
    port = free_port()
    metrics.serve(port, "127.0.0.1")
    with urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    assert "fulfil_consumer_lag_messages" in text  # HELP/TYPE lines even before any sample
    assert "fulfil_build_info" in text


BOUNDS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_batched = metrics.BatchHistogram("fulfil_test_batched_seconds", "test", BOUNDS)


def _samples(registry: CollectorRegistry, name: str) -> dict[tuple[str, str], float]:
    return {(s.name.removeprefix(name), s.labels.get("le", "")): s.value
            for family in registry.collect() if family.name == name
            for s in family.samples if not s.name.endswith("_created")}


@given(st.lists(st.lists(st.floats(0, 20, allow_nan=False) | st.sampled_from(BOUNDS),
                         max_size=30), max_size=5))
def test_a_batch_histogram_exposes_what_observing_one_by_one_would(batches) -> None:
    before = _samples(REGISTRY, _batched.name)
    reference = CollectorRegistry()
    one_by_one = Histogram("ref_seconds", "ref", buckets=BOUNDS, registry=reference)
    for batch in batches:
        _batched.observe_many(batch)
        for v in batch:
            one_by_one.observe(v)
    after = _samples(REGISTRY, _batched.name)
    expected = _samples(reference, "ref_seconds")
    assert set(after) == set(expected)  # same buckets (le labels), count and sum
    for key, value in expected.items():
        added = after[key] - before.get(key, 0.0)
        if key[0] == "_sum":  # float sums in another order
            assert abs(added - value) <= 1e-6 * max(1.0, value)
        else:
            assert added == value, key
