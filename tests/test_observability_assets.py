"""The Prometheus alert rules and the Grafana dashboard in config/: valid for their tools, their
alerts fire on the series they are about, and every metric and label they query is one the
gateway exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

from aibridged.metrics import Metrics

CONFIG = Path(__file__).resolve().parent.parent / "config"
RULES = CONFIG / "prometheus" / "aibridged-alerts.yml"
RULE_TESTS = CONFIG / "prometheus" / "aibridged-alerts.test.yml"
DASHBOARD = CONFIG / "grafana" / "aibridged-dashboard.json"
METRIC = re.compile(r"\b((?:coder_aibridged|process)_[a-z_]+)\b")
BY = re.compile(r"\bby \(([^)]*)\)")
SCRAPE_LABELS = {"instance", "job", "le"}  # added by Prometheus, or a histogram's own

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (Debian: apt-get install prometheus)"
)


def _exported() -> dict[str, set[str]]:
    """Every series name the gateway exposes, with its labels."""
    metrics = Metrics(CollectorRegistry(), process_metrics=False)
    found: dict[str, set[str]] = {
        "process_resident_memory_bytes": set(),
        "process_cpu_seconds_total": set(),
        "up": set(),
    }
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    for metric in vars(metrics).values():
        if isinstance(metric, MetricWrapperBase):
            for suffix in suffixes[metric._type]:
                found[metric._name + suffix] = set(metric._labelnames)
    # Computed at scrape by the key pools' collector (providers/keypool.py), not a wrapper.
    found[metrics.key_pool_state_name] = {"provider", "state"}
    return found


def _expressions() -> list[str]:
    rules = RULES.read_text()
    exprs = [line.split("expr:", 1)[1].strip() for line in rules.splitlines() if "expr:" in line]
    dashboard = json.loads(DASHBOARD.read_text())
    exprs += [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    return exprs


@needs_promtool
def test_promtool_accepts_the_rules_and_their_unit_tests_pass() -> None:
    assert PROMTOOL is not None
    for command in (["check", "rules", str(RULES)], ["test", "rules", str(RULE_TESTS)]):
        done = subprocess.run([PROMTOOL, *command], capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stdout + done.stderr


def test_every_queried_metric_and_label_is_exported() -> None:
    exported = _exported()
    expressions = _expressions()
    assert len(expressions) >= 25
    for expr in expressions:
        names = set(METRIC.findall(expr)) | ({"up"} if "up{" in expr else set())
        unknown = names - set(exported)
        assert not unknown, f"{expr}: not exported: {unknown}"
        labels = set().union(*(exported[n] for n in names)) | SCRAPE_LABELS
        for group in BY.findall(expr):
            used = {label.strip() for label in group.split(",")}
            assert used <= labels, f"{expr}: no such label {used - labels}"


def test_the_dashboard_is_importable() -> None:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "instance"} <= variables
    for panel in dashboard["panels"]:
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"])
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}" and panel["targets"]
    titles = " ".join(p["title"] for p in dashboard["panels"]).lower()
    for topic in ("requests", "overhead", "tokens", "provider", "reload", "recorder", "dropped"):
        assert topic in titles, topic
    assert "retention" in titles
    for topic in ("keys", "circuit breaker", "dump"):
        assert topic in titles, topic
