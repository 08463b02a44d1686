"""Shared helpers for the observability tests (grafana/tests)."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
GRAFANA = REPO / "grafana"
RULES = GRAFANA / "alerts" / "exam-results.rules.yml"
RULE_TESTS = GRAFANA / "alerts" / "exam-results.rules.test.yml"
DASHBOARD_DIR = GRAFANA / "dashboards"
CHART = REPO / "knative" / "exam-results"
DOC = REPO / "docs" / "observability.md"
CHART_RULES = CHART / "observability" / "exam-results.rules.yml"

sys.path.insert(0, str(GRAFANA))  # generate.py and the mixin package

# Metric names the functions export (docs/observability.md, "Metric catalogue"); dashboards and
# rules must use exactly these.
FUNCTION_METRICS = {
    "http_server_request_duration_seconds_bucket",
    "http_server_request_duration_seconds_sum",
    "http_server_request_duration_seconds_count",
    "http_server_active_requests",
    "exam_results_db_pool_connections",
    "exam_results_db_pool_max_connections",
    "exam_results_db_pool_wait_duration_seconds_bucket",
    "exam_results_db_pool_wait_duration_seconds_sum",
    "exam_results_db_pool_wait_duration_seconds_count",
    "exam_results_db_query_duration_seconds_bucket",
    "exam_results_db_query_duration_seconds_sum",
    "exam_results_db_query_duration_seconds_count",
    "exam_results_errors_total",
    "exam_results_replica_lag_seconds",
    "exam_results_read_cache_lookups_total",
    "exam_results_read_cache_entries",
    "exam_results_build_info",
}

# Every function of functions.yaml, in Grafana's regex form for a multi-value variable.
ALL_FUNCTIONS = "(" + "|".join(f["name"] for f in yaml.safe_load((CHART / "functions.yaml").read_text())["functions"]) + ")"

# Grafana variables replaced by concrete values before a query goes to a PromQL parser or to
# Prometheus. Multi-value variables take Grafana's regex form.
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "${namespace}": "local",
    "$namespace": "local",
    "${function}": ALL_FUNCTIONS,
    "$function": ALL_FUNCTIONS,
    "${pvc}": ".+",
    "$pvc": ".+",
}


def substitute(expr: str, overrides: dict | None = None) -> str:
    values = dict(GRAFANA_VARIABLES)
    values.update(overrides or {})
    for key in sorted(values, key=len, reverse=True):
        expr = expr.replace(key, values[key])
    # ($1 and friends are label_replace's group references, not Grafana variables)
    leftover = re.findall(r"\$\{?[A-Za-z_]\w*", expr)
    assert not leftover, f"unsubstituted Grafana variables {leftover} in {expr}"
    return expr


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if not path:
        pytest.fail(f"{name} not found: install the packages in .ci/apt-observability.txt")
    return path


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw)
