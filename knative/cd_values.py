#!/usr/bin/env python3
"""The values of a release the CD pipeline manages, as `--set` expressions.

    python3 knative/cd_values.py

Prints one `helm template --set` expression a line: every function of
functions.yaml rolled out by the promotion program (.github/promote) under the
commit abc1234, with its own image digest, and left as a successful rollout
leaves it (the promoted revision as the latest, the one before kept at 0 %
under the tag `previous`); get-result is in the middle of a canary (its stable
revision at 90 %, the candidate at 10 % under the tag `candidate`).

The keys and their shapes come from the promotion program's own
`override_values`, the one place that knows which values CD sets
(`functions.<key>.image.digest`, `.revision`, `.traffic`): the chart checks
(knative/checks, knative/apiserver) render exactly what CD writes, for every
function the manifest lists.
"""

from __future__ import annotations

import hashlib
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / ".github" / "promote"))

from promote import FUNCTIONS  # noqa: E402
from promote.cluster import override_values  # noqa: E402
from promote.knative import TrafficTarget  # noqa: E402
from promote.rollout import CANDIDATE_TAG, PREVIOUS_TAG  # noqa: E402

#: The commit being rolled out: the chart's `revision` value of every function.
COMMIT = "abc1234"
#: The function in the middle of a canary.
CANARY = "get-result"


def digest(function: str) -> str:
    """A stand-in image digest, different for each function."""
    return "sha256:" + hashlib.sha256(function.encode()).hexdigest()


def traffic(function: str) -> list[TrafficTarget]:
    if function == CANARY:
        return [TrafficTarget(f"{function}-00002", 90), TrafficTarget(None, 10, CANDIDATE_TAG)]
    return [TrafficTarget(None, 100), TrafficTarget(f"{function}-00001", 0, PREVIOUS_TAG)]


def set_expressions(value: object, prefix: str) -> list[str]:
    """`value` flattened into Helm --set expressions under `prefix`."""
    if isinstance(value, dict):
        return [e for k, v in value.items() for e in set_expressions(v, f"{prefix}.{k}" if prefix else k)]
    if isinstance(value, list):
        return [e for i, v in enumerate(value) for e in set_expressions(v, f"{prefix}[{i}]")]
    if isinstance(value, bool):
        return [f"{prefix}={str(value).lower()}"]
    return [f"{prefix}={value}"]


def expressions() -> list[str]:
    out: list[str] = []
    for function in FUNCTIONS:
        out += set_expressions(override_values(function, COMMIT, digest(function), traffic(function)), "")
    return out


if __name__ == "__main__":
    print("\n".join(expressions()))
