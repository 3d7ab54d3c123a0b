"""Prometheus config, alert rules (promtool unit tests) and the Grafana dashboard, checked
statically. The live-Prometheus test proves the queries against real scrapes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml

from core.settings import PROJECT_ROOT
from tests.contract import CONTRACT_METRICS, MONITOR_METRICS, WORKER_METRICS

MONITORING = PROJECT_ROOT / "monitoring"
DASHBOARD = MONITORING / "grafana" / "dashboards" / "prediction-service.json"
KNOWN_METRICS = {*CONTRACT_METRICS, *WORKER_METRICS, *MONITOR_METRICS, "up"}


def promtool(*args: str) -> subprocess.CompletedProcess:
    """Run promtool in monitoring/; missing promtool is a failure, never a skip."""
    exe = shutil.which("promtool")
    assert exe, "promtool not found: .ci/run installs Debian's prometheus package"
    return subprocess.run(
        [exe, *args], cwd=MONITORING, capture_output=True, text=True, timeout=60, check=False
    )


def test_promtool_check_config():
    res = promtool("check", "config", "prometheus.yml")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout + res.stderr


def test_promtool_check_rules():
    res = promtool("check", "rules", "alerts.yml")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "11 rules found" in res.stdout


def test_promtool_rule_unit_tests_pass():
    res = promtool("test", "rules", "alerts.test.yml")
    assert res.returncode == 0, res.stdout + res.stderr


def test_every_alert_has_a_firing_unit_test():
    rules = yaml.safe_load((MONITORING / "alerts.yml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    tests = yaml.safe_load((MONITORING / "alerts.test.yml").read_text())["tests"]
    fired = {
        case["alertname"]
        for t in tests
        for case in t.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    quiet = {
        case["alertname"]
        for t in tests
        for case in t.get("alert_rule_test", [])
        if not case.get("exp_alerts")
    }
    assert alerts == fired, f"alerts without a firing test: {alerts - fired}"
    assert alerts == quiet, f"alerts without a stays-quiet test: {alerts - quiet}"


def _metric_names(expr: str) -> set[str]:
    """Metric families a PromQL expression reads (histogram suffixes folded to the family)."""
    bare = re.sub(r"\b(by|on|without|ignoring)\s*\([^)]*\)", " ", expr)
    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\"[^\"]*\"", " ", bare)
    idents = re.findall(r"\b([a-zA-Z_][a-zA-Z0-9_]*)\b(?!\s*\()", bare)
    keywords = {"and", "or", "unless", "by", "on", "bool"}
    return {re.sub(r"_(bucket|sum|count)$", "", w) for w in idents if w not in keywords}


def test_dashboard_queries_use_contract_metrics_only():
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert len(dash["panels"]) >= 12
    used = set().union(*(_metric_names(e) for e in exprs))
    assert used <= KNOWN_METRICS, f"unknown metrics in dashboard: {used - KNOWN_METRICS}"
    for needed in ("model_info", "retrain_jobs_total", "model_predicted_class_total", "up"):
        assert needed in used
    for panel in dash["panels"]:
        assert panel["datasource"]["uid"] == "prometheus"


def test_grafana_provisioning_points_at_the_dashboard_and_has_no_default_password():
    ds = yaml.safe_load(
        (MONITORING / "grafana/provisioning/datasources/prometheus.yml").read_text()
    )
    assert ds["datasources"][0]["uid"] == "prometheus"
    prov = yaml.safe_load(
        (MONITORING / "grafana/provisioning/dashboards/dashboards.yml").read_text()
    )
    assert prov["providers"][0]["options"]["path"]
    for path in MONITORING.rglob("*"):
        if path.is_file():
            assert "admin/admin" not in path.read_text(errors="ignore")


@pytest.mark.parametrize("rule_file", ["alerts.yml"])
def test_alert_queries_use_contract_metrics_only(rule_file):
    rules = yaml.safe_load((MONITORING / rule_file).read_text())
    used = set().union(*(_metric_names(r["expr"]) for g in rules["groups"] for r in g["rules"]))
    assert used <= KNOWN_METRICS, used - KNOWN_METRICS
