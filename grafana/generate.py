#!/usr/bin/env python3
"""Write the exam-results rules and dashboards from the one config in grafana/mixin/.

    python3 grafana/generate.py           # write every file below
    python3 grafana/generate.py --check   # exit 1 and name the files that differ
    python3 grafana/generate.py --queries [local|kubernetes]   # list the panel queries by scope

Writes
- grafana/alerts/exam-results.rules.yml: recording and alert rules, scoped to the release as the
  chart renders it with its default values (the local Prometheus and the promtool tests load it);
- knative/exam-results/observability/exam-results.rules.yml: the same rules with @@tokens@@ the
  chart's PrometheusRule template fills from its values;
- grafana/dashboards/*.json: the dashboards (the chart reads them through symlinks).

grafana/tests/test_generate.py fails when a committed file is not this script's output.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

GRAFANA = Path(__file__).resolve().parent
REPO = GRAFANA.parent
sys.path.insert(0, str(GRAFANA))

from mixin import config, dashboards, rules  # noqa: E402

COMMAND = "python3 grafana/generate.py"


def _slo_lines() -> str:
    lines = [f"SLOs behind the burn-rate alerts (per function, 30-day window, health probes excluded):",
             f"  availability: {config.AVAILABILITY.objective * 100:g} % of requests answer without a 5xx"
             f"  -> error budget {config.AVAILABILITY.budget:g}",
             f"  latency:      {config.LATENCY.objective * 100:g} % of requests complete within "
             f"{int(config.LATENCY_SECONDS * 1000)} ms  -> latency budget {config.LATENCY.budget:g}",
             "Burn-rate pairs (Google SRE workbook, multiwindow, multi-burn-rate alerts):"]
    for b in config.BURN_RATES:
        lines.append(f"  {b.speed.lower()}: {b.long} and {b.short} windows above {b.factor:g} x budget"
                     f" -> {b.severity}")
    return "\n".join(lines)


LOCAL_HEADER = f"""Prometheus rules for exam-results. Written by `{COMMAND}` from grafana/mixin/: do not edit.

The release scope (PgBouncer Deployment, the Postgres cluster's volume claims) is what the chart
renders for release exam-results in namespace exam-results with its default values. Loaded by the
local Prometheus (grafana/local/start-prometheus.sh); unit tests: exam-results.rules.test.yml
(`promtool test rules`). Runbooks: docs/observability.md, one section per alert.

{_slo_lines()}"""

CHART_HEADER = f"""Prometheus rules for exam-results. Written by `{COMMAND}` from grafana/mixin/: do not edit.

templates/observability-prometheusrule.yaml replaces each token from the values:
  {config.CHART_SCOPE.namespace}                the release namespace
  {config.CHART_SCOPE.postgres_namespace}       postgres.namespace, else the release namespace
  {config.CHART_SCOPE.postgres_volume_claims}   observability.alerts.postgresVolumes.claimRegex,
                                   else <postgres.clusterName>-[0-9]+(-wal|-tbs-.+)?
  {config.CHART_SCOPE.pgbouncer_deployment}     the PgBouncer Deployment's name
  {config.CHART_SCOPE.pgbouncer_min_available}  observability.alerts.pgbouncer.minAvailable, else
                                   pgbouncer.replicas - pgbouncer.podDisruptionBudget.maxUnavailable
With the default values the result is grafana/alerts/exam-results.rules.yml."""


def outputs() -> dict[Path, str]:
    out = {
        GRAFANA / "alerts" / "exam-results.rules.yml": rules.to_yaml(LOCAL_HEADER, config.DEFAULT_SCOPE),
        REPO / "knative" / "exam-results" / "observability" / "exam-results.rules.yml":
            rules.to_yaml(CHART_HEADER, config.CHART_SCOPE),
    }
    for filename, build in dashboards.DASHBOARDS.items():
        out[GRAFANA / "dashboards" / filename] = json.dumps(build().to_json(), indent=2,
                                                             ensure_ascii=False) + "\n"
    return out


def panel_queries() -> list[dict]:
    """Every panel query of every dashboard with its scope (``local`` or ``kubernetes``)."""
    out = []
    for filename, build in dashboards.DASHBOARDS.items():
        for panel in build().panels():
            for i, t in enumerate(panel.targets):
                out.append({"dashboard": filename, "panel": panel.title, "refId": chr(ord("A") + i),
                            "expr": t.expr, "scope": t.scope})
    return out


def stale() -> list[str]:
    return [str(p.relative_to(REPO)) for p, text in outputs().items()
            if p.is_symlink() or not p.exists() or p.read_text() != text]


def main(argv: list[str]) -> int:
    if argv[:1] == ["--queries"]:
        queries = [q for q in panel_queries() if q["scope"] in (argv[1:] or ["local", "kubernetes"])]
        for q in queries:
            print(f"{q['scope']:<10} {q['dashboard']}: {q['panel']} ({q['refId']})")
        print(f"{len(queries)} queries")
        return 0
    if "--check" in argv:
        out = stale()
        if out:
            print(f"out of date (run {COMMAND}): " + ", ".join(out))
            return 1
        return 0
    for path, text in outputs().items():
        if path.is_symlink():
            path.unlink()
        path.write_text(text)
        print(f"wrote {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
