"""Prometheus's own checker on the rules, their unit tests, the config and the dashboard queries.

The alert unit tests (deploy/prometheus/tests/*.yml) are themselves tested: with an alert's
expression replaced by one that never fires, or one that always fires, they must fail — so every
alert has a test that shows it firing and one that shows it quiet.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from tests.test_deploy.helpers import (
    PROMETHEUS,
    RULES,
    alerts,
    dashboard_exprs,
    operations_anchors,
    run_promtool,
)

UNIT_TESTS = sorted((PROMETHEUS / "tests").glob("*.yml"))


def test_rules_pass_promtool_check() -> None:
    result = run_promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_alert_unit_tests_pass() -> None:
    assert UNIT_TESTS, "no promtool unit tests in deploy/prometheus/tests"
    result = run_promtool("test", "rules", *map(str, UNIT_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_config_is_valid_and_loads_the_rules() -> None:
    result = run_promtool("check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "rules found" in result.stdout  # the rule file was found and parsed with the config


def test_every_alert_has_severity_summary_and_a_runbook_section() -> None:
    anchors = operations_anchors()
    for alert in alerts():
        name = alert["alert"]
        assert alert["labels"]["severity"] in {"critical", "warning"}, name
        assert alert["annotations"]["summary"], name
        url = alert["annotations"]["runbook_url"]
        path, _, anchor = url.partition("#")
        assert path == "docs/operations.md", (name, url)
        assert anchor in anchors, f"{name}: docs/operations.md has no section #{anchor}"


def _mutated_rules(tmp_path: Path, alert: str, expr: str) -> Path:
    """A copy of deploy/prometheus (rules + unit tests) with one alert's expression replaced."""
    copy = tmp_path / "prometheus"
    shutil.copytree(PROMETHEUS, copy)
    doc = yaml.safe_load(RULES.read_text())
    for group in doc["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == alert:
                rule["expr"] = expr
    (copy / "rules.yml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return copy


@pytest.mark.parametrize("alert", [a["alert"] for a in alerts()])
def test_each_alert_is_tested_firing_and_quiet(alert: str, tmp_path: Path) -> None:
    never = _mutated_rules(tmp_path / "never", alert, "vector(1) < 0")
    result = run_promtool("test", "rules", *map(str, sorted((never / "tests").glob("*.yml"))))
    assert result.returncode != 0, f"no unit test expects {alert} to fire"
    always = _mutated_rules(tmp_path / "always", alert, "vector(1)")
    result = run_promtool("test", "rules", *map(str, sorted((always / "tests").glob("*.yml"))))
    assert result.returncode != 0, f"no unit test expects {alert} to stay quiet"


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """promtool parses every dashboard query (as a recording rule) once Grafana's variables are
    replaced by what Grafana would put there."""
    exprs = dashboard_exprs()
    assert len(exprs) >= 20
    grafana_vars = {"$__rate_interval": "1m", "$__interval": "1m", "$instance": ".*"}
    rules = []
    for i, expr in enumerate(exprs):
        for var, value in grafana_vars.items():
            expr = expr.replace(var, value)
        assert "$" not in expr, f"unknown Grafana variable in {expr!r}"
        rules.append({"record": f"dashboard:query_{i}", "expr": expr})
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run_promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_slo_rules_match_the_histograms_one_second_bucket() -> None:
    """The SLO counts decisions within 1 s: the histogram must expose exactly that bucket, and
    the rules must select it (as "1.0" from prometheus_client, or "1" once normalised)."""
    from prometheus_client import REGISTRY, generate_latest

    import fulfil.metrics  # noqa: F401 - registers the histogram

    exposition = generate_latest(REGISTRY).decode()
    assert 'fulfil_event_to_decision_seconds_bucket{le="1.0"}' in exposition
    slo = [r["expr"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]
           if r.get("record", "").startswith("fulfil:event_to_decision_slow")]
    assert len(slo) == 4
    assert all('le=~"1(\\\\.0)?"' in e for e in slo), slo
