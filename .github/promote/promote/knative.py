"""A typed view of a Knative Service (``serving.knative.dev/v1``) as returned
by ``kubectl get ksvc NAME -o json``.

Only the fields the rollout needs are read: ``metadata.generation``,
``spec.template.metadata.name`` (the bring-your-own revision name),
``spec.traffic``, and from ``status``: ``observedGeneration``, ``conditions``,
``latestCreatedRevisionName``, ``latestReadyRevisionName``, ``traffic`` (with
the per-tag ``url``) and ``url``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Optional


@dataclass(frozen=True)
class TrafficTarget:
    """One entry of ``spec.traffic`` / ``status.traffic``."""

    revision: Optional[str]
    percent: int = 0
    tag: Optional[str] = None
    latest: bool = False
    url: Optional[str] = None

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "TrafficTarget":
        return cls(
            revision=obj.get("revisionName"),
            percent=int(obj.get("percent") or 0),
            tag=obj.get("tag") or None,
            latest=bool(obj.get("latestRevision", False)),
            url=obj.get("url"),
        )

    def to_spec(self) -> dict[str, Any]:
        """The ``spec.traffic`` entry (no ``url``: that is status only)."""
        out: dict[str, Any] = {}
        if self.revision:
            out["revisionName"] = self.revision
            out["latestRevision"] = False
        else:
            out["latestRevision"] = True
        out["percent"] = self.percent
        if self.tag:
            out["tag"] = self.tag
        return out


@dataclass(frozen=True)
class Condition:
    type: str
    status: str
    reason: str = ""
    message: str = ""


class RevisionReadiness(Enum):
    READY = "ready"
    PENDING = "pending"
    FAILED = "failed"


@dataclass
class ServiceState:
    """What the rollout needs to know about one Knative Service."""

    name: str
    generation: int
    observed_generation: int
    template_revision: Optional[str]
    image: Optional[str]
    spec_traffic: list[TrafficTarget]
    status_traffic: list[TrafficTarget]
    conditions: dict[str, Condition] = field(default_factory=dict)
    latest_created: Optional[str] = None
    latest_ready: Optional[str] = None
    url: Optional[str] = None

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "ServiceState":
        if obj.get("kind") != "Service" or not str(obj.get("apiVersion", "")).startswith("serving.knative.dev/"):
            raise ValueError(f"not a Knative Service: apiVersion={obj.get('apiVersion')!r} kind={obj.get('kind')!r}")
        meta = obj.get("metadata", {})
        spec = obj.get("spec", {})
        status = obj.get("status", {}) or {}
        template = spec.get("template", {})
        containers = template.get("spec", {}).get("containers", []) or [{}]
        conditions = {
            c["type"]: Condition(c["type"], c.get("status", "Unknown"), c.get("reason", ""), c.get("message", ""))
            for c in status.get("conditions", []) or []
        }
        return cls(
            name=meta["name"],
            generation=int(meta.get("generation", 0)),
            observed_generation=int(status.get("observedGeneration", 0)),
            template_revision=template.get("metadata", {}).get("name"),
            image=containers[0].get("image"),
            spec_traffic=[TrafficTarget.from_json(t) for t in spec.get("traffic", []) or []],
            status_traffic=[TrafficTarget.from_json(t) for t in status.get("traffic", []) or []],
            conditions=conditions,
            latest_created=status.get("latestCreatedRevisionName"),
            latest_ready=status.get("latestReadyRevisionName"),
            url=status.get("url"),
        )

    # -- conditions --------------------------------------------------------
    def condition(self, type_: str) -> Condition:
        return self.conditions.get(type_, Condition(type_, "Unknown"))

    @property
    def reconciled(self) -> bool:
        """The controller has seen the latest spec and the Service is Ready."""
        return self.observed_generation >= self.generation and self.condition("Ready").status == "True"

    @property
    def routes_reconciled(self) -> bool:
        """The controller has seen the latest spec and the Route serves it.

        Not ``Ready``: after a rollback from a failed candidate the Service
        stays ``Ready=False`` (``ConfigurationsReady`` reports the failed
        latest revision) although traffic is safely back on the old one.
        """
        return self.observed_generation >= self.generation and self.condition("RoutesReady").status == "True"

    # -- revisions ---------------------------------------------------------
    def revision_readiness(self, revision: str) -> tuple[RevisionReadiness, str]:
        """Whether ``revision`` (the template's BYO name) is ready, still
        coming up, or has failed, with the controller's message."""
        if self.observed_generation < self.generation:
            return RevisionReadiness.PENDING, "controller has not observed the latest generation yet"
        cfg = self.condition("ConfigurationsReady")
        if self.latest_ready == revision and cfg.status == "True":
            return RevisionReadiness.READY, ""
        if self.latest_created == revision and cfg.status == "False":
            return RevisionReadiness.FAILED, f"{cfg.reason}: {cfg.message}".strip(": ")
        return RevisionReadiness.PENDING, f"{cfg.reason}: {cfg.message}".strip(": ") or "waiting"

    def percent_of(self, revision: str) -> int:
        return sum(t.percent for t in self.status_traffic if t.revision == revision)

    def stable_revision(self, exclude: Optional[str] = None) -> Optional[str]:
        """The revision that serves most traffic (ignoring ``exclude``):
        the one to return to if the candidate fails."""
        best: Optional[TrafficTarget] = None
        for t in self.status_traffic or self.spec_traffic:
            if not t.revision or t.revision == exclude or t.percent <= 0:
                continue
            if best is None or t.percent > best.percent:
                best = t
        if best is None and not self.status_traffic and self.latest_ready and self.latest_ready != exclude:
            # a Service routed with latestRevision: true has no revision names in spec
            return self.latest_ready
        if best is None:
            for t in self.status_traffic:
                if t.latest and t.percent > 0 and self.latest_ready and self.latest_ready != exclude:
                    return self.latest_ready
        return best.revision if best else None

    def tagged(self, tag: str) -> Optional[TrafficTarget]:
        for t in self.status_traffic:
            if t.tag == tag:
                return t
        return None

    def tag_url(self, tag: str) -> Optional[str]:
        t = self.tagged(tag)
        return t.url if t else None

    def traffic_matches(self, wanted: list[TrafficTarget]) -> bool:
        """Whether status.traffic routes exactly the wanted split (revision,
        percent, tag), i.e. the Route has been reprogrammed."""

        def key(ts: list[TrafficTarget]) -> list[tuple[str, int, str]]:
            # status names the revision a latestRevision target resolved to; compare it as "latest"
            return sorted(("@latest" if t.latest or not t.revision else t.revision, t.percent, t.tag or "")
                          for t in ts)

        return self.routes_reconciled and key(self.status_traffic) == key(wanted)
