"""Rollout decisions: recorded Knative Service states, a simulated clock, and
the gates evaluated by the real Prometheus at the simulated times."""

from __future__ import annotations

import pytest

from fakes import RecordedCluster
from fakes import FakeClock
from promote.gates import GateConfig, Prometheus
from promote.rollout import Decision, Rollout, RolloutConfig, abort_candidate, commit_of, manual_rollback
from promote.summary import as_json, markdown

OLD = "get-result-0a1b2c3"
PREV = "get-result-7e8f901"
DIGEST = "sha256:" + "9c" * 32
GATE = GateConfig(max_error_ratio=0.01, max_p99_seconds=0.5, window="2m", min_requests=10)


def config(suffix: str, **kw) -> RolloutConfig:
    base = dict(function="get-result", suffix=suffix, digest=DIGEST, steps=(10, 50, 100), gate=GATE,
                bake_seconds=120, check_interval=30, ready_timeout=300, route_timeout=60, poll_interval=5)
    base.update(kw)
    return RolloutConfig(**base)


def run(prometheus, candidate: str, cluster: RecordedCluster | None = None, smoke=None, start: int = 600,
        suffix: str | None = None, load=None, **kw):
    """Roll out commit ``suffix`` (default: the one ``candidate``'s name carries);
    the recorded controller names the new revision ``candidate``."""
    cluster = cluster or RecordedCluster("get-result-stable.json", candidate)
    clock = FakeClock(prometheus.start + start)
    suffix = suffix or commit_of("get-result", candidate)
    report = Rollout(config(suffix, **kw), cluster, Prometheus(prometheus.url), clock, smoke, load).run()
    return report, cluster, clock


def test_a_good_canary_is_promoted_step_by_step_and_the_old_revision_kept_as_previous(prometheus):
    smoked = []
    report, cluster, clock = run(prometheus, "get-result-good001", smoke=lambda url: smoked.append(url) or [])
    assert report.decision is Decision.PROMOTED, report.reason
    assert smoked == ["https://candidate-get-result.exam-results.example.org"]
    assert report.smoke == "passed"
    assert cluster.splits() == [
        [(OLD, 100, None), (None, 0, "candidate"), (PREV, 0, "previous")],
        [(OLD, 90, None), ("get-result-good001", 10, "candidate"), (PREV, 0, "previous")],
        [(OLD, 50, None), ("get-result-good001", 50, "candidate"), (PREV, 0, "previous")],
        [(OLD, 0, None), ("get-result-good001", 100, "candidate"), (PREV, 0, "previous")],
        [(None, 100, None), (OLD, 0, "previous")],
    ]
    assert [s.percent for s in report.steps] == [10, 50, 100]
    assert all(s.passed and len(s.checks) == 4 for s in report.steps)
    assert all(c.error_ratio == pytest.approx(0.001, rel=0.01) for s in report.steps for c in s.checks)
    # only the first apply carries the image; the template (commit good001) never changes
    assert [a[0] for a in cluster.applied] == ["good001"] * 5
    assert [a[1] for a in cluster.applied] == [DIGEST] * 5
    final = cluster.current()
    assert final.percent_of("get-result-good001") == 100
    assert final.tag_url("previous") == "https://previous-get-result.exam-results.example.org"
    assert final.tagged("candidate") is None
    # 3 steps x 120 s bake, plus the polls while Knative caught up
    assert 360 <= clock.slept <= 360 + 60


def test_a_bad_canary_is_rolled_back_at_the_first_failing_check(prometheus):
    report, cluster, _ = run(prometheus, "get-result-bad0001")
    assert report.decision is Decision.ROLLED_BACK
    assert len(report.steps) == 1 and report.steps[0].percent == 10
    assert len(report.steps[0].checks) == 1
    assert "gate failed at 10% (check 1): error ratio 0.0800 > 0.01" in report.reason
    assert cluster.splits()[-1] == [(OLD, 100, None), (PREV, 0, "previous")]
    state = cluster.current()
    assert state.percent_of(OLD) == 100 and state.tagged("candidate") is None
    assert state.tagged("previous").revision == PREV


