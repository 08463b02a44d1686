"""The aws composition, rendered by a real Go text/template + sprig engine over the reconciles
Crossplane would go through (nothing exists, primary ready, replicas ready), produces valid
provider-aws RDS resources and the connection Secret the chart reads."""

from __future__ import annotations

import base64
import copy
import re

import pytest

import crossplane_support as xp

CONTRACT_SECRET_KEYS = xp.CONTRACT_SECRET_KEYS
RDS_BUNDLE = "-----BEGIN CERTIFICATE-----\nMIIE (Amazon RDS eu-west-1 Root CA)\n-----END CERTIFICATE-----\n"
BUNDLE_SECRET = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "rds-ca-bundle", "namespace": "exam-results"},
                 "data": {"ca.crt": base64.b64encode(RDS_BUNDLE.encode()).decode()}}
PRIMARY_HOST = "ner-exam-results-db.abc123.eu-west-1.rds.amazonaws.com"


def replica_host(i: int) -> str:
    return f"ner-exam-results-db-replica-{i}.abc123.eu-west-1.rds.amazonaws.com"


@pytest.fixture
def render(compositions):
    def _render(xr, observed=None, required=None):
        """One reconcile; the operator has created the RDS CA bundle Secret unless `required` says otherwise."""
        required = {"ca-bundle": [BUNDLE_SECRET]} if required is None else required
        return xp.render_composition(compositions["aws"], xr, observed, required)

    return _render


@pytest.fixture
def prod(examples, admit):
    return admit(examples["prod-aws"])


def became_ready(obj, address=None):
    """The object as Crossplane would observe it once the provider reports it available."""
    obj = copy.deepcopy(obj)
    obj["status"] = {"conditions": [{"type": "Ready", "status": "True"}, {"type": "Synced", "status": "True"}]}
    if address:
        obj["status"]["atProvider"] = {"address": address, "port": 5432}
    return obj


def reconcile_until_ready(render, xr):
    """Drive the composition through the reconciles a real cluster would see."""
    first = render(xr)
    observed = {name: became_ready(obj) for name, obj in first.resources.items()}
    observed["primary"] = became_ready(first.resources["primary"], PRIMARY_HOST)
    second = render(xr, observed)
    for name, obj in second.resources.items():
        if name.startswith("replica-"):
            observed[name] = became_ready(obj, replica_host(int(name.split("-")[1])))
        elif name not in observed:
            observed[name] = became_ready(obj)
    return first, second, render(xr, observed), observed


def test_every_resource_of_every_reconcile_is_valid_against_its_schema(render, prod):
    for rendered in reconcile_until_ready(render, prod)[:3]:
        for obj in rendered.resources.values():
            xp.validate(obj)


def test_first_reconcile_creates_network_parameters_password_and_primary_only(render, prod):
    first = render(prod)
    assert set(first.resources) == {"master-password", "app-role", "reader-role", "subnet-group",
                                    "parameter-group", "primary"}
    assert "endpoints" not in first.composite_status  # nothing to connect to yet
    assert first.composite_status["readyInstances"] == 0


def test_primary_is_multi_az_encrypted_private_and_keeps_backups(render, prod):
    primary = render(prod).resources["primary"]["spec"]["forProvider"]
    assert primary["multiAz"] is True
    assert primary["storageEncrypted"] is True
    assert primary["publiclyAccessible"] is False
    assert primary["backupRetentionPeriod"] == 14
    assert primary["backupWindow"] == "01:30-02:30"
    assert primary["deletionProtection"] is True
    assert primary["skipFinalSnapshot"] is False and primary["finalSnapshotIdentifier"].endswith("-final")
    assert primary["deleteAutomatedBackups"] is False
    assert (primary["engine"], primary["engineVersion"]) == ("postgres", "17")
    assert (primary["dbName"], primary["username"]) == ("exam_results", "exam_owner")
    assert primary["allocatedStorage"] == 100 and primary["maxAllocatedStorage"] == 500
    assert primary["vpcSecurityGroupIds"] == ["sg-0a1b2c3d4e5f60001"]


def test_primary_password_comes_from_the_composed_secret(render, prod):
    rendered = render(prod)
    ref = rendered.resources["primary"]["spec"]["forProvider"]["passwordSecretRef"]
    secret = rendered.resources["master-password"]
    assert ref == {"name": secret["metadata"]["name"], "key": "password"}
    assert len(xp.secret_data(secret)["password"]) == 32
    again = render(prod, {"master-password": copy.deepcopy(secret)})
    assert xp.secret_data(again.resources["master-password"]) == xp.secret_data(secret)


def test_primary_uses_the_composed_subnet_and_parameter_groups(render, prod):
    rendered = render(prod)
    primary = rendered.resources["primary"]["spec"]["forProvider"]
    assert primary["dbSubnetGroupNameRef"]["name"] == rendered.resources["subnet-group"]["metadata"]["name"]
    assert primary["parameterGroupNameRef"]["name"] == rendered.resources["parameter-group"]["metadata"]["name"]
    subnets = rendered.resources["subnet-group"]["spec"]["forProvider"]
    assert len(subnets["subnetIds"]) == 3 and subnets["region"] == "eu-west-1"


