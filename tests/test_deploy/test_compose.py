"""deploy/compose.yaml describes one working bytewax cluster, scraped and dashboarded.

What would break the stack at `docker compose up` without anyone noticing offline: workers that
disagree on the cluster's addresses, a process id that is not its place in the list, recovery
partitions that are not one per process, too few source slots, Prometheus scraping hosts or ports
that do not exist, a mounted file that is not in the repository.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from fulfil.cli import build_parser
from tests.test_deploy.helpers import DEPLOY, PROMETHEUS, yaml_docs


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml_docs(DEPLOY / "compose.yaml")[0]


def _args(svc: dict[str, Any]):
    return build_parser().parse_args([str(a) for a in svc["command"]])


def _workers(compose: dict[str, Any]) -> dict[str, Any]:
    return {name: svc for name, svc in compose["services"].items()
            if svc.get("command", [None])[0] == "run"}


def _image_env(name: str) -> str:
    """A variable the Dockerfile sets with ENV."""
    match = re.search(rf"\b{name}=(\S+)", (DEPLOY / "Dockerfile").read_text())
    assert match, f"the Dockerfile does not set {name}"
    return match[1]


def test_services_cover_the_stack(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["kafka"]["image"].startswith("apache/kafka:")
    env = services["kafka"]["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper
    assert services["redis"]["image"].startswith("redis:")
    assert services["prometheus"]["image"].startswith("prom/prometheus:")
    assert services["grafana"]["image"].startswith("grafana/grafana:")
    assert services["topics"]["command"] == ["topics"]
    assert services["simulator"]["command"][0] == "simulate"
    assert "sim" in services["simulator"]["profiles"]  # optional load


def test_workers_form_one_cluster_with_one_recovery_partition_each(
    compose: dict[str, Any],
) -> None:
    workers = _workers(compose)
    assert len(workers) >= 2
    addresses = {_args(svc).addresses for svc in workers.values()}
    assert len(addresses) == 1, f"workers disagree on -a: {addresses}"
    hosts = addresses.pop().split(";")
    ids = sorted(_args(svc).process_id for svc in workers.values())
    assert ids == list(range(len(hosts)))
    for name, svc in workers.items():
        args = _args(svc)
        assert hosts[args.process_id] == f"{svc['hostname']}:2101", name
        slots = int(svc["environment"]["FULFIL_SOURCE_SLOTS"])
        assert slots >= len(hosts) * (args.workers or 1), f"{name}: too few source slots"
        # its recovery partition: created by its own one-shot, on its own volume
        volume = next(v.split(":")[0] for v in svc["volumes"] if v.endswith(":/data/recovery"))
        assert args.recovery_dir == "/data/recovery"
        init_name = next(d for d in svc["depends_on"] if d.endswith("-recovery"))
        init = compose["services"][init_name]
        init_args = _args(init)
        assert init_args.command == "recovery-init" and init_args.if_missing
        assert (init_args.only, init_args.partitions) == (args.process_id, len(hosts)), name
        assert f"{volume}:/data/recovery" in init["volumes"]
        assert compose["services"][init_name]["restart"] == "no"
    volumes = [v for svc in workers.values() for v in svc["volumes"]]
    assert len(volumes) == len(set(volumes)), "two workers share a recovery volume"


def test_prometheus_scrapes_every_worker_and_the_tracker(compose: dict[str, Any]) -> None:
    prom = yaml_docs(PROMETHEUS / "prometheus.yml")[0]
    jobs = {j["job_name"]: {t for sc in j["static_configs"] for t in sc["targets"]}
            for j in prom["scrape_configs"]}
    port = _image_env("FULFIL_METRICS_PORT")
    assert _image_env("FULFIL_METRICS_ADDR") == "0.0.0.0"
    assert _image_env("FULFIL_METRICS_PORT_PER_PROCESS") == "false"
    workers = _workers(compose)
    assert jobs["fulfil"] == {f"{svc['hostname']}:{port}" for svc in workers.values()}
    tracker = compose["services"]["tracker"]
    assert tracker["command"][0] == "track"
    assert jobs["fulfil-track"] == {f"{tracker['hostname']}:{port}"}


def test_mounted_files_exist_and_grafana_finds_the_dashboard(compose: dict[str, Any]) -> None:
    mounts: dict[str, str] = {}
    for svc in compose["services"].values():
        for volume in svc.get("volumes", []):
            source, _, target = volume.partition(":")
            if source.startswith("./"):
                assert (DEPLOY / source).exists(), f"{source} is not in deploy/"
                mounts[target.split(":")[0]] = source
    provider = yaml_docs(DEPLOY / "grafana/provisioning/dashboards/fulfil.yml")[0]
    folder = provider["providers"][0]["options"]["path"]
    assert mounts[f"{folder}/fulfil-dashboard.json"] == "./grafana/fulfil-dashboard.json"
    assert mounts["/etc/prometheus/rules.yml"] == "./prometheus/rules.yml"
    datasource = yaml_docs(DEPLOY / "grafana/provisioning/datasources/prometheus.yml")[0]
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"


def test_workers_start_after_topics_kafka_and_redis(compose: dict[str, Any]) -> None:
    for name, svc in _workers(compose).items():
        deps = svc["depends_on"]
        assert deps["topics"]["condition"] == "service_completed_successfully", name
        assert deps["kafka"]["condition"] == "service_healthy", name
        assert deps["redis"]["condition"] == "service_healthy", name