def test_a_slow_canary_is_rolled_back_on_p99(prometheus):
    report, cluster, _ = run(prometheus, "get-result-slow001")
    assert report.decision is Decision.ROLLED_BACK
    assert "p99" in report.reason and "> 0.5s" in report.reason
    assert cluster.current().percent_of(OLD) == 100


def test_a_flapping_canary_is_rolled_back_even_though_most_checks_pass(prometheus):
    # the synthetic revision fails for one minute in every five
    report, cluster, _ = run(prometheus, "get-result-flap001", start=600)
    assert report.decision is Decision.ROLLED_BACK
    checks = [c for s in report.steps for c in s.checks]
    assert checks[-1].passed is False
    assert sum(c.passed for c in checks) >= 2, "flapping: good checks came before the bad one"
    assert checks[-1].error_ratio > 0.01
    assert cluster.current().percent_of(OLD) == 100


def test_a_candidate_that_never_becomes_ready_is_rolled_back_after_the_timeout(prometheus):
    cluster = RecordedCluster("get-result-stable.json", "get-result-good001",
                              on_deploy=("get-result-candidate-unobserved.json",) + ("get-result-candidate-deploying.json",) * 500)
    report, cluster, clock = run(prometheus, "get-result-good001", cluster=cluster, ready_timeout=180)
    assert report.decision is Decision.ROLLED_BACK
    assert "was not ready after 180s" in report.reason
    assert "waiting for a Revision to become ready" in report.reason
    assert report.steps == [] and report.smoke == "not run"
    assert 180 <= clock.slept <= 200
    assert cluster.splits()[-1] == [(OLD, 100, None), (PREV, 0, "previous")]


def test_a_failed_revision_is_rolled_back_at_once_with_knatives_message(prometheus):
    cluster = RecordedCluster("get-result-stable.json", "get-result-good001",
                              on_deploy=("get-result-candidate-unobserved.json", "get-result-candidate-deploying.json",
                                         "get-result-candidate-failed.json"))
    report, cluster, clock = run(prometheus, "get-result-good001", cluster=cluster)
    assert report.decision is Decision.ROLLED_BACK
    assert "RevisionFailed" in report.reason and "MANIFEST_UNKNOWN" in report.reason
    assert clock.slept < 30
    state = cluster.current()
    # the Service stays Ready=False (its latest revision failed) but traffic is safe
    assert state.condition("Ready").status == "False"
    assert state.percent_of(OLD) == 100 and state.routes_reconciled


def test_missing_metrics_are_a_failure_not_a_pass(prometheus):
    report, cluster, _ = run(prometheus, "get-result-nodata01")
    assert report.decision is Decision.ROLLED_BACK
    assert "no data" in report.reason
    assert report.steps[0].checks[0].error_ratio is None
    assert cluster.current().percent_of(OLD) == 100


def test_an_idle_candidate_is_not_promoted_on_silence(prometheus):
    report, _, _ = run(prometheus, "get-result-idle001")
    assert report.decision is Decision.ROLLED_BACK
    assert "too little traffic to judge: 0.0 requests" in report.reason


def test_a_failing_smoke_test_rolls_back_before_any_user_traffic(prometheus):
    report, cluster, _ = run(prometheus, "get-result-good001",
                             smoke=lambda url: ["lookup of a missing result: GET ... -> HTTP 503"])
    assert report.decision is Decision.ROLLED_BACK
    assert report.smoke == "failed" and report.steps == []
    assert all(pct == 0 for split in cluster.splits() for rev, pct, _ in split if rev == "get-result-good001")


def test_a_revision_already_serving_everything_is_left_alone(prometheus):
    cluster = RecordedCluster("get-result-promoted.json", "get-result-good001")
    report, cluster, _ = run(prometheus, "get-result-good001", cluster=cluster)
    assert report.decision is Decision.UNCHANGED
    assert cluster.applied == []


def test_an_interrupted_rollout_restarts_from_the_first_step(prometheus):
    # a runner died with the candidate at 50 %: the old revision is still the one to return to
    cluster = RecordedCluster("get-result-candidate-50.json", "get-result-good001", on_deploy=())
    report, cluster, _ = run(prometheus, "get-result-good001", cluster=cluster)
    assert report.old_revision == OLD
    assert report.decision is Decision.PROMOTED
    assert cluster.splits()[1][:2] == [(OLD, 90, None), ("get-result-good001", 10, "candidate")]


