#!/usr/bin/env python3
"""Generate the exam-results Grafana dashboards (classic JSON model).

The JSON files beside this script are the artefacts Grafana loads; this script is how they are
written, so that every panel is built the same way (datasource ``${datasource}``, a unit,
``$__rate_interval`` in every rate). Edit the panels here, then run

    python3 grafana/dashboards/generate.py

and commit both. ``grafana/tests/test_dashboards.py`` fails when the JSON and this script differ.

Each target carries a ``scope`` outside Grafana's model (dropped from the JSON): ``local`` for
queries over the functions', PgBouncer's and PostgreSQL's metrics, which the local stack
(`make up`) provides, and ``kubernetes`` for kubelet, kube-state-metrics and Knative metrics,
which only a cluster has. The live test reads it through ``panel_queries()``.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCHEMA_VERSION = 39
DS = {"type": "prometheus", "uid": "${datasource}"}

# Route filter that keeps health probes out of request panels (they are not user traffic).
NOT_PROBES = 'http_route!~"/healthz|/readyz"'
FN = 'namespace=~"$namespace", function=~"$function"'
KN = 'k8s_namespace_name=~"$namespace", kn_service_name=~"$function"'
NS = 'namespace=~"$namespace"'


def target(expr: str, legend: str, scope: str, ref: str = "A") -> dict:
    return {"expr": expr, "legendFormat": legend, "refId": ref, "scope": scope,
            "datasource": DS, "range": True, "instant": False}


class Layout:
    """Places panels left to right on Grafana's 24-column grid."""

    def __init__(self) -> None:
        self.x = 0
        self.y = 0
        self.row_h = 0
        self.next_id = 1
        self.panels: list[dict] = []

    def row(self, title: str) -> None:
        self._newline()
        self.panels.append({"type": "row", "title": title, "id": self._id(), "collapsed": False,
                            "gridPos": {"x": 0, "y": self.y, "w": 24, "h": 1}, "panels": []})
        self.y += 1

    def add(self, panel: dict, w: int = 8, h: int = 8) -> None:
        if self.x + w > 24:
            self._newline()
        panel["id"] = self._id()
        panel["gridPos"] = {"x": self.x, "y": self.y, "w": w, "h": h}
        self.panels.append(panel)
        self.x += w
        self.row_h = max(self.row_h, h)

    def _newline(self) -> None:
        if self.x:
            self.y += self.row_h
        self.x = 0
        self.row_h = 0

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id - 1


def thresholds(*steps: tuple) -> dict:
    return {"mode": "absolute",
            "steps": [{"color": c, "value": v} for v, c in steps]}


def timeseries(title: str, description: str, unit: str, targets: list[dict], *,
               decimals: int | None = None, minimum: float | None = 0,
               maximum: float | None = None, stack: bool = False,
               th: dict | None = None) -> dict:
    defaults: dict = {
        "unit": unit,
        "color": {"mode": "palette-classic"},
        "custom": {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10 if not stack else 30,
                   "showPoints": "never", "spanNulls": False,
                   "stacking": {"mode": "normal" if stack else "none", "group": "A"}},
        "thresholds": th or thresholds((None, "green")),
    }
    if decimals is not None:
        defaults["decimals"] = decimals
    if minimum is not None:
        defaults["min"] = minimum
    if maximum is not None:
        defaults["max"] = maximum
    if th is not None:
        defaults["custom"]["thresholdsStyle"] = {"mode": "line"}
    return {"type": "timeseries", "title": title, "description": description, "datasource": DS,
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": {"legend": {"displayMode": "table", "placement": "bottom",
                                   "calcs": ["lastNotNull", "max"], "showLegend": True},
                        "tooltip": {"mode": "multi", "sort": "desc"}},
            "targets": _refs(targets)}


