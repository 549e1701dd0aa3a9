"""The deploy assets use only what the code defines: env vars, commands and flags, metrics.

Scans deploy/ (Dockerfile, compose, Kubernetes, Prometheus, Grafana) and docs/operations.md.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import fields
from typing import Any

import pytest

from fulfil.cli import build_parser
from fulfil.config import Config, ConfigError, load_config
from tests.test_deploy.helpers import (
    DEPLOY,
    OPERATIONS,
    PROMETHEUS_BUILTINS,
    dashboard,
    dashboard_exprs,
    dashboard_panels,
    defined_samples,
    k8s_objects,
    metric_tokens,
    recorded_names,
    rule_exprs,
    yaml_docs,
)

DEPLOY_FILES = [p for p in DEPLOY.rglob("*") if p.is_file() and p.suffix != ".json"]
ENV_VAR = re.compile(r"\bFULFIL_[A-Z0-9_]*[A-Z0-9]\b")
#: Values for the Kubernetes `$(VAR)` references the containers' args use.
K8S_ARG_VALUES = {"POD_INDEX": "1", "RECOVERY_PARTITIONS": "2",
                  "CLUSTER_ADDRESSES": "fulfil-0.fulfil:2101;fulfil-1.fulfil:2101"}


def _is_read_by_config(var: str) -> bool:
    """True if setting `var` changes what load_config builds (or makes it refuse a value).

    Behavioural on purpose: it does not matter how config.py spells its table of variables,
    only that the variable has an effect.
    """
    baseline = load_config(env={})
    for value in ("7", "zz-sentinel"):
        try:
            cfg = load_config(env={var: value})
        except ConfigError:
            return True  # read, and the sentinel is not a valid value for it
        if cfg != baseline:
            return True
    return False


def test_every_fulfil_env_var_in_deploy_files_and_docs_is_read_by_the_config() -> None:
    used = {m for p in [*DEPLOY_FILES, OPERATIONS] for m in ENV_VAR.findall(p.read_text())}
    assert {"FULFIL_KAFKA", "FULFIL_REDIS", "FULFIL_METRICS_ADDR"} <= used  # the scan works
    unknown = sorted(v for v in used if not _is_read_by_config(v))
    assert not unknown, f"not read by fulfil/config.py: {unknown}"


def test_the_env_check_can_tell_an_unknown_variable() -> None:
    assert not _is_read_by_config("FULFIL_NO_SUCH_SETTING")
    assert _is_read_by_config("FULFIL_KAFKA__SASL_USERNAME")


def _fulfil_argvs() -> list[tuple[str, list[str]]]:
    """(where, argv after `fulfil`) for every fulfil container of compose and Kubernetes."""
    out: list[tuple[str, list[str]]] = []
    compose = yaml_docs(DEPLOY / "compose.yaml")[0]
    for name, svc in compose["services"].items():
        if str(svc.get("image", "")).startswith("fulfil:"):
            out.append((f"compose {name}", [str(a) for a in svc.get("command", ["run"])]))
    for obj in k8s_objects():
        spec = _pod_spec(obj)
        if spec is None:
            continue
        for c in [*spec.get("initContainers", []), *spec["containers"]]:
            if str(c["image"]).startswith("fulfil:"):
                args = [re.sub(r"\$\((\w+)\)", lambda m: K8S_ARG_VALUES[m[1]], a)
                        for a in c.get("args", ["run"])]
                out.append((f"k8s {obj['metadata']['name']}/{c['name']}", args))
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    cmd = re.search(r"^CMD (\[.*\])$", dockerfile, re.M)
    assert cmd, "the Dockerfile has no CMD"
    out.append(("Dockerfile CMD", shlex.split(cmd[1].strip("[]").replace(",", " "))))
    return out


def _pod_spec(obj: dict[str, Any]) -> dict[str, Any] | None:
    if obj.get("kind") in {"StatefulSet", "Deployment", "Job"}:
        return obj["spec"]["template"]["spec"]
    return None


def test_every_fulfil_command_line_in_deploy_files_parses_with_the_real_cli() -> None:
    argvs = _fulfil_argvs()
    commands = {argv[0] for _, argv in argvs}
    assert {"run", "topics", "recovery-init", "simulate", "track"} <= commands
    parser = build_parser()
    for where, argv in argvs:
        try:
            parser.parse_args(argv)
        except SystemExit:
            pytest.fail(f"{where}: `fulfil {' '.join(argv)}` is rejected by fulfil/cli.py")


def test_metrics_in_rules_and_dashboard_are_defined_by_the_code() -> None:
    defined = defined_samples() | PROMETHEUS_BUILTINS | recorded_names()
    for expr in [*rule_exprs(), *dashboard_exprs()]:
        tokens = metric_tokens(expr)
        assert tokens, f"reads no known metric: {expr}"
        missing = tokens - defined
        assert not missing, f"{sorted(missing)} not defined (fulfil/*metrics.py): {expr}"


def test_the_metric_check_would_catch_a_typo() -> None:
    defined = defined_samples()
    assert metric_tokens('rate(fulfil_decisions_totl{job="fulfil"}[5m])') - defined
    assert not metric_tokens('sum by (le) (rate(fulfil_decisions_total{le="1"}[5m]))') - defined


def test_dashboard_panels_name_the_prometheus_datasource_variable() -> None:
    dash = dashboard()
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = []
    for panel in dashboard_panels():
        ids.append(panel["id"])
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        for t in panel["targets"]:
            assert t["datasource"]["uid"] == "${datasource}" and t["expr"].strip(), panel["title"]
        assert {"h", "w", "x", "y"} <= panel["gridPos"].keys()
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    titles = " ".join(p["title"].lower() for p in dashboard_panels())
    for topic in ("lifecycle", "latency", "lag", "dead letters", "alerts"):
        assert topic in titles


def test_config_fields_named_in_operations_doc_exist() -> None:
    names = {f.name for f in fields(Config)}
    doc = OPERATIONS.read_text()
    for field in ("network_path", "max_nodes", "max_splits"):
        assert f"`{field}`" in doc or f'"{field}"' in doc
        assert field in names
