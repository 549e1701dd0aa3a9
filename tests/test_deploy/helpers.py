"""What the deploy tests read: the files under deploy/, and what the code defines.

Every check here compares a deploy asset with the code it drives (the CLI parser, the
configuration loader, the metrics registry), so a rename on either side fails a test instead of a
production rollout.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
import shutil
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.metrics_core import Metric

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PROMETHEUS = DEPLOY / "prometheus"
RULES = PROMETHEUS / "rules.yml"
DASHBOARD = DEPLOY / "grafana" / "fulfil-dashboard.json"
OPERATIONS = ROOT / "docs" / "operations.md"

#: Series Prometheus itself provides (not defined by fulfil).
PROMETHEUS_BUILTINS = {"up", "ALERTS", "ALERTS_FOR_STATE"}
#: Metric-like tokens in PromQL that fulfil's code must define (or a recording rule must).
METRIC_TOKEN = re.compile(r"(?<![\w:])(fulfil[_:][A-Za-z0-9_:]+|process_[a-z_]+|python_[a-z_]+"
                          r"|up|ALERTS)(?![\w:(])")


def promtool() -> str:
    """Path of promtool; the deploy tests need it (`make tools` installs it on Debian)."""
    found = shutil.which("promtool")
    if not found:
        raise AssertionError("promtool is not on PATH: run `make tools` (Debian package "
                             "`prometheus`) before these tests")
    return found


def run_promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], input=stdin, capture_output=True, text=True,
                          timeout=120, check=False)


def yaml_docs(path: Path) -> list[Any]:
    """Every document of a (multi-document) YAML file."""
    with path.open() as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def k8s_objects() -> list[dict[str, Any]]:
    """Every Kubernetes object of deploy/k8s (the kustomization file is not one)."""
    return [d for p in sorted((DEPLOY / "k8s").glob("*.yaml")) if p.name != "kustomization.yaml"
            for d in yaml_docs(p)]


def rules() -> dict[str, Any]:
    return yaml_docs(RULES)[0]


def alerts() -> list[dict[str, Any]]:
    return [r for g in rules()["groups"] for r in g["rules"] if "alert" in r]


def recorded_names() -> set[str]:
    return {r["record"] for g in rules()["groups"] for r in g["rules"] if "record" in r}


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def dashboard_panels() -> Iterator[dict[str, Any]]:
    for panel in dashboard()["panels"]:
        yield panel
        yield from panel.get("panels", [])


def dashboard_exprs() -> list[str]:
    return [t["expr"] for p in dashboard_panels() for t in p.get("targets", []) if "expr" in t]


def rule_exprs() -> list[str]:
    return [r["expr"] for g in rules()["groups"] for r in g["rules"]]


_SUFFIXES = {"counter": ("_total", "_created"), "gauge": ("",), "info": ("_info",),
             "histogram": ("_bucket", "_count", "_sum", "_created"),
             "summary": ("", "_count", "_sum", "_created"), "unknown": ("",)}


def sample_names(families: Iterable[Metric]) -> set[str]:
    """Every sample name the metric families can expose, observed yet or not."""
    names: set[str] = set()
    for family in families:
        names.update(family.name + s for s in _SUFFIXES.get(family.type, ("",)))
        names.update(s.name for s in family.samples)
    return names


def defined_samples() -> set[str]:
    """Names of every sample the engine's registry can expose (fulfil/*metrics.py + defaults).

    Families are read from prometheus_client's default registry after importing every
    `fulfil.*metrics` module (subpackages too: `fulfil.edge.metrics`), so a labelled metric that
    has not been observed yet still counts.
    """
    from prometheus_client import REGISTRY

    import fulfil

    for mod in pkgutil.walk_packages(fulfil.__path__, "fulfil."):
        if mod.name.rpartition(".")[2].endswith("metrics"):
            importlib.import_module(mod.name)
    return sample_names(REGISTRY.collect())


def metric_tokens(expr: str) -> set[str]:
    """Metric names a PromQL expression reads (label matchers and strings removed first)."""
    without_strings = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    without_matchers = re.sub(r"\{[^}]*\}", "{}", without_strings)
    without_groupings = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)",
                               "", without_matchers)
    return set(METRIC_TOKEN.findall(without_groupings))


def github_anchor(heading: str) -> str:
    """The fragment GitHub gives a Markdown heading (lower-case, punctuation dropped)."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def operations_anchors() -> set[str]:
    """Anchors of docs/operations.md's headings (lines in fenced code blocks are not headings)."""
    anchors: set[str] = set()
    fenced = False
    for line in OPERATIONS.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif line.startswith("#") and not fenced:
            anchors.add(github_anchor(line.lstrip("#")))
    return anchors
