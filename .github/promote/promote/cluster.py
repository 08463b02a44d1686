"""The real cluster: read with ``kubectl``, change through the Helm chart.

The chart (knative/exam-results) stays the single source of truth for every
Knative Service: each change the rollout makes is a
``helm upgrade --reset-then-reuse-values`` whose override file sets only the
promoted function's documented values (knative/exam-results/values.yaml):

    functions.<valuesKey>.image.digest   the candidate's image digest
    functions.<valuesKey>.revision       the commit, first part of the revision name
                                         (the chart appends a hash of the rendered
                                         template, so the name is read from status)
    functions.<valuesKey>.traffic        [{revisionName, percent, tag}]

Every other function keeps the values of the release's last revision, so its
template, and therefore its revision, is untouched. A later manual
``helm upgrade`` with the same reuse flag keeps the rollout's traffic split;
``helm rollback`` restores an earlier split.

Chart hooks (the schema-migration Job) run on the first upgrade of a process
only (the candidate deploy); traffic steps pass ``--no-hooks``.
"""

from __future__ import annotations

import json
import logging
import subprocess
import tempfile
from typing import Optional, Sequence

import yaml

from . import manifest
from .knative import ServiceState, TrafficTarget
from .rollout import RolloutFailed

log = logging.getLogger("promote")


class ClusterError(RolloutFailed):
    """kubectl or helm failed."""


def values_key(function: str) -> str:
    """The chart's values key of a function (``key`` in functions.yaml)."""
    return manifest.function(function).key


def override_values(function: str, suffix: Optional[str], digest: Optional[str],
                    traffic: Sequence[TrafficTarget]) -> dict:
    """The values override for one function (the only keys the rollout sets).
    ``suffix`` (the commit) is the chart's ``revision`` value, the first part
    of the revision name; None leaves it as it is."""
    fn: dict = {
        "traffic": [
            {k: v for k, v in (("revisionName", t.revision), ("percent", t.percent), ("tag", t.tag)) if v is not None}
            if t.revision else {"latestRevision": True, "percent": t.percent, **({"tag": t.tag} if t.tag else {})}
            for t in traffic
        ],
    }
    if suffix is not None:
        fn["revision"] = suffix
    if digest:
        if not digest.startswith("sha256:") or len(digest) != 71:
            raise ValueError(f"digest must be sha256:<64 hex>, got {digest!r}")
        fn["image"] = {"digest": digest}
    return {"functions": {values_key(function): fn}}


class HelmCluster:
    """kubectl/helm against the current kube context."""

    def __init__(self, namespace: str, release: str, chart: str, kubectl: str = "kubectl", helm: str = "helm",
                 helm_timeout: str = "10m", dry_run: bool = False, commit: Optional[str] = None) -> None:
        self.namespace = namespace
        self.release = release
        self.chart = chart
        self.kubectl = kubectl
        self.helm = helm
        self.helm_timeout = helm_timeout
        self.dry_run = dry_run
        #: recorded as the release revision's description, "chart@<commit>", so
        #: a later rollback can re-render with the chart that is deployed
        self.commit = commit
        self._hooks_done = False

    def _run(self, argv: list[str]) -> str:
        log.debug("$ %s", " ".join(argv))
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise ClusterError(f"{' '.join(argv[:3])} failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
        return proc.stdout

    def get(self, function: str) -> ServiceState:
        out = self._run([self.kubectl, "get", "ksvc", function, "--namespace", self.namespace, "--output", "json"])
        return ServiceState.from_json(json.loads(out))

    def helm_argv(self, values_file: str) -> list[str]:
        argv = [self.helm, "upgrade", self.release, self.chart, "--namespace", self.namespace,
                "--reset-then-reuse-values", "--values", values_file, "--timeout", self.helm_timeout]
        if self.commit:
            argv += ["--description", f"chart@{self.commit}"]
        if self._hooks_done:
            argv.append("--no-hooks")
        if self.dry_run:
            argv.append("--dry-run=server")
        return argv

    def apply(self, function: str, suffix: Optional[str], digest: Optional[str], traffic: list[TrafficTarget]) -> None:
        self.apply_values(override_values(function, suffix, digest, traffic))

    def apply_values(self, values: dict) -> None:
        """One ``helm upgrade`` with ``values`` layered on the release's own."""
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="promote-") as fh:
            yaml.safe_dump(values, fh, sort_keys=False)
            fh.flush()
            log.info("helm upgrade %s: %s", self.release, json.dumps(values, separators=(",", ":")))
            self._run(self.helm_argv(fh.name))
        self._hooks_done = True
