"""The exam-results monitoring mixin: recording rules, alert rules and Grafana dashboards from one
config, in the manner of cert-manager's Prometheus mixin.

# Layout
- ``config``: the one config object: SLOs and their burn-rate windows, alert thresholds, the
  label selectors of the functions' traffic, and the release scope (namespace, the Postgres
  cluster's volume claims, the PgBouncer Deployment and its minimum) with the chart's tokens
  for it.
- ``promql``: typed builders for selectors and for the recording rules' names.
- ``rules``: the recording rules and alert rules (``Record``, ``Alert``, ``Group``), written as a
  Prometheus rules file.
- ``dashboards``: typed panel builders and the two dashboards; every derived series a panel
  shows is a ``Record`` from ``rules``, so a dashboard never recomputes what a rule names.
- ``grafana/generate.py`` writes every artefact and checks that the committed files are its
  output.
"""
