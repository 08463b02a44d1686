"""The one config the rules and the dashboards are built from."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class BurnRate:
    """One multiwindow burn-rate alert (Google SRE workbook): both windows above factor x budget."""
    long: str
    short: str
    factor: float
    for_: str
    severity: str
    speed: str  # "Fast" or "Slow", part of the alert name


@dataclass(frozen=True)
class SLO:
    name: str            # "Error" or "Latency", part of the alert name
    objective: float     # e.g. 0.999 of requests good
    what: str            # how a request counts as bad, for the annotations

    @property
    def budget(self) -> float:
        return round(1 - self.objective, 6)


@dataclass(frozen=True)
class Scope:
    """What makes a series this release's, where Prometheus sees every release in the cluster.

    The chart fills these from its values (templates/observability-prometheusrule.yaml); the rules
    file Prometheus loads locally and the promtool unit tests use ``DEFAULT_SCOPE``, which is what
    the chart renders for release ``exam-results`` in namespace ``exam-results`` with the default
    values (grafana/tests/test_chart.py renders it and compares)."""
    namespace: str                 # the release namespace (PgBouncer)
    postgres_namespace: str        # where the Postgres cluster's claims live
    postgres_volume_claims: str    # a PromQL regex for the cluster's PVC names
    pgbouncer_deployment: str
    pgbouncer_min_available: str   # a number


# Tokens the chart replaces in knative/exam-results/observability/exam-results.rules.yml.
CHART_SCOPE = Scope(
    namespace="@@namespace@@",
    postgres_namespace="@@postgres_namespace@@",
    postgres_volume_claims="@@postgres_volume_claims@@",
    pgbouncer_deployment="@@pgbouncer_deployment@@",
    pgbouncer_min_available="@@pgbouncer_min_available@@",
)

DEFAULT_SCOPE = Scope(
    namespace="exam-results",
    postgres_namespace="exam-results",
    # CloudNativePG names a cluster's claims <cluster>-<n> (data), <cluster>-<n>-wal and
    # <cluster>-<n>-tbs-<tablespace>; the cluster is postgres.clusterName.
    postgres_volume_claims="exam-results-db-[0-9]+(-wal|-tbs-.+)?",
    pgbouncer_deployment="pgbouncer",
    # pgbouncer.replicas - pgbouncer.podDisruptionBudget.maxUnavailable
    pgbouncer_min_available="2",
)

# Health probes are not user traffic: no SLO, no request panel counts them.
NOT_PROBES = 'http_route!~"/healthz|/readyz"'
SERVER_ERRORS = 'http_response_status_code=~"5.."'

AVAILABILITY = SLO("Error", 0.999, "answered with a 5xx")
LATENCY_SECONDS = 0.25  # must be a bucket boundary of http_server_request_duration_seconds
LATENCY = SLO("Latency", 0.99, f"slower than {int(LATENCY_SECONDS * 1000)} ms")

BURN_RATES = (
    # 2 % of the monthly budget in one hour -> page
    BurnRate(long="1h", short="5m", factor=14.4, for_="2m", severity="critical", speed="Fast"),
    # 5 % of the monthly budget in six hours -> ticket
    BurnRate(long="6h", short="30m", factor=6, for_="15m", severity="warning", speed="Slow"),
)
# Every window a burn-rate alert reads, plus the dashboards' 5m.
SLO_WINDOWS = ("5m", "30m", "1h", "6h")
DASHBOARD_WINDOW = "5m"

# Persistent volumes (kubernetes-mixin's KubePersistentVolumeFillingUp shape).
VOLUME_FREE_CRITICAL = 0.03
VOLUME_FREE_WARNING = 0.15
VOLUME_FORECAST_WINDOW = "6h"
VOLUME_FORECAST_DAYS = 4

REPLICA_LAG_SECONDS = 30
PGBOUNCER_MAX_WAIT_SECONDS = 1
READ_SCALE_FOR = "10m"

def _max_scale_defaults() -> dict[str, int]:
    """The read functions of functions.yaml and their max-scale in the chart's values.yaml
    (functions.<key>.autoscaling.maxScale, else newFunctionDefaults.read); read, not copied."""
    import yaml

    chart = Path(__file__).resolve().parents[2] / "knative" / "exam-results"
    manifest = yaml.safe_load((chart / "functions.yaml").read_text())["functions"]
    values = yaml.safe_load((chart / "values.yaml").read_text())
    out = {}
    for fn in manifest:
        if fn["access"] == "read":
            block = values["functions"].get(fn["key"]) or values["newFunctionDefaults"]["read"]
            out[fn["name"]] = int(block["autoscaling"]["maxScale"])
    return dict(sorted(out.items()))


# The read functions' max-scale defaults; the chart rebuilds this group from its values.
MAX_SCALE_DEFAULTS = _max_scale_defaults()

RUNBOOKS = "docs/observability.md"
