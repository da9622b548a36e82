"""The Prometheus alert rules in deploy/prometheus, checked and unit-tested by promtool on
synthetic series (alerts_test.yml), and the metrics they read, named as the server exports them."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

RULES = Path(__file__).resolve().parents[1] / "deploy" / "prometheus"
promtool = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(promtool is None, reason="promtool not installed (Debian package prometheus)")


@needs_promtool
def test_alert_rules_pass_their_unit_tests():
    checked = subprocess.run([promtool, "check", "rules", str(RULES / "alerts.yml")], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run([promtool, "test", "rules", str(RULES / "alerts_test.yml")], capture_output=True, text=True)
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr


@needs_promtool
def test_a_broken_rule_fails_its_unit_test(tmp_path):
    """The unit tests can fail: a threshold moved from 1% to 5% server errors misses the 3% case."""
    for name in ("alerts.yml", "alerts_test.yml"):
        shutil.copy(RULES / name, tmp_path / name)
    rules = (tmp_path / "alerts.yml").read_text()
    (tmp_path / "alerts.yml").write_text(rules.replace("> 0.01\n", "> 0.05\n", 1))
    tested = subprocess.run([promtool, "test", "rules", str(tmp_path / "alerts_test.yml")], capture_output=True, text=True)
    assert tested.returncode != 0 and "LimnerHighErrorRate" in tested.stdout + tested.stderr


def _exported_metric_names() -> set[str]:
    """Every series name the server's /metrics carries once each metric has a value."""
    from limner.serving.metrics import ServerMetrics

    metrics = ServerMetrics()
    metrics.requests.labels("images", "200").inc()
    metrics.latency.labels("images").observe(0.1)
    metrics.batch_images.observe(4)
    metrics.queue_depth.labels("m").set(0)
    metrics.queue_limit.labels("m").set(256)
    metrics.images.labels("m").inc()
    metrics.ready.set(1)
    return set(re.findall(r"^(limner_\w+?)(?:\{| )", metrics.render().decode(), flags=re.M))


def test_alerts_read_only_metrics_the_server_exports():
    used = set(re.findall(r"\b(limner_\w+)", (RULES / "alerts.yml").read_text()))
    assert used and used <= _exported_metric_names(), used - _exported_metric_names()


def test_the_grafana_dashboard_queries_exported_metrics():
    import json

    dashboard = json.loads((RULES.parent / "grafana" / "limner.json").read_text())
    queries = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    used = {name for query in queries for name in re.findall(r"\b(limner_\w+)", query)}
    assert len(queries) >= 7 and used <= _exported_metric_names(), used - _exported_metric_names()
