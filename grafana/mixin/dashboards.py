"""Typed Grafana panel builders (classic JSON model) and the two exam-results dashboards.

Every panel is built the same way: datasource ``${datasource}``, a unit, a description,
``$__rate_interval`` in every rate. A series a recording rule already names (``rules.SLO``, the
release's volume and PgBouncer series) is read through its ``Record``, never recomputed."""
from __future__ import annotations

from dataclasses import dataclass

from . import config as c
from .promql import uses_kubernetes_metrics
from .rules import SLO, records

SCHEMA_VERSION = 39
DS = {"type": "prometheus", "uid": "${datasource}"}

FN = 'namespace=~"$namespace", function=~"$function"'
KN = 'k8s_namespace_name=~"$namespace", kn_service_name=~"$function"'
NS = 'namespace=~"$namespace"'
PVC = 'namespace=~"$namespace", persistentvolumeclaim=~"$pvc"'

R = records()  # the rules as the dashboards read them (names only; the scope is the rules')
S = SLO[c.DASHBOARD_WINDOW]


# --------------------------------------------------------------------------- builders
@dataclass(frozen=True)
class Thresholds:
    steps: tuple  # ((value or None, colour), ...), ascending

    def to_json(self) -> dict:
        return {"mode": "absolute", "steps": [{"color": col, "value": v} for v, col in self.steps]}


def th(*steps: tuple) -> Thresholds:
    return Thresholds(steps)


GREEN = th((None, "green"))


@dataclass(frozen=True)
class Target:
    expr: str
    legend: str = ""

    @property
    def scope(self) -> str:
        """``kubernetes`` for queries over kubelet, kube-state-metrics or Knative series (directly
        or through a recording rule), which only a cluster has; ``local`` for the rest, which the
        local stack (`make up`) provides."""
        return "kubernetes" if uses_kubernetes_metrics(self.expr, R) else "local"

    def to_json(self, ref: str, table: bool = False) -> dict:
        return {"expr": self.expr, "legendFormat": self.legend, "refId": ref, "datasource": DS,
                "range": not table, "instant": table, **({"format": "table"} if table else {})}


@dataclass(frozen=True)
class Panel:
    title: str
    description: str
    unit: str
    targets: tuple[Target, ...]
    w: int = 8
    h: int = 8

    kind = ""

    def defaults(self) -> dict:
        return {"unit": self.unit}

    def options(self) -> dict:
        return {}

    def to_json(self) -> dict:
        table = self.kind == "table"
        out = {"type": self.kind, "title": self.title, "description": self.description,
               "datasource": DS, "fieldConfig": {"defaults": self.defaults(), "overrides": []},
               "options": self.options()}
        if table:
            out["transformations"] = [{"id": "organize", "options": {
                "excludeByName": {"Time": True, "Value": True, "__name__": True}}}]
        out["targets"] = [t.to_json(chr(ord("A") + i), table) for i, t in enumerate(self.targets)]
        return out


@dataclass(frozen=True)
class TimeSeries(Panel):
    decimals: int | None = None
    minimum: float | None = 0
    maximum: float | None = None
    stack: bool = False
    thresholds: Thresholds | None = None
    kind = "timeseries"

    def defaults(self) -> dict:
        d: dict = {
            "unit": self.unit,
            "color": {"mode": "palette-classic"},
            "custom": {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 30 if self.stack else 10,
                       "showPoints": "never", "spanNulls": False,
                       "stacking": {"mode": "normal" if self.stack else "none", "group": "A"}},
            "thresholds": (self.thresholds or GREEN).to_json(),
        }
        if self.decimals is not None:
            d["decimals"] = self.decimals
        if self.minimum is not None:
            d["min"] = self.minimum
        if self.maximum is not None:
            d["max"] = self.maximum
        if self.thresholds is not None:
            d["custom"]["thresholdsStyle"] = {"mode": "line"}
        return d

    def options(self) -> dict:
        return {"legend": {"displayMode": "table", "placement": "bottom",
                           "calcs": ["lastNotNull", "max"], "showLegend": True},
                "tooltip": {"mode": "multi", "sort": "desc"}}


