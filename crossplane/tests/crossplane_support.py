"""Offline machinery for the crossplane/ tests: load manifests, validate them against real
schemas, apply an XRD's defaults the way the API server does, and run a Composition's
function-go-templating step with a real Go text/template + sprig engine (the Helm SDK).

# Layout
- `load_docs` / `crossplane_dir`: read the YAML under crossplane/.
- `schema_for` / `validate`: custom resources against the CRDs-catalog JSON schemas found at
  `CRD_SCHEMA_LOCATION` (a directory or a URL prefix; default `<repo>/../shared/schemas/crds`),
  including the schemas' CEL rules that cel-python can evaluate; core kinds with
  kubernetes-validate (strict, at the chart's Kubernetes floor).
- `xr_schema` / `apply_defaults`: an XRD version's openAPIV3Schema, completed with the fields
  Crossplane adds to every namespaced XR's CRD and made strict (unknown fields rejected, as
  `kubectl apply` does with server-side field validation), structural defaulting, and its CEL
  rules (x-kubernetes-validations) evaluated with cel-python.
- `render_composition`: what function-go-templating does with one request. The template text is
  executed by Helm's engine (Go text/template with sprig, via helm-python-sdk); only the small
  request/response plumbing around it (documents, resource-name and ready annotations, XR status
  merge) is mirrored here from function-go-templating's fn.go.
"""

from __future__ import annotations

import base64
import copy
import functools
import json
import os
import pathlib
import sys
import tempfile
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
CROSSPLANE = REPO / "crossplane"
# The Kubernetes floor: the chart's kubeVersion, as .ci/k8s_validate.py reads it.
sys.path.insert(0, str(REPO / ".ci"))
import k8s_validate  # noqa: E402

KUBERNETES_VERSION = k8s_validate.DEFAULT_KUBE_VERSION

ANNOTATION_RESOURCE_NAME = "gotemplating.fn.crossplane.io/composition-resource-name"
ANNOTATION_READY = "gotemplating.fn.crossplane.io/ready"
META_API_VERSION = "meta.gotemplating.fn.crossplane.io/v1alpha1"

# Template functions that exist in only one of the two engines (or behave differently: Helm's
# toYaml/fromYaml use sigs.k8s.io/yaml, function-go-templating's use yaml.v3). Templates must not
# use them, or what the tests render would not be what Crossplane renders.
ENGINE_SPECIFIC_FUNCTIONS = (
    # Helm only
    "required", "tpl", "lookup", "toToml", "fromJson", "fromJsonArray", "fromYamlArray",
    "toYamlPretty", "mustToJson", "fromToml",
    # function-go-templating only
    "randomChoice", "getResourceCondition", "setResourceNameAnnotation", "getComposedResource",
    "getCompositeResource", "getComposedConnectionDetails", "getExtraResources",
    "getExtraResourcesFromContext", "getCredentialData",
    # implemented differently
    "toYaml", "fromYaml",
)


# The connection Secret's keys: the contract with the exam-results chart (database.existingSecret).
CONTRACT_SECRET_KEYS = frozenset(
    line.strip() for line in (CROSSPLANE / "tests" / "connection_secret_keys.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#"))

API = CROSSPLANE / "apis" / "postgrescluster"
PROVIDER_LABEL = "exam-results.io/provider"
EXAMPLE_NAMES = sorted(p.stem for p in (CROSSPLANE / "examples").glob("*.yaml"))