def gauge(title: str, description: str, unit: str, targets: list[dict], th: dict,
          maximum: float = 1) -> dict:
    return {"type": "gauge", "title": title, "description": description, "datasource": DS,
            "fieldConfig": {"defaults": {"unit": unit, "min": 0, "max": maximum,
                                         "decimals": 1, "thresholds": th,
                                         "color": {"mode": "thresholds"}},
                            "overrides": []},
            "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                        "showThresholdLabels": False, "showThresholdMarkers": True,
                        "orientation": "auto"},
            "targets": _refs(targets)}


def stat(title: str, description: str, unit: str, targets: list[dict], th: dict,
         decimals: int | None = None, graph: bool = True) -> dict:
    defaults: dict = {"unit": unit, "thresholds": th, "color": {"mode": "thresholds"}}
    if decimals is not None:
        defaults["decimals"] = decimals
    return {"type": "stat", "title": title, "description": description, "datasource": DS,
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                        "colorMode": "value", "graphMode": "area" if graph else "none",
                        "justifyMode": "auto", "textMode": "auto", "orientation": "auto"},
            "targets": _refs(targets)}


def table(title: str, description: str, unit: str, targets: list[dict]) -> dict:
    for t in targets:
        t["format"] = "table"
        t["instant"] = True
        t["range"] = False
    return {"type": "table", "title": title, "description": description, "datasource": DS,
            "fieldConfig": {"defaults": {"unit": unit, "thresholds": thresholds((None, "green"))},
                            "overrides": []},
            "options": {"showHeader": True},
            "transformations": [{"id": "organize", "options": {
                "excludeByName": {"Time": True, "Value": True, "__name__": True}}}],
            "targets": _refs(targets)}


def _refs(targets: list[dict]) -> list[dict]:
    for i, t in enumerate(targets):
        t["refId"] = chr(ord("A") + i)
    return targets


def variable_datasource() -> dict:
    return {"name": "datasource", "label": "Data source", "type": "datasource",
            "query": "prometheus", "current": {}, "hide": 0, "refresh": 1, "regex": "",
            "includeAll": False, "multi": False, "options": []}


def variable_query(name: str, label: str, query: str, *, multi: bool, include_all: bool,
                   all_value: str | None = None) -> dict:
    v = {"name": name, "label": label, "type": "query", "datasource": DS,
         "definition": query, "query": {"query": query, "refId": f"{name}-query"},
         "refresh": 2, "sort": 1, "hide": 0, "regex": "", "current": {}, "options": [],
         "multi": multi, "includeAll": include_all}
    if all_value is not None:
        v["allValue"] = all_value
    return v


def common_variables() -> list[dict]:
    return [
        variable_datasource(),
        variable_query("namespace", "Namespace", "label_values(up, namespace)",
                       multi=False, include_all=False),
        variable_query("function", "Function",
                       'label_values(exam_results_build_info{namespace=~"$namespace"}, function)',
                       multi=True, include_all=True, all_value=".+"),
    ]


def dashboard(uid: str, title: str, description: str, panels: list[dict],
              variables: list[dict], tags: list[str]) -> dict:
    return {
        "uid": uid, "title": title, "description": description, "tags": tags,
        "schemaVersion": SCHEMA_VERSION, "version": 1, "editable": True, "graphTooltip": 1,
        "timezone": "browser", "refresh": "30s", "time": {"from": "now-3h", "to": "now"},
        "timepicker": {}, "fiscalYearStartMonth": 0, "liveNow": False, "weekStart": "",
        "annotations": {"list": [{
            "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"},
            "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)",
            "name": "Annotations & Alerts", "type": "dashboard"}]},
        "links": [{"title": "Exam results dashboards", "type": "dashboards", "tags": ["exam-results"],
                   "asDropdown": True, "includeVars": True, "keepTime": True}],
        "templating": {"list": variables},
        "panels": panels,
    }


