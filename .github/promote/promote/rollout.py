"""The rollout of one function's new revision: the decisions, in order.

1. Read the Service; the revision with the most traffic is *stable*.
2. Deploy the candidate (the chart's values for the commit ``suffix`` and the
   image digest) at 0 % under the tag ``candidate``; stable keeps 100 %. The
   chart names the revision after its rendered template, so its name is not
   known in advance: it is read from the Service's
   ``status.latestCreatedRevisionName`` once the controller has observed the
   change. An unchanged template creates no revision: nothing to roll out.
3. Wait until the candidate revision is Ready (fail on a failed revision or
   after ``ready_timeout``).
4. Smoke-test it through its tag URL.
5. For each step (e.g. 10, 50, 100): route that share to the candidate, wait
   for the Route to report it, then check the gates every ``check_interval``
   for ``bake_seconds``. Every check must pass: one failing check (a flapping
   canary) fails the step.
6. Success: candidate 100 %, routed as the Service's latest revision (so a
   later template change, e.g. tuning a target, takes effect), the old stable
   kept at 0 % under the tag ``previous`` (one-command manual rollback). Any failure: stable 100 %, the
   ``candidate`` tag removed, and the run fails.

Everything that talks to the outside (cluster, Prometheus, clock, smoke
test) is injected, so tests drive it with recorded Service states, a real
Prometheus loaded with synthetic series, and a simulated clock.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Callable, Optional, Protocol

from .gates import (GateConfig, GateResult, Prometheus, PrometheusError, evaluate, function_requests_query,
                    requests_query, window_seconds)
from .knative import RevisionReadiness, ServiceState, TrafficTarget
from .load import LoadDriver, LoadStats, needed_rate

log = logging.getLogger("promote")

CANDIDATE_TAG = "candidate"
PREVIOUS_TAG = "previous"


class Cluster(Protocol):
    """Reads a function's Knative Service and applies its desired state."""

    def get(self, function: str) -> ServiceState: ...

    def apply(self, function: str, suffix: Optional[str], digest: Optional[str],
              traffic: list[TrafficTarget]) -> None:
        """Render the Service's template for the commit ``suffix`` (None: leave it)
        (with image ``digest`` unless None) and make its traffic exactly
        ``traffic`` (a target without a revision name follows the latest
        revision). Raises :class:`RolloutFailed` if the change is refused."""


class Clock(Protocol):
    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class RealClock:
    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


#: A smoke test: given the candidate's tag URL, returns the problems found
#: (an empty list means it passed).
SmokeTest = Callable[[str], list[str]]


class Decision(str, Enum):
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled back"
    FAILED = "failed"  # nothing to roll back to (first deploy), or rollback itself failed
    UNCHANGED = "unchanged"


#: A revision-name suffix: lower-case DNS label characters (Knative names
#: revisions ``<service>-<suffix>[-...]``).
_SUFFIX = re.compile(r"^[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?$")


def commit_of(function: str, revision: Optional[str]) -> Optional[str]:
    """The commit suffix a revision name carries (``<function>-<suffix>`` or
    ``<function>-<suffix>-<template hash>``), or None."""
    if not revision or not revision.startswith(function + "-"):
        return None
    return revision[len(function) + 1:].split("-", 1)[0] or None


@dataclass(frozen=True)
class RolloutConfig:
    function: str
    #: The commit being deployed (short SHA): the chart's ``revision`` value.
    suffix: str
    #: Image digest (``sha256:...``) of the candidate; None keeps the current image.
    digest: Optional[str]
    steps: tuple[int, ...]
    gate: GateConfig
    bake_seconds: float = 300
    check_interval: float = 30
    ready_timeout: float = 300
    route_timeout: float = 120
    poll_interval: float = 5

    def __post_init__(self) -> None:
        if not _SUFFIX.match(self.suffix) or "-" in self.suffix:
            raise ValueError(f"suffix {self.suffix!r} must be lower-case letters and digits (a short commit SHA)")
        if not self.steps or self.steps[-1] != 100:
            raise ValueError(f"steps must end at 100, got {list(self.steps)}")
        if any(not 0 < s <= 100 for s in self.steps) or list(self.steps) != sorted(set(self.steps)):
            raise ValueError(f"steps must be strictly increasing percentages in 1..100, got {list(self.steps)}")
        if self.check_interval <= 0 or self.bake_seconds < self.check_interval:
            raise ValueError("bake_seconds must be at least one check_interval")


