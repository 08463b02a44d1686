"""The in-cluster composition, rendered by a real Go text/template + sprig engine for the example
XRs (and variations of them), produces valid CloudNativePG resources with the properties the
exam-results service depends on."""

from __future__ import annotations

import base64
import copy

import pytest

import crossplane_support as xp

CONTRACT_SECRET_KEYS = xp.CONTRACT_SECRET_KEYS
BARMAN_PLUGIN = "barman-cloud.cloudnative-pg.io"
CA_PEM = "-----BEGIN CERTIFICATE-----\nMIIB (the cluster's CA)\n-----END CERTIFICATE-----\n"


def cnpg_ca_secret(name="exam-results-db"):
    """The CA Secret CloudNativePG creates for a cluster (<cluster>-ca, keys ca.crt and ca.key)."""
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": f"{name}-ca", "namespace": "exam-results"},
            "data": {"ca.crt": base64.b64encode(CA_PEM.encode()).decode(), "ca.key": "c2VjcmV0"}}


@pytest.fixture
def render(compositions):
    def _render(xr, observed=None, required=None):
        return xp.render_composition(compositions["in-cluster"], xr, observed, required)

    return _render


@pytest.mark.parametrize("name", ["dev", "prod"])
def test_every_rendered_resource_is_valid_against_its_schema(render, examples, admit, name):
    rendered = render(admit(examples[name]))
    assert rendered.resources
    for obj in rendered.resources.values():
        xp.validate(obj)
        assert obj["metadata"]["namespace"] == "exam-results"


@pytest.mark.parametrize("name", ["dev", "prod"])
def test_cluster_has_at_least_two_instances_spread_over_nodes_by_required_anti_affinity(render, examples, admit, name):
    xr = admit(examples[name])
    cluster = render(xr).one("Cluster")
    assert cluster["spec"]["instances"] == xr["spec"]["instances"] >= 2
    assert cluster["spec"]["affinity"] == {
        "enablePodAntiAffinity": True, "podAntiAffinityType": "required", "topologyKey": "kubernetes.io/hostname"}


@pytest.mark.parametrize("name", ["dev", "prod"])
def test_cluster_storage_follows_the_request(render, examples, admit, name):
    xr = admit(examples[name])
    storage = render(xr).one("Cluster")["spec"]["storage"]
    assert storage["size"] == xr["spec"]["storage"]["size"]
    assert storage.get("storageClass") == xr["spec"]["storage"].get("storageClass")
    assert storage["resizeInUseVolumes"] is True


def test_wal_gets_its_own_volume_only_when_asked(render, examples, admit):
    assert render(admit(examples["prod"])).one("Cluster")["spec"]["walStorage"] == {"size": "20Gi", "storageClass": "fast-ssd"}
    assert "walStorage" not in render(admit(examples["dev"])).one("Cluster")["spec"]


def test_cluster_bootstraps_the_exams_database_owned_by_the_migration_owner(render, examples, admit):
    rendered = render(admit(examples["dev"]))
    initdb = rendered.one("Cluster")["spec"]["bootstrap"]["initdb"]
    assert (initdb["database"], initdb["owner"]) == ("exam_results", "exam_owner")
    credentials = rendered.resources["owner-credentials"]
    assert credentials["type"] == "kubernetes.io/basic-auth"
    assert initdb["secret"]["name"] == credentials["metadata"]["name"]
    assert xp.secret_data(credentials)["username"] == "exam_owner"


@pytest.mark.parametrize("name", ["dev", "prod"])
def test_runtime_roles_are_managed_login_roles_in_the_group_roles_not_the_owner(render, examples, admit, name):
    rendered = render(admit(examples[name]))
    roles = {r["name"]: r for r in rendered.one("Cluster")["spec"]["managed"]["roles"]}
    assert set(roles) == {"exam_app", "exam_reader"}
    assert roles["exam_app"]["inRoles"] == ["exam_results_writer"]
    assert roles["exam_reader"]["inRoles"] == ["exam_results_reader"]
    for role, key in (("exam_app", "app-role"), ("exam_reader", "reader-role")):
        spec = roles[role]
        assert spec["login"] is True and spec["ensure"] == "present"
        for attribute in ("superuser", "createdb", "createrole", "replication", "bypassrls"):
            assert not spec.get(attribute), f"{role} must not have {attribute}"
        secret = rendered.resources[key]
        assert spec["passwordSecret"] == {"name": secret["metadata"]["name"]}
        # CloudNativePG reads a managed role's password from a basic-auth Secret whose username is the role.
        assert secret["type"] == "kubernetes.io/basic-auth"
        assert xp.secret_data(secret)["username"] == role
        assert len(xp.secret_data(secret)["password"]) == 32
    data = xp.secret_data(rendered.resources["connection-secret"])
    assert (data["app-username"], data["reader-username"]) == ("exam_app", "exam_reader")
    assert data["app-password"] == xp.secret_data(rendered.resources["app-role"])["password"]
    assert data["reader-password"] == xp.secret_data(rendered.resources["reader-role"])["password"]
    assert len({data["password"], data["app-password"], data["reader-password"]}) == 3


