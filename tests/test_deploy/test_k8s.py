"""deploy/k8s: a StatefulSet whose pods really form one bytewax cluster and can recover.

The manifests cannot be applied here; these tests check what `kubectl apply` would not: that the
process ids, addresses, recovery partitions and source slots agree; that probes, Services and the
PodDisruptionBudget select and reach the right pods; that config and secrets are wired to what the
code reads. When kubectl is on PATH, `kubectl kustomize` also renders the whole set offline.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

from fulfil.cli import build_parser
from fulfil.config import load_config
from operators.scoring import Weights
from tests.test_deploy.helpers import DEPLOY, ROOT, k8s_objects, yaml_docs

K8S = DEPLOY / "k8s"


def _by(kind: str, name: str) -> dict[str, Any]:
    for obj in k8s_objects():
        if obj["kind"] == kind and obj["metadata"]["name"] == name:
            return obj
    raise AssertionError(f"no {kind} {name} in deploy/k8s")


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e for e in container.get("env", [])}


def _env_value(container: dict[str, Any], name: str) -> str:
    """A variable's value as the container sees it: env wins over envFrom (Kubernetes' rule)."""
    if name in _env(container) and "value" in _env(container)[name]:
        return _env(container)[name]["value"]
    for source in container.get("envFrom", []):
        data = _by("ConfigMap", source["configMapRef"]["name"])["data"]
        if name in data:
            return data[name]
    raise AssertionError(f"{container['name']} has no {name}")


@pytest.fixture(scope="module")
def engine() -> dict[str, Any]:
    return _by("StatefulSet", "fulfil")


def _container(sts: dict[str, Any], name: str) -> dict[str, Any]:
    spec = sts["spec"]["template"]["spec"]
    return next(c for c in [*spec.get("initContainers", []), *spec["containers"]]
                if c["name"] == name)


def test_every_manifest_is_listed_in_the_kustomization_except_the_optional_ones() -> None:
    listed = set(yaml_docs(K8S / "kustomization.yaml")[0]["resources"])
    present = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert present - listed == {"servicemonitor.yaml", "secret.example.yaml"}
    assert all("namespace" not in obj["metadata"] for obj in k8s_objects())  # namespace-agnostic


def test_process_ids_addresses_partitions_and_slots_agree(engine: dict[str, Any]) -> None:
    replicas = engine["spec"]["replicas"]
    assert engine["spec"]["podManagementPolicy"] == "Parallel"  # peers must start together
    run = _container(engine, "engine")
    index_ref = _env(run)["POD_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert index_ref == "metadata.labels['apps.kubernetes.io/pod-index']"
    assert run["args"][:5] == ["run", "-i", "$(POD_INDEX)", "-a", "$(CLUSTER_ADDRESSES)"]
    service = _by("Service", engine["spec"]["serviceName"])
    cluster_port = next(p["port"] for p in service["spec"]["ports"] if p["name"] == "cluster")
    expected = ";".join(f"{engine['metadata']['name']}-{i}.{service['metadata']['name']}:"
                        f"{cluster_port}" for i in range(replicas))
    assert _env_value(run, "CLUSTER_ADDRESSES") == expected
    workers = int(_env_value(run, "FULFIL_WORKERS"))
    assert int(_env_value(run, "FULFIL_SOURCE_SLOTS")) >= replicas * workers
    init = _container(engine, "recovery-init")
    partitions = _env(init)["RECOVERY_PARTITIONS"]["valueFrom"]["configMapKeyRef"]
    assert int(_by("ConfigMap", partitions["name"])["data"][partitions["key"]]) == replicas
    init_args = build_parser().parse_args(
        [a.replace("$(RECOVERY_PARTITIONS)", "2").replace("$(POD_INDEX)", "1")
         for a in init["args"]])
    assert init_args.only == 1 and init_args.if_missing  # pod i: partition i, created once
    run_args = build_parser().parse_args(
        [a.replace("$(POD_INDEX)", "1").replace("$(CLUSTER_ADDRESSES)", expected)
         for a in run["args"]])
    assert run_args.recovery_dir == init_args.dir
    mounts = {m["mountPath"]: m["name"] for c in (run, init) for m in c["volumeMounts"]}
    claims = {t["metadata"]["name"] for t in engine["spec"]["volumeClaimTemplates"]}
    assert mounts[run_args.recovery_dir] in claims  # on the pod's own PVC


def test_headless_service_publishes_peers_before_they_are_ready(engine: dict[str, Any]) -> None:
    service = _by("Service", engine["spec"]["serviceName"])
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["publishNotReadyAddresses"] is True
    labels = engine["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert engine["spec"]["selector"]["matchLabels"].items() <= labels.items()
    pdb = _by("PodDisruptionBudget", "fulfil")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["maxUnavailable"] == 1


@pytest.mark.parametrize("name,container", [("fulfil", "engine"), ("fulfil-track", "tracker")])
def test_probes_and_ports_reach_the_metrics_endpoint(name: str, container: str) -> None:
    sts = _by("StatefulSet", name)
    c = _container(sts, container)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports["metrics"] == int(_env_value(c, "FULFIL_METRICS_PORT"))
    assert _env_value(c, "FULFIL_METRICS_ADDR") == "0.0.0.0"  # kubelet probes the pod IP
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        action = c[probe].get("httpGet") or c[probe].get("tcpSocket")
        assert action["port"] in ports, f"{name} {probe} targets an unknown port"
    assert c["livenessProbe"]["httpGet"]["path"] == "/metrics"
    assert {"cpu", "memory"} <= c["resources"]["requests"].keys()
    assert "memory" in c["resources"]["limits"]
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert sts["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True


def test_config_map_and_secrets_are_what_the_code_reads(engine: dict[str, Any],
                                                         tmp_path: Path) -> None:
    run = _container(engine, "engine")
    config_path = Path(_env_value(run, "FULFIL_CONFIG"))
    volumes = {v["name"]: v for v in engine["spec"]["template"]["spec"]["volumes"]}
    mount = next(m for m in run["volumeMounts"] if m["mountPath"] == str(config_path.parent))
    config_map = _by("ConfigMap", volumes[mount["name"]]["configMap"]["name"])
    text = config_map["data"][config_path.name]
    (tmp_path / "config.json").write_text(text)
    cfg = load_config(tmp_path / "config.json", env={})  # unknown keys would raise
    assert Weights.from_mapping(cfg.weights) == Weights()  # every weight name is real
    assert json.loads(text)["max_nodes"] == cfg.max_nodes
    secret = yaml_docs(K8S / "secret.example.yaml")[0]
    for obj in k8s_objects():
        spec = obj.get("spec", {}).get("template", {}).get("spec")
        for c in (spec or {}).get("containers", []):
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] == secret["metadata"]["name"]
                    assert ref["key"] in secret["stringData"], ref
    redis = _env(run)["FULFIL_REDIS"]["valueFrom"]
    assert "secretKeyRef" in redis  # the URL carries the password: never in a ConfigMap


def test_images_are_tagged_with_the_project_version() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    images = {c["image"] for obj in k8s_objects() if obj.get("kind") in {"StatefulSet", "Job"}
              for spec in [obj["spec"]["template"]["spec"]]
              for c in [*spec.get("initContainers", []), *spec["containers"]]}
    assert images == {f"fulfil:{version}"}


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not on PATH")
def test_kustomize_renders_the_set_offline() -> None:
    result = subprocess.run(["kubectl", "kustomize", str(K8S)], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    kinds = [line.split(":", 1)[1].strip() for line in result.stdout.splitlines()
             if line.startswith("kind:")]
    assert sorted(kinds) == sorted(["ConfigMap", "ConfigMap", "Service", "Service",
                                    "StatefulSet", "StatefulSet", "PodDisruptionBudget", "Job"])
