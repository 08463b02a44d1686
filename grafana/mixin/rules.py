"""The recording rules and the alert rules, as typed objects, and their rules-file form."""
from __future__ import annotations

import json
from dataclasses import dataclass

from . import config as c
from .promql import Record, quote


@dataclass(frozen=True)
class Alert:
    name: str
    expr: str
    for_: str
    severity: str
    summary: str
    description: str
    comment: str = ""

    @property
    def runbook(self) -> str:
        return f"{c.RUNBOOKS}#{self.name.lower()}"


@dataclass(frozen=True)
class Group:
    name: str
    rules: tuple
    comment: str = ""


# --------------------------------------------------------------------------- function SLOs
FN_LABELS = "namespace, function"


def _rate(selector: str, window: str) -> str:
    return f"sum by ({FN_LABELS}) (\n  rate({selector}[{window}])\n)"


@dataclass(frozen=True)
class SloRecords:
    """The per-function series every SLO panel and burn-rate alert reads, for one window."""
    requests: Record
    errors: Record
    error_ratio: Record
    fast: Record
    slow_ratio: Record

    @property
    def all(self) -> tuple[Record, ...]:
        return (self.requests, self.errors, self.error_ratio, self.fast, self.slow_ratio)


def slo_records(window: str) -> SloRecords:
    count = "http_server_request_duration_seconds_count"
    bucket = "http_server_request_duration_seconds_bucket"
    first = window == c.SLO_WINDOWS[0]  # comment the first window's rules only
    requests = Record(f"function:http_server_requests:rate{window}",
                      _rate(f"{count}{{{c.NOT_PROBES}}}", window))
    errors = Record(f"function:http_server_request_errors:rate{window}",
                    _rate(f"{count}{{{c.NOT_PROBES}, {c.SERVER_ERRORS}}}", window)
                    + f"\nor\n0 * {requests}",
                    comment=first and "0, not absent, while a function answers no 5xx at all.")
    fast = Record(f"function:http_server_request_fast:rate{window}",
                  _rate(f'{bucket}{{{c.NOT_PROBES}, le="{c.LATENCY_SECONDS:g}"}}', window))
    return SloRecords(
        requests=requests,
        errors=errors,
        error_ratio=Record(f"function:http_server_request_errors:ratio_rate{window}",
                           f"{errors}\n/\n{requests}"),
        fast=fast,
        slow_ratio=Record(f"function:http_server_request_slow:ratio_rate{window}",
                          f"1 - (\n  {fast}\n  /\n  {requests}\n)",
                          comment=first and f"Share of requests slower than the {c.LATENCY_SECONDS:g} s "
                                            "latency objective (a bucket boundary)."),
    )


SLO = {w: slo_records(w) for w in c.SLO_WINDOWS}

MAX_SCALE = "exam_results:knative_max_scale"


def burn_alerts() -> list[Alert]:
    out = []
    windows = {"1h": "hour", "6h": "6 hours"}
    for slo, ratio in ((c.AVAILABILITY, "error_ratio"), (c.LATENCY, "slow_ratio")):
        for b in c.BURN_RATES:
            long, short = getattr(SLO[b.long], ratio), getattr(SLO[b.short], ratio)
            threshold = f"({b.factor:g} * {slo.budget:g})"
            expr = f"{long} > {threshold}\nand\n{short} > {threshold}"
            last = "the last hour" if b.long == "1h" else f"the last {windows[b.long]}"
            objective = f"{slo.objective * 100:g} %"
            if slo is c.AVAILABILITY:
                summary = (f"{{{{ $labels.function }}}} is burning its error budget "
                           f"{int(b.factor)}x too fast")
                description = (f"{{{{ $labels.function }}}} in {{{{ $labels.namespace }}}} answered "
                               f"{{{{ $value | humanizePercentage }}}} of requests with a 5xx over "
                               f"{last} (SLO {objective})")
                days = 30 / b.factor
                description += (f"; at this rate the 30-day error budget is gone in about "
                                f"{'two' if round(days) == 2 else round(days)} days." if b.speed == "Fast" else ".")
            else:
                summary = ("{{ $labels.function }} is too slow for its latency objective"
                           if b.speed == "Fast" else
                           "{{ $labels.function }} is persistently slower than its latency objective")
                ms = f"{int(c.LATENCY_SECONDS * 1000)} ms"
                description = (f"{{{{ $value | humanizePercentage }}}} of {{{{ $labels.function }}}} "
                               f"requests in {{{{ $labels.namespace }}}} took longer than {ms} over "
                               f"{last} (objective: {objective} within {ms}).")
            out.append(Alert(f"ExamResults{slo.name}Budget{b.speed}Burn", expr, b.for_, b.severity,
                             summary, description))
    return out