def test_the_owner_cannot_be_a_runtime_role(xrd, examples):
    import jsonschema

    for role in ("exam_app", "exam_reader"):
        xr = copy.deepcopy(examples["dev"])
        xr["spec"]["database"] = {"owner": role}
        with pytest.raises(jsonschema.ValidationError, match="must not be one of the runtime roles"):
            xp.admit_xr(xrd, xr)


def test_connection_secret_carries_the_clusters_ca_once_cloudnativepg_created_it(render, examples, admit):
    xr = admit(examples["dev"])
    first = render(xr)
    # The function asks Crossplane for CloudNativePG's CA Secret, in the XR's namespace.
    assert first.requirements == {"server-ca": {
        "apiVersion": "v1", "kind": "Secret", "matchName": "exam-results-db-ca", "namespace": "exam-results"}}
    assert "ca.crt" not in xp.secret_data(first.resources["connection-secret"])
    assert first.ready["connection-secret"] == "False"  # verify-full cannot work yet
    assert first.composite_status["caSecret"] == {"name": "exam-results-db-ca", "key": "ca.crt"}
    later = render(xr, required={"server-ca": [cnpg_ca_secret()]})
    data = xp.secret_data(later.resources["connection-secret"])
    assert data["ca.crt"] == CA_PEM
    assert later.ready["connection-secret"] == "True"
    assert "ca.key" not in data  # only the certificate travels


def test_parameters_reach_postgresql_as_strings(render, examples, admit):
    params = render(admit(examples["prod"])).one("Cluster")["spec"]["postgresql"]["parameters"]
    assert params == {"max_connections": "400", "shared_buffers": "2GB"}


def test_image_follows_the_major_version_unless_overridden(render, examples, admit):
    assert render(admit(examples["dev"], postgresVersion="16")).one("Cluster")["spec"]["imageName"] == \
        "ghcr.io/cloudnative-pg/postgresql:16-standard-trixie"
    pinned = "ghcr.io/cloudnative-pg/postgresql:17.6-standard-trixie@sha256:" + "a" * 64
    assert render(admit(examples["dev"], imageName=pinned)).one("Cluster")["spec"]["imageName"] == pinned


@pytest.mark.parametrize("name", ["dev", "prod"])
def test_connection_secret_has_the_keys_the_chart_reads(render, examples, admit, name):
    xr = admit(examples[name])
    rendered = render(xr, required={"server-ca": [cnpg_ca_secret()]})
    secret = rendered.resources["connection-secret"]
    assert secret["metadata"]["name"] == "exam-results-db"
    data = xp.secret_data(secret)
    assert set(data) == CONTRACT_SECRET_KEYS
    assert data["rw-host"] == "exam-results-db-rw.exam-results.svc"   # CloudNativePG's primary service
    assert data["ro-host"] == "exam-results-db-ro.exam-results.svc"   # its replicas-only service
    assert data["port"] == "5432"
    assert (data["dbname"], data["username"]) == ("exam_results", "exam_owner")
    assert data["password"] == xp.secret_data(rendered.resources["owner-credentials"])["password"]
    assert len(data["password"]) == 32 and data["password"].isalnum()


def test_connection_secret_name_is_configurable(render, examples, admit):
    rendered = render(admit(examples["dev"], connectionSecretName="results-db-staging"))
    assert rendered.resources["connection-secret"]["metadata"]["name"] == "results-db-staging"
    assert rendered.composite_status["connectionSecret"] == "results-db-staging"


@pytest.mark.parametrize("key,secret_key", [("owner-credentials", "password"), ("app-role", "app-password"),
                                            ("reader-role", "reader-password")])