def test_a_rollback_the_route_never_reports_ends_as_failed_not_rolled_back(prometheus):
    cluster = RecordedCluster("get-result-stable.json", "get-result-bad0001", refuse_traffic=True)
    report, _, _ = run(prometheus, "get-result-bad0001", cluster=cluster)
    assert report.decision is Decision.FAILED
    assert "ROLLBACK DID NOT CONVERGE" in report.reason


def test_one_command_manual_rollback_returns_to_previous(prometheus):
    cluster = RecordedCluster("get-result-promoted.json", "get-result-d4e5f60")
    clock = FakeClock(0)
    frm, to = manual_rollback(cluster, clock, "get-result")
    assert (frm, to) == ("get-result-d4e5f60", OLD)
    state = cluster.current()
    assert state.percent_of(OLD) == 100
    assert state.tagged("candidate").revision == "get-result-d4e5f60"
    # the template is left as it is: no new revision is created by a rollback
    assert cluster.applied[-1][0] is None and cluster.applied[-1][1] is None


def test_abort_takes_traffic_off_an_interrupted_candidate(prometheus):
    cluster = RecordedCluster("get-result-candidate-50.json", "get-result-d4e5f60")
    assert abort_candidate(cluster, FakeClock(0), "get-result", "d4e5f60") == OLD
    assert cluster.current().percent_of(OLD) == 100
    # nothing to do once promoted
    done = RecordedCluster("get-result-promoted.json", "get-result-d4e5f60")
    assert abort_candidate(done, FakeClock(0), "get-result", "d4e5f60") is None
    assert done.applied == []


def test_the_summary_table_names_revisions_steps_numbers_and_decision(prometheus):
    report, _, _ = run(prometheus, "get-result-bad0001")
    md = markdown(report, "staging", "error ratio ≤ 0.01")
    assert "`get-result` in staging: rolled back" in md
    assert f"| `get-result` | `{OLD}` | `get-result-bad0001` | skipped | 10% | 1 | 0.0800 |" in md
    assert '"decision": "rolled back"' in as_json(report, "staging")


@pytest.mark.parametrize("kw,msg", [
    (dict(steps=(10, 50)), "end at 100"),
    (dict(steps=(50, 10, 100)), "strictly increasing"),
    (dict(suffix="Not-A-Sha"), "short commit SHA"),
    (dict(bake_seconds=10, check_interval=30), "at least one check_interval"),
])
def test_bad_rollout_settings_are_refused(kw, msg):
    with pytest.raises(ValueError, match=msg):
        config(kw.pop("suffix", "abc1234"), **kw)


def test_a_first_rollout_with_nothing_to_fall_back_on_is_still_smoke_tested_and_gated(prometheus):
    # deploy-candidates put the only revision at 100 % under the candidate tag
    cluster = RecordedCluster("get-result-first-candidate.json", "get-result-good001", on_deploy=())
    smoked = []
    report, cluster, _ = run(prometheus, "get-result-good001", cluster=cluster,
                             smoke=lambda url: smoked.append(url) or [])
    assert report.decision is Decision.PROMOTED and report.old_revision is None
    assert smoked and all(len(s.checks) == 4 for s in report.steps)
    assert cluster.splits()[-1] == [(None, 100, None)]  # the candidate tag is gone


def test_a_bad_first_rollout_fails_loudly_because_there_is_nothing_to_roll_back_to(prometheus):
    cluster = RecordedCluster("get-result-first-candidate.json", "get-result-bad0001", on_deploy=())
    report, cluster, _ = run(prometheus, "get-result-bad0001", cluster=cluster)
    assert report.decision is Decision.FAILED
    assert report.reason.endswith("(first deploy: no previous revision to roll back to)")


def test_an_unexpected_error_mid_rollout_still_rolls_back(prometheus):
    class Exploding(RecordedCluster):
        def apply(self, function, revision, digest, traffic):
            if any(t.percent == 50 for t in traffic):
                raise KeyError("status")  # e.g. a malformed object from the API server
            super().apply(function, revision, digest, traffic)

    cluster = Exploding("get-result-stable.json", "get-result-good001")
    report, cluster, _ = run(prometheus, "get-result-good001", cluster=cluster)
    assert report.decision is Decision.ROLLED_BACK
    assert report.reason == "unexpected error: KeyError: 'status'"
    assert cluster.current().percent_of(OLD) == 100


