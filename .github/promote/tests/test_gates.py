"""The gate PromQL, run by a real Prometheus over the synthetic series."""

from __future__ import annotations

import math

import pytest

from promote.gates import (GateConfig, Prometheus, error_ratio_query, evaluate, p99_query, requests_query,
                           selector)

GATE = GateConfig(max_error_ratio=0.01, max_p99_seconds=0.5, window="2m", min_requests=10)


@pytest.fixture
def prom(prometheus):
    return Prometheus(prometheus.url)


def at(prometheus, offset: int) -> float:
    return prometheus.start + offset


def test_a_healthy_revision_passes_with_its_real_error_ratio_and_p99(prom, prometheus):
    r = evaluate(prom, "get-result", "get-result-good001", GATE, at(prometheus, 900))
    assert r.passed, r.reasons
    assert r.error_ratio == pytest.approx(0.001, rel=0.01)
    # 99 % of requests finish within the 0.05 s bucket's range; the 99th percentile interpolates inside (0.05, 0.1]
    assert 0.05 < r.p99_seconds <= 0.1
    assert r.requests == pytest.approx(20 * 120, rel=0.05)


def test_probe_failures_on_readyz_do_not_count_against_a_revision(prom, prometheus):
    t = at(prometheus, 900)
    sel_all = '{function="get-result",kn_revision_name="get-result-good001"}'
    with_probes = prom.scalar(
        f'sum(rate(http_server_request_duration_seconds_count{{function="get-result",kn_revision_name="get-result-good001",'
        f'http_response_status_code=~"5.."}}[2m])) / sum(rate(http_server_request_duration_seconds_count{sel_all}[2m]))',
        t)
    gated = prom.scalar(error_ratio_query("get-result", "get-result-good001", "2m"), t)
    assert with_probes > 0.02  # the /readyz 503s alone would fail a 1 % gate
    assert gated == pytest.approx(0.001, rel=0.01)


def test_client_errors_are_not_failures(prom, prometheus):
    r = evaluate(prom, "get-result", "get-result-404s001", GATE, at(prometheus, 900))
    assert r.passed, r.reasons
    assert r.error_ratio == 0.0


def test_a_revision_answering_8_percent_5xx_fails_the_error_ratio_gate(prom, prometheus):
    r = evaluate(prom, "get-result", "get-result-bad0001", GATE, at(prometheus, 900))
    assert not r.passed
    assert r.error_ratio == pytest.approx(0.08, rel=0.01)
    assert any(reason.startswith("error ratio 0.0800 > 0.01") for reason in r.reasons), r.reasons


def test_a_slow_tail_fails_the_p99_gate_but_not_the_error_gate(prom, prometheus):
    r = evaluate(prom, "get-result", "get-result-slow001", GATE, at(prometheus, 900))
    assert not r.passed
    assert r.error_ratio == 0.0
    assert 1.0 < r.p99_seconds <= 2.5
    assert r.reasons == [f"p99 {r.p99_seconds:.3f}s > 0.5s"]


def test_the_stable_revisions_errors_do_not_leak_into_the_candidates_gate(prom, prometheus):
    old = evaluate(prom, "get-result", "get-result-0a1b2c3", GATE, at(prometheus, 900))
    assert old.error_ratio == pytest.approx(0.05, rel=0.01)
    assert evaluate(prom, "get-result", "get-result-good001", GATE, at(prometheus, 900)).passed


def test_a_revision_without_any_series_fails_as_missing_data(prom, prometheus):
    r = evaluate(prom, "get-result", "get-result-nodata01", GATE, at(prometheus, 900))
    assert not r.passed
    assert (r.error_ratio, r.p99_seconds, r.requests) == (None, None, None)
    assert "error ratio: no data" in r.reasons
    assert "p99 latency: no data" in r.reasons
    assert "no request series for this revision in 2m" in r.reasons


def test_an_idle_revision_fails_because_0_of_0_is_not_a_pass(prom, prometheus):
    t = at(prometheus, 900)
    raw = prom.query(error_ratio_query("get-result", "get-result-idle001", "2m"), t)
    assert len(raw) == 1 and math.isnan(raw[0][1])  # Prometheus really answers NaN here
    r = evaluate(prom, "get-result", "get-result-idle001", GATE, t)
    assert not r.passed
    assert r.requests == 0.0
    assert "error ratio: no data" in r.reasons


def test_extra_matchers_narrow_the_selection(prom, prometheus):
    t = at(prometheus, 900)
    here = GateConfig(0.01, 0.5, "2m", 10, extra_matchers='namespace="exam-results"')
    elsewhere = GateConfig(0.01, 0.5, "2m", 10, extra_matchers='namespace="exam-results-staging"')
    assert evaluate(prom, "get-result", "get-result-good001", here, t).passed
    assert not evaluate(prom, "get-result", "get-result-good001", elsewhere, t).passed


def test_an_unreachable_prometheus_fails_the_gate():
    r = evaluate(Prometheus("http://127.0.0.1:9", timeout=1), "get-result", "get-result-good001", GATE, 1.0)
    assert not r.passed
    assert "Prometheus unreachable" in r.reasons[0]


def test_a_query_prometheus_rejects_is_a_failure_not_a_pass(prom, prometheus):
    from promote.gates import PrometheusError

    with pytest.raises(PrometheusError, match="bad_data"):
        prom.query("sum(rate(http_server_request_duration_seconds_count[2m]", at(prometheus, 900))


def test_label_values_cannot_inject_promql():
    with pytest.raises(ValueError):
        selector("get-result", 'x"} or vector(0) #')
    with pytest.raises(ValueError):
        selector("get-result", "get-result-abc", revision_label='x="y",z')


def test_the_revision_label_is_configurable(prom, prometheus):
    # the synthetic series only carry kn_revision_name: another label name finds nothing
    other = GateConfig(0.01, 0.5, "2m", 10, revision_label="revision")
    r = evaluate(prom, "get-result", "get-result-good001", other, at(prometheus, 900))
    assert not r.passed and "error ratio: no data" in r.reasons


def test_the_queries_use_the_contract_metric_and_labels():
    assert requests_query("get-result", "get-result-abc", "2m") == (
        'sum(increase(http_server_request_duration_seconds_count{function="get-result",kn_revision_name="get-result-abc",'
        'http_route!~"/healthz|/readyz"}[2m]))')
    assert p99_query("get-result", "get-result-abc", "5m").startswith(
        "histogram_quantile(0.99, sum by (le) (rate(http_server_request_duration_seconds_bucket{")
    assert 'http_response_status_code=~"5.."' in error_ratio_query("get-result", "get-result-abc", "2m")


@pytest.mark.parametrize("kwargs", [dict(window="2 minutes"), dict(max_error_ratio=1.5), dict(max_p99_seconds=0)])
def test_nonsense_thresholds_are_refused(kwargs):
    base = dict(max_error_ratio=0.01, max_p99_seconds=0.5)
    base.update(kwargs)
    with pytest.raises(ValueError):
        GateConfig(**base)