def groups(scope: c.Scope) -> list[Group]:
    """Every rule group, with the release scope filled in."""
    # ------------------------------------------------------------- release-scoped series
    vol = (f'job="kubelet", namespace={quote(scope.postgres_namespace)}, '
           f"persistentvolumeclaim=~{quote(scope.postgres_volume_claims)}")
    by_claim = "max by (namespace, persistentvolumeclaim)"

    def volume(metric: str) -> str:
        return f"{by_claim} (kubelet_volume_stats_{metric}{{{vol}}})"

    capacity = Record("exam_results:postgres_volume_capacity:bytes", volume("capacity_bytes"))
    used = Record("exam_results:postgres_volume_used:bytes", volume("used_bytes"))
    available = Record("exam_results:postgres_volume_available:bytes", volume("available_bytes"))
    free = Record("exam_results:postgres_volume_available:ratio", f"{available}\n/\n{capacity}")
    days = c.VOLUME_FORECAST_DAYS
    forecast = Record(
        f"exam_results:postgres_volume_available:predict_linear{c.VOLUME_FORECAST_WINDOW}_{days}d",
        f"{by_claim} (\n  predict_linear(kubelet_volume_stats_available_bytes{{{vol}}}"
        f"[{c.VOLUME_FORECAST_WINDOW}], {days} * 24 * 3600)\n)",
        comment=f"Free bytes {days} days from now by a linear fit over the last "
                f"{c.VOLUME_FORECAST_WINDOW}.")
    inodes = Record("exam_results:postgres_volume_inodes_used:ratio",
                    f"{volume('inodes_used')}\n/\n{volume('inodes')}")
    pgb = (f"namespace={quote(scope.namespace)}, deployment={quote(scope.pgbouncer_deployment)}")
    pgb_available = Record("exam_results:pgbouncer_replicas_available",
                           f"max by (namespace, deployment) (kube_deployment_status_replicas_available{{{pgb}}})")
    pgb_min = Record("exam_results:pgbouncer_replicas_min_available",
                     f"0 * {pgb_available} + {scope.pgbouncer_min_available}",
                     comment="The chart's pgbouncer.replicas less the PodDisruptionBudget's "
                             "maxUnavailable, unless observability.alerts.pgbouncer.minAvailable is "
                             "set; one series beside each available count.")

    excluded = ("unless on (namespace, persistentvolumeclaim)\n"
                'kube_persistentvolumeclaim_labels{label_excluded_from_alerts="true"} == 1')
    kn_scope = f"k8s_namespace_name={quote(scope.namespace)}"

    return [
        Group("exam-results.slo.recording", tuple(r for w in c.SLO_WINDOWS for r in SLO[w].all),
              comment="Per namespace and function, health probes excluded. The dashboards show the "
                      f"{c.DASHBOARD_WINDOW} series; the burn-rate alerts read the window pairs."),
        Group("exam-results.scale-limits",
              tuple(Record(MAX_SCALE, f"vector({n})", labels={"kn_service_name": fn})
                    for fn, n in c.MAX_SCALE_DEFAULTS.items()),
              comment="Upper scale bound of each read function's Knative Service, as series the "
                      "scale alert can join against (Knative exports no metric for max-scale). The "
                      "chart rebuilds this group from functions.<fn>.autoscaling.maxScale."),
        Group("exam-results.functions", tuple(burn_alerts()) + (
            Alert("ExamResultsReadFunctionAtMaxScale",
                  f"max by (k8s_namespace_name, kn_service_name) (kn_revision_pods_desired{{{kn_scope}}})\n"
                  f">= on (kn_service_name) group_left ()\nmax by (kn_service_name) ({MAX_SCALE})",
                  c.READ_SCALE_FOR, "warning",
                  "{{ $labels.kn_service_name }} is pinned at its Knative max-scale",
                  "The Knative autoscaler has wanted {{ $value }} pods (the max-scale bound) for "
                  "{{ $labels.kn_service_name }} in {{ $labels.k8s_namespace_name }} for 10 minutes: "
                  "demand exceeds what the Service may scale to, so requests queue in the activator "
                  "and queue-proxy."),
        )),
        Group("exam-results.storage", comment="The volumes of this release's Postgres cluster only "
              "(data, WAL, tablespaces); kube-prometheus-stack alerts on every other volume.", rules=(
            capacity, used, available, free, forecast, inodes,
            Alert("ExamResultsPersistentVolumeFillingUp",
                  f"{free} < {c.VOLUME_FREE_CRITICAL:g}\nand\n{used} > 0\n{excluded}",
                  "1m", "critical",
                  "Persistent volume {{ $labels.persistentvolumeclaim }} is almost full",
                  "The volume claimed by {{ $labels.persistentvolumeclaim }} in {{ $labels.namespace }} "
                  "has only {{ $value | humanizePercentage }} free. PostgreSQL stops accepting writes "
                  "when its data or WAL volume is full.",
                  comment="Guards as in kubernetes-mixin's KubePersistentVolumeFillingUp: only volumes "
                          "that hold data, not claims labelled excluded_from_alerts."),
            Alert("ExamResultsPersistentVolumeFullInFourDays",
                  f"{free} < {c.VOLUME_FREE_WARNING:g}\nand\n{used} > 0\nand\n{forecast} < 0\n{excluded}",
                  "1h", "warning",
                  "Persistent volume {{ $labels.persistentvolumeclaim }} is predicted to fill up within four days",
                  f"Based on the last {c.VOLUME_FORECAST_WINDOW.removesuffix('h')} hours, the volume claimed by "
                  "{{ $labels.persistentvolumeclaim }} in {{ $labels.namespace }} fills up within four days; "
                  "{{ $value | humanizePercentage }} is free now."),
        )),
        Group("exam-results.database", comment="PgBouncer's replica count is this release's Deployment's.", rules=(
            Alert("ExamResultsReplicaLagHigh",
                  f"max by (namespace, pod) (cnpg_pg_replication_lag) > {c.REPLICA_LAG_SECONDS}",
                  "2m", "warning",
                  f"Replica {{{{ $labels.pod }}}} lags the primary by more than {c.REPLICA_LAG_SECONDS} s",
                  "PostgreSQL replica {{ $labels.pod }} in {{ $labels.namespace }} is "
                  "{{ $value | humanizeDuration }} behind the primary: results published since then "
                  "are not yet visible to get-result and list-results."),
            Alert("ExamResultsPostgresInstanceDown",
                  "max by (namespace, pod) (cnpg_collector_up) == 0\nor\nmax by (namespace, pod) (\n"
                  "  up == 0\n  and on (namespace, pod)\n  max_over_time(cnpg_collector_up[1h])\n)",
                  "2m", "critical",
                  "PostgreSQL instance {{ $labels.pod }} is down",
                  "PostgreSQL instance {{ $labels.pod }} in {{ $labels.namespace }} has not been "
                  "reachable for 2 minutes.",
                  comment="Either the instance's exporter reports PostgreSQL down "
                          "(cnpg_collector_up == 0), or the pod's metrics endpoint, which served "
                          "PostgreSQL metrics within the last hour, fails."),
            Alert("ExamResultsPgBouncerClientsWaiting",
                  'sum by (namespace, pod, database) (pgbouncer_pools_client_waiting_connections{database!="pgbouncer"}) > 0\n'
                  "and on (namespace, pod, database)\n"
                  'max by (namespace, pod, database) (pgbouncer_pools_client_maxwait_seconds{database!="pgbouncer"})'
                  f" > {c.PGBOUNCER_MAX_WAIT_SECONDS}",
                  "2m", "warning",
                  "Clients queue in PgBouncer {{ $labels.pod }} for database {{ $labels.database }}",
                  "{{ $value }} client connections in PgBouncer {{ $labels.pod }} ({{ $labels.namespace }}) "
                  "wait for a server connection to {{ $labels.database }}, the oldest for more than "
                  f"{c.PGBOUNCER_MAX_WAIT_SECONDS} s: the pool is too small for the load."),
            pgb_available, pgb_min,
            Alert("ExamResultsPgBouncerPodsUnavailable",
                  f"{pgb_available}\n< on (namespace, deployment)\n{pgb_min}",
                  "5m", "warning",
                  f"Fewer than {scope.pgbouncer_min_available} PgBouncer pods are available",
                  "Only {{ $value }} pod(s) of {{ $labels.deployment }} in {{ $labels.namespace }} are "
                  f"available, fewer than the {scope.pgbouncer_min_available} the PodDisruptionBudget "
                  "keeps through voluntary disruptions: the remaining pods carry every function's "
                  "connections."),
        )),
    ]