def test_parameter_group_carries_the_requested_settings_in_rds_units(render, prod):
    group = render(prod).resources["parameter-group"]["spec"]["forProvider"]
    assert group["family"] == "postgres17"
    params = {p["name"]: p for p in group["parameter"]}
    assert params["max_connections"]["value"] == "400"
    assert params["shared_buffers"]["value"] == str(2 * 1024 * 1024 // 8)  # 2GB in 8kB pages
    assert params["max_connections"]["applyMethod"] == "pending-reboot"  # static parameters


def test_replicas_follow_the_primary_once_it_is_ready(render, prod):
    _, second, _, _ = reconcile_until_ready(render, prod)
    primary_id = second.resources["primary"]["spec"]["forProvider"]["identifier"]
    replicas = [second.resources[f"replica-{i}"] for i in (1, 2)]
    assert "replica-3" not in second.resources  # instances: 3 = primary + 2 replicas
    for replica in replicas:
        spec = replica["spec"]["forProvider"]
        assert spec["replicateSourceDb"] == primary_id
        assert spec["storageEncrypted"] is True and spec["publiclyAccessible"] is False
        assert "username" not in spec and "passwordSecretRef" not in spec  # inherited from the source
        assert replica["metadata"]["labels"]["db.exam-results.io/role"] == "replica"


def test_connection_secret_points_rw_at_the_primary_and_ro_at_the_replica(render, prod):
    first, second, third, _ = reconcile_until_ready(render, prod)
    assert "connection-secret" not in first.resources
    early = xp.secret_data(second.resources["connection-secret"])
    assert set(early) == CONTRACT_SECRET_KEYS
    assert early["rw-host"] == early["ro-host"] == PRIMARY_HOST  # no replica address yet: readers use the primary
    data = xp.secret_data(third.resources["connection-secret"])
    assert data["rw-host"] == PRIMARY_HOST and data["ro-host"] == replica_host(1)
    assert (data["port"], data["dbname"], data["username"]) == ("5432", "exam_results", "exam_owner")
    assert data["password"] == xp.secret_data(third.resources["master-password"])["password"]
    # The migration runner creates exam_app and exam_reader on RDS with these passwords.
    assert (data["app-username"], data["reader-username"]) == ("exam_app", "exam_reader")
    for key, role in (("app-role", "app"), ("reader-role", "reader")):
        secret = xp.secret_data(third.resources[key])
        assert secret["username"] == data[f"{role}-username"]
        assert secret["password"] == data[f"{role}-password"] and len(secret["password"]) == 32
    assert len({data["password"], data["app-password"], data["reader-password"]}) == 3
    assert data["ca.crt"] == RDS_BUNDLE
    assert third.resources["connection-secret"]["metadata"]["name"] == "exam-results-db"


def test_status_and_readiness_after_everything_is_available(render, prod):
    *_, third, _ = reconcile_until_ready(render, prod)
    assert third.composite_status["endpoints"] == {"readWrite": PRIMARY_HOST, "readOnly": replica_host(1), "port": 5432}
    assert third.composite_status["readyInstances"] == 3
    assert set(third.ready.values()) == {"True"}


def test_a_primary_that_stops_being_ready_keeps_its_replicas_and_secret(render, prod):
    *_, observed = reconcile_until_ready(render, prod)
    observed["primary"]["status"]["conditions"][0]["status"] = "False"  # e.g. a storage modification
    rendered = render(prod, observed)
    assert {"replica-1", "replica-2", "connection-secret"} <= set(rendered.resources)
    assert rendered.ready["primary"] == "False"
    assert rendered.composite_status["readyInstances"] == 2


def test_backups_stay_on_at_the_minimum_when_disabled(render, examples, admit):
    xr = copy.deepcopy(examples["prod-aws"])
    xr["spec"]["backup"]["enabled"] = False
    primary = render(admit(xr)).resources["primary"]["spec"]["forProvider"]
    assert primary["backupRetentionPeriod"] == 1  # read replicas need automated backups on the source


@pytest.mark.parametrize("size, expected", [("5Gi", 20), ("100Gi", 100), ("2Ti", 2048)])
def test_allocated_storage_in_gib_respects_the_rds_minimum(render, examples, admit, size, expected):
    xr = copy.deepcopy(examples["prod-aws"])
    xr["spec"]["storage"] = {"size": size}
    primary = render(admit(xr)).resources["primary"]["spec"]["forProvider"]
    assert primary["allocatedStorage"] == expected
    assert "maxAllocatedStorage" not in primary


@pytest.mark.parametrize("namespace, name", [
    ("exam-results-production", "exam-results-db-with-a-rather-long-name-for-the-2027-season"),
    ("2027-results", "db--2"),
])
def test_identifiers_are_valid_rds_identifiers_for_any_kubernetes_names(render, examples, admit, namespace, name):
    xr = copy.deepcopy(examples["prod-aws"])
    xr["metadata"]["name"] = name
    xr["metadata"]["namespace"] = namespace
    *_, third, _ = reconcile_until_ready(render, admit(xr))
    for name in ("primary", "replica-1", "replica-2"):
        identifier = third.resources[name]["spec"]["forProvider"]["identifier"]
        assert len(identifier) <= 63
        assert re.fullmatch(r"[a-z][a-z0-9]*(-[a-z0-9]+)*", identifier), identifier


def test_a_customer_managed_key_encrypts_the_primary_and_replicas_inherit_it(render, examples, admit):
    xr = copy.deepcopy(examples["prod-aws"])
    key = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    xr["spec"]["aws"]["kmsKeyId"] = key
    *_, third, _ = reconcile_until_ready(render, admit(xr))
    assert third.resources["primary"]["spec"]["forProvider"]["kmsKeyId"] == key
    for name in ("replica-1", "replica-2"):
        replica = third.resources[name]["spec"]["forProvider"]
        assert "kmsKeyId" not in replica  # same-region replicas must not name a key
        assert replica["storageEncrypted"] is True


def test_provider_config_is_selectable(render, examples, admit):
    xr = copy.deepcopy(examples["prod-aws"])
    xr["spec"]["aws"].update(providerConfigKind="ProviderConfig", providerConfigName="exam-results")
    for obj in render(admit(xr)).resources.values():
        if obj["apiVersion"].startswith("rds."):
            assert obj["spec"]["providerConfigRef"] == {"kind": "ProviderConfig", "name": "exam-results"}


def test_an_xr_without_the_aws_block_fails_with_a_clear_message(render, examples, admit):
    import helm_python

    with pytest.raises(helm_python.HelmRenderError, match=r"spec\.aws .* is required"):
        render(admit(examples["dev"]))


def test_replicas_can_be_deleted_when_the_cluster_shrinks(render, prod):
    _, second, _, _ = reconcile_until_ready(render, prod)
    assert second.resources["primary"]["spec"]["forProvider"]["deletionProtection"] is True
    assert {second.resources[f"replica-{i}"]["spec"]["forProvider"]["deletionProtection"] for i in (1, 2)} == {False}


def test_lowering_instances_drops_the_highest_replica(render, prod, admit, examples):
    *_, observed = reconcile_until_ready(render, prod)
    smaller = render(admit(examples["prod-aws"], instances=2), observed)
    assert "replica-1" in smaller.resources and "replica-2" not in smaller.resources


@pytest.mark.parametrize("target, expected", [
    ("2027-08-14T09:30:00Z", {"restoreTime": "2027-08-14T09:30:00Z"}),
    (None, {"useLatestRestorableTime": True}),
])
def test_restore_is_a_point_in_time_restore_of_the_source_primary(render, examples, admit, target, expected):
    xr = copy.deepcopy(examples["prod-aws"])
    xr["metadata"]["name"] = "exam-results-db-restored"
    xr["spec"]["restore"] = {"fromCluster": "exam-results-db", **({"targetTime": target} if target else {})}
    source_primary = render(admit(examples["prod-aws"])).resources["primary"]["spec"]["forProvider"]["identifier"]
    rendered = render(admit(xr))
    primary = rendered.resources["primary"]["spec"]["forProvider"]
    xp.validate(rendered.resources["primary"])
    assert primary["restoreToPointInTime"] == {"sourceDbInstanceIdentifier": source_primary, **expected}
    assert primary["identifier"] != source_primary
    assert "dbName" not in primary and "username" not in primary  # they come from the source
    assert primary["passwordSecretRef"]["name"] == rendered.resources["master-password"]["metadata"]["name"]
    assert primary["multiAz"] is True and primary["storageEncrypted"] is True


def test_the_rds_ca_bundle_comes_from_the_named_secret_and_the_secret_waits_for_it(render, examples, admit):
    xr = copy.deepcopy(examples["prod-aws"])
    xr["spec"]["aws"]["caBundleSecretName"] = "rds-global-bundle"
    xr = admit(xr)
    *_, observed = reconcile_until_ready(render, xr)
    missing = render(xr, observed, required={"ca-bundle": []})
    assert missing.requirements["ca-bundle"] == {
        "apiVersion": "v1", "kind": "Secret", "matchName": "rds-global-bundle", "namespace": "exam-results"}
    assert "ca.crt" not in xp.secret_data(missing.resources["connection-secret"])
    assert missing.ready["connection-secret"] == "False"  # the XR is not Ready without the CA
    assert missing.composite_status["caSecret"] == {"name": "rds-global-bundle", "key": "ca.crt"}
    present = render(xr, observed)
    assert xp.secret_data(present.resources["connection-secret"])["ca.crt"] == RDS_BUNDLE
    assert present.ready["connection-secret"] == "True"


def test_role_passwords_are_kept_once_they_exist(render, prod):
    first = render(prod)
    again = render(prod, {k: copy.deepcopy(first.resources[k]) for k in ("app-role", "reader-role")})
    for key in ("app-role", "reader-role"):
        assert xp.secret_data(again.resources[key]) == xp.secret_data(first.resources[key])
