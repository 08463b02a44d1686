"""Test doubles for the cluster and the clock.

``RecordedCluster`` replays recorded ``kubectl get ksvc -o json`` states
(tests/fixtures/ksvc). Applying a new template revision makes the following
reads walk through a script of recorded states (e.g. unobserved ->
deploying -> ready, or -> failed), with the recorded candidate name replaced
by the scenario's. Applying a traffic change behaves as Knative does: the
generation goes up, the next read has not observed it yet, the read after
that reports the new ``status.traffic`` (with tag URLs) and
``RoutesReady=True``, while ``ConfigurationsReady`` stays what it was.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Optional

from promote.knative import ServiceState, TrafficTarget

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "ksvc"
RECORDED_CANDIDATE = "get-result-d4e5f60"
DOMAIN = "exam-results.example.org"


def load(name: str, candidate: Optional[str] = None) -> dict:
    text = (FIXTURES / name).read_text()
    if candidate:
        text = text.replace(RECORDED_CANDIDATE, candidate)
    return json.loads(text)


class FakeClock:
    def __init__(self, start: float) -> None:
        self.t = float(start)
        self.slept = 0.0

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.t += seconds
        self.slept += seconds


class RecordedCluster:
    def __init__(self, initial: str, candidate: str,
                 on_deploy: tuple[str, ...] = ("get-result-candidate-unobserved.json",
                                               "get-result-candidate-deploying.json",
                                               "get-result-candidate-ready.json"),
                 routes_lag: int = 1, refuse_traffic: bool = False) -> None:
        self.candidate = candidate
        self.obj = load(initial, candidate)
        self.on_deploy = on_deploy
        self.script: list[dict] = []
        self.routes_lag = routes_lag
        self.pending_lag = 0
        self.refuse_traffic = refuse_traffic
        self.applied: list[tuple[Optional[str], Optional[str], list[TrafficTarget]]] = []
        #: the commit suffix of the template the Service carries (None: the recorded one)
        self.rendered_suffix: Optional[str] = None
        self.reads = 0

    # -- Cluster protocol ------------------------------------------------------
    def get(self, function: str) -> ServiceState:
        assert function == "get-result"
        self.reads += 1
        if self.script:
            self.obj = self.script.pop(0)
        elif self.pending_lag > 0:
            self.pending_lag -= 1
            if self.pending_lag == 0:
                self._reconcile_routes()
        return ServiceState.from_json(copy.deepcopy(self.obj))

    def apply(self, function: str, suffix: Optional[str], digest: Optional[str],
              traffic: list[TrafficTarget]) -> None:
        assert function == "get-result"
        assert sum(t.percent for t in traffic) == 100, "Knative rejects splits that do not add up to 100"
        self.applied.append((suffix, digest, list(traffic)))
        if suffix is not None and suffix != self.rendered_suffix:
            # a new template: the controller names its revision (the
            # scenario's candidate name, which the rollout must read from
            # the status) and the recorded deploy sequence replays
            self.rendered_suffix = suffix
            self.script = [load(name, self.candidate) for name in self.on_deploy]
            return
        if self.refuse_traffic:
            return  # the controller never reports the new split
        # a new split supersedes whatever the revision was still doing: the
        # Route is reprogrammed from the state last seen
        self.script = []
        self.obj["metadata"]["generation"] += 1
        self.obj["spec"]["traffic"] = [t.to_spec() for t in traffic]
        self.pending_lag = self.routes_lag
        if self.pending_lag == 0:
            self._reconcile_routes()

    # -- Knative's Route behaviour -----------------------------------------
    def _reconcile_routes(self) -> None:
        status = self.obj["status"]
        status["observedGeneration"] = self.obj["metadata"]["generation"]
        routed = []
        for t in self.obj["spec"]["traffic"]:
            latest = bool(t.get("latestRevision"))
            name = status.get("latestReadyRevisionName") if latest else t["revisionName"]
            entry = {"latestRevision": latest, "percent": t["percent"], "revisionName": name}
            if t.get("tag"):
                entry["tag"] = t["tag"]
                entry["url"] = f"https://{t['tag']}-get-result.{DOMAIN}"
            routed.append(entry)
        status["traffic"] = routed
        for c in status["conditions"]:
            if c["type"] == "RoutesReady":
                c.update(status="True")
                c.pop("reason", None)
                c.pop("message", None)
        cfg = next(c for c in status["conditions"] if c["type"] == "ConfigurationsReady")
        ready = next(c for c in status["conditions"] if c["type"] == "Ready")
        ready["status"] = cfg["status"]
        if cfg["status"] == "True":
            ready.pop("reason", None)
            ready.pop("message", None)

    # -- assertions helpers ------------------------------------------------
    def splits(self) -> list[list[tuple[str, int, Optional[str]]]]:
        return [[(t.revision, t.percent, t.tag) for t in traffic] for _, _, traffic in self.applied]

    def current(self) -> ServiceState:
        return ServiceState.from_json(copy.deepcopy(self.obj))