@dataclass(frozen=True)
class Stat(Panel):
    thresholds: Thresholds = GREEN
    decimals: int | None = None
    graph: bool = True
    kind = "stat"

    def defaults(self) -> dict:
        d: dict = {"unit": self.unit, "thresholds": self.thresholds.to_json(),
                   "color": {"mode": "thresholds"}}
        if self.decimals is not None:
            d["decimals"] = self.decimals
        return d

    def options(self) -> dict:
        return {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                "colorMode": "value", "graphMode": "area" if self.graph else "none",
                "justifyMode": "auto", "textMode": "auto", "orientation": "auto"}


@dataclass(frozen=True)
class Gauge(Panel):
    thresholds: Thresholds = GREEN
    maximum: float = 1
    kind = "gauge"

    def defaults(self) -> dict:
        return {"unit": self.unit, "min": 0, "max": self.maximum, "decimals": 1,
                "thresholds": self.thresholds.to_json(), "color": {"mode": "thresholds"}}

    def options(self) -> dict:
        return {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                "showThresholdLabels": False, "showThresholdMarkers": True, "orientation": "auto"}


@dataclass(frozen=True)
class Table(Panel):
    kind = "table"

    def defaults(self) -> dict:
        return {"unit": self.unit, "thresholds": GREEN.to_json()}

    def options(self) -> dict:
        return {"showHeader": True}


@dataclass(frozen=True)
class Row:
    title: str


@dataclass(frozen=True)
class Variable:
    name: str
    label: str
    query: str = ""          # empty: the datasource picker
    multi: bool = False
    all_value: str | None = None

    def to_json(self) -> dict:
        if not self.query:
            return {"name": self.name, "label": self.label, "type": "datasource",
                    "query": "prometheus", "current": {}, "hide": 0, "refresh": 1, "regex": "",
                    "includeAll": False, "multi": False, "options": []}
        v = {"name": self.name, "label": self.label, "type": "query", "datasource": DS,
             "definition": self.query, "query": {"query": self.query, "refId": f"{self.name}-query"},
             "refresh": 2, "sort": 1, "hide": 0, "regex": "", "current": {}, "options": [],
             "multi": self.multi, "includeAll": self.multi}
        if self.all_value is not None:
            v["allValue"] = self.all_value
        return v


COMMON_VARIABLES = (
    Variable("datasource", "Data source"),
    Variable("namespace", "Namespace", "label_values(up, namespace)"),
    Variable("function", "Function",
             'label_values(exam_results_build_info{namespace=~"$namespace"}, function)',
             multi=True, all_value=".+"),
)


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    items: tuple
    variables: tuple = COMMON_VARIABLES
    tags: tuple = ("exam-results",)

    def panels(self) -> list[Panel]:
        return [p for p in self.items if isinstance(p, Panel)]

    def to_json(self) -> dict:
        return {
            "uid": self.uid, "title": self.title, "description": self.description,
            "tags": list(self.tags), "schemaVersion": SCHEMA_VERSION, "version": 1,
            "editable": True, "graphTooltip": 1, "timezone": "browser", "refresh": "30s",
            "time": {"from": "now-3h", "to": "now"}, "timepicker": {}, "fiscalYearStartMonth": 0,
            "liveNow": False, "weekStart": "",
            "annotations": {"list": [{
                "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)",
                "name": "Annotations & Alerts", "type": "dashboard"}]},
            "links": [{"title": "Exam results dashboards", "type": "dashboards",
                       "tags": ["exam-results"], "asDropdown": True, "includeVars": True,
                       "keepTime": True}],
            "templating": {"list": [v.to_json() for v in self.variables]},
            "panels": _layout(self.items),
        }


def _layout(items) -> list[dict]:
    """Places panels left to right on Grafana's 24-column grid, rows across the full width."""
    out, x, y, row_h = [], 0, 0, 0
    for i, item in enumerate(items, start=1):
        if isinstance(item, Row) or x + item.w > 24:
            y, x, row_h = (y + row_h if x else y), 0, 0
        if isinstance(item, Row):
            out.append({"type": "row", "title": item.title, "id": i, "collapsed": False,
                        "gridPos": {"x": 0, "y": y, "w": 24, "h": 1}, "panels": []})
            y += 1
            continue
        panel = item.to_json()
        panel["id"] = i
        panel["gridPos"] = {"x": x, "y": y, "w": item.w, "h": item.h}
        out.append(panel)
        x += item.w
        row_h = max(row_h, item.h)
    return out


