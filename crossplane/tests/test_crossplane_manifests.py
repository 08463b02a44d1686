"""Every manifest under crossplane/ is valid against the real schema of its kind, and the pieces
refer to each other correctly (functions, composite type, selectors, RBAC)."""

from __future__ import annotations

import copy
import re

import jsonschema
import pytest

import crossplane_support as xp
from crossplane_support import PROVIDER_LABEL, selected_composition

MANIFESTS = xp.manifest_files()


def _docs():
    return [pytest.param(doc, id=f"{path.relative_to(xp.CROSSPLANE)}#{i}")
            for path in MANIFESTS for i, doc in enumerate(xp.load_docs(path))]


def test_there_are_manifests_of_every_expected_kind():
    kinds = {doc["kind"] for path in MANIFESTS for doc in xp.load_docs(path)}
    assert {"CompositeResourceDefinition", "Composition", "Function", "Provider",
            "ClusterRole", "PostgresCluster"} <= kinds


@pytest.mark.parametrize("doc", _docs())
def test_manifest_is_valid_against_its_schema(doc, xrd):
    if doc["kind"] == xrd["spec"]["names"]["kind"]:
        jsonschema.Draft7Validator(xp.xr_schema(xrd)).validate(doc)  # our own API: see test_xrd.py
    else:
        xp.validate(doc)


@pytest.mark.parametrize("provider", ["in-cluster", "aws"])
def test_composition_pipeline_inputs_are_valid_function_inputs(compositions, provider):
    steps = compositions[provider]["spec"]["pipeline"]
    assert steps, "a Pipeline composition needs at least one step"
    for step in steps:
        xp.validate(step["input"])  # gotemplating.fn.crossplane.io/v1beta1 GoTemplate schema
        assert step["input"]["source"] == "Inline"


def test_schema_validation_rejects_a_misspelled_field(compositions):
    broken = {**compositions["in-cluster"]["spec"]["pipeline"][0]["input"], "sourc": "Inline"}
    with pytest.raises(jsonschema.ValidationError):
        xp.validate(broken)


def test_compositions_are_pipelines_for_the_xrd_type(compositions, xrd):
    version = next(v["name"] for v in xrd["spec"]["versions"] if v["referenceable"])
    for comp in compositions.values():
        assert comp["spec"]["mode"] == "Pipeline"
        assert comp["spec"]["compositeTypeRef"] == {
            "apiVersion": f"{xrd['spec']['group']}/{version}", "kind": xrd["spec"]["names"]["kind"]}


def test_xrd_is_namespaced_v2_and_defaults_to_an_existing_composition(xrd, compositions):
    assert xrd["apiVersion"] == "apiextensions.crossplane.io/v2"
    assert xrd["spec"]["scope"] == "Namespaced"
    assert xrd["metadata"]["name"] == f"{xrd['spec']['names']['plural']}.{xrd['spec']['group']}"
    names = {c["metadata"]["name"] for c in compositions.values()}
    assert xrd["spec"]["defaultCompositionRef"]["name"] in names


def test_each_composition_has_its_own_provider_label(compositions):
    assert set(compositions) == {"in-cluster", "aws"}


@pytest.mark.parametrize("name", sorted(p.stem for p in (xp.CROSSPLANE / "examples").glob("*.yaml")))
def test_every_example_selects_exactly_one_composition(examples, compositions, name):
    selected_composition(examples[name], compositions)


def test_every_function_a_pipeline_uses_is_installed_and_pinned(compositions):
    functions = {d["metadata"]["name"]: d for d in xp.load_docs(xp.CROSSPLANE / "functions.yaml")}
    for comp in compositions.values():
        for step in comp["spec"]["pipeline"]:
            assert step["functionRef"]["name"] in functions
    for fn in functions.values():
        package = fn["spec"]["package"]
        assert re.search(r":v\d+\.\d+\.\d+$|@sha256:[0-9a-f]{64}$", package), f"{package} is not pinned"


