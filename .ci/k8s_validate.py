#!/usr/bin/env python3
"""Validate Kubernetes objects offline: core kinds and custom resources.

Core kinds (Deployment, Service, NetworkPolicy, ...) are checked with
kubernetes-validate in strict mode (unknown fields are errors) against
Kubernetes ``KUBE_VERSION`` (default: the floor in the chart's ``kubeVersion``). Custom resources (Knative,
CloudNativePG, prometheus-operator, Crossplane, ...) are checked against the
JSON schema ``<group>/<kind>_<version>.json`` (the CRDs-catalog layout) found
under ``CRD_SCHEMA_LOCATION``: a directory, or a URL prefix (http, https or
file) such as https://raw.githubusercontent.com/datreeio/CRDs-catalog/main. The default is
``<repo>/../shared/schemas/crds``.

Library use::

    from k8s_validate import validate_objects
    errors = validate_objects(objects)       # [] when every object is valid

Command line::

    python3 .ci/k8s_validate.py manifests.yaml [more.yaml ...]   # or - for stdin

prints one line per problem and exits 1 when there is any, 0 otherwise.
"""

from __future__ import annotations

import functools
import json
import os
import re
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterable

import jsonschema
import kubernetes_validate
import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CRD_SCHEMA_LOCATION = str(REPO_ROOT.parent / "shared" / "schemas" / "crds")
#: The Kubernetes floor: Chart.yaml's ``kubeVersion`` (">=1.32.0-0" -> "1.32.0"), its one source.
DEFAULT_KUBE_VERSION = re.search(
    r'^kubeVersion:\s*">=\s*(\d+\.\d+\.\d+)',
    (REPO_ROOT / "knative" / "exam-results" / "Chart.yaml").read_text(), re.M).group(1)

__all__ = [
    "ValidationProblem",
    "crd_schema_location",
    "load_crd_schema",
    "load_documents",
    "validate_object",
    "validate_objects",
]


class ValidationProblem(str):
    """One human-readable validation failure (``<kind>/<name>: <message>``)."""


def crd_schema_location() -> str:
    """Where CRD schemas are read from: $CRD_SCHEMA_LOCATION or the default."""
    return os.environ.get("CRD_SCHEMA_LOCATION") or DEFAULT_CRD_SCHEMA_LOCATION


def kube_version() -> str:
    """Kubernetes version core kinds are validated against ($KUBE_VERSION)."""
    return os.environ.get("KUBE_VERSION") or DEFAULT_KUBE_VERSION


def _split_api_version(api_version: str) -> tuple[str, str]:
    if "/" in api_version:
        group, version = api_version.split("/", 1)
        return group, version
    return "", api_version


@functools.lru_cache(maxsize=None)
def load_crd_schema(location: str, group: str, kind: str, version: str) -> dict[str, Any] | None:
    """The JSON schema of one custom resource, or None when the location has none."""
    relative = f"{group}/{kind.lower()}_{version}.json"
    if location.startswith(("http://", "https://", "file://")):
        url = location.rstrip("/") + "/" + relative
        try:
            with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 (URL is configuration)
                return json.load(response)
        except urllib.error.HTTPError as err:
            if err.code == 404:
                return None
            raise
        except urllib.error.URLError as err:
            if isinstance(err.reason, FileNotFoundError):
                return None
            raise
    path = Path(location) / relative
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def _object_name(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{obj.get('kind', '?')}/{meta.get('name', '?')}"


def _is_core(api_version: str, kind: str, version: str) -> bool:
    """True when kubernetes-validate ships a schema for this kind."""
    try:
        kubernetes_validate.validate({"apiVersion": api_version, "kind": kind}, version, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        return False
    except Exception:  # a validation error means the schema exists
        return True
    return True


def validate_object(obj: dict[str, Any], *, location: str | None = None, version: str | None = None) -> list[ValidationProblem]:
    """Validate one object; returns its problems (empty when valid)."""
    location = location or crd_schema_location()
    version = version or kube_version()
    name = _object_name(obj)
    api_version = obj.get("apiVersion")
    kind = obj.get("kind")
    if not api_version or not kind:
        return [ValidationProblem(f"{name}: apiVersion and kind are required")]
    group, api_ver = _split_api_version(api_version)
    if _is_core(api_version, kind, version):
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as err:
            path = "/".join(str(p) for p in err.path)
            return [ValidationProblem(f"{name}: {api_version} {kind} (Kubernetes {version}, strict) at /{path}: {err.message}")]
        return []
    schema = load_crd_schema(location, group, kind, api_ver)
    if schema is None:
        return [ValidationProblem(f"{name}: no schema for {api_version} {kind} in kubernetes-validate {version} or at {location}/{group}/{kind.lower()}_{api_ver}.json")]
    validator_cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    problems = []
    for err in sorted(validator_cls(schema).iter_errors(obj), key=lambda e: list(e.path)):
        path = "/".join(str(p) for p in err.path)
        problems.append(ValidationProblem(f"{name}: {api_version} {kind} at /{path}: {err.message}"))
    return problems


def validate_objects(objects: Iterable[dict[str, Any]], *, location: str | None = None, version: str | None = None) -> list[ValidationProblem]:
    """Validate every object; returns all problems found."""
    problems: list[ValidationProblem] = []
    for obj in objects:
        problems.extend(validate_object(obj, location=location, version=version))
    return problems


def load_documents(text: str) -> list[dict[str, Any]]:
    """The non-empty YAML documents of a (multi-document) manifest stream."""
    return [doc for doc in yaml.safe_load_all(text) if doc]


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    problems: list[ValidationProblem] = []
    count = 0
    for arg in argv:
        text = sys.stdin.read() if arg == "-" else Path(arg).read_text()
        docs = load_documents(text)
        count += len(docs)
        problems.extend(validate_objects(docs))
    for problem in problems:
        print(problem)
    print(f"k8s_validate: {count} object(s), {len(problems)} problem(s) "
          f"(Kubernetes {kube_version()}, CRD schemas from {crd_schema_location()})")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