# --------------------------------------------------------------------------- service dashboard
def service() -> Dashboard:
    bucket = f'http_server_request_duration_seconds_bucket{{{FN}, {c.NOT_PROBES}}}'
    count = f'http_server_request_duration_seconds_count{{{FN}, {c.NOT_PROBES}}}'
    window = c.DASHBOARD_WINDOW
    error_budget = th((None, "green"), (c.AVAILABILITY.budget, "orange"),
                      (c.BURN_RATES[0].factor * c.AVAILABILITY.budget, "red"))
    latency_line = th((None, "green"), (c.LATENCY_SECONDS, "red"))
    fast, slow = c.BURN_RATES
    qp = f'{NS}, pod=~"($function)-.*"'  # queue-proxy series carry the pod, not the function
    qp_revision = 'kn_revision_name", "$1", "pod", "(.+)-deployment-.+'

    items = (
        Row("At a glance"),
        Stat("Requests per second",
             f"All functions together, health probes excluded ({S.requests}).", "reqps",
             (Target(f"sum({S.requests(FN)})", "requests/s"),), decimals=1, w=4),
        Stat("5xx ratio",
             f"Share of requests answered with a 5xx over {window}. SLO: "
             f"{c.AVAILABILITY.budget * 100:g} %.", "percentunit",
             (Target(f"sum({S.errors(FN)})\n/\nsum({S.requests(FN)})", "5xx"),),
             thresholds=error_budget, decimals=2, w=4),
        Stat("p99 latency",
             f"99th percentile over all functions. Objective: {c.LATENCY.objective * 100:g} % within "
             f"{int(c.LATENCY_SECONDS * 1000)} ms.", "s",
             (Target(f"histogram_quantile(0.99, sum by (le) (rate({bucket}[$__rate_interval])))", "p99"),),
             thresholds=latency_line, decimals=3, w=4),
        Stat("Clients waiting in PgBouncer",
             "Client connections queued for a server connection, all pooler pods.", "short",
             (Target(f'sum(pgbouncer_pools_client_waiting_connections{{{NS}, database!="pgbouncer"}})', "waiting"),),
             thresholds=th((None, "green"), (1, "orange"), (10, "red")), decimals=0, w=4),
        Stat("Worst replica lag", "The largest replication lag of any PostgreSQL replica.", "s",
             (Target(f"max(cnpg_pg_replication_lag{{{NS}}})", "lag"),),
             thresholds=th((None, "green"), (10, "orange"), (c.REPLICA_LAG_SECONDS, "red")),
             decimals=1, w=4),
        Stat("Fullest volume",
             "The most used volume of the PostgreSQL cluster (data, WAL, tablespaces; kubelet, "
             "cluster only), as the volume alerts see it: 1 - free share.", "percentunit",
             (Target(f"1 - min({R['exam_results:postgres_volume_available:ratio'](NS)})", "used"),),
             thresholds=_volume_thresholds(), decimals=1, w=4),

        Row("Requests (function metrics)"),
        TimeSeries("Request rate by function",
                   "Requests per second each function answers, health probes excluded.", "reqps",
                   (Target(f"sum by (function) ({S.requests(FN)})", "{{function}}"),)),
        TimeSeries("Error ratio (5xx) by function",
                   f"Share of requests answered with a 5xx over {window} (0 while there are none). "
                   f"The availability SLO allows {c.AVAILABILITY.budget * 100:g} % (red line).",
                   "percentunit", (Target(S.error_ratio(FN), "{{function}}"),),
                   thresholds=th((None, "green"), (c.AVAILABILITY.budget, "red"))),
        TimeSeries("Responses by status code",
                   "Responses per second by function and HTTP status code.", "reqps",
                   (Target(f"sum by (function, http_response_status_code) (rate({count}[$__rate_interval]))",
                           "{{function}} {{http_response_status_code}}"),), stack=True),
        TimeSeries("Latency p50 / p95 / p99 by function",
                   "Quantiles from the request-duration histogram summed over all pods (a summary "
                   "could not be).", "s",
                   tuple(Target(f"histogram_quantile({q}, sum by (function, le) (rate({bucket}[$__rate_interval])))",
                                f"{{{{function}}}} p{int(q * 100)}") for q in (0.5, 0.95, 0.99)),
                   thresholds=latency_line, w=12),
        TimeSeries("Latency p95 by route", "95th percentile per method and route template.", "s",
                   (Target("histogram_quantile(0.95, sum by (http_request_method, http_route, le) "
                           f"(rate({bucket}[$__rate_interval])))",
                           "{{http_request_method}} {{http_route}}"),), w=12),
        TimeSeries(f"Requests slower than {int(c.LATENCY_SECONDS * 1000)} ms by function",
                   f"Share of requests over the latency objective, over {window}. The objective "
                   f"allows {c.LATENCY.budget * 100:g} % (red line).", "percentunit",
                   (Target(S.slow_ratio(FN), "{{function}}"),),
                   thresholds=th((None, "green"), (c.LATENCY.budget, "red"))),
        TimeSeries("Error budget burn rate",
                   f"How fast each function spends its 30-day error budget: the 5xx share over "
                   f"{fast.long} divided by the budget. The page fires above {fast.factor:g} on both "
                   f"{fast.long} and {fast.short}; the ticket above {slow.factor:g} on {slow.long} and "
                   f"{slow.short}.", "short",
                   (Target(f"{SLO[fast.long].error_ratio(FN)} / {c.AVAILABILITY.budget:g}",
                           "{{function}} errors"),
                    Target(f"{SLO[fast.long].slow_ratio(FN)} / {c.LATENCY.budget:g}",
                           "{{function}} latency")),
                   thresholds=th((None, "green"), (slow.factor, "orange"), (fast.factor, "red"))),
        TimeSeries("In-flight requests", "Requests being handled right now, summed over pods.", "short",
                   (Target(f"sum by (function) (http_server_active_requests{{{FN}}})", "{{function}}"),),
                   decimals=0),
        TimeSeries("Errors by code", "Error replies per second by the error code in the JSON body.",
                   "reqps",
                   (Target(f"sum by (function, code) (rate(exam_results_errors_total{{{FN}}}[$__rate_interval]))",
                           "{{function}} {{code}}"),), stack=True),
        Table("Running versions",
              "Build info of every running function pod (version and git revision).", "none",
              (Target(f"count by (function, version, revision) (exam_results_build_info{{{FN}}})"),)),

        Row("Database pool (function metrics)"),
        TimeSeries("Pool saturation",
                   "Connections in use over the pool's maximum, per function (all pods).", "percentunit",
                   (Target(_pool_saturation(), "{{function}}"),), maximum=1,
                   thresholds=th((None, "green"), (0.8, "orange"), (0.95, "red"))),
        TimeSeries("Pool connections in use / idle", "Pooled connections by state, summed over pods.",
                   "short",
                   (Target(f"sum by (function, state) (exam_results_db_pool_connections{{{FN}}})",
                           "{{function}} {{state}}"),
                    Target(f"sum by (function) (exam_results_db_pool_max_connections{{{FN}}})",
                           "{{function}} max")), decimals=0),
        TimeSeries("Pool wait p95", "Time a request waits for a pooled connection (95th percentile).", "s",
                   (Target("histogram_quantile(0.95, sum by (function, le) (rate("
                           f"exam_results_db_pool_wait_duration_seconds_bucket{{{FN}}}[$__rate_interval])))",
                           "{{function}}"),)),
        TimeSeries("Query duration p95 by operation",
                   "95th percentile of database query time per operation.", "s",
                   (Target("histogram_quantile(0.95, sum by (operation, le) (rate("
                           f"exam_results_db_query_duration_seconds_bucket{{{FN}}}[$__rate_interval])))",
                           "{{operation}}"),), w=12),
        TimeSeries("Replica lag seen by read functions",
                   "Replication lag the read functions measured; above MAX_REPLICA_LAG_SECONDS they "
                   "read from the primary.", "s",
                   (Target(f"max by (function) (exam_results_replica_lag_seconds{{{FN}}})", "{{function}}"),),
                   w=12),

        Row("Read cache (function metrics; READ_CACHE_CAPACITY > 0)"),
        TimeSeries("Read cache lookups by outcome",
                   "In-process cache lookups per second of the read functions: hit, miss (the "
                   "request queried the database) or coalesced (it waited for another request's "
                   "query for the same key).", "reqps",
                   (Target("sum by (function, cache, outcome) (rate("
                           f"exam_results_read_cache_lookups_total{{{FN}}}[$__rate_interval]))",
                           "{{function}} {{cache}} {{outcome}}"),), stack=True),
        TimeSeries("Read cache: share answered without a query",
                   "Hits and coalesced waits over all lookups: the share of cached reads that cost "
                   "the database nothing.", "percentunit",
                   (Target("sum by (function, cache) (rate("
                           f'exam_results_read_cache_lookups_total{{{FN}, outcome!="miss"}}[$__rate_interval]))'
                           "\n/\nsum by (function, cache) (rate("
                           f"exam_results_read_cache_lookups_total{{{FN}}}[$__rate_interval]))",
                           "{{function}} {{cache}}"),), maximum=1),
        TimeSeries("Read cache entries", "Entries in the in-process caches, summed over pods.", "short",
                   (Target(f"sum by (function, cache) (exam_results_read_cache_entries{{{FN}}})",
                           "{{function}} {{cache}}"),), decimals=0),

        Row("Knative autoscaling per revision (cluster only, Knative Serving >= 1.19)"),
        TimeSeries("Desired vs actual pods",
                   "Pods the autoscaler wants against pods that exist, per revision.", "short",
                   (Target(f"sum by (kn_revision_name) (kn_revision_pods_desired{{{KN}}})",
                           "{{kn_revision_name}} desired"),
                    Target(f"sum by (kn_revision_name) (kn_revision_pods_count{{{KN}}})",
                           "{{kn_revision_name}} actual"),
                    Target(f"sum by (kn_revision_name) (kn_revision_pods_not_ready_count{{{KN}}})",
                           "{{kn_revision_name}} not ready")), decimals=0),
        TimeSeries("Observed vs target concurrency",
                   "Average in-flight requests per pod over the stable and panic windows against the "
                   "target.", "short",
                   (Target(f"avg by (kn_revision_name) (kn_revision_concurrency_stable{{{KN}}})",
                           "{{kn_revision_name}} stable"),
                    Target(f"avg by (kn_revision_name) (kn_revision_concurrency_panic{{{KN}}})",
                           "{{kn_revision_name}} panic window"),
                    Target(f"avg by (kn_revision_name) (kn_revision_concurrency_target{{{KN}}})",
                           "{{kn_revision_name}} target"))),
        TimeSeries("Panic mode", "1 while the autoscaler is in panic mode for the revision.",
                   "bool_on_off",
                   (Target(f"max by (kn_revision_name) (kn_revision_panic_mode{{{KN}}})",
                           "{{kn_revision_name}}"),), maximum=1),
        TimeSeries("Queue-proxy latency p95",
                   "Request duration measured by Knative's queue-proxy sidecar (includes queueing "
                   "in the pod), per revision (from the pod name).", "s",
                   (Target("histogram_quantile(0.95, sum by (kn_revision_name, le) (label_replace(rate("
                           f"kn_queueproxy_app_duration_seconds_bucket{{{qp}}}[$__rate_interval]), "
                           f'"{qp_revision}")))', "{{kn_revision_name}}"),), w=12),
        TimeSeries("Queue-proxy queue depth",
                   "Requests in the queue-proxy (in flight and waiting for a container slot), per "
                   "revision.", "short",
                   (Target("sum by (kn_revision_name) (label_replace("
                           f'kn_queueproxy_depth{{{qp}}}, "{qp_revision}"))', "{{kn_revision_name}}"),),
                   w=12),
    )
    return Dashboard(
        "exam-results-service", "Exam results: service",
        "Request rate, errors, latency, in-flight requests and database pools of the "
        "exam-results functions, and Knative autoscaling per revision. docs/observability.md",
        items)


