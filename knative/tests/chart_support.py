"""Offline machinery for the knative/ tests: render the chart with the real Helm
engine (helm-python-sdk), load value sets, and index the rendered objects.

# Layout
- `render(values, sets=...)`: `helm template` equivalent; `sets` are `--set`
  expressions parsed by Helm's own strvals parser and merged over `values`.
- `Rendered`: the objects of one render, with `one(kind, name)` / `all(kind)`.
- `value_set(name)`: the value files the tests render (default, prod, minimal).
- `FUNCTIONS`: values key -> (Knative Service name, read|write).
"""

from __future__ import annotations

import copy
import pathlib
import sys
from dataclasses import dataclass
from typing import Any

import helm_python as helm
import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
CHART = REPO / "knative" / "exam-results"
FIXTURES = pathlib.Path(__file__).resolve().parent / "fixtures"
RELEASE = "exam-results"
NAMESPACE = "exam-results"

sys.path.insert(0, str(REPO / ".ci"))
import k8s_validate  # noqa: E402  (shared validator lives in .ci/)

FUNCTIONS: dict[str, tuple[str, str]] = {
    "createResult": ("create-result", "write"),
    "getResult": ("get-result", "read"),
    "listResults": ("list-results", "read"),
    "updateResult": ("update-result", "write"),
    "deleteResult": ("delete-result", "write"),
    "createResultsBatch": ("create-results-batch", "write"),
}

VALUE_SETS = ("default", "prod", "minimal")

helm.disable_logging()


def value_set(name: str) -> dict[str, Any] | None:
    """Values of a named set: None for the chart defaults, else ci/<name>-values.yaml."""
    if name == "default":
        return None
    return yaml.safe_load((CHART / "ci" / f"{name}-values.yaml").read_text())


def chart_defaults() -> dict[str, Any]:
    """The chart's values.yaml."""
    return yaml.safe_load((CHART / "values.yaml").read_text())


def effective_values(name: str) -> dict[str, Any]:
    """Defaults with a named value set merged over them."""
    return deep_merge(chart_defaults(), value_set(name) or {})


def fixture_values(name: str) -> dict[str, Any]:
    return yaml.safe_load((FIXTURES / name).read_text())


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Merge like Helm merges --set over -f: maps recursively, everything else replaced."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def check_migrations_link() -> None:
    link = CHART / "migrations"
    if not link.exists():
        raise AssertionError(
            f"{link} does not resolve (it links to sql/migrations); the chart cannot load without the SQL files"
        )


@dataclass
class Rendered:
    """Objects from one render, keyed by template path too."""

    manifests: dict[str, str]
    objects: list[dict[str, Any]]

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind: str, name: str) -> dict[str, Any]:
        found = [o for o in self.all(kind) if o["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
        return found[0]

    def names(self, kind: str) -> set[str]:
        return {o["metadata"]["name"] for o in self.all(kind)}


def render(values: dict[str, Any] | None = None, *, sets: tuple[str, ...] = (), namespace: str = NAMESPACE) -> Rendered:
    """Render the chart like `helm template RELEASE CHART -n NAMESPACE -f values --set ...`.

    Raises helm_python.HelmValuesError (schema) or HelmRenderError (a template's `fail`).
    """
    check_migrations_link()
    merged = copy.deepcopy(values) if values else {}
    if sets:
        # Helm parses every --set into one map (list items merge by index);
        # joining the expressions with commas does the same.
        merged = deep_merge(merged, helm.parse_set_string(",".join(sets)))
    with helm.Chart.load(CHART) as chart:
        manifests = chart.render(merged or None, name=RELEASE, namespace=namespace, is_install=True)
    objects = []
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return Rendered(manifests, objects)


def render_error(values: dict[str, Any] | None = None, *, sets: tuple[str, ...] = ()) -> str:
    """The error message of a render that must fail (AssertionError if it renders)."""
    try:
        render(values, sets=sets)
    except helm.HelmError as err:
        return str(err)
    raise AssertionError("the chart rendered, but these values should have been refused")


def lint(values: dict[str, Any] | None = None) -> dict[str, Any]:
    check_migrations_link()
    return helm.lint(CHART, values, strict=True, namespace=NAMESPACE, kube_version="v1.30.0")


def ksvc_container(ksvc: dict[str, Any]) -> dict[str, Any]:
    containers = ksvc["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def env_map(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}
