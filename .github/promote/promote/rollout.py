"""The rollout of one function's new revision: the decisions, in order.

1. Read the Service; the revision with the most traffic is *stable*.
2. Deploy the candidate (BYO name ``<function>-<shortsha>``) at 0 % under the
   tag ``candidate``; stable keeps 100 %.
3. Wait until the candidate revision is Ready (fail on a failed revision or
   after ``ready_timeout``).
4. Smoke-test it through its tag URL.
5. For each step (e.g. 10, 50, 100): route that share to the candidate, wait
   for the Route to report it, then check the gates every ``check_interval``
   for ``bake_seconds``. Every check must pass: one failing check (a flapping
   canary) fails the step.
6. Success: candidate 100 %, the old stable kept at 0 % under the tag
   ``previous`` (one-command manual rollback). Any failure: stable 100 %, the
   ``candidate`` tag removed, and the run fails.

Everything that talks to the outside (cluster, Prometheus, clock, smoke
test) is injected, so tests drive it with recorded Service states, a real
Prometheus loaded with synthetic series, and a simulated clock.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Callable, Optional, Protocol

from .gates import GateConfig, GateResult, Prometheus, evaluate
from .knative import RevisionReadiness, ServiceState, TrafficTarget

log = logging.getLogger("promote")

CANDIDATE_TAG = "candidate"
PREVIOUS_TAG = "previous"


class Cluster(Protocol):
    """Reads a function's Knative Service and applies its desired state."""

    def get(self, function: str) -> ServiceState: ...

    def apply(self, function: str, revision: Optional[str], digest: Optional[str],
              traffic: list[TrafficTarget]) -> None:
        """Make the Service's template revision ``revision`` (None: leave it) (with image
        ``digest`` unless None) and its traffic exactly ``traffic``. Raises
        :class:`RolloutFailed` if the change is refused."""


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


@dataclass(frozen=True)
class RolloutConfig:
    function: str
    revision: str
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
        if not self.revision.startswith(self.function + "-"):
            raise ValueError(f"revision {self.revision!r} must be named {self.function}-<suffix> (Knative BYO name rule)")
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
    new_revision: str
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
                 smoke: Optional[SmokeTest] = None) -> None:
        self.cfg = cfg
        self.cluster = cluster
        self.prom = prom
        self.clock = clock
        self.smoke = smoke

    # -- public ------------------------------------------------------------
    def run(self) -> RolloutReport:
        cfg = self.cfg
        state = self.cluster.get(cfg.function)
        stable = state.stable_revision(exclude=cfg.revision)
        report = RolloutReport(cfg.function, stable, cfg.revision)
        cand_tag = state.tagged(CANDIDATE_TAG)
        still_candidate = cand_tag is not None and cand_tag.revision == cfg.revision
        if state.percent_of(cfg.revision) == 100 and state.routes_reconciled and not still_candidate:
            report.decision, report.reason = Decision.UNCHANGED, f"{cfg.revision} already serves 100%"
            return report
        keep = self._kept_previous(state, stable)
        try:
            self._deploy_candidate(stable, keep)
            self._wait_ready()
            self._smoke(report)
            for pct in cfg.steps:
                step = StepRecord(pct)
                report.steps.append(step)
                self._shift(stable, pct, keep)
                self._bake(step)
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
    def _kept_previous(self, state: ServiceState, stable: Optional[str]) -> list[TrafficTarget]:
        """An existing ``previous`` tag stays routable (0 %) during the rollout."""
        prev = state.tagged(PREVIOUS_TAG)
        if prev and prev.revision and prev.revision not in (stable, self.cfg.revision):
            return [TrafficTarget(prev.revision, 0, PREVIOUS_TAG)]
        return []

    def _split(self, stable: Optional[str], pct: int, keep: list[TrafficTarget]) -> list[TrafficTarget]:
        cand = TrafficTarget(self.cfg.revision, pct if stable else 100, CANDIDATE_TAG)
        if stable is None:
            return [cand]
        return [TrafficTarget(stable, 100 - pct), cand, *keep]

    def _apply_and_wait(self, traffic: list[TrafficTarget], what: str) -> ServiceState:
        self.cluster.apply(self.cfg.function, self.cfg.revision, self.cfg.digest, traffic)
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

    def _deploy_candidate(self, stable: Optional[str], keep: list[TrafficTarget]) -> None:
        log.info("%s: deploying %s at 0%% (stable %s)", self.cfg.function, self.cfg.revision, stable)
        self.cluster.apply(self.cfg.function, self.cfg.revision, self.cfg.digest, self._split(stable, 0, keep))

    def _wait_ready(self) -> None:
        deadline = self.clock.now() + self.cfg.ready_timeout
        while True:
            state = self.cluster.get(self.cfg.function)
            readiness, msg = state.revision_readiness(self.cfg.revision)
            if readiness is RevisionReadiness.READY and state.tag_url(CANDIDATE_TAG):
                return
            if readiness is RevisionReadiness.FAILED:
                raise RolloutFailed(f"candidate {self.cfg.revision} failed to become ready: {msg}")
            if self.clock.now() >= deadline:
                raise RolloutFailed(f"candidate {self.cfg.revision} was not ready after "
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
        log.info("%s: %d%% to %s", self.cfg.function, pct, self.cfg.revision)
        self._apply_and_wait(self._split(stable, pct, keep), f"step {pct}%")

    def _bake(self, step: StepRecord) -> None:
        cfg = self.cfg
        end = self.clock.now() + cfg.bake_seconds
        while self.clock.now() < end:
            self.clock.sleep(min(cfg.check_interval, max(0.0, end - self.clock.now())))
            result = evaluate(self.prom, cfg.function, cfg.revision, cfg.gate, self.clock.now())
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
        final = [TrafficTarget(self.cfg.revision, 100)]
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
    cluster.apply(function, state.template_revision, None, traffic)
    deadline = clock.now() + route_timeout
    while not cluster.get(function).traffic_matches(traffic):
        if clock.now() >= deadline:
            raise RolloutFailed(f"{function}: rollback not reported by the Route within {route_timeout:g}s")
        clock.sleep(poll_interval)
    return current or "?", prev.revision


def abort_candidate(cluster: Cluster, clock: Clock, function: str, revision: str, route_timeout: float = 120,
                    poll_interval: float = 5) -> Optional[str]:
    """After an interrupted rollout (cancelled job): if ``revision`` still
    has traffic or the ``candidate`` tag, put 100 % back on the revision with
    the most other traffic. Returns that revision, or None if there was
    nothing to do (never deployed, or already promoted to 100 %)."""
    state = cluster.get(function)
    cand = state.tagged(CANDIDATE_TAG)
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
    cluster.apply(function, state.template_revision, None, traffic)
    deadline = clock.now() + route_timeout
    while not cluster.get(function).traffic_matches(traffic):
        if clock.now() >= deadline:
            raise RolloutFailed(f"{function}: abort not reported by the Route within {route_timeout:g}s")
        clock.sleep(poll_interval)
    return stable