def _pool_saturation() -> str:
    return (f'sum by (function) (exam_results_db_pool_connections{{{FN}, state="in_use"}})\n/\n'
            f"sum by (function) (exam_results_db_pool_max_connections{{{FN}}})")


def _volume_thresholds():
    return th((None, "green"), (0.75, "yellow"), (1 - c.VOLUME_FREE_WARNING, "orange"),
              (1 - c.VOLUME_FREE_CRITICAL, "red"))


# --------------------------------------------------------------------------- data tier dashboard
def data_tier() -> Dashboard:
    free = R["exam_results:postgres_volume_available:ratio"]
    used = R["exam_results:postgres_volume_used:bytes"]
    capacity = R["exam_results:postgres_volume_capacity:bytes"]
    available = R["exam_results:postgres_volume_available:bytes"]
    days = c.VOLUME_FORECAST_DAYS
    forecast = R[f"exam_results:postgres_volume_available:predict_linear{c.VOLUME_FORECAST_WINDOW}_{days}d"]
    inodes = R["exam_results:postgres_volume_inodes_used:ratio"]
    pgb_available = R["exam_results:pgbouncer_replicas_available"]
    pgb_min = R["exam_results:pgbouncer_replicas_min_available"]
    pgb = f'{NS}, database!="pgbouncer"'

    items = (
        Row("Persistent volumes of the PostgreSQL cluster (kubelet, cluster only)"),
        Gauge("Volume used",
              f"1 - the free share of each claim, as the alerts see it: warning below "
              f"{c.VOLUME_FREE_WARNING * 100:g} % free with a {days}-day fill-up forecast, critical below "
              f"{c.VOLUME_FREE_CRITICAL * 100:g} %.", "percentunit",
              (Target(f"1 - {free(PVC)}", "{{persistentvolumeclaim}}"),),
              thresholds=_volume_thresholds()),
        Stat("Days until full",
             f"Free space divided by the daily decrease that the fill-up alert's linear fit "
             f"({forecast}) forecasts. Empty while a volume is not filling.", "d",
             (Target(f"{available(PVC)}\n/\n((({available(PVC)} - {forecast(PVC)}) / {days}) > 0)",
                     "{{persistentvolumeclaim}}"),),
             thresholds=th((None, "red"), (days, "orange"), (14, "green")), decimals=1, graph=False),
        TimeSeries("Inodes used", "Share of each claim's inodes in use.", "percentunit",
                   (Target(inodes(PVC), "{{persistentvolumeclaim}}"),), maximum=1,
                   thresholds=th((None, "green"), (0.85, "orange"), (0.97, "red"))),
        TimeSeries("Volume used and capacity", "Bytes used against capacity per claim.", "bytes",
                   (Target(used(PVC), "{{persistentvolumeclaim}} used"),
                    Target(capacity(PVC), "{{persistentvolumeclaim}} capacity")), w=12),
        TimeSeries(f"Free space now and forecast in {days} days",
                   f"Available bytes and the forecast {days} days out over a "
                   f"{c.VOLUME_FORECAST_WINDOW} window; a forecast below zero is what the warning "
                   "alert fires on.", "bytes",
                   (Target(available(PVC), "{{persistentvolumeclaim}} free"),
                    Target(forecast(PVC), f"{{{{persistentvolumeclaim}}}} forecast +{days}d")),
                   minimum=None, w=12),

        Row("PostgreSQL (CloudNativePG metrics)"),
        Stat("Instances up", "PostgreSQL instances whose exporter reaches the database.", "none",
             (Target(f"sum(cnpg_collector_up{{{NS}}})", "up"),),
             thresholds=th((None, "red"), (1, "orange"), (2, "green")), decimals=0, graph=False, w=4),
        Stat("Streaming replicas", "Replicas streaming from the primary.", "none",
             (Target(f"max(cnpg_pg_replication_streaming_replicas{{{NS}}})", "replicas"),),
             thresholds=th((None, "red"), (1, "green")), decimals=0, graph=False, w=4),
        TimeSeries("Replication lag",
                   f"Seconds each replica is behind the primary. Alert at {c.REPLICA_LAG_SECONDS} s.", "s",
                   (Target(f"max by (pod) (cnpg_pg_replication_lag{{{NS}}})", "{{pod}}"),),
                   thresholds=th((None, "green"), (c.REPLICA_LAG_SECONDS, "red"))),
        TimeSeries("Connections vs max_connections", "Backends per instance against max_connections.",
                   "short",
                   (Target(f"sum by (pod) (cnpg_backends_total{{{NS}}})", "{{pod}} backends"),
                    Target(f'max by (pod) (cnpg_pg_settings_setting{{{NS}, name="max_connections"}})',
                           "{{pod}} max_connections")), decimals=0),
        TimeSeries("Transactions per second",
                   "Committed plus rolled-back transactions per second, by instance and database.", "ops",
                   (Target(f'sum by (pod, datname) (rate(cnpg_pg_stat_database_xact_commit{{{NS}, '
                           f'datname!~"template.*"}}[$__rate_interval]) + rate(cnpg_pg_stat_database_xact_rollback'
                           f'{{{NS}, datname!~"template.*"}}[$__rate_interval]))', "{{pod}} {{datname}}"),)),
        TimeSeries("Database size", "Size of each database on each instance.", "bytes",
                   (Target(f'max by (pod, datname) (cnpg_pg_database_size_bytes{{{NS}, datname!~"template.*"}})',
                           "{{pod}} {{datname}}"),)),
        TimeSeries("Partition sizes",
                   "Total size (table, indexes, TOAST) of every partition of a partitioned table, "
                   "from the exam_results_partition custom query (grafana/postgres/queries.yaml).",
                   "bytes",
                   (Target(f"max by (parent, partition) (cnpg_exam_results_partition_size_bytes{{{NS}}})",
                           "{{parent}} {{partition}}"),), stack=True),

        Row("PgBouncer (per pooler pod)"),
        TimeSeries("Clients active / waiting",
                   "Client connections linked to a server connection, and clients queued for one.",
                   "short",
                   (Target(f"sum by (pod) (pgbouncer_pools_client_active_connections{{{pgb}}})", "{{pod}} active"),
                    Target(f"sum by (pod) (pgbouncer_pools_client_waiting_connections{{{pgb}}})",
                           "{{pod}} waiting")), decimals=0),
        TimeSeries("Server connections active / idle", "Server connections to PostgreSQL per pooler pod.",
                   "short",
                   (Target(f"sum by (pod) (pgbouncer_pools_server_active_connections{{{pgb}}})", "{{pod}} active"),
                    Target(f"sum by (pod) (pgbouncer_pools_server_idle_connections{{{pgb}}})", "{{pod}} idle")),
                   decimals=0),
        TimeSeries("Longest client wait",
                   "How long the oldest queued client has waited, per pod and database. Alert above "
                   f"{c.PGBOUNCER_MAX_WAIT_SECONDS} s while clients wait.", "s",
                   (Target(f"max by (pod, database) (pgbouncer_pools_client_maxwait_seconds{{{pgb}}})",
                           "{{pod}} {{database}}"),),
                   thresholds=th((None, "green"), (c.PGBOUNCER_MAX_WAIT_SECONDS, "red"))),
        TimeSeries("PgBouncer pods available",
                   "Available replicas of this release's PgBouncer Deployment (kube-state-metrics) "
                   "against the minimum the alert holds it to (the chart's replicas less the "
                   "PodDisruptionBudget's maxUnavailable).", "none",
                   (Target(f"sum({pgb_available(NS)})", "available"),
                    Target(f"sum({pgb_min(NS)})", "minimum")), decimals=0, w=6),
        TimeSeries("Function pool saturation",
                   "Pooled connections in use over the maximum, per function: the client side of "
                   "the pooler.", "percentunit",
                   (Target(_pool_saturation(), "{{function}}"),), maximum=1,
                   thresholds=th((None, "green"), (0.8, "orange"), (0.95, "red")), w=18),
    )
    variables = COMMON_VARIABLES + (
        Variable("pvc", "Volume claim",
                 f'label_values({capacity}{{namespace=~"$namespace"}}, persistentvolumeclaim)',
                 multi=True, all_value=".+"),
    )
    return Dashboard(
        "exam-results-data-tier", "Exam results: data tier",
        "Persistent-volume usage and forecast of the PostgreSQL cluster, PostgreSQL replication, "
        "connections, TPS and sizes (CloudNativePG metrics), and PgBouncer pools. "
        "docs/observability.md",
        items, variables)


DASHBOARDS = {
    "exam-results-service.json": service,
    "exam-results-data-tier.json": data_tier,
}
