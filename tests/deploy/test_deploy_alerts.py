"""The monitor's alerting rules, run by Prometheus' own rule tester (``promtool test rules``).

Series that a monitor would export are fed in; promtool evaluates the rules over time and
the expected alerts (and only those) must fire. Skipped with a reason where promtool is not
installed (Debian: ``apt-get install prometheus``).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from abflow.deploy.alerts import ALERTS, STALE_SECONDS, alert_rules_yaml, prometheus_rule

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="needs promtool (Debian: apt-get install prometheus)"
)


def run_promtool(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )


@needs_promtool
def test_promtool_accepts_the_rules(tmp_path: Path) -> None:
    (tmp_path / "alerts.yaml").write_text(alert_rules_yaml(), encoding="utf-8")
    checked = run_promtool(tmp_path, "check", "rules", "alerts.yaml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"{len(ALERTS)} rules found" in checked.stdout


def _alert(name: str, severity: str, **labels: str) -> dict[str, object]:
    """An expected alert: its labels, and its annotations with the labels filled in."""
    (rule,) = [alert for alert in ALERTS if alert[0] == name]
    annotations = {}
    for key, text in (("summary", rule[4]), ("description", rule[5])):
        for label, value in labels.items():
            text = text.replace(f"{{{{ $labels.{label} }}}}", value)
        annotations[key] = text
    return {
        "exp_labels": {**labels, "severity": severity, "component": "abflow-monitor"},
        "exp_annotations": annotations,
    }


@needs_promtool
def test_alerts_fire_on_the_monitors_alarms_and_only_then(tmp_path: Path) -> None:
    (tmp_path / "alerts.yaml").write_text(alert_rules_yaml(), encoding="utf-8")
    stale = STALE_SECONDS // 60
    tests = {
        "rule_files": ["alerts.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    # The challenger's scores drift from minute 10 on; the control never.
                    {
                        "series": 'abflow_monitor_alarm{experiment="fraud",kind="prediction_drift",variant="challenger"}',
                        "values": "0x9 1x20",
                    },
                    {
                        "series": 'abflow_monitor_alarm{experiment="fraud",kind="prediction_drift",variant="control"}',
                        "values": "0x30",
                    },
                    {
                        "series": 'abflow_monitor_alarm{experiment="fraud",kind="variant_skew",variant="challenger"}',
                        "values": "0x4 1x5 0x20",
                    },
                    {
                        "series": 'abflow_monitor_alarm{experiment="fraud",kind="quality",variant="challenger"}',
                        "values": "0x30",
                    },
                    # The monitor's last pass: it stops at minute 0 of a clock that starts at 0.
                    {
                        "series": 'abflow_monitor_last_run_timestamp_seconds{experiment="fraud"}',
                        "values": f"0x{stale + 30}",
                    },
                ],
                "alert_rule_test": [
                    {"eval_time": "5m", "alertname": "AbflowPredictionDrift", "exp_alerts": []},
                    {
                        "eval_time": "12m",
                        "alertname": "AbflowPredictionDrift",
                        "exp_alerts": [
                            _alert(
                                "AbflowPredictionDrift",
                                "page",
                                experiment="fraud",
                                variant="challenger",
                            )
                        ],
                    },
                    {
                        "eval_time": "6m",
                        "alertname": "AbflowVariantSkew",
                        "exp_alerts": [_alert("AbflowVariantSkew", "page", experiment="fraud")],
                    },
                    {"eval_time": "12m", "alertname": "AbflowVariantSkew", "exp_alerts": []},
                    {"eval_time": "20m", "alertname": "AbflowQualityRegression", "exp_alerts": []},
                    {"eval_time": "20m", "alertname": "AbflowMonitorStale", "exp_alerts": []},
                    {
                        "eval_time": f"{stale + 15}m",
                        "alertname": "AbflowMonitorStale",
                        "exp_alerts": [_alert("AbflowMonitorStale", "ticket", experiment="fraud")],
                    },
                ],
            }
        ],
    }
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests), encoding="utf-8")
    result = run_promtool(tmp_path, "test", "rules", "tests.yaml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_operator_resource_holds_the_same_rules() -> None:
    resource = prometheus_rule("abflow-gateway", "fraud", {"app.kubernetes.io/name": "abflow"})
    assert resource["kind"] == "PrometheusRule"
    assert resource["spec"] == yaml.safe_load(alert_rules_yaml())
    names = [rule["alert"] for rule in resource["spec"]["groups"][0]["rules"]]
    assert names == [alert[0] for alert in ALERTS]


def test_the_helm_chart_holds_the_generated_rules() -> None:
    """The chart's template is written by helm_template(); the chart test renders it and
    compares it with abflow k8s render's PrometheusRule."""
    from abflow.deploy.alerts import HELM_TEMPLATE, helm_template

    root = Path(__file__).resolve().parents[2]
    assert (root / HELM_TEMPLATE).read_text(encoding="utf-8") == helm_template()