def test_provider_package_is_pinned():
    (provider,) = xp.load_docs(xp.CROSSPLANE / "prerequisites" / "provider-aws-rds.yaml")
    assert re.search(r"/provider-aws-rds:v2\.\d+\.\d+$", provider["spec"]["package"])


@pytest.mark.parametrize("provider", ["in-cluster", "aws"])
def test_templates_use_only_functions_both_engines_share(compositions, provider):
    """The tests execute templates with Helm's engine; a function that only one engine has, or
    that behaves differently in the two, would make the test render differ from Crossplane's."""
    template = compositions[provider]["spec"]["pipeline"][0]["input"]["inline"]["template"]
    actions = " ".join(re.findall(r"{{(.*?)}}", template, flags=re.S))
    actions = re.sub(r'"(?:[^"\\]|\\.)*"|/\*.*?\*/', " ", actions, flags=re.S)  # drop strings, comments
    assert "dig" in actions and "b64enc" in actions  # the stripping left the actual calls
    for fn in xp.ENGINE_SPECIFIC_FUNCTIONS:
        assert not re.search(rf"(?<![\w.$]){fn}(?!\w)", actions), f"template uses {fn}"


def test_rbac_lets_crossplane_manage_every_kind_the_in_cluster_composition_renders(compositions, examples, admit):
    (role,) = xp.load_docs(xp.CROSSPLANE / "rbac" / "crossplane-cloudnativepg.yaml")
    assert role["metadata"]["labels"]["rbac.crossplane.io/aggregate-to-crossplane"] == "true"
    granted = {(g, r) for rule in role["rules"] if {"create", "update", "patch", "delete", "watch"} <= set(rule["verbs"])
               for g in rule["apiGroups"] for r in rule["resources"]}
    rendered = xp.render_composition(compositions["in-cluster"], admit(examples["prod"]))
    plural = {"Cluster": "clusters", "ScheduledBackup": "scheduledbackups", "ObjectStore": "objectstores",
              "PodMonitor": "podmonitors", "Secret": "secrets"}
    for obj in rendered.resources.values():
        group = obj["apiVersion"].rpartition("/")[0]
        assert (group, plural[obj["kind"]]) in granted, f"Crossplane may not manage {obj['kind']}"


def test_schema_location_is_overridable(tmp_path, monkeypatch, compositions):
    """CRD_SCHEMA_LOCATION points validation at another copy of the schemas (directory or URL)."""
    step_input = compositions["in-cluster"]["spec"]["pipeline"][0]["input"]
    (tmp_path / "gotemplating.fn.crossplane.io").mkdir()
    (tmp_path / "gotemplating.fn.crossplane.io" / "gotemplate_v1beta1.json").write_text(
        '{"type": "object", "required": ["a-field-no-input-has"]}')
    monkeypatch.setenv("CRD_SCHEMA_LOCATION", str(tmp_path))
    with pytest.raises(jsonschema.ValidationError):
        xp.validate(step_input)
    monkeypatch.setenv("CRD_SCHEMA_LOCATION", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError):
        xp.validate(step_input)


def test_cel_rules_of_the_catalog_schemas_are_enforced(compositions):
    """JSON Schema alone accepts these; the CRDs' x-kubernetes-validations (CEL) reject them."""
    step_input = copy.deepcopy(compositions["in-cluster"]["spec"]["pipeline"][0]["input"])
    step_input["inline"]["templates"] = ["---"]  # GoTemplate: exactly one of template/templates
    jsonschema.Draft7Validator(xp.schema_for(step_input["apiVersion"], step_input["kind"])).validate(step_input)
    with pytest.raises(jsonschema.ValidationError, match="Exactly one of 'template' or 'templates'"):
        xp.validate(step_input)
    (function,) = xp.load_docs(xp.CROSSPLANE / "functions.yaml")
    function["spec"]["package"] = "function-go-templating:v0.12.2"  # not fully qualified
    with pytest.raises(jsonschema.ValidationError, match="fully qualified image name"):
        xp.validate(function)