def test_passwords_are_generated_per_cluster_and_kept_once_they_exist(render, examples, admit, key, secret_key):
    xr = admit(examples["dev"])
    first, other = render(xr), render(xr)
    generated = xp.secret_data(first.resources[key])["password"]
    assert generated != xp.secret_data(other.resources[key])["password"]  # really random
    # Next reconcile: Crossplane observes the Secret it created; the password must not change.
    again = render(xr, observed={key: copy.deepcopy(first.resources[key])})
    assert xp.secret_data(again.resources[key])["password"] == generated
    assert xp.secret_data(again.resources["connection-secret"])[secret_key] == generated


def test_backups_enabled_compose_an_object_store_a_schedule_and_wal_archiving(render, examples, admit):
    xr = admit(examples["prod"])
    rendered = render(xr)
    cluster = rendered.one("Cluster")
    store = rendered.one("ObjectStore")
    schedule = rendered.one("ScheduledBackup")
    assert cluster["spec"]["plugins"] == [{
        "name": BARMAN_PLUGIN, "enabled": True, "isWALArchiver": True,
        "parameters": {"barmanObjectName": store["metadata"]["name"]}}]
    assert store["spec"]["configuration"]["destinationPath"] == "s3://exam-results-backups/prod"
    assert store["spec"]["retentionPolicy"] == "14d"
    assert store["spec"]["configuration"]["s3Credentials"] == {
        "accessKeyId": {"name": "exam-results-backup-s3", "key": "ACCESS_KEY_ID"},
        "secretAccessKey": {"name": "exam-results-backup-s3", "key": "ACCESS_SECRET_KEY"}}
    assert schedule["spec"]["cluster"]["name"] == cluster["metadata"]["name"]
    assert schedule["spec"]["method"] == "plugin"
    assert schedule["spec"]["pluginConfiguration"]["name"] == BARMAN_PLUGIN
    assert schedule["spec"]["schedule"] == "0 30 1 * * *"
    assert len(schedule["spec"]["schedule"].split()) == 6  # CloudNativePG's cron has seconds


def test_backups_disabled_compose_no_backup_machinery(render, examples, admit):
    rendered = render(admit(examples["dev"]))
    assert not rendered.by_kind("ObjectStore")
    assert not rendered.by_kind("ScheduledBackup")
    assert "plugins" not in rendered.one("Cluster")["spec"]


def test_turning_backups_off_on_the_production_example_removes_them(render, examples, admit):
    prod = copy.deepcopy(examples["prod"])
    prod["spec"]["backup"]["enabled"] = False
    rendered = render(admit(prod))
    assert not rendered.by_kind("ObjectStore") and not rendered.by_kind("ScheduledBackup")


def test_backups_without_a_credentials_secret_use_the_iam_role(render, examples, admit):
    prod = copy.deepcopy(examples["prod"])
    del prod["spec"]["backup"]["s3CredentialsSecretName"]
    prod["spec"]["backup"]["endpointURL"] = "https://minio.storage.svc:9000"
    store = render(admit(prod)).one("ObjectStore")
    assert store["spec"]["configuration"]["s3Credentials"] == {"inheritFromIAMRole": True}
    assert store["spec"]["configuration"]["endpointURL"] == "https://minio.storage.svc:9000"
    xp.validate(store)


def test_backups_enabled_without_a_destination_fail_with_a_clear_message(render, examples, admit):
    import helm_python

    xr = admit(examples["dev"])
    xr["spec"]["backup"]["enabled"] = True  # as if the XRD's CEL rule had not run
    with pytest.raises(helm_python.HelmRenderError, match="spec.backup.destinationPath is required"):
        render(xr)


def test_pod_monitor_scrapes_the_cluster_instances_metrics_port(render, examples, admit):
    monitor = render(admit(examples["prod"])).one("PodMonitor")
    assert monitor["spec"]["selector"]["matchLabels"] == {
        "cnpg.io/cluster": "exam-results-db", "cnpg.io/podRole": "instance"}
    assert monitor["spec"]["podMetricsEndpoints"] == [{"port": "metrics"}]


def test_monitoring_can_be_switched_off(render, examples, admit):
    rendered = render(admit(examples["dev"], monitoring={"enabled": False}))
    assert not rendered.by_kind("PodMonitor")
    assert "monitoring" not in rendered.one("Cluster")["spec"]


def test_monitoring_loads_the_charts_partition_size_queries(render, examples, admit):
    cluster = render(admit(examples["prod"])).one("Cluster")
    assert cluster["spec"]["monitoring"]["customQueriesConfigMap"] == [
        {"name": "exam-results-cnpg-queries", "key": "queries"}]


