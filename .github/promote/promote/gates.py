"""Metric gates for a candidate revision, evaluated by a real Prometheus.

Series selection (see docs/cicd.md, "Which series the gates read"): every
function exports ``http_server_request_duration_seconds`` with a constant
``function`` label. Knative labels each pod with
``serving.knative.dev/revision``; the functions' PodMonitor must relabel that
pod label into a ``kn_revision_name`` label on every scraped series (the name
Knative's own metrics use; ``revision`` is taken: ``exam_results_build_info``
exports it as the git revision). The gates therefore select
``{function="<fn>", kn_revision_name="<fn>-<sha>"}``, i.e. only the
candidate's own pods, whatever share of traffic it has.

A gate never passes on missing data: an empty result, ``NaN`` (0/0 when the
revision served nothing), or fewer requests than ``min_requests`` in the
window all fail the check.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Optional

import requests

METRIC = "http_server_request_duration_seconds"
#: Probe routes are excluded: they say nothing about user-facing behaviour.
EXCLUDED_ROUTES = "/healthz|/readyz"
_LABEL_VALUE = re.compile(r"^[A-Za-z0-9._:/-]+$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
#: The series label that names the Knative revision (from the pod label
#: serving.knative.dev/revision, by the PodMonitor's relabeling).
REVISION_LABEL = "kn_revision_name"
_DURATION = re.compile(r"^[0-9]+(ms|s|m|h)$")


class PrometheusError(RuntimeError):
    """Prometheus could not answer (network error, bad query, 5xx)."""


@dataclass(frozen=True)
class GateConfig:
    """Thresholds for one traffic step. Inputs of the CD workflow."""

    max_error_ratio: float
    max_p99_seconds: float
    window: str = "2m"
    min_requests: float = 1.0
    #: Extra PromQL label matchers, e.g. ``namespace="exam-results-staging"``.
    extra_matchers: str = ""
    revision_label: str = REVISION_LABEL

    def __post_init__(self) -> None:
        if not _DURATION.match(self.window):
            raise ValueError(f"window must be a PromQL duration like 2m, got {self.window!r}")
        if not 0 <= self.max_error_ratio <= 1:
            raise ValueError("max_error_ratio must be within 0..1")
        if self.max_p99_seconds <= 0:
            raise ValueError("max_p99_seconds must be positive")
        if not _LABEL_NAME.match(self.revision_label):
            raise ValueError(f"revision_label must be a Prometheus label name, got {self.revision_label!r}")


def selector(function: str, revision: str, extra_matchers: str = "", errors_only: bool = False,
             revision_label: str = REVISION_LABEL) -> str:
    """The label matchers for one revision's user-facing requests."""
    for name, value in (("function", function), ("revision", revision)):
        if not _LABEL_VALUE.match(value):
            raise ValueError(f"unsafe {name} label value {value!r}")
    if not _LABEL_NAME.match(revision_label):
        raise ValueError(f"unsafe label name {revision_label!r}")
    matchers = [f'function="{function}"', f'{revision_label}="{revision}"', f'http_route!~"{EXCLUDED_ROUTES}"']
    if errors_only:
        matchers.append('http_response_status_code=~"5.."')
    if extra_matchers.strip():
        matchers.append(extra_matchers.strip().strip(","))
    return "{" + ",".join(matchers) + "}"


def error_ratio_query(function: str, revision: str, window: str, extra: str = "",
                      revision_label: str = REVISION_LABEL) -> str:
    """5xx responses / all responses of the revision over ``window``.

    When the revision served requests but no 5xx, the 5xx sum has no series;
    ``or 0 * sum(all)`` turns that into 0, while the result stays empty when
    the revision served nothing at all (the missing-data case).
    """
    all_ = f"sum(rate({METRIC}_count{selector(function, revision, extra, False, revision_label)}[{window}]))"
    err = f"sum(rate({METRIC}_count{selector(function, revision, extra, True, revision_label)}[{window}]))"
    return f"({err} or 0 * {all_}) / {all_}"


def p99_query(function: str, revision: str, window: str, extra: str = "", revision_label: str = REVISION_LABEL) -> str:
    """The 99th percentile request duration of the revision over ``window``."""
    sel = selector(function, revision, extra, False, revision_label)
    return f"histogram_quantile(0.99, sum by (le) (rate({METRIC}_bucket{sel}[{window}])))"


def requests_query(function: str, revision: str, window: str, extra: str = "",
                   revision_label: str = REVISION_LABEL) -> str:
    """How many requests the revision served in ``window``."""
    return f"sum(increase({METRIC}_count{selector(function, revision, extra, False, revision_label)}[{window}]))"