def selected_composition(xr: dict[str, Any], compositions: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The one composition whose labels match the XR's spec.crossplane.compositionSelector."""
    labels = xr["spec"]["crossplane"]["compositionSelector"]["matchLabels"]
    matches = [c for c in compositions.values()
               if all(c["metadata"].get("labels", {}).get(k) == v for k, v in labels.items())]
    assert len(matches) == 1, f"selector {labels} matches {len(matches)} compositions"
    return matches[0]


def crossplane_dir() -> pathlib.Path:
    return CROSSPLANE


def load_docs(path: pathlib.Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def manifest_files() -> list[pathlib.Path]:
    """Every YAML manifest under crossplane/ (tests excluded)."""
    return sorted(p for p in CROSSPLANE.rglob("*.yaml") if "tests" not in p.relative_to(CROSSPLANE).parts)


# ---------------------------------------------------------------------------------------------
# Schemas


def schema_location() -> str:
    return os.environ.get("CRD_SCHEMA_LOCATION") or str(REPO.parent / "shared" / "schemas" / "crds")


@functools.lru_cache(maxsize=None)
def _read_schema(location: str, relative: str) -> dict[str, Any]:
    if location.startswith(("http://", "https://")):
        with urllib.request.urlopen(f"{location.rstrip('/')}/{relative}", timeout=30) as rsp:
            return json.load(rsp)
    with open(pathlib.Path(location) / relative, encoding="utf-8") as f:
        return json.load(f)


def schema_for(api_version: str, kind: str) -> dict[str, Any]:
    """The CRDs-catalog schema for a custom resource: <group>/<kind>_<version>.json."""
    group, _, version = api_version.rpartition("/")
    if not group:
        raise ValueError(f"{api_version} {kind} is a core kind, it has no CRD schema")
    return _read_schema(schema_location(), f"{group}/{kind.lower()}_{version}.json")


CORE_GROUPS = {"", "apps", "batch", "policy", "autoscaling", "rbac.authorization.k8s.io",
               "networking.k8s.io", "storage.k8s.io", "coordination.k8s.io"}


def is_core(api_version: str) -> bool:
    """Kinds built into Kubernetes (validated by kubernetes-validate, not a CRD schema)."""
    return api_version.rpartition("/")[0] in CORE_GROUPS


def validate(obj: dict[str, Any]) -> None:
    """Raise if `obj` is not valid against its kind's schema (custom or core)."""
    api_version, kind = obj["apiVersion"], obj["kind"]
    if is_core(api_version):
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        if kind == "Secret":
            for key, value in (obj.get("data") or {}).items():
                base64.b64decode(value, validate=True)  # the schema's format: byte is not enforced
        return
    schema = schema_for(api_version, kind)
    jsonschema.Draft7Validator(schema).validate(obj)
    violations = cel_violations(schema, obj)
    if violations:
        raise jsonschema.ValidationError("; ".join(violations))


# ---------------------------------------------------------------------------------------------
# XRD schema, as the CRD Crossplane generates from it

# Fields Crossplane v2 adds to a namespaced XR's generated CRD (they are not in the XRD).
_XR_CROSSPLANE_SPEC = {
    "type": "object",
    "properties": {
        "compositionRef": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
        "compositionSelector": {
            "type": "object",
            "properties": {"matchLabels": {"type": "object", "additionalProperties": {"type": "string"}}},
            "required": ["matchLabels"],
        },
        "compositionRevisionRef": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
        "compositionRevisionSelector": {
            "type": "object",
            "properties": {"matchLabels": {"type": "object", "additionalProperties": {"type": "string"}}},
            "required": ["matchLabels"],
        },
        "compositionUpdatePolicy": {"type": "string", "enum": ["Automatic", "Manual"]},
        "resourceRefs": {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
    },
}


def _strict(schema: dict[str, Any]) -> dict[str, Any]:
    s = dict(schema)
    if s.get("type") == "object" and "properties" in s and "additionalProperties" not in s \
            and not s.get("x-kubernetes-preserve-unknown-fields"):
        s["additionalProperties"] = False
    if "properties" in s:
        s["properties"] = {k: _strict(v) for k, v in s["properties"].items()}
    if isinstance(s.get("items"), dict):
        s["items"] = _strict(s["items"])
    if isinstance(s.get("additionalProperties"), dict):
        s["additionalProperties"] = _strict(s["additionalProperties"])
    return s


def xr_schema(xrd: dict[str, Any], version: str | None = None) -> dict[str, Any]:
    """The strict JSON schema of an XR of this XRD (the named version, or the referenceable one)."""
    versions = xrd["spec"]["versions"]
    v = next(v for v in versions if (v["name"] == version if version else v["referenceable"]))
    schema = copy.deepcopy(v["schema"]["openAPIV3Schema"])
    schema = _strict(schema)
    props = schema.setdefault("properties", {})
    props["apiVersion"] = {"type": "string", "const": f"{xrd['spec']['group']}/{v['name']}"}
    props["kind"] = {"type": "string", "const": xrd["spec"]["names"]["kind"]}
    props["metadata"] = {"type": "object", "required": ["name"]}
    props["spec"]["properties"]["crossplane"] = _strict(_XR_CROSSPLANE_SPEC)
    status = props.setdefault("status", {"type": "object", "properties": {}})
    status.setdefault("properties", {})["conditions"] = {"type": "array", "items": {"type": "object"}}
    schema["required"] = sorted(set(schema.get("required", [])) | {"apiVersion", "kind", "metadata", "spec"})
    return schema


def apply_defaults(schema: dict[str, Any], obj: Any) -> Any:
    """Structural-schema defaulting as the API server does it: a missing field with a default
    gets the default, then defaulting continues inside it."""
    if isinstance(obj, dict) and schema.get("type") == "object":
        for key, sub in schema.get("properties", {}).items():
            if key not in obj and "default" in sub:
                obj[key] = copy.deepcopy(sub["default"])
            if key in obj:
                apply_defaults(sub, obj[key])
        if isinstance(schema.get("additionalProperties"), dict):
            for key in obj:
                if key not in schema.get("properties", {}):
                    apply_defaults(schema["additionalProperties"], obj[key])
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        for item in obj:
            apply_defaults(schema["items"], item)
    return obj


# Kubernetes' CEL extension libraries (strings, lists, regex, URLs, quantities, IPs, format)
# that cel-python does not implement. Rules calling them are not evaluated offline.
KUBERNETES_CEL_EXTENSIONS = (
    "lowerAscii", "upperAscii", "replace", "split", "join", "indexOf", "lastIndexOf", "substring",
    "trim", "isSorted", "sum", "find", "findAll", "isURL", "url", "getScheme", "getHost",
    "quantity", "isQuantity", "isIP", "ip", "cidr", "isCIDR", "format", "named", "validate",
)


@functools.lru_cache(maxsize=None)
def _cel_program(rule: str):
    import celpy

    env = celpy.Environment()
    return env.program(env.compile(rule))


def cel_violations(schema: dict[str, Any], obj: Any, old: Any = None, path: str = "") -> list[str]:
    """Evaluate the schema's x-kubernetes-validations (CEL, with cel-python) on `obj`, as the API
    server does after defaulting. Transition rules (those using oldSelf) run only on an update,
    where the field existed before too; an evaluation error counts as a violation."""
    import celpy

    found = []
    for rule in schema.get("x-kubernetes-validations", []):
        transition = "oldSelf" in rule["rule"]
        if transition and old is None:
            continue
        if any(f"{fn}(" in rule["rule"] for fn in KUBERNETES_CEL_EXTENSIONS):
            continue  # not in cel-python: such a rule is left to the API server
        activation = {"self": celpy.json_to_cel(obj)}
        if transition:
            activation["oldSelf"] = celpy.json_to_cel(old)
        try:
            result = _cel_program(rule["rule"]).evaluate(activation)
        except celpy.CELEvalError as err:
            result = err
        if not (isinstance(result, celpy.celtypes.BoolType) and bool(result)):
            found.append(f"{path or '<root>'}: {rule.get('message', rule['rule'])}")
    if isinstance(obj, dict):
        props = schema.get("properties", {})
        for key, value in obj.items():
            sub = props.get(key, schema.get("additionalProperties") if key not in props else None)
            if isinstance(sub, dict):
                old_sub = old.get(key) if isinstance(old, dict) else None
                found += cel_violations(sub, value, old_sub, f"{path}.{key}" if path else key)
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(obj):
            found += cel_violations(schema["items"], item, None, f"{path}[{i}]")
    return found


def admit_xr(xrd: dict[str, Any], xr: dict[str, Any], namespace: str = "exam-results",
             old: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the API server stores for `xr` (created, or updated from `old`): validated against the
    schema, defaulted, checked against the CEL rules, namespaced, with a uid."""
    schema = xr_schema(xrd)
    jsonschema.Draft7Validator(schema).validate(xr)
    stored = apply_defaults(schema, copy.deepcopy(xr))
    stored["metadata"].setdefault("namespace", namespace)
    stored["metadata"].setdefault("uid", "3f1c1f6e-0000-4000-8000-000000000001")
    jsonschema.Draft7Validator(schema).validate(stored)
    violations = cel_violations(schema, stored, old)
    if violations:
        raise jsonschema.ValidationError("; ".join(violations))
    return stored


# ---------------------------------------------------------------------------------------------
# Rendering

_CHART_YAML = "apiVersion: v2\nname: xprender\nversion: 0.1.0\ntype: application\n"

# `include` sets both `.` and `$` to the request, as function-go-templating's Execute does.
# toJson|fromJson turns Helm's .Values map type into a plain map[string]interface{}, which is what
# sprig's dig and friends need. A printed missing value shows up as "<no value>" before Helm's own
# post-processing strips it, so it is turned into an error here.
_WRAPPER = """{{- $out := include "xprender/templates/_composition.tpl" (.Values.request | toJson | fromJson) -}}
{{- if contains "<no value>" $out }}{{ fail (printf "template printed a missing value (<no value>):\\n%s" $out) }}{{ end -}}
{{ $out }}"""


def execute_template(template: str, request: dict[str, Any]) -> str:
    """Execute a function-go-templating template against a RunFunctionRequest (as a map) with
    Helm's Go text/template + sprig engine. Raises helm_python.HelmRenderError on failure."""
    import helm_python

    with tempfile.TemporaryDirectory(prefix="xprender-") as tmp:
        chart = pathlib.Path(tmp) / "xprender"
        (chart / "templates").mkdir(parents=True)
        (chart / "Chart.yaml").write_text(_CHART_YAML)
        (chart / "templates" / "_composition.tpl").write_text(template)
        (chart / "templates" / "render.yaml").write_text(_WRAPPER)
        with helm_python.Chart.load(chart) as loaded:
            out = loaded.render(values={"request": request}, name="xprender", namespace="default")
    return out["xprender/templates/render.yaml"]


@dataclass
class Rendered:
    """The desired state after a composition pipeline ran once."""

    resources: dict[str, dict[str, Any]] = field(default_factory=dict)  # by composition-resource-name
    ready: dict[str, str] = field(default_factory=dict)
    composite_status: dict[str, Any] = field(default_factory=dict)
    requirements: dict[str, dict[str, Any]] = field(default_factory=dict)  # ExtraResources, by key

    def by_kind(self, kind: str) -> list[dict[str, Any]]:
        return [r for r in self.resources.values() if r["kind"] == kind]

    def one(self, kind: str) -> dict[str, Any]:
        found = self.by_kind(kind)
        assert len(found) == 1, f"expected exactly one {kind}, got {len(found)}"
        return found[0]


def render_composition(composition: dict[str, Any], xr: dict[str, Any],
                       observed: dict[str, dict[str, Any]] | None = None,
                       required: dict[str, list[dict[str, Any]]] | None = None) -> Rendered:
    """Run every pipeline step of `composition` for the stored XR `xr`.

    `observed` maps composition-resource-name -> observed object, as Crossplane passes the
    composed resources that already exist. `required` maps a requirement key (asked for with a
    meta.gotemplating.fn.crossplane.io ExtraResources document) -> the objects Crossplane found.
    """
    result = Rendered()
    desired_xr = {"apiVersion": xr["apiVersion"], "kind": xr["kind"], "metadata": copy.deepcopy(xr["metadata"])}
    for step in composition["spec"]["pipeline"]:
        step_input = step["input"]
        if step_input.get("kind") != "GoTemplate" or step_input.get("source") != "Inline":
            raise NotImplementedError(f"step {step['step']}: only inline GoTemplate inputs are rendered")
        request: dict[str, Any] = {
            "meta": {"tag": ""},
            "input": step_input,
            "observed": {"composite": {"resource": xr}},
            "desired": {"composite": {"resource": desired_xr}},
        }
        # protojson leaves out empty maps, so a template sees no `resources` key at all at first.
        if observed:
            request["observed"]["resources"] = {k: {"resource": v} for k, v in observed.items()}
        if result.resources:
            request["desired"]["resources"] = {k: {"resource": v} for k, v in result.resources.items()}
        if required:
            request["requiredResources"] = {k: {"items": [{"resource": r} for r in v]} if v else {}
                                            for k, v in required.items()}
        text = execute_template(step_input["inline"]["template"], request)
        _apply_step_output(text, xr, result)
    return result


def _apply_step_output(text: str, xr: dict[str, Any], result: Rendered) -> None:
    """function-go-templating's handling of the rendered documents (fn.go RunFunction)."""
    for obj in yaml.safe_load_all(text):
        if obj is None:
            continue
        annotations = obj.get("metadata", {}).get("annotations") or {}
        for key, value in annotations.items():
            if not isinstance(value, str):
                raise ValueError(f"annotation {key} of {obj.get('kind')} is not a string: {value!r}")
        ready = annotations.get(ANNOTATION_READY)
        if ready is not None and ready not in ("True", "False", "Unspecified"):
            raise ValueError(f"invalid {ANNOTATION_READY} value {ready!r}")
        name = annotations.get(ANNOTATION_RESOURCE_NAME)
        if obj.get("apiVersion") == xr["apiVersion"] and obj.get("kind") == xr["kind"] and name is None:
            _merge(result.composite_status, obj.get("status") or {})
            continue
        if obj.get("apiVersion") == META_API_VERSION:
            if obj.get("kind") != "ExtraResources":
                raise NotImplementedError(f"{META_API_VERSION} {obj.get('kind')} is not used by these compositions")
            for key, selector in obj["requirements"].items():
                if key in result.requirements:
                    raise ValueError(f"duplicate extra resource key {key!r}")
                result.requirements[key] = selector
            continue
        if name is None:
            raise ValueError(f"{obj.get('kind')} template is missing the {ANNOTATION_RESOURCE_NAME} annotation")
        if name in result.resources and result.resources[name]["kind"] != obj["kind"]:
            raise ValueError(f"composition resource name {name} used twice")
        annotations = {k: v for k, v in annotations.items() if k not in (ANNOTATION_READY, ANNOTATION_RESOURCE_NAME)}
        if annotations:
            obj["metadata"]["annotations"] = annotations
        else:
            obj["metadata"].pop("annotations", None)
        result.resources[name] = obj
        result.ready[name] = ready or "Unspecified"


def _merge(dst: dict[str, Any], src: dict[str, Any]) -> None:
    for key, value in src.items():
        if isinstance(value, dict) and isinstance(dst.get(key), dict):
            _merge(dst[key], value)
        else:
            dst[key] = value


def secret_data(secret: dict[str, Any]) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}


def main(argv: list[str] | None = None) -> int:
    """python3 crossplane/tests/crossplane_support.py XR.yaml [--composition in-cluster|aws]
    [--observed OBSERVED.yaml]: admit the XR against the XRD, render the composition it selects
    (or the one named) and print the composed resources as YAML, each validated."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__.split(":", 1)[1].strip())
    parser.add_argument("xr", type=pathlib.Path)
    parser.add_argument("--composition", choices=["in-cluster", "aws"])
    parser.add_argument("--observed", type=pathlib.Path,
                        help="YAML documents of already-composed resources, each annotated with "
                             "crossplane.io/composition-resource-name")
    args = parser.parse_args(argv)

    api = CROSSPLANE / "apis" / "postgrescluster"
    (xrd,) = load_docs(api / "definition.yaml")
    compositions = {d["metadata"]["labels"]["exam-results.io/provider"]: d
                    for p in sorted(api.glob("composition-*.yaml")) for d in load_docs(p)}
    (xr,) = load_docs(args.xr)
    provider = args.composition or xr["spec"].get("crossplane", {}).get("compositionSelector", {}) \
        .get("matchLabels", {}).get("exam-results.io/provider", "in-cluster")
    observed = None
    if args.observed:
        observed = {d["metadata"]["annotations"]["crossplane.io/composition-resource-name"]: d
                    for d in load_docs(args.observed)}
    import helm_python

    try:
        rendered = render_composition(compositions[provider], admit_xr(xrd, xr), observed)
    except jsonschema.ValidationError as err:
        print(f"error: {args.xr} is not a valid {xr.get('kind')}: {err.message} "
              f"(at {'.'.join(map(str, err.absolute_path)) or 'the top level'})", file=sys.stderr)
        return 1
    except helm_python.HelmRenderError as err:
        print(f"error: composition {provider} refused {args.xr}: {str(err).rsplit('): ', 1)[-1]}", file=sys.stderr)
        return 1
    docs = []
    for name, obj in rendered.resources.items():
        validate(obj)
        docs.append({**obj, "metadata": {**obj["metadata"], "annotations": {
            **obj["metadata"].get("annotations", {}), "crossplane.io/composition-resource-name": name}}})
    docs.append({"apiVersion": xr["apiVersion"], "kind": xr["kind"], "metadata": {"name": xr["metadata"]["name"]},
                 "status": rendered.composite_status})
    yaml.safe_dump_all(docs, sys.stdout, sort_keys=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