@dataclass
class StepRecord:
    percent: int
    checks: list[GateResult] = field(default_factory=list)
    passed: bool = False
    note: str = ""
    #: the synthetic load driven at the candidate during this step, if any
    synthetic: Optional[LoadStats] = None

    @property
    def worst_error_ratio(self) -> Optional[float]:
        vals = [c.error_ratio for c in self.checks if c.error_ratio is not None]
        return max(vals) if vals else None

    @property
    def worst_p99(self) -> Optional[float]:
        vals = [c.p99_seconds for c in self.checks if c.p99_seconds is not None]
        return max(vals) if vals else None


@dataclass
class RolloutReport:
    function: str
    old_revision: Optional[str]
    #: The candidate's name as the Service reported it (None until deployed).
    new_revision: Optional[str]
    decision: Decision = Decision.FAILED
    reason: str = ""
    smoke: str = "not run"
    steps: list[StepRecord] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.decision in (Decision.PROMOTED, Decision.UNCHANGED)


class RolloutFailed(Exception):
    """Raised inside the rollout to trigger the rollback path."""


class Rollout:
    def __init__(self, cfg: RolloutConfig, cluster: Cluster, prom: Prometheus, clock: Clock,
                 smoke: Optional[SmokeTest] = None, load: Optional[LoadDriver] = None) -> None:
        self.cfg = cfg
        self.cluster = cluster
        self.prom = prom
        self.clock = clock
        self.smoke = smoke
        self.load = load
        #: The candidate revision's name, read from the Service's status after the deploy.
        self.candidate: Optional[str] = None

    # -- public ------------------------------------------------------------
    def run(self) -> RolloutReport:
        cfg = self.cfg
        state = self.cluster.get(cfg.function)
        cand_tag = state.tagged(CANDIDATE_TAG)
        # a candidate of this commit already deployed (deploy-candidates, or a re-run)
        pending = cand_tag.revision if cand_tag and commit_of(cfg.function, cand_tag.revision) == cfg.suffix else None
        stable = state.stable_revision(exclude=pending)
        report = RolloutReport(cfg.function, stable, pending)
        if (pending is None and stable and commit_of(cfg.function, stable) == cfg.suffix
                and state.percent_of(stable) == 100 and state.routes_reconciled):
            report.decision, report.reason = Decision.UNCHANGED, f"{stable} already serves 100%"
            return report
        keep = self._kept_previous(state, stable, pending)
        try:
            self.candidate = report.new_revision = self._deploy_candidate(stable, keep)
            if self.candidate == stable:
                report.decision = Decision.UNCHANGED
                report.reason = f"the template is unchanged: {stable} keeps 100%"
                self._rollback(stable, keep)
                return report
            keep = [k for k in keep if k.revision != self.candidate]
            self._wait_ready()
            self._smoke(report)
            previous = 0
            for pct in cfg.steps:
                step = StepRecord(pct)
                report.steps.append(step)
                self._shift(stable, pct, keep)
                self._bake(step, stable, previous)
                previous = pct
        except Exception as exc:  # noqa: BLE001 - whatever went wrong, traffic goes back
            if isinstance(exc, RolloutFailed):
                report.reason = str(exc)
                log.error("%s: %s", cfg.function, exc)
            else:
                report.reason = f"unexpected error: {exc.__class__.__name__}: {exc}"
                log.exception("%s: unexpected error during the rollout", cfg.function)
            if stable is None:
                report.decision = Decision.FAILED
                report.reason += " (first deploy: no previous revision to roll back to)"
                return report
            try:
                self._rollback(stable, keep)
                report.decision = Decision.ROLLED_BACK
            except RolloutFailed as rb_exc:
                report.decision = Decision.FAILED
                report.reason += f"; ROLLBACK DID NOT CONVERGE: {rb_exc}"
            return report
        try:
            self._finish(stable)
        except RolloutFailed as exc:
            report.decision = Decision.FAILED
            report.reason = f"all steps passed but the final split did not converge: {exc}"
            return report
        report.decision = Decision.PROMOTED
        report.reason = f"all {len(cfg.steps)} steps passed the gates"
        return report

    # -- steps -------------------------------------------------------------
    def _kept_previous(self, state: ServiceState, stable: Optional[str],
                       pending: Optional[str]) -> list[TrafficTarget]:
        """An existing ``previous`` tag stays routable (0 %) during the rollout."""
        prev = state.tagged(PREVIOUS_TAG)
        if prev and prev.revision and prev.revision not in (stable, pending):
            return [TrafficTarget(prev.revision, 0, PREVIOUS_TAG)]
        return []

    def _split(self, stable: Optional[str], pct: int, keep: list[TrafficTarget]) -> list[TrafficTarget]:
        cand = TrafficTarget(self.candidate, pct if stable else 100, CANDIDATE_TAG)
        if stable is None:
            return [cand]
        return [TrafficTarget(stable, 100 - pct), cand, *keep]

    def _apply_and_wait(self, traffic: list[TrafficTarget], what: str) -> ServiceState:
        self.cluster.apply(self.cfg.function, self.cfg.suffix, self.cfg.digest, traffic)
        deadline = self.clock.now() + self.cfg.route_timeout
        while True:
            state = self.cluster.get(self.cfg.function)
            if state.traffic_matches(traffic):
                return state
            if self.clock.now() >= deadline:
                routes = state.condition("RoutesReady")
                raise RolloutFailed(f"{what}: the Route did not report the new traffic split within "
                                    f"{self.cfg.route_timeout:g}s (RoutesReady={routes.status} {routes.reason})")
            self.clock.sleep(self.cfg.poll_interval)

    def _deploy_candidate(self, stable: Optional[str], keep: list[TrafficTarget]) -> str:
        """Apply the new template with the ``candidate`` tag following the
        latest revision, then return the revision's name as the controller
        reports it (``status.latestCreatedRevisionName``)."""
        cfg = self.cfg
        log.info("%s: deploying commit %s at 0%% (stable %s)", cfg.function, cfg.suffix, stable)
        self.cluster.apply(cfg.function, cfg.suffix, cfg.digest, self._split(stable, 0, keep))
        deadline = self.clock.now() + cfg.ready_timeout
        while True:
            state = self.cluster.get(cfg.function)
            if state.observed_generation >= state.generation and state.latest_created:
                log.info("%s: the new template is revision %s", cfg.function, state.latest_created)
                return state.latest_created
            if self.clock.now() >= deadline:
                raise RolloutFailed(f"the controller did not observe the new template within "
                                    f"{cfg.ready_timeout:g}s")
            self.clock.sleep(cfg.poll_interval)

    def _wait_ready(self) -> None:
        deadline = self.clock.now() + self.cfg.ready_timeout
        while True:
            state = self.cluster.get(self.cfg.function)
            readiness, msg = state.revision_readiness(self.candidate)
            if readiness is RevisionReadiness.READY and state.tag_url(CANDIDATE_TAG):
                return
            if readiness is RevisionReadiness.FAILED:
                raise RolloutFailed(f"candidate {self.candidate} failed to become ready: {msg}")
            if self.clock.now() >= deadline:
                raise RolloutFailed(f"candidate {self.candidate} was not ready after "
                                    f"{self.cfg.ready_timeout:g}s ({msg})")
            self.clock.sleep(self.cfg.poll_interval)

    def _smoke(self, report: RolloutReport) -> None:
        if self.smoke is None:
            report.smoke = "skipped"
            return
        url = self.cluster.get(self.cfg.function).tag_url(CANDIDATE_TAG)
        assert url, "candidate tag URL checked in _wait_ready"
        problems = self.smoke(url)
        if problems:
            report.smoke = "failed"
            raise RolloutFailed("smoke test failed: " + "; ".join(problems))
        report.smoke = "passed"

    def _shift(self, stable: Optional[str], pct: int, keep: list[TrafficTarget]) -> None:
        log.info("%s: %d%% to %s", self.cfg.function, pct, self.candidate)
        self._apply_and_wait(self._split(stable, pct, keep), f"step {pct}%")

    def _synthetic_rate(self, stable: Optional[str], percent: int, previous: int) -> float:
        """The synthetic request rate this step needs (0: real traffic suffices).

        Real traffic is measured on the stable revision, which served
        ``100 - previous`` % of it over the last window (the candidate's own
        requests may be synthetic and must not count); with no stable
        revision, the whole function's traffic is all there is."""
        cfg = self.cfg
        gate = cfg.gate
        try:
            if stable is not None:
                served = self.prom.scalar(requests_query(cfg.function, stable, gate.window, gate.extra_matchers,
                                                         gate.revision_label), self.clock.now())
                real = None if served is None else served * 100 / (100 - previous)
            else:
                real = self.prom.scalar(function_requests_query(cfg.function, gate.window, gate.extra_matchers),
                                        self.clock.now())
        except PrometheusError as exc:
            log.warning("%s: cannot read the function's traffic (%s): driving synthetic load", cfg.function, exc)
            real = None
        return needed_rate(real, percent, gate.min_requests, window_seconds(gate.window))

    def _bake(self, step: StepRecord, stable: Optional[str] = None, previous: int = 0) -> None:
        rate = self._synthetic_rate(stable, step.percent, previous) if self.load is not None else 0.0
        if rate > 0:
            assert self.load is not None
            url = self.cluster.get(self.cfg.function).tag_url(CANDIDATE_TAG)
            if url:
                log.info("%s %d%%: real traffic too thin for the gates: synthetic load at %.2f/s",
                         self.cfg.function, step.percent, rate)
                self.load.start(url, rate, self.cfg.bake_seconds)
                try:
                    self._bake_checks(step)
                finally:
                    step.synthetic = self.load.stop()
                return
        self._bake_checks(step)

    def _bake_checks(self, step: StepRecord) -> None:
        cfg = self.cfg
        end = self.clock.now() + cfg.bake_seconds
        while self.clock.now() < end:
            self.clock.sleep(min(cfg.check_interval, max(0.0, end - self.clock.now())))
            result = evaluate(self.prom, cfg.function, self.candidate, cfg.gate, self.clock.now())
            step.checks.append(result)
            log.info("%s %d%%: error_ratio=%s p99=%s requests=%s %s", cfg.function, step.percent,
                     result.error_ratio, result.p99_seconds, result.requests,
                     "ok" if result.passed else "FAIL " + "; ".join(result.reasons))
            if not result.passed:
                step.note = "; ".join(result.reasons)
                raise RolloutFailed(f"gate failed at {step.percent}% "
                                    f"(check {len(step.checks)}): {step.note}")
        step.passed = True

    def _rollback(self, stable: str, keep: list[TrafficTarget]) -> None:
        log.warning("%s: rolling back to %s", self.cfg.function, stable)
        self._apply_and_wait([TrafficTarget(stable, 100), *keep], "rollback")

    def _finish(self, stable: Optional[str]) -> None:
        # The promoted revision is routed as "the latest revision", so that a
        # later `helm upgrade --set …` that changes the template (tuning a
        # target) is served at once instead of creating a revision with 0 %;
        # unless something else became the latest meanwhile: then by name.
        latest = self.cluster.get(self.cfg.function).latest_ready == self.candidate
        final = [TrafficTarget(None if latest else self.candidate, 100)]
        if stable:
            final.append(TrafficTarget(stable, 0, PREVIOUS_TAG))
        # The candidate already serves 100 % here; only the tags change, so a
        # failure is reported but healthy code is not rolled back.
        self._apply_and_wait(final, "final traffic")