def function_requests_query(function: str, window: str, extra: str = "") -> str:
    """How many user-facing requests the function served in ``window``, all
    revisions together (how much real traffic a candidate's share can bring)."""
    if not _LABEL_VALUE.match(function):
        raise ValueError(f"unsafe function label value {function!r}")
    matchers = [f'function="{function}"', f'http_route!~"{EXCLUDED_ROUTES}"']
    if extra.strip():
        matchers.append(extra.strip().strip(","))
    return f"sum(increase({METRIC}_count{{{','.join(matchers)}}}[{window}]))"


def window_seconds(window: str) -> float:
    """A PromQL duration such as ``2m`` in seconds."""
    if not _DURATION.match(window):
        raise ValueError(f"window must be a PromQL duration like 2m, got {window!r}")
    unit = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    number = window.rstrip("mhs")
    suffix = window[len(number):]
    return float(number) * unit[suffix]


class Prometheus:
    """The two calls of the HTTP API that the gates need."""

    def __init__(self, base_url: str, timeout: float = 10.0, session: Optional[requests.Session] = None,
                 headers: Optional[dict[str, str]] = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = session or requests.Session()
        if headers:
            self.session.headers.update(headers)

    def query(self, expr: str, at: float) -> list[tuple[dict[str, str], float]]:
        """``GET /api/v1/query`` at time ``at`` (unix seconds); a vector
        result as ``[(labels, value)]``; a scalar as one unlabelled sample."""
        try:
            resp = self.session.get(f"{self.base_url}/api/v1/query", params={"query": expr, "time": f"{at:.3f}"},
                                    timeout=self.timeout)
        except requests.RequestException as exc:
            raise PrometheusError(f"Prometheus unreachable: {exc}") from exc
        try:
            body: dict[str, Any] = resp.json()
        except ValueError as exc:
            raise PrometheusError(f"Prometheus answered HTTP {resp.status_code} with a non-JSON body") from exc
        if resp.status_code != 200 or body.get("status") != "success":
            raise PrometheusError(f"query failed (HTTP {resp.status_code}): {body.get('errorType')}: {body.get('error')}")
        data = body["data"]
        if data["resultType"] == "scalar":
            return [({}, float(data["result"][1]))]
        if data["resultType"] != "vector":
            raise PrometheusError(f"expected an instant vector, got {data['resultType']}")
        return [(r["metric"], float(r["value"][1])) for r in data["result"]]

    def scalar(self, expr: str, at: float) -> Optional[float]:
        """The single value of ``expr`` at ``at``; ``None`` when there is no
        series or the value is NaN (no data: a failing gate, never a pass)."""
        result = self.query(expr, at)
        if not result:
            return None
        if len(result) > 1:
            raise PrometheusError(f"expected one series, got {len(result)}: {expr}")
        value = result[0][1]
        return None if math.isnan(value) else value


@dataclass
class GateResult:
    """One evaluation of the gates at one instant."""

    at: float
    error_ratio: Optional[float]
    p99_seconds: Optional[float]
    requests: Optional[float]
    reasons: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.reasons


def evaluate(prom: Prometheus, function: str, revision: str, cfg: GateConfig, at: float) -> GateResult:
    """Run the three queries at ``at`` and judge them against ``cfg``.

    A Prometheus error is a failed check too: a gate that cannot be read
    cannot be trusted to pass.
    """
    try:
        args = (function, revision, cfg.window, cfg.extra_matchers, cfg.revision_label)
        reqs = prom.scalar(requests_query(*args), at)
        ratio = prom.scalar(error_ratio_query(*args), at)
        p99 = prom.scalar(p99_query(*args), at)
    except PrometheusError as exc:
        return GateResult(at, None, None, None, [str(exc)])
    reasons = []
    if reqs is None:
        reasons.append(f"no request series for this revision in {cfg.window}")
    elif reqs < cfg.min_requests:
        reasons.append(f"too little traffic to judge: {reqs:.1f} requests in {cfg.window} (need {cfg.min_requests:g})")
    if ratio is None:
        reasons.append("error ratio: no data")
    elif ratio > cfg.max_error_ratio:
        reasons.append(f"error ratio {ratio:.4f} > {cfg.max_error_ratio:g}")
    if p99 is None:
        reasons.append("p99 latency: no data")
    elif p99 > cfg.max_p99_seconds:
        reasons.append(f"p99 {p99:.3f}s > {cfg.max_p99_seconds:g}s")
    return GateResult(at, ratio, p99, reqs, reasons)
