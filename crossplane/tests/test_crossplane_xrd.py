"""The PostgresCluster API: examples are valid against the XRD's own openAPIV3Schema, defaults
fill in an opinionated cluster, and the schema's validation turns away bad requests."""

from __future__ import annotations

import copy

import jsonschema
import pytest

import crossplane_support as xp
from crossplane_support import EXAMPLE_NAMES


def minimal_xr(**spec):
    return {"apiVersion": "db.exam-results.io/v1alpha1", "kind": "PostgresCluster",
            "metadata": {"name": "exam-results-db", "namespace": "exam-results"}, "spec": spec}


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_example_is_valid_against_the_xrd_schema(xrd, examples, name):
    jsonschema.Draft7Validator(xp.xr_schema(xrd)).validate(examples[name])


def test_the_examples_cover_dev_and_production(examples, admit):
    dev, prod = admit(examples["dev"]), admit(examples["prod"])
    assert dev["spec"]["instances"] == 2 and dev["spec"]["backup"]["enabled"] is False
    assert prod["spec"]["instances"] == 3 and prod["spec"]["backup"]["enabled"] is True
    assert int(prod["spec"]["storage"]["size"].rstrip("Gi")) > int(dev["spec"]["storage"]["size"].rstrip("Gi"))
    aws = admit(examples["prod-aws"])
    assert aws["spec"]["instances"] == 3 and aws["spec"]["backup"]["enabled"] is True


def test_an_empty_spec_gets_one_primary_and_one_replica_and_the_chart_secret_name(xrd):
    stored = xp.admit_xr(xrd, minimal_xr())
    spec = stored["spec"]
    assert spec["instances"] == 2
    assert spec["connectionSecretName"] == "exam-results-db"
    assert spec["database"] == {"name": "exam_results", "owner": "exam_owner"}
    assert spec["storage"]["size"] == "10Gi"
    assert spec["postgresVersion"] == "17"
    assert spec["parameters"] == {"maxConnections": 200, "sharedBuffers": "128MB"}
    assert spec["backup"]["enabled"] is False and spec["backup"]["retentionDays"] == 7
    assert spec["monitoring"]["enabled"] is True
    assert spec["resources"]["requests"] == {"cpu": "250m", "memory": "512Mi"}
    assert "aws" not in spec


def test_defaults_do_not_override_what_the_operator_set(xrd):
    stored = xp.admit_xr(xrd, minimal_xr(instances=5, backup={"enabled": True, "destinationPath": "s3://b/p"}))
    assert stored["spec"]["instances"] == 5
    assert stored["spec"]["backup"]["enabled"] is True
    assert stored["spec"]["backup"]["schedule"] == "0 0 2 * * *"


@pytest.mark.parametrize("spec, reason", [
    ({"instances": 1}, "a single instance has no replica"),
    ({"instances": 10}, "more than 9 instances"),
    ({"postgresVersion": "13"}, "unsupported major version"),
    ({"storage": {"size": "10G"}}, "size must be in Gi or Ti"),
    ({"storage": {"size": "0Gi"}}, "size must be positive"),
    ({"parameters": {"maxConnections": 10}}, "max_connections below the minimum"),
    ({"parameters": {"sharedBuffers": "1TB"}}, "shared_buffers in MB or GB only"),
    ({"backup": {"retentionDays": 0}}, "retention of at least one day"),
    ({"backup": {"retentionDays": 36}}, "RDS keeps at most 35 days"),
    ({"backup": {"destinationPath": "/local/path"}}, "object store URL"),
    ({"backup": {"window": "25:00-26:00"}}, "backup window must be a time range"),
    ({"database": {"name": "Exam-Results"}}, "database names are lower-case identifiers"),
    ({"connectionSecretName": "Exam_DB"}, "Secret names are DNS subdomains"),
    ({"aws": {"region": "eu-west-1", "subnetIds": ["subnet-1"], "securityGroupIds": ["sg-1"]}}, "Multi-AZ needs two subnets"),
    ({"aws": {"region": "eu-west-1", "subnetIds": ["a", "b"]}}, "security groups are required"),
    ({"replicas": 2}, "unknown field"),
    ({"storage": {"size": "10Gi", "iops": 3000}}, "unknown nested field"),
])
def test_schema_rejects_invalid_requests(xrd, spec, reason):
    with pytest.raises(jsonschema.ValidationError):
        xp.admit_xr(xrd, minimal_xr(**spec))


