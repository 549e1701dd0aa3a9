"""`fulfil_build_info` names the running code and network; `serve` binds where it is told."""

from __future__ import annotations

from urllib.request import urlopen

from prometheus_client import REGISTRY

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