def test_the_first_pipeline_deploy_after_a_plain_helm_install_pins_the_generated_revision(prometheus):
    # `helm install` with the chart defaults: no BYO name, latestRevision: true at 100 %
    cluster = RecordedCluster("get-result-initial-install.json", "get-result-good001")
    report, cluster, _ = run(prometheus, "get-result-good001", cluster=cluster)
    assert report.old_revision == "get-result-00001"
    assert report.decision is Decision.PROMOTED
    assert cluster.splits()[0][:2] == [("get-result-00001", 100, None), (None, 0, "candidate")]
    assert cluster.splits()[-1] == [(None, 100, None), ("get-result-00001", 0, "previous")]


def test_the_candidates_name_is_read_from_the_services_status_not_assumed(prometheus):
    # CD deploys commit c0ffee1; the chart and the controller name the
    # revision (here get-result-good001): the gates and splits use that name
    report, cluster, _ = run(prometheus, "get-result-good001", suffix="c0ffee1")
    assert report.decision is Decision.PROMOTED, report.reason
    assert report.new_revision == "get-result-good001"
    assert [a[0] for a in cluster.applied] == ["c0ffee1"] * 5
    assert cluster.splits()[1][:2] == [(OLD, 90, None), ("get-result-good001", 10, "candidate")]
    assert cluster.splits()[-1] == [(None, 100, None), (OLD, 0, "previous")]


def test_an_unchanged_template_creates_no_revision_and_nothing_is_rolled_out(prometheus):
    # the controller observes the new values but its latest revision is still
    # the stable one (identical template: same name, no new revision)
    cluster = RecordedCluster("get-result-stable.json", "get-result-good001", on_deploy=())
    report, cluster, _ = run(prometheus, "get-result-good001", cluster=cluster, suffix="c0ffee1")
    assert report.decision is Decision.UNCHANGED and report.ok
    assert "template is unchanged" in report.reason
    assert report.steps == []
    state = cluster.current()
    assert state.percent_of(OLD) == 100 and state.tagged("candidate") is None


class RecordingLoad:
    """A LoadDriver that records what the rollout asked of it."""

    def __init__(self):
        self.calls = []

    def start(self, url, rate, seconds):
        self.calls.append(("start", url, rate, seconds))

    def stop(self):
        from promote.load import LoadStats

        self.calls.append(("stop",))
        return LoadStats(sent=60, failed=0, rate=0.5)


def test_a_quiet_function_gets_synthetic_load_during_every_bake_step(prometheus):
    from synthetic import QUIET_NAMESPACE

    load = RecordingLoad()
    gate = GateConfig(max_error_ratio=0.01, max_p99_seconds=0.5, window="2m", min_requests=10,
                      extra_matchers=f'namespace="{QUIET_NAMESPACE}"')
    report, _, _ = run(prometheus, "get-result-quiet01", gate=gate, steps=(5, 100), load=load)
    assert report.decision is Decision.PROMOTED, report.reason
    starts = [c for c in load.calls if c[0] == "start"]
    assert [c[0] for c in load.calls] == ["start", "stop", "start", "stop"]
    assert all(url == "https://candidate-get-result.exam-results.example.org" for _, url, _, _ in starts)
    # 2 requests/min of real traffic: 5 % of it is nothing; 100 % is still < 2 x 10 per 2 min
    assert all(0 < rate <= 20 / 120 + 1e-9 for _, _, rate, _ in starts)
    assert all(seconds == 120 for *_, seconds in starts)
    assert all(str(s.synthetic) == "60 synthetic requests at 0.5/s (0 failed)" for s in report.steps)
    md = markdown(report, "staging", "")
    assert "60 synthetic requests" in md


def test_a_busy_function_gets_no_synthetic_load(prometheus):
    load = RecordingLoad()
    report, _, _ = run(prometheus, "get-result-good001", load=load)
    assert report.decision is Decision.PROMOTED
    assert load.calls == []
    assert all(s.synthetic is None for s in report.steps)