def test_xr_status_reports_endpoints_and_ready_instances_from_the_observed_cluster(render, examples, admit):
    xr = admit(examples["prod"])
    first = render(xr)
    assert first.composite_status["endpoints"] == {
        "readWrite": "exam-results-db-rw.exam-results.svc", "readOnly": "exam-results-db-ro.exam-results.svc", "port": 5432}
    assert first.composite_status["readyInstances"] == 0
    assert first.ready["cluster"] == "False"

    cluster = copy.deepcopy(first.resources["cluster"])
    cluster["status"] = {"instances": 3, "readyInstances": 2, "phase": "Waiting for the instances to become active",
                         "conditions": [{"type": "Ready", "status": "False"}]}
    starting = render(xr, observed={"cluster": cluster})
    assert starting.composite_status["readyInstances"] == 2
    assert starting.ready["cluster"] == "False"

    cluster["status"].update(readyInstances=3, phase="Cluster in healthy state",
                             conditions=[{"type": "Ready", "status": "True"}])
    healthy = render(xr, observed={"cluster": cluster}, required={"server-ca": [cnpg_ca_secret()]})
    assert healthy.composite_status["readyInstances"] == 3
    assert healthy.ready["cluster"] == "True"
    # Everything else is ready as soon as it exists, so the XR becomes Ready with the cluster.
    assert set(healthy.ready.values()) == {"True"}


def restored_from_prod(examples, **restore):
    xr = copy.deepcopy(examples["prod"])
    xr["metadata"]["name"] = "exam-results-db-restored"
    xr["spec"]["restore"] = {"fromCluster": "exam-results-db", **restore}
    return xr


def test_restore_bootstraps_from_the_source_clusters_archive_to_a_point_in_time(render, examples, admit):
    rendered = render(admit(restored_from_prod(examples, targetTime="2027-08-14T09:30:00Z")))
    for obj in rendered.resources.values():
        xp.validate(obj)
    cluster = rendered.one("Cluster")["spec"]
    assert "initdb" not in cluster["bootstrap"]
    recovery = cluster["bootstrap"]["recovery"]
    assert recovery["source"] == "origin"
    assert recovery["recoveryTarget"] == {"targetTime": "2027-08-14T09:30:00Z"}
    assert (recovery["database"], recovery["owner"]) == ("exam_results", "exam_owner")
    assert recovery["secret"]["name"] == rendered.resources["owner-credentials"]["metadata"]["name"]
    store = rendered.one("ObjectStore")
    assert cluster["externalClusters"] == [{"name": "origin", "plugin": {
        "name": BARMAN_PLUGIN,
        "parameters": {"barmanObjectName": store["metadata"]["name"], "serverName": "exam-results-db"}}}]
    # The restored cluster archives to the same store under its own name, so both histories survive.
    assert cluster["plugins"][0]["parameters"] == {"barmanObjectName": store["metadata"]["name"]}


def test_restore_without_backups_keeps_the_store_for_reading_but_archives_nothing(render, examples, admit):
    xr = restored_from_prod(examples)
    xr["spec"]["backup"]["enabled"] = False
    rendered = render(admit(xr))
    assert rendered.one("ObjectStore")
    assert not rendered.by_kind("ScheduledBackup")
    assert "plugins" not in rendered.one("Cluster")["spec"]
    assert "recoveryTarget" not in rendered.one("Cluster")["spec"]["bootstrap"]["recovery"]


def test_a_cluster_cannot_restore_over_its_own_archive(render, examples, admit):
    import helm_python

    xr = restored_from_prod(examples)
    xr["metadata"]["name"] = "exam-results-db"
    with pytest.raises(helm_python.HelmRenderError, match="restore.fromCluster must name another cluster"):
        render(admit(xr))


def test_the_restore_operation_example_renders_a_recovery_cluster(render, admit):
    (xr,) = xp.load_docs(xp.CROSSPLANE / "operations" / "restore-in-cluster.yaml")
    rendered = render(admit(xr))
    for obj in rendered.resources.values():
        xp.validate(obj)
    assert rendered.one("Cluster")["spec"]["bootstrap"]["recovery"]["recoveryTarget"]["targetTime"] == "2027-08-14T09:30:00Z"
    assert rendered.resources["connection-secret"]["metadata"]["name"] == "exam-results-db-restored"


def test_the_backup_now_operation_targets_the_example_cluster(examples):
    (backup,) = xp.load_docs(xp.CROSSPLANE / "operations" / "backup-now.yaml")
    assert backup["spec"]["cluster"]["name"] == examples["prod"]["metadata"]["name"]
    assert backup["spec"]["pluginConfiguration"]["name"] == BARMAN_PLUGIN