def records(scope: c.Scope = c.DEFAULT_SCOPE) -> dict[str, Record]:
    return {r.name: r for g in groups(scope) for r in g.rules if isinstance(r, Record)}


# --------------------------------------------------------------------------- rules-file form
def _comment(text: str, indent: str) -> list[str]:
    out, line = [], ""
    for word in text.split():
        if line and len(indent) + 2 + len(line) + 1 + len(word) > 100:
            out.append(f"{indent}# {line}")
            line = word
        else:
            line = f"{line} {word}".strip()
    if line:
        out.append(f"{indent}# {line}")
    return out


def _block(key: str, text: str, indent: str) -> list[str]:
    return [f"{indent}{key}: |-"] + [f"{indent}  {line}" if line else "" for line in text.split("\n")]


def to_yaml(header: str, scope: c.Scope) -> str:
    lines = _comment_block(header)
    lines.append("groups:")
    for i, g in enumerate(groups(scope)):
        if i:
            lines.append("")
        if g.comment:
            lines += _comment(g.comment, "  ")
        lines += [f"  - name: {g.name}", "    rules:"]
        for r in g.rules:
            ind = "        "
            if r.comment:
                lines += _comment(r.comment, "      ")
            if isinstance(r, Record):
                lines.append(f"      - record: {r.name}")
                lines += _block("expr", r.expr, ind)
                if r.labels:
                    lines.append(f"{ind}labels:")
                    lines += [f"{ind}  {k}: {json.dumps(v)}" for k, v in r.labels.items()]
            else:
                lines.append(f"      - alert: {r.name}")
                lines += _block("expr", r.expr, ind)
                lines += [f"{ind}for: {r.for_}", f"{ind}labels:", f"{ind}  severity: {r.severity}",
                          f"{ind}annotations:"]
                for k, v in (("summary", r.summary), ("description", r.description), ("runbook", r.runbook)):
                    lines.append(f"{ind}  {k}: {json.dumps(v, ensure_ascii=False)}")
    return "\n".join(lines) + "\n"


def _comment_block(text: str) -> list[str]:
    out = []
    for para in text.strip().split("\n"):
        out.append(f"# {para}".rstrip())
    return out