# --------------------------------------------------------------------------- service dashboard
def service_dashboard() -> dict:
    L = Layout()
    req = f"http_server_request_duration_seconds_count{{{FN}, {NOT_PROBES}}}"
    bucket = f"http_server_request_duration_seconds_bucket{{{FN}, {NOT_PROBES}}}"

    L.row("At a glance")
    L.add(stat(
        "Requests per second", "All functions together, health probes excluded.", "reqps",
        [target(f"sum(rate({req}[$__rate_interval]))", "requests/s", "local")],
        thresholds((None, "green")), decimals=1), w=4)
    L.add(stat(
        "5xx ratio", "Share of requests answered with a 5xx. SLO: 0.1 %.", "percentunit",
        [target(f'(\n  sum(rate(http_server_request_duration_seconds_count{{{FN}, {NOT_PROBES}, '
                f'http_response_status_code=~"5.."}}[$__rate_interval]))\n  or\n'
                f"  0 * sum(rate({req}[$__rate_interval]))\n)\n/\n"
                f"sum(rate({req}[$__rate_interval]))", "5xx", "local")],
        thresholds((None, "green"), (0.001, "orange"), (0.0144, "red")), decimals=2), w=4)
    L.add(stat(
        "p99 latency", "99th percentile over all functions. Objective: 99 % within 250 ms.", "s",
        [target(f"histogram_quantile(0.99, sum by (le) (rate({bucket}[$__rate_interval])))",
                "p99", "local")],
        thresholds((None, "green"), (0.25, "red")), decimals=3), w=4)
    L.add(stat(
        "Clients waiting in PgBouncer", "Client connections queued for a server connection, "
        "all pooler pods.", "short",
        [target(f'sum(pgbouncer_pools_client_waiting_connections{{{NS}, database!="pgbouncer"}})',
                "waiting", "local")],
        thresholds((None, "green"), (1, "orange"), (10, "red")), decimals=0), w=4)
    L.add(stat(
        "Worst replica lag", "The largest replication lag of any PostgreSQL replica.", "s",
        [target(f"max(cnpg_pg_replication_lag{{{NS}}})", "lag", "local")],
        thresholds((None, "green"), (10, "orange"), (30, "red")), decimals=1), w=4)
    L.add(stat(
        "Fullest volume", "The most used persistent volume in the namespace (kubelet, cluster "
        "only): the PostgreSQL data and WAL volumes.", "percentunit",
        [target(f"max(\n  kubelet_volume_stats_used_bytes{{{NS}}}\n  /\n"
                f"  kubelet_volume_stats_capacity_bytes{{{NS}}}\n)", "used", "kubernetes")],
        thresholds((None, "green"), (0.75, "yellow"), (0.85, "orange"), (0.97, "red")), decimals=1), w=4)

    L.row("Requests (function metrics)")
    L.add(timeseries(
        "Request rate by function", "Requests per second each function answers, health probes excluded.",
        "reqps", [target(f"sum by (function) (rate({req}[$__rate_interval]))", "{{function}}", "local")]))
    L.add(timeseries(
        "Error ratio (5xx) by function",
        "Share of requests answered with a 5xx (0 while there are none). The availability SLO "
        "allows 0.1 % (red line).",
        "percentunit",
        [target(f'(\n  sum by (function) (rate(http_server_request_duration_seconds_count{{{FN}, {NOT_PROBES}, '
                f'http_response_status_code=~"5.."}}[$__rate_interval]))\n  or\n'
                f"  0 * sum by (function) (rate({req}[$__rate_interval]))\n)\n/\n"
                f"sum by (function) (rate({req}[$__rate_interval]))", "{{function}}", "local")],
        th=thresholds((None, "green"), (0.001, "red"))))
    L.add(timeseries(
        "Responses by status code", "Responses per second by function and HTTP status code.",
        "reqps",
        [target(f"sum by (function, http_response_status_code) (rate({req}[$__rate_interval]))",
                "{{function}} {{http_response_status_code}}", "local")], stack=True))
    L.add(timeseries(
        "Latency p50 / p95 / p99 by function",
        "Quantiles from the request-duration histogram summed over all pods (a summary could not be).",
        "s",
        [target(f"histogram_quantile({q}, sum by (function, le) (rate({bucket}[$__rate_interval])))",
                f"{{{{function}}}} p{int(q * 100)}", "local") for q in (0.5, 0.95, 0.99)],
        th=thresholds((None, "green"), (0.25, "red"))), w=12)
    L.add(timeseries(
        "Latency p95 by route", "95th percentile per method and route template.", "s",
        [target(f"histogram_quantile(0.95, sum by (http_request_method, http_route, le) "
                f"(rate({bucket}[$__rate_interval])))",
                "{{http_request_method}} {{http_route}}", "local")]), w=12)
    L.add(timeseries(
        "In-flight requests", "Requests being handled right now, summed over pods.", "short",
        [target(f"sum by (function) (http_server_active_requests{{{FN}}})", "{{function}}", "local")],
        decimals=0))
    L.add(timeseries(
        "Errors by code", "Error replies per second by the error code in the JSON body.", "reqps",
        [target(f"sum by (function, code) (rate(exam_results_errors_total{{{FN}}}[$__rate_interval]))",
                "{{function}} {{code}}", "local")], stack=True))
    L.add(table(
        "Running versions", "Build info of every running function pod (version and git revision).",
        "none",
        [target(f"count by (function, version, revision) (exam_results_build_info{{{FN}}})",
                "", "local")]))

    L.row("Database pool (function metrics)")
    L.add(timeseries(
        "Pool saturation", "Connections in use over the pool's maximum, per function (all pods).",
        "percentunit",
        [target(f'sum by (function) (exam_results_db_pool_connections{{{FN}, state="in_use"}})\n/\n'
                f"sum by (function) (exam_results_db_pool_max_connections{{{FN}}})",
                "{{function}}", "local")],
        maximum=1, th=thresholds((None, "green"), (0.8, "orange"), (0.95, "red"))))
    L.add(timeseries(
        "Pool connections in use / idle", "Pooled connections by state, summed over pods.", "short",
        [target(f"sum by (function, state) (exam_results_db_pool_connections{{{FN}}})",
                "{{function}} {{state}}", "local"),
         target(f"sum by (function) (exam_results_db_pool_max_connections{{{FN}}})",
                "{{function}} max", "local")], decimals=0))
    L.add(timeseries(
        "Pool wait p95", "Time a request waits for a pooled connection (95th percentile).", "s",
        [target("histogram_quantile(0.95, sum by (function, le) (rate("
                f"exam_results_db_pool_wait_duration_seconds_bucket{{{FN}}}[$__rate_interval])))",
                "{{function}}", "local")]))
    L.add(timeseries(
        "Query duration p95 by operation", "95th percentile of database query time per operation.",
        "s",
        [target("histogram_quantile(0.95, sum by (operation, le) (rate("
                f"exam_results_db_query_duration_seconds_bucket{{{FN}}}[$__rate_interval])))",
                "{{operation}}", "local")]), w=12)
    L.add(timeseries(
        "Replica lag seen by read functions",
        "Replication lag the read functions measured; above MAX_REPLICA_LAG_SECONDS they read from "
        "the primary.", "s",
        [target(f"max by (function) (exam_results_replica_lag_seconds{{{FN}}})", "{{function}}",
                "local")]), w=12)

    L.row("Knative autoscaling per revision (cluster only, Knative Serving >= 1.19)")
    L.add(timeseries(
        "Desired vs actual pods", "Pods the autoscaler wants against pods that exist, per revision.",
        "short",
        [target(f"sum by (kn_revision_name) (kn_revision_pods_desired{{{KN}}})",
                "{{kn_revision_name}} desired", "kubernetes"),
         target(f"sum by (kn_revision_name) (kn_revision_pods_count{{{KN}}})",
                "{{kn_revision_name}} actual", "kubernetes"),
         target(f"sum by (kn_revision_name) (kn_revision_pods_not_ready_count{{{KN}}})",
                "{{kn_revision_name}} not ready", "kubernetes")], decimals=0))
    L.add(timeseries(
        "Observed vs target concurrency",
        "Average in-flight requests per pod over the stable and panic windows against the target.",
        "short",
        [target(f"avg by (kn_revision_name) (kn_revision_concurrency_stable{{{KN}}})",
                "{{kn_revision_name}} stable", "kubernetes"),
         target(f"avg by (kn_revision_name) (kn_revision_concurrency_panic{{{KN}}})",
                "{{kn_revision_name}} panic window", "kubernetes"),
         target(f"avg by (kn_revision_name) (kn_revision_concurrency_target{{{KN}}})",
                "{{kn_revision_name}} target", "kubernetes")]))
    L.add(timeseries(
        "Panic mode", "1 while the autoscaler is in panic mode for the revision.", "bool_on_off",
        [target(f"max by (kn_revision_name) (kn_revision_panic_mode{{{KN}}})",
                "{{kn_revision_name}}", "kubernetes")], maximum=1))
    L.add(timeseries(
        "Queue-proxy latency p95",
        "Request duration measured by Knative's queue-proxy sidecar (includes queueing in the pod).",
        "s",
        [target("histogram_quantile(0.95, sum by (service, le) (rate("
                f'kn_serving_invocation_duration_seconds_bucket{{{NS}, pod=~"($function)-.*"}}'
                "[$__rate_interval])))", "{{service}}", "kubernetes")]), w=12)
    L.add(timeseries(
        "Queue-proxy queue depth", "Requests waiting in the queue-proxy for a container slot.",
        "short",
        [target(f'sum by (service) (kn_serving_queue_depth{{{NS}, pod=~"($function)-.*"}})',
                "{{service}}", "kubernetes")]), w=12)

    return dashboard(
        "exam-results-service", "Exam results: service",
        "Request rate, errors, latency, in-flight requests and database pools of the five "
        "exam-results functions, and Knative autoscaling per revision. docs/observability.md",
        L.panels, common_variables(), ["exam-results"])