def test_composition_selection_fields_crossplane_adds_are_accepted(xrd):
    xr = minimal_xr(crossplane={"compositionSelector": {"matchLabels": {"exam-results.io/provider": "aws"}}})
    xp.admit_xr(xrd, xr)
    xr = minimal_xr(crossplane={"compositionRef": {"name": "postgresclusters-in-cluster"}})
    xp.admit_xr(xrd, xr)


def test_every_top_level_spec_field_is_documented(xrd):
    spec = xrd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    assert not [k for k, v in spec.items() if not v.get("description")]


def test_status_reports_endpoints_and_readiness(xrd):
    status = xrd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    assert {"readWrite", "readOnly"} <= set(status["endpoints"]["properties"])
    assert "readyInstances" in status
    columns = {c["name"]: c["jsonPath"] for c in xrd["spec"]["versions"][0]["additionalPrinterColumns"]}
    assert columns["Ready"] == ".status.conditions[?(@.type=='Ready')].status"
    assert columns["RW"] == ".status.endpoints.readWrite"


def test_stored_examples_are_stable_under_a_second_admission(xrd, examples):
    """Defaulting is idempotent, as the API server's is."""
    for xr in examples.values():
        once = xp.admit_xr(xrd, xr)
        assert xp.admit_xr(xrd, copy.deepcopy(once)) == once


def test_xrd_schema_is_structural_and_its_defaults_are_valid(xrd):
    """The API server refuses non-structural schemas and defaults that fail their own schema."""
    schema = xrd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    problems = []

    def walk(s, path):
        if "type" not in s and not s.get("x-kubernetes-int-or-string"):
            problems.append(f"{path}: no type")
        if "properties" in s and "additionalProperties" in s:
            problems.append(f"{path}: properties and additionalProperties together")
        if "default" in s:
            try:
                jsonschema.Draft7Validator(s).validate(xp.apply_defaults(s, copy.deepcopy(s["default"])))
            except jsonschema.ValidationError as err:
                problems.append(f"{path}: default invalid: {err.message}")
        for key, sub in s.get("properties", {}).items():
            walk(sub, f"{path}.{key}")
        if isinstance(s.get("items"), dict):
            walk(s["items"], f"{path}[]")

    walk(schema, "")
    assert not problems


AWS_BLOCK = {"region": "eu-west-1", "subnetIds": ["subnet-a", "subnet-b"], "securityGroupIds": ["sg-a"]}


@pytest.mark.parametrize("spec, allowed", [
    ({"backup": {"enabled": True}}, False),
    ({"backup": {"enabled": True, "destinationPath": "s3://b/p"}}, True),
    ({"backup": {"enabled": True}, "aws": AWS_BLOCK}, True),          # RDS keeps its own backups
    ({"restore": {"fromCluster": "old-db"}}, False),
    ({"restore": {"fromCluster": "old-db"}, "backup": {"destinationPath": "s3://b/p"}}, True),
    ({"restore": {"fromCluster": "old-db"}, "aws": AWS_BLOCK}, True),  # RDS point-in-time restore
])
def test_cel_rules_require_an_object_store_where_one_is_needed(xrd, spec, allowed):
    if allowed:
        xp.admit_xr(xrd, minimal_xr(**spec))
    else:
        with pytest.raises(jsonschema.ValidationError, match="destinationPath is required|restore needs"):
            xp.admit_xr(xrd, minimal_xr(**spec))


def test_restore_can_only_be_chosen_at_creation(xrd):
    plain = xp.admit_xr(xrd, minimal_xr(backup={"destinationPath": "s3://b/p"}))
    restoring = xp.admit_xr(xrd, minimal_xr(backup={"destinationPath": "s3://b/p"}, restore={"fromCluster": "old-db"}))
    xp.admit_xr(xrd, copy.deepcopy(restoring), old=restoring)          # unchanged: fine
    xp.admit_xr(xrd, minimal_xr(backup={"destinationPath": "s3://b/p"}, instances=3), old=plain)  # other edits: fine
    with pytest.raises(jsonschema.ValidationError, match="only be set when the PostgresCluster is created"):
        xp.admit_xr(xrd, copy.deepcopy(restoring), old=plain)           # added later
    moved = copy.deepcopy(restoring)
    moved["spec"]["restore"]["fromCluster"] = "another-db"
    with pytest.raises(jsonschema.ValidationError, match="only be set when the PostgresCluster is created"):
        xp.admit_xr(xrd, moved, old=restoring)                          # changed later
