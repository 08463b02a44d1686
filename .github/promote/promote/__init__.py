"""Progressive delivery for the exam-results Knative functions.

The CD workflow calls this package once per function and environment. It
reads the Knative Service's live state, deploys the new revision at 0 % under
the ``candidate`` tag, reads the revision's name from the Service's status,
smoke-tests it through the tag URL, shifts traffic in steps while the
candidate's own Prometheus metrics stay inside the gates (driving a bounded
synthetic load at it when real traffic is too thin to judge), and puts all
traffic back on the previous revision when anything fails.

# Layout

- ``manifest``: the functions, read from the chart's ``functions.yaml``.
- ``knative``: parse ``kubectl get ksvc -o json`` into a typed state.
- ``gates``: the PromQL for the error-ratio and p99 gates, and a small
  Prometheus HTTP API client.
- ``rollout``: the decision engine (deploy, wait, smoke, steps, rollback).
- ``load``: the synthetic load driven at a quiet candidate during each bake.
- ``cluster``: applies a function's desired revision and traffic through the
  Helm chart (``helm upgrade --reset-then-reuse-values``) and reads state with
  ``kubectl``.
- ``smoke``: the per-function smoke tests run against the tag URL.
- ``changes``: which functions a commit range touches.
- ``summary``: the GitHub job summary (Markdown) and JSON report.
- ``__main__``: the command line.
"""

from .manifest import FUNCTIONS, READ_FUNCTIONS, WRITE_FUNCTIONS, function

__all__ = ["FUNCTIONS", "READ_FUNCTIONS", "WRITE_FUNCTIONS", "function"]
