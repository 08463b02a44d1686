"""Grafana provisioning files: the shapes Grafana's file provisioners read."""
from __future__ import annotations

import yaml

from conftest import GRAFANA

PROV = GRAFANA / "provisioning"


def test_datasource_is_a_prometheus_datasource_on_the_local_port():
    doc = yaml.safe_load((PROV / "datasources" / "prometheus.yml").read_text())
    assert doc["apiVersion"] == 1
    (ds,) = doc["datasources"]
    assert ds["type"] == "prometheus" and ds["access"] == "proxy"
    assert ds["url"] == "http://127.0.0.1:9090"
    tmpl = (GRAFANA / "prometheus" / "prometheus.yml.tmpl").read_text()
    assert f"scrape_interval: {ds['jsonData']['timeInterval']}" in tmpl


def test_dashboard_provider_loads_files_into_the_exam_results_folder():
    doc = yaml.safe_load((PROV / "dashboards" / "exam-results.yml").read_text())
    assert doc["apiVersion"] == 1
    (p,) = doc["providers"]
    assert p["type"] == "file" and p["folder"] == "Exam results"
    assert p["options"]["path"].startswith("/")
