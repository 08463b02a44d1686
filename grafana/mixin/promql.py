"""Typed PromQL pieces: a recording rule's name is a ``Record`` that panels and alerts select
from, so a rule is referred to by the object that defines it, never by a retyped string."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

# Metric prefixes only a Kubernetes cluster has (kubelet, kube-state-metrics, Knative).
KUBERNETES_ONLY = re.compile(r"(?<![:\w])(kubelet_|kube_|kn_)\w+")


@dataclass(frozen=True)
class Record:
    """A recording rule: ``name`` is recorded from ``expr``; ``labels`` are added to the result."""
    name: str
    expr: str
    labels: dict = field(default_factory=dict)
    comment: str = ""

    def __call__(self, *matchers: str) -> str:
        """The recorded series, optionally narrowed: ``rec('namespace=~"$namespace"')``."""
        inner = ", ".join(m for m in matchers if m)
        return f"{self.name}{{{inner}}}" if inner else self.name

    def __str__(self) -> str:
        return self.name

    def kubernetes_only(self, records: dict[str, "Record"]) -> bool:
        return uses_kubernetes_metrics(self.expr, records)


def records_in(expr: str, records: dict[str, Record]) -> list[Record]:
    """The recording rules an expression reads."""
    names = set(re.findall(r"(?<![\w:])([a-z_]+:[a-z0-9_:]+)", expr))
    return [records[n] for n in sorted(names) if n in records]


def uses_kubernetes_metrics(expr: str, records: dict[str, Record]) -> bool:
    """True when expr reads a Kubernetes-only metric, directly or through recording rules."""
    if KUBERNETES_ONLY.search(expr):
        return True
    return any(r.kubernetes_only(records) for r in records_in(expr, records))


def quote(value: str) -> str:
    """A PromQL double-quoted string literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