def manual_rollback(cluster: Cluster, clock: Clock, function: str, route_timeout: float = 120,
                    poll_interval: float = 5) -> tuple[str, str]:
    """Send 100 % back to the revision tagged ``previous`` and keep the
    current one at 0 % under ``candidate`` for inspection. Returns
    (from_revision, to_revision)."""
    state = cluster.get(function)
    prev = state.tagged(PREVIOUS_TAG)
    if not prev or not prev.revision:
        raise RolloutFailed(f"{function}: no revision is tagged {PREVIOUS_TAG!r}; nothing to roll back to")
    current = state.stable_revision(exclude=prev.revision)
    traffic = [TrafficTarget(prev.revision, 100)]
    if current:
        traffic.append(TrafficTarget(current, 0, CANDIDATE_TAG))
    cluster.apply(function, None, None, traffic)  # the template stays as it is
    deadline = clock.now() + route_timeout
    while not cluster.get(function).traffic_matches(traffic):
        if clock.now() >= deadline:
            raise RolloutFailed(f"{function}: rollback not reported by the Route within {route_timeout:g}s")
        clock.sleep(poll_interval)
    return current or "?", prev.revision


def abort_candidate(cluster: Cluster, clock: Clock, function: str, suffix: str, route_timeout: float = 120,
                    poll_interval: float = 5) -> Optional[str]:
    """After an interrupted rollout (cancelled job): if the revision of commit
    ``suffix`` still has traffic or the ``candidate`` tag, put 100 % back on
    the revision with the most other traffic. Returns that revision, or None
    if there was nothing to do (never deployed, or already promoted to 100 %)."""
    state = cluster.get(function)
    cand = state.tagged(CANDIDATE_TAG)
    revision = next((t.revision for t in ([cand] if cand else []) + state.status_traffic
                     if t.revision and commit_of(function, t.revision) == suffix), None)
    if revision is None:
        return None
    pct = state.percent_of(revision)
    if pct == 100 or (pct == 0 and not (cand and cand.revision == revision)):
        return None
    stable = state.stable_revision(exclude=revision)
    if stable is None:
        raise RolloutFailed(f"{function}: no other revision serves traffic; cannot take {revision} out")
    traffic = [TrafficTarget(stable, 100)]
    prev = state.tagged(PREVIOUS_TAG)
    if prev and prev.revision not in (stable, revision):
        traffic.append(TrafficTarget(prev.revision, 0, PREVIOUS_TAG))
    cluster.apply(function, None, None, traffic)  # the template stays as it is
    deadline = clock.now() + route_timeout
    while not cluster.get(function).traffic_matches(traffic):
        if clock.now() >= deadline:
            raise RolloutFailed(f"{function}: abort not reported by the Route within {route_timeout:g}s")
        clock.sleep(poll_interval)
    return stable
