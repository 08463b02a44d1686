"""The chart lints strictly and every object it renders, for every value set,
is valid against its schema (core kinds: kubernetes-validate --strict at the chart's kubeVersion floor;
custom kinds: the CRD schemas at CRD_SCHEMA_LOCATION)."""

import copy

import pytest

import chart_support as cs
from chart_support import k8s_validate


@pytest.mark.parametrize("value_set", cs.VALUE_SETS)
def test_helm_lint_strict_passes(value_set):
    report = cs.lint(cs.value_set(value_set))
    problems = [m for m in report["messages"] if m["severity"] >= 2] + [{"error": e} for e in report["errors"]]
    assert problems == [], problems


@pytest.mark.parametrize("value_set", cs.VALUE_SETS)
def test_every_rendered_object_is_valid_against_its_schema(rendered_sets, value_set):
    rendered = rendered_sets[value_set]
    assert len(rendered.objects) > 10
    problems = k8s_validate.validate_objects(rendered.objects)
    assert problems == []


def test_renders_the_expected_kinds(default_render):
    kinds = {o["kind"] for o in default_render.objects}
    # observability-*.yaml (another owner's templates) may add monitoring kinds
    assert kinds >= {
        "Service", "ServiceAccount", "ConfigMap", "Deployment", "PodDisruptionBudget", "NetworkPolicy", "Job",
    }
    assert {o["apiVersion"] for o in default_render.all("Service")} == {"serving.knative.dev/v1", "v1"}


def test_validator_rejects_an_unknown_field_in_a_knative_service(default_render):
    ksvc = copy.deepcopy(default_render.one("Service", "get-result"))
    ksvc["spec"]["template"]["spec"]["containers"][0]["lifecycle"] = {"preStop": {"exec": {"command": ["true"]}}}
    problems = k8s_validate.validate_objects([ksvc])
    assert problems and "lifecycle" in problems[0]


def test_validator_rejects_an_unknown_field_in_a_core_kind(default_render):
    deployment = copy.deepcopy(default_render.one("Deployment", "pgbouncer"))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {}
    problems = k8s_validate.validate_objects([deployment])
    assert problems and "livenessprobe" in problems[0]


def test_validator_schema_location_is_overridable(default_render, tmp_path, monkeypatch):
    monkeypatch.setenv("CRD_SCHEMA_LOCATION", str(tmp_path))
    problems = k8s_validate.validate_objects([default_render.one("Service", "get-result")])
    assert problems and str(tmp_path) in problems[0] and "no schema" in problems[0]


def test_validator_command_line_reports_problems(tmp_path, default_render):
    import subprocess
    import sys
    import yaml

    bad = copy.deepcopy(default_render.one("Service", "get-result"))
    bad["spec"]["template"]["spec"]["containerConcurrency"] = "lots"
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump_all(default_render.objects))
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(bad))
    script = cs.REPO / ".ci" / "k8s_validate.py"
    ok = subprocess.run([sys.executable, script, good], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert f"{len(default_render.objects)} object(s), 0 problem(s)" in ok.stdout
    failed = subprocess.run([sys.executable, script, broken], capture_output=True, text=True)
    assert failed.returncode == 1
    assert "Service/get-result" in failed.stdout and "containerConcurrency" in failed.stdout


def test_chart_schema_closes_the_observability_block():
    """Every key of values.yaml's observability block is declared, and a misspelt one is refused."""
    import json

    schema = json.loads((cs.CHART / "values.schema.json").read_text())
    assert schema["additionalProperties"] is False
    declared = schema["properties"]["observability"]
    assert declared["additionalProperties"] is False
    for block, settings in cs.chart_defaults()["observability"].items():
        assert declared["properties"][block]["additionalProperties"] is False
        assert set(settings) == set(declared["properties"][block]["properties"]), block
    assert "/observability" in cs.render_error({"observability": {"anything": [1, 2]}})
    assert "/observability/podMonitors" in cs.render_error({"observability": {"podMonitors": {"enabeld": True}}})


def test_objects_of_a_crd_follow_explicit_booleans_that_helm_template_can_see():
    """GitOps renders with `helm template`, which sees no CRDs: true renders the
    PodMonitors and the PrometheusRule, false leaves them out."""
    on = cs.render({"observability": {"podMonitors": {"enabled": True}, "prometheusRule": {"enabled": True}}})
    assert on.all("PodMonitor") and on.all("PrometheusRule")
    off = cs.render({"observability": {"podMonitors": {"enabled": False}, "prometheusRule": {"enabled": False}}})
    assert not off.all("PodMonitor") and not off.all("PrometheusRule")


def test_helm_template_cli_renders_lints_and_refuses_bad_values():
    import subprocess
    import sys

    cli = cs.REPO / "knative" / "helm_template.py"
    rendered = subprocess.run([sys.executable, cli, "--set", "functions.getResult.autoscaling.target=80"],
                              capture_output=True, text=True)
    assert rendered.returncode == 0, rendered.stderr
    docs = k8s_validate.load_documents(rendered.stdout)
    get_result = next(d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "get-result")
    assert get_result["spec"]["template"]["metadata"]["annotations"]["autoscaling.knative.dev/target"] == "80"
    lint = subprocess.run([sys.executable, cli, "--lint"], capture_output=True, text=True)
    assert lint.returncode == 0 and "0 chart(s) failed" in lint.stdout
    refused = subprocess.run([sys.executable, cli, "-f", cs.FIXTURES / "bad-pool-clients.yaml"], capture_output=True, text=True)
    assert refused.returncode == 1 and "pool arithmetic" in refused.stderr and refused.stdout == ""


def test_validator_reads_schemas_from_a_url_prefix(default_render, monkeypatch):
    """The URL code path (used with the public CRDs-catalog), exercised offline with file://."""
    shared = cs.REPO.parent / "shared" / "schemas" / "crds"
    monkeypatch.setenv("CRD_SCHEMA_LOCATION", shared.as_uri())
    k8s_validate.load_crd_schema.cache_clear()
    try:
        assert k8s_validate.validate_objects(default_render.objects) == []
        broken = copy.deepcopy(default_render.one("Service", "get-result"))
        broken["spec"]["template"]["spec"]["containerConcurrency"] = "lots"
        assert k8s_validate.validate_objects([broken])
        monkeypatch.setenv("CRD_SCHEMA_LOCATION", (shared / "missing").as_uri())
        problems = k8s_validate.validate_objects([broken])
        assert problems and "no schema" in problems[0]
    finally:
        k8s_validate.load_crd_schema.cache_clear()
