"""Synthetic scrapes of the functions' request histogram, written as
OpenMetrics text for ``promtool tsdb create-blocks-from openmetrics``.

Each scenario is one revision of get-result with its own behaviour over one
hour of 15-second scrapes: request rate, 5xx share, latency mix. The series
carry the labels a scrape through the functions' PodMonitor produces
(``kn_revision_name`` relabeled from the pod label
serving.knative.dev/revision, ``namespace``, ``pod``, ``job``) plus the
metric's own labels from the contract (``function``, ``http_*``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

METRIC = "http_server_request_duration_seconds"
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
SCRAPE = 15
DURATION = 3600

#: Latency mixes: (upper bound of the bucket the request falls in, share).
FAST = ((0.01, 0.60), (0.025, 0.30), (0.05, 0.085), (0.1, 0.015))
SLOW_TAIL = ((0.01, 0.55), (0.025, 0.30), (0.05, 0.10), (2.5, 0.05))


@dataclass(frozen=True)
class Scenario:
    revision: str
    #: requests per second of user traffic at offset t (seconds from start)
    rps: Callable[[int], float]
    #: share of user requests answered 5xx at offset t
    error_share: Callable[[int], float]
    latency: tuple = FAST
    #: share answered 404 (client errors: must not count as failures)
    not_found_share: float = 0.0
    #: /readyz answered 503 at this rate (probe routes must be ignored)
    probe_failures_per_s: float = 0.0
    function: str = "get-result"
    #: seconds of samples from the start; the "live" scenarios reach past
    #: the wall clock so that the command line can be tested in real time
    duration: int = DURATION
    #: seconds after the common start where this scenario's samples begin
    offset: int = 0
    namespace: str = "exam-results"


#: The namespace of the quiet-function scenarios (select it with extra matchers).
QUIET_NAMESPACE = "exam-results-quiet"


def _flapping_errors(t: int) -> float:
    # 10 % errors for one minute out of every five, good otherwise
    return 0.10 if 150 <= t % 300 < 210 else 0.0


SCENARIOS = (
    # healthy; its pods also fail /readyz now and then (ignored by the gates)
    Scenario("get-result-good001", rps=lambda t: 20, error_share=lambda t: 0.001, probe_failures_per_s=0.5),
    # healthy but many lookups of missing roll numbers (404: not an error)
    Scenario("get-result-404s001", rps=lambda t: 20, error_share=lambda t: 0.0, not_found_share=0.4),
    # 8 % 5xx all the time
    Scenario("get-result-bad0001", rps=lambda t: 20, error_share=lambda t: 0.08),
    # no errors, but 5 % of requests take 1-2.5 s
    Scenario("get-result-slow001", rps=lambda t: 20, error_share=lambda t: 0.0, latency=SLOW_TAIL),
    # good most of the time, 10 % errors for 1 minute in 5
    Scenario("get-result-flap001", rps=lambda t: 20, error_share=_flapping_errors),
    # pods exist and are scraped but serve no requests (0/0 = NaN)
    Scenario("get-result-idle001", rps=lambda t: 0, error_share=lambda t: 0.0),
    # the old stable revision: 5 % errors, to prove only the candidate is read
    Scenario("get-result-0a1b2c3", rps=lambda t: 180, error_share=lambda t: 0.05),
    # from 30 minutes ago until an hour from now (the common start is two
    # hours ago): for the end-to-end command-line test, which runs in real time
    Scenario("get-result-live0ok", rps=lambda t: 20, error_share=lambda t: 0.0, offset=5400, duration=5400),
    Scenario("get-result-live0bad", rps=lambda t: 20, error_share=lambda t: 0.2, offset=5400, duration=5400),
    # a quiet function (namespace exam-results-quiet): its stable revision
    # serves one request a minute, far too few for a 10-request gate at 5 %;
    # the candidate's requests are the synthetic load the rollout drives
    Scenario("get-result-0a1b2c3", rps=lambda t: 1 / 60, error_share=lambda t: 0.0,
             namespace=QUIET_NAMESPACE),
    Scenario("get-result-quiet01", rps=lambda t: 0.5, error_share=lambda t: 0.0, namespace=QUIET_NAMESPACE),
)
#: A revision with no series at all (metrics not scraped / label missing).
MISSING_REVISION = "get-result-nodata01"


def _labels(s: Scenario, **extra: str) -> str:
    base = {"function": s.function, "kn_revision_name": s.revision, "namespace": s.namespace,
            "pod": f"{s.revision}-deployment-7c9d8b6f5-x2k4q", "job": "exam-results/functions"}
    base.update(extra)
    return ",".join(f'{k}="{v}"' for k, v in base.items())


def openmetrics(start: int) -> str:
    """All scenarios from ``start`` (unix seconds), each for its duration."""
    families: list[str] = [f"# TYPE {METRIC} histogram", f"# UNIT {METRIC} seconds"]
    for s in SCENARIOS:
        # (route, method, status, latency mix) -> cumulative request count
        groups = {
            ("/results/{exam_year}/{roll_number}", "GET", "200", s.latency): 0.0,
            ("/results/{exam_year}/{roll_number}", "GET", "404", FAST): 0.0,
            ("/results/{exam_year}/{roll_number}", "GET", "503", FAST): 0.0,
            ("/readyz", "GET", "200", FAST): 0.0,
            ("/readyz", "GET", "503", FAST): 0.0,
        }
        # cumulative per bucket per group, and sum
        cum: dict = {g: [0.0] * (len(BUCKETS) + 1) for g in groups}
        sums: dict = {g: 0.0 for g in groups}
        rows: dict = {g: [] for g in groups}
        for t in range(0, s.duration, SCRAPE):
            n = s.rps(t) * SCRAPE
            err = n * s.error_share(t)
            nf = n * s.not_found_share
            adds = {
                ("/results/{exam_year}/{roll_number}", "GET", "200", s.latency): n - err - nf,
                ("/results/{exam_year}/{roll_number}", "GET", "404", FAST): nf,
                ("/results/{exam_year}/{roll_number}", "GET", "503", FAST): err,
                ("/readyz", "GET", "200", FAST): 1.0,  # one probe per scrape interval
                ("/readyz", "GET", "503", FAST): s.probe_failures_per_s * SCRAPE,
            }
            for g, count in adds.items():
                for upper, share in g[3]:
                    idx = BUCKETS.index(upper)
                    for i in range(idx, len(BUCKETS) + 1):
                        cum[g][i] += count * share
                    sums[g] += count * share * upper * 0.6
                rows[g].append((start + s.offset + t, list(cum[g]), sums[g]))
        for g, samples in rows.items():
            route, method, status, _ = g
            lab = _labels(s, http_request_method=method, http_route=route, http_response_status_code=status)
            for i, le in enumerate([*map(str, BUCKETS), "+Inf"]):
                for ts, counts, _ in samples:
                    families.append(f'{METRIC}_bucket{{{lab},le="{le}"}} {counts[i]:.3f} {ts}')
            for ts, counts, _ in samples:
                families.append(f"{METRIC}_count{{{lab}}} {counts[-1]:.3f} {ts}")
            for ts, _, total in samples:
                families.append(f"{METRIC}_sum{{{lab}}} {total:.4f} {ts}")
    families.append("# EOF")
    return "\n".join(families) + "\n"