# --------------------------------------------------------------------------- data tier dashboard
def data_tier_dashboard() -> dict:
    L = Layout()
    pvc = f'namespace=~"$namespace", persistentvolumeclaim=~"$pvc"'
    avail = f"kubelet_volume_stats_available_bytes{{{pvc}}}"

    L.row("Persistent volumes of the PostgreSQL pods (kubelet, cluster only)")
    L.add(gauge(
        "Volume used", "Share of each claim's capacity in use. Alerts: 85 % with a four-day "
        "fill-up forecast (warning), 97 % (critical).", "percentunit",
        [target(f"max by (persistentvolumeclaim) (kubelet_volume_stats_used_bytes{{{pvc}}})\n/\n"
                f"max by (persistentvolumeclaim) (kubelet_volume_stats_capacity_bytes{{{pvc}}})",
                "{{persistentvolumeclaim}}", "kubernetes")],
        thresholds((None, "green"), (0.75, "yellow"), (0.85, "orange"), (0.97, "red"))), w=8)
    L.add(stat(
        "Days until full", "Free space divided by the daily decrease over the last 6 hours, from "
        "predict_linear (the same linear fit the fill-up alert uses). Empty while a volume is not "
        "filling.", "d",
        [target(f"max by (persistentvolumeclaim) (predict_linear({avail}[6h], 0))\n/\n"
                f"(\n  max by (persistentvolumeclaim) (predict_linear({avail}[6h], 0))\n  -\n"
                f"  max by (persistentvolumeclaim) (predict_linear({avail}[6h], 86400))\n) > 0",
                "{{persistentvolumeclaim}}", "kubernetes")],
        thresholds((None, "red"), (4, "orange"), (14, "green")), decimals=1, graph=False), w=8)
    L.add(timeseries(
        "Inodes used", "Share of each claim's inodes in use.", "percentunit",
        [target(f"max by (persistentvolumeclaim) (kubelet_volume_stats_inodes_used{{{pvc}}})\n/\n"
                f"max by (persistentvolumeclaim) (kubelet_volume_stats_inodes{{{pvc}}})",
                "{{persistentvolumeclaim}}", "kubernetes")], maximum=1,
        th=thresholds((None, "green"), (0.85, "orange"), (0.97, "red"))), w=8)
    L.add(timeseries(
        "Volume used and capacity", "Bytes used against capacity per claim.", "bytes",
        [target(f"max by (persistentvolumeclaim) (kubelet_volume_stats_used_bytes{{{pvc}}})",
                "{{persistentvolumeclaim}} used", "kubernetes"),
         target(f"max by (persistentvolumeclaim) (kubelet_volume_stats_capacity_bytes{{{pvc}}})",
                "{{persistentvolumeclaim}} capacity", "kubernetes")]), w=12)
    L.add(timeseries(
        "Free space now and forecast in 4 days", "Available bytes and predict_linear's forecast "
        "four days out over a 6 h window; a forecast below zero is what the warning alert fires on.",
        "bytes",
        [target(f"max by (persistentvolumeclaim) ({avail})",
                "{{persistentvolumeclaim}} free", "kubernetes"),
         target(f"max by (persistentvolumeclaim) (predict_linear({avail}[6h], 4 * 86400))",
                "{{persistentvolumeclaim}} forecast +4d", "kubernetes")], minimum=None), w=12)

    L.row("PostgreSQL (CloudNativePG metrics)")
    L.add(stat(
        "Instances up", "PostgreSQL instances whose exporter reaches the database.", "none",
        [target(f"sum(cnpg_collector_up{{{NS}}})", "up", "local")],
        thresholds((None, "red"), (1, "orange"), (2, "green")), decimals=0, graph=False), w=4)
    L.add(stat(
        "Streaming replicas", "Replicas streaming from the primary.", "none",
        [target(f"max(cnpg_pg_replication_streaming_replicas{{{NS}}})", "replicas", "local")],
        thresholds((None, "red"), (1, "green")), decimals=0, graph=False), w=4)
    L.add(timeseries(
        "Replication lag", "Seconds each replica is behind the primary. Alert at 30 s.", "s",
        [target(f"max by (pod) (cnpg_pg_replication_lag{{{NS}}})", "{{pod}}", "local")],
        th=thresholds((None, "green"), (30, "red"))), w=8)
    L.add(timeseries(
        "Connections vs max_connections", "Backends per instance against max_connections.",
        "short",
        [target(f"sum by (pod) (cnpg_backends_total{{{NS}}})", "{{pod}} backends", "local"),
         target(f'max by (pod) (cnpg_pg_settings_setting{{{NS}, name="max_connections"}})',
                "{{pod}} max_connections", "local")], decimals=0), w=8)
    L.add(timeseries(
        "Transactions per second", "Committed plus rolled-back transactions per second, by "
        "instance and database.", "ops",
        [target(f'sum by (pod, datname) (rate(cnpg_pg_stat_database_xact_commit{{{NS}, '
                f'datname!~"template.*"}}[$__rate_interval]) + rate(cnpg_pg_stat_database_xact_rollback'
                f'{{{NS}, datname!~"template.*"}}[$__rate_interval]))',
                "{{pod}} {{datname}}", "local")]), w=8)
    L.add(timeseries(
        "Database size", "Size of each database on each instance.", "bytes",
        [target(f'max by (pod, datname) (cnpg_pg_database_size_bytes{{{NS}, datname!~"template.*"}})',
                "{{pod}} {{datname}}", "local")]), w=8)
    L.add(timeseries(
        "Partition sizes", "Total size (table, indexes, TOAST) of every partition of a partitioned "
        "table, from the exam_results_partition custom query (grafana/postgres/queries.yaml).",
        "bytes",
        [target(f"max by (parent, partition) (cnpg_exam_results_partition_size_bytes{{{NS}}})",
                "{{parent}} {{partition}}", "local")], stack=True), w=8)

    L.row("PgBouncer (per pooler pod)")
    pgb = f'{NS}, database!="pgbouncer"'
    L.add(timeseries(
        "Clients active / waiting", "Client connections linked to a server connection, and "
        "clients queued for one.", "short",
        [target(f"sum by (pod) (pgbouncer_pools_client_active_connections{{{pgb}}})",
                "{{pod}} active", "local"),
         target(f"sum by (pod) (pgbouncer_pools_client_waiting_connections{{{pgb}}})",
                "{{pod}} waiting", "local")], decimals=0))
    L.add(timeseries(
        "Server connections active / idle", "Server connections to PostgreSQL per pooler pod.",
        "short",
        [target(f"sum by (pod) (pgbouncer_pools_server_active_connections{{{pgb}}})",
                "{{pod}} active", "local"),
         target(f"sum by (pod) (pgbouncer_pools_server_idle_connections{{{pgb}}})",
                "{{pod}} idle", "local")], decimals=0))
    L.add(timeseries(
        "Longest client wait", "How long the oldest queued client has waited, per pod and "
        "database. Alert above 1 s while clients wait.", "s",
        [target(f"max by (pod, database) (pgbouncer_pools_client_maxwait_seconds{{{pgb}}})",
                "{{pod}} {{database}}", "local")], th=thresholds((None, "green"), (1, "red"))))
    L.add(stat(
        "PgBouncer pods available", "Available replicas of the PgBouncer Deployment "
        "(kube-state-metrics). Alert below 2.", "none",
        [target(f'sum(kube_deployment_status_replicas_available{{{NS}, deployment=~"(.*-)?pgbouncer"}})',
                "available", "kubernetes")],
        thresholds((None, "red"), (1, "orange"), (2, "green")), decimals=0, graph=False), w=6)
    L.add(timeseries(
        "Function pool saturation", "Pooled connections in use over the maximum, per function: "
        "the client side of the pooler.", "percentunit",
        [target(f'sum by (function) (exam_results_db_pool_connections{{{FN}, state="in_use"}})\n/\n'
                f"sum by (function) (exam_results_db_pool_max_connections{{{FN}}})",
                "{{function}}", "local")], maximum=1,
        th=thresholds((None, "green"), (0.8, "orange"), (0.95, "red"))), w=18)

    variables = common_variables() + [
        variable_query("pvc", "Volume claim",
                       'label_values(kubelet_volume_stats_capacity_bytes{namespace=~"$namespace"}, '
                       "persistentvolumeclaim)", multi=True, include_all=True, all_value=".+"),
    ]
    return dashboard(
        "exam-results-data-tier", "Exam results: data tier",
        "Persistent-volume usage and forecast of the PostgreSQL pods, PostgreSQL replication, "
        "connections, TPS and sizes (CloudNativePG metrics), and PgBouncer pools. "
        "docs/observability.md",
        L.panels, variables, ["exam-results"])


DASHBOARDS = {
    "exam-results-service.json": service_dashboard,
    "exam-results-data-tier.json": data_tier_dashboard,
}


def strip_scope(obj):
    """The JSON Grafana loads: the same model without the generator-only ``scope`` keys."""
    if isinstance(obj, dict):
        return {k: strip_scope(v) for k, v in obj.items() if k != "scope"}
    if isinstance(obj, list):
        return [strip_scope(v) for v in obj]
    return obj


def render(build) -> str:
    return json.dumps(strip_scope(build()), indent=2, ensure_ascii=False) + "\n"


def panel_queries() -> list[dict]:
    """Every panel query of every dashboard with its scope (``local`` or ``kubernetes``)."""
    out = []
    for filename, build in DASHBOARDS.items():
        for panel in build()["panels"]:
            for t in panel.get("targets", []):
                out.append({"dashboard": filename, "panel": panel["title"], "refId": t["refId"],
                            "expr": t["expr"], "scope": t["scope"]})
    return out


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for filename, build in DASHBOARDS.items():
        path = HERE / filename
        text = render(build)
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(filename)
        else:
            path.write_text(text)
            print(f"wrote {path}")
    if stale:
        print("out of date (run python3 grafana/dashboards/generate.py): " + ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
